package webauthntest

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
)

const (
	rpID   = "localhost"
	origin = "https://localhost:8443"
)

// user is a relying party's account as go-webauthn sees it.
type user struct {
	id    []byte
	creds []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.id }
func (u *user) WebAuthnName() string                       { return "alice" }
func (u *user) WebAuthnDisplayName() string                { return "Alice" }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func relyingParty(t *testing.T) *webauthn.WebAuthn {
	t.Helper()
	wa, err := webauthn.New(&webauthn.Config{RPID: rpID, RPDisplayName: "test", RPOrigins: []string{origin}})
	if err != nil {
		t.Fatal(err)
	}
	return wa
}

// register runs a registration ceremony of a with wa and returns the
// credential the relying party stores.
func register(t *testing.T, wa *webauthn.WebAuthn, a *Authenticator, u *user, rk protocol.ResidentKeyRequirement) webauthn.Credential {
	t.Helper()
	creation, session, err := wa.BeginRegistration(u, webauthn.WithResidentKeyRequirement(rk))
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation)
	resp, err := a.Create(opts, origin)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(resp)
	if err != nil {
		t.Fatalf("parse registration: %v", err)
	}
	cred, err := wa.CreateCredential(u, *session, parsed)
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	u.creds = append(u.creds, *cred)
	return *cred
}

// login runs a login ceremony (discoverable when discoverable is set) and
// returns the relying party's verdict.
func login(t *testing.T, wa *webauthn.WebAuthn, a *Authenticator, u *user, discoverable bool, opts ...Option) (*webauthn.Credential, error) {
	t.Helper()
	var (
		assertion *protocol.CredentialAssertion
		session   *webauthn.SessionData
		err       error
	)
	if discoverable {
		assertion, session, err = wa.BeginDiscoverableLogin()
	} else {
		assertion, session, err = wa.BeginLogin(u)
	}
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(assertion)
	resp, err := a.Get(data, origin, opts...)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		return nil, err
	}
	if discoverable {
		return wa.ValidateDiscoverableLogin(func(rawID, handle []byte) (webauthn.User, error) {
			if !bytes.Equal(handle, u.id) {
				return nil, errors.New("unknown user handle")
			}
			return u, nil
		}, *session, parsed)
	}
	return wa.ValidateLogin(u, *session, parsed)
}

func TestRegisterAndLogin(t *testing.T) {
	wa := relyingParty(t)
	for _, synced := range []bool{false, true} {
		a := New()
		a.BackupEligible = synced
		u := &user{id: []byte("user-1")}
		cred := register(t, wa, a, u, protocol.ResidentKeyRequirementRequired)
		if cred.AttestationFormat != "none" || !bytes.Equal(cred.Authenticator.AAGUID, AAGUID[:]) {
			t.Errorf("credential = %+v", cred)
		}
		if cred.Flags.BackupEligible != synced || !cred.Flags.UserVerified || !cred.Flags.UserPresent {
			t.Errorf("flags = %+v", cred.Flags)
		}
		for i, discoverable := range []bool{false, true} {
			got, err := login(t, wa, a, u, discoverable)
			if err != nil {
				t.Fatalf("login (discoverable %v): %v", discoverable, err)
			}
			if got.Authenticator.SignCount != uint32(i+1) || got.Authenticator.CloneWarning {
				t.Errorf("sign count = %d, clone warning %v", got.Authenticator.SignCount, got.Authenticator.CloneWarning)
			}
			u.creds[0] = *got
		}
	}
}

func TestExcludedCredential(t *testing.T) {
	wa := relyingParty(t)
	a := New()
	u := &user{id: []byte("user-1")}
	cred := register(t, wa, a, u, protocol.ResidentKeyRequirementPreferred)
	creation, _, err := wa.BeginRegistration(u, webauthn.WithExclusions([]protocol.CredentialDescriptor{cred.Descriptor()}))
	if err != nil {
		t.Fatal(err)
	}
	opts, _ := json.Marshal(creation)
	if _, err := a.Create(opts, origin); !errors.Is(err, ErrExcluded) {
		t.Fatalf("Create with the credential excluded: %v", err)
	}
}

func TestNonResidentIsNotDiscoverable(t *testing.T) {
	wa := relyingParty(t)
	a := New()
	u := &user{id: []byte("user-1")}
	register(t, wa, a, u, protocol.ResidentKeyRequirementDiscouraged)
	if _, err := login(t, wa, a, u, true); !errors.Is(err, ErrNoCredential) {
		t.Fatalf("discoverable login with a non-resident credential: %v", err)
	}
	if _, err := login(t, wa, a, u, false); err != nil {
		t.Fatalf("login with an allow list: %v", err)
	}
}

// The relying party's own checks must catch each kind of misbehaviour the
// authenticator can be asked for.
func TestMisbehaviourIsCaught(t *testing.T) {
	wa := relyingParty(t)
	a := New()
	u := &user{id: []byte("user-1")}
	cred := register(t, wa, a, u, protocol.ResidentKeyRequirementRequired)

	if _, err := login(t, wa, a, u, false, WithRPIDHash("evil.example")); err == nil {
		t.Error("assertion for another RP ID accepted")
	}
	clone := a.Clone()
	got, err := login(t, wa, a, u, false)
	if err != nil {
		t.Fatal(err)
	}
	u.creds[0] = *got
	got, err = login(t, wa, clone, u, false)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Authenticator.CloneWarning {
		t.Error("a cloned authenticator's repeated counter raised no clone warning")
	}
	if !a.SetCounter(cred.ID, 0) || a.SetCounter([]byte("unknown"), 0) {
		t.Error("SetCounter does not find credentials by ID")
	}
	a.SkipUserVerification = true
	assertion, _, err := wa.BeginLogin(u)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(assertion)
	resp, err := a.Get(data, origin)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(resp)
	if err != nil {
		t.Fatal(err)
	}
	if flags := parsed.Response.AuthenticatorData.Flags; flags.UserVerified() || !flags.UserPresent() {
		t.Errorf("flags %08b with verification skipped", flags)
	}
}

func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		`{"publicKey":{"rp":{"id":"localhost","name":"x"},"user":{"id":"dXNlcg","name":"a","displayName":"A"},"challenge":"AAAAAAAAAAAAAAAAAAAAAA","pubKeyCredParams":[{"type":"public-key","alg":-7}]}}`,
		`{"publicKey":{"challenge":"AAAAAAAAAAAAAAAAAAAAAA==","rpId":"localhost","allowCredentials":[{"type":"public-key","id":"YWJj"}]}}`,
		`{"challenge":"AAAAAAAAAAAAAAAAAAAAAA","rpId":"localhost"}`,
		`{"publicKey":null}`, `[]`, `{"challenge":1}`, `{"publicKey":{"challenge":"!!"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if o, err := ParseCreationOptions(data); err == nil {
			if o.RP.ID == "" || len(o.User.ID) == 0 || len(o.User.ID) > 64 || len(o.Challenge) < minChallenge {
				t.Fatalf("accepted incomplete creation options: %+v", o)
			}
			a := New()
			if _, err := a.Create(data, origin); err == nil && len(a.Credentials()) != 1 {
				t.Fatal("Create succeeded without keeping a credential")
			}
		}
		if o, err := ParseRequestOptions(data); err == nil {
			if o.RPID == "" || len(o.Challenge) < minChallenge {
				t.Fatalf("accepted incomplete request options: %+v", o)
			}
			if _, err := New().Get(data, origin); !errors.Is(err, ErrNoCredential) {
				t.Fatalf("an empty authenticator answered: %v", err)
			}
		}
	})
}
