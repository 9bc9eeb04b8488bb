package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/internal/webauthntest"
)

const (
	testRPID   = "localhost"
	testOrigin = "https://localhost:8443"
)

// passkeyHome is an onboarded home whose auth service accepts passkeys from
// testOrigin, with the owner logged in by password.
type passkeyHome struct {
	in   *instance
	tok  Tokens
	logs *hmtest.LogBuffer
}

func startPasskeys(t *testing.T) *passkeyHome {
	t.Helper()
	logs := &hmtest.LogBuffer{}
	s := bustest.Server(t)
	conn := bustest.Conn(t, s)
	svc, err := New(Config{DataDir: t.TempDir(), Home: testHome, WebAuthnRPID: testRPID, WebAuthnOrigins: []string{testOrigin}},
		Deps{Bus: conn, Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := hmtest.Run(t, "auth", svc.Run)
	in := &instance{svc: svc, client: NewClient(conn), conn: conn, stop: stop}
	// One verb answering does not mean every verb does: Run subscribes
	// them one after another and closes Ready after the last.
	select {
	case <-svc.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("auth not ready")
	}
	ctx := context.Background()
	if err := in.client.Onboard(ctx, svc.OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatalf("Onboard: %v", err)
	}
	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return &passkeyHome{in: in, tok: tok, logs: logs}
}

// register registers a passkey of a for the bearer of token.
func (h *passkeyHome) register(t *testing.T, a *webauthntest.Authenticator, token, name string) Passkey {
	t.Helper()
	ctx := context.Background()
	c, err := h.in.client.BeginPasskeyRegistration(ctx, token)
	if err != nil {
		t.Fatalf("BeginPasskeyRegistration: %v", err)
	}
	cred, err := a.Create(c.Options, testOrigin)
	if err != nil {
		t.Fatalf("authenticator Create: %v", err)
	}
	pk, err := h.in.client.FinishPasskeyRegistration(ctx, "", token, c.SessionID, name, cred)
	if err != nil {
		t.Fatalf("FinishPasskeyRegistration: %v", err)
	}
	return pk
}

// login begins a login (usernameless when username is ""), lets a answer
// with opts and returns the session ID and the answer unsent.
func (h *passkeyHome) answer(t *testing.T, a *webauthntest.Authenticator, username, origin string, opts ...webauthntest.Option) (string, json.RawMessage) {
	t.Helper()
	c, err := h.in.client.BeginPasskeyLogin(context.Background(), username)
	if err != nil {
		t.Fatalf("BeginPasskeyLogin: %v", err)
	}
	cred, err := a.Get(c.Options, origin, opts...)
	if err != nil {
		t.Fatalf("authenticator Get: %v", err)
	}
	return c.SessionID, cred
}

func (h *passkeyHome) login(t *testing.T, a *webauthntest.Authenticator, username string) (Tokens, error) {
	t.Helper()
	id, cred := h.answer(t, a, username, testOrigin)
	return h.in.client.FinishPasskeyLogin(context.Background(), id, cred)
}

func TestPasskeyLifecycle(t *testing.T) {
	h := startPasskeys(t)
	ctx := context.Background()
	a := webauthntest.New()
	before := time.Now().Add(-time.Second)
	pk := h.register(t, a, h.tok.AccessToken, "laptop")
	if !homemesh.ValidID(pk.ID) || pk.Name != "laptop" || pk.CreatedAt.Before(before) || !pk.LastUsedAt.IsZero() {
		t.Fatalf("registered passkey = %+v", pk)
	}

	for _, username := range []string{testOwner, "ALICE", ""} {
		t.Run("login as "+username, func(t *testing.T) {
			tok, err := h.login(t, a, username)
			if err != nil {
				t.Fatalf("FinishPasskeyLogin: %v", err)
			}
			c, err := h.in.client.VerifyAccessToken(ctx, tok.AccessToken)
			if err != nil || c.Username != testOwner || c.Role != RoleOwner {
				t.Fatalf("claims %+v, %v", c, err)
			}
			if _, err := h.in.client.Refresh(ctx, tok.RefreshToken); err != nil {
				t.Errorf("refresh token of a passkey login: %v", err)
			}
		})
	}

	synced := webauthntest.New()
	synced.BackupEligible = true
	second := h.register(t, synced, h.tok.AccessToken, "phone")
	if _, err := h.login(t, synced, ""); err != nil {
		t.Fatalf("login with a synced passkey: %v", err)
	}
	list, err := h.in.client.ListPasskeys(ctx, h.tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != pk.ID || list[1].ID != second.ID || list[0].LastUsedAt.IsZero() {
		t.Fatalf("list = %+v", list)
	}

	// The options of a new registration exclude both passkeys.
	c, err := h.in.client.BeginPasskeyRegistration(ctx, h.tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(c.Options, testOrigin); !errors.Is(err, webauthntest.ErrExcluded) {
		t.Errorf("registering the same authenticator again: %v", err)
	}

	if err := h.in.client.RemovePasskey(ctx, "", h.tok.AccessToken, pk.ID); err != nil {
		t.Fatalf("RemovePasskey: %v", err)
	}
	wantKind(t, h.in.client.RemovePasskey(ctx, "", h.tok.AccessToken, pk.ID), homemesh.KindNotFound)
	// The server no longer offers the removed passkey; presented anyway,
	// it is refused.
	_, err = h.login(t, a, "")
	wantKind(t, err, homemesh.KindUnauthenticated)
	c, err = h.in.client.BeginPasskeyLogin(ctx, testOwner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(c.Options, testOrigin); !errors.Is(err, webauthntest.ErrNoCredential) {
		t.Errorf("the removed passkey is still offered: %v", err)
	}
	cred, err := a.Get(withoutAllowList(t, c.Options), testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, finish(h, c.SessionID, cred), homemesh.KindUnauthenticated)
	list, err = h.in.client.ListPasskeys(ctx, h.tok.AccessToken)
	if err != nil || len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("list after removal = %+v, %v", list, err)
	}
	if _, err := h.login(t, synced, testOwner); err != nil {
		t.Errorf("the other passkey stopped working: %v", err)
	}

	audited := func(action string) []AuditRecord {
		t.Helper()
		page, err := h.in.client.ListAudit(ctx, h.tok.AccessToken, AuditQuery{Action: action})
		if err != nil {
			t.Fatalf("ListAudit %s: %v", action, err)
		}
		return page.Records
	}
	if added := audited(AuditPasskeyAdded); len(added) != 2 || added[0].Target != "passkey:"+pk.ID || added[0].Actor != testOwner {
		t.Errorf("passkey_added records: %+v", added)
	}
	if removed := audited(AuditPasskeyRemoved); len(removed) != 1 || removed[0].Target != "passkey:"+pk.ID {
		t.Errorf("passkey_removed records: %+v", removed)
	}
	passkeyLogins := 0
	for _, r := range audited(AuditLogin) {
		if r.Details["method"] == "passkey" && r.Actor == testOwner {
			passkeyLogins++
		}
	}
	if passkeyLogins != 5 {
		t.Errorf("%d passkey logins audited, want 5", passkeyLogins)
	}
	if failed := audited(AuditLoginFailed); len(failed) != 2 {
		t.Errorf("login_failed records: %+v", failed)
	}
	out := h.logs.String()
	for name, secret := range map[string]string{"access token": h.tok.AccessToken, "refresh token": h.tok.RefreshToken, "password": testPassword} {
		if strings.Contains(out, secret) {
			t.Errorf("log holds the %s", name)
		}
	}
}

// Every way a login can be forged or replayed fails with the same error.
func TestPasskeyLoginRefusals(t *testing.T) {
	h := startPasskeys(t)
	ctx := context.Background()
	a := webauthntest.New()
	h.register(t, a, h.tok.AccessToken, "laptop")

	tests := []struct {
		name   string
		reason string // what the log says, never the client
		finish func(t *testing.T) error
	}{
		{"wrong origin", "Error validating origin", func(t *testing.T) error {
			id, cred := h.answer(t, a, testOwner, "https://evil.example")
			return finish(h, id, cred)
		}},
		{"origin on another port", "Error validating origin", func(t *testing.T) error {
			id, cred := h.answer(t, a, "", "https://localhost:9999")
			return finish(h, id, cred)
		}},
		{"replayed session", "unknown, expired or used session", func(t *testing.T) error {
			id, cred := h.answer(t, a, testOwner, testOrigin)
			if err := finish(h, id, cred); err != nil {
				t.Fatalf("first finish: %v", err)
			}
			return finish(h, id, cred)
		}},
		{"answer for another challenge", "Error validating challenge", func(t *testing.T) error {
			_, cred := h.answer(t, a, testOwner, testOrigin)
			id, _ := h.answer(t, a, testOwner, testOrigin)
			return finish(h, id, cred)
		}},
		{"tampered signature", "assertion signature", func(t *testing.T) error {
			id, cred := h.answer(t, a, testOwner, testOrigin)
			return finish(h, id, tamper(t, cred, "signature"))
		}},
		{"tampered authenticator data", "assertion signature", func(t *testing.T) error {
			id, cred := h.answer(t, a, "", testOrigin)
			return finish(h, id, tamper(t, cred, "authenticatorData"))
		}},
		{"credential of another RP ID", "RP Hash mismatch", func(t *testing.T) error {
			id, cred := h.answer(t, a, testOwner, testOrigin, webauthntest.WithRPIDHash("evil.example"))
			return finish(h, id, cred)
		}},
		{"without user verification", "User verification required", func(t *testing.T) error {
			lazy := a.Clone()
			lazy.SkipUserVerification = true
			id, cred := h.answer(t, lazy, testOwner, testOrigin)
			return finish(h, id, cred)
		}},
		{"unknown session", "unknown, expired or used session", func(t *testing.T) error {
			_, cred := h.answer(t, a, testOwner, testOrigin)
			return finish(h, "nosuchsession", cred)
		}},
		{"malformed credential", "malformed credential", func(t *testing.T) error {
			id, _ := h.answer(t, a, testOwner, testOrigin)
			return finish(h, id, json.RawMessage(`{"id":"x"}`))
		}},
		{"a stranger's authenticator", "unknown credential", func(t *testing.T) error {
			stranger := webauthntest.New()
			other := startPasskeys(t)
			other.register(t, stranger, other.tok.AccessToken, "theirs")
			id, cred := h.answer(t, stranger, "", testOrigin)
			return finish(h, id, cred)
		}},
	}
	var msgs []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logged := strings.Count(h.logs.String(), tt.reason)
			err := tt.finish(t)
			wantKind(t, err, homemesh.KindUnauthenticated)
			msgs = append(msgs, homemesh.ErrorMessage(err))
			if strings.Count(h.logs.String(), tt.reason) <= logged {
				t.Errorf("refused, but not for %q", tt.reason)
			}
		})
		// Refusals count towards the owner's lock; reset it so each case
		// stands alone.
		h.in.svc.throttleKV.Purge(ctx, nameThrottleKey(testOwner))
		h.in.svc.throttleKV.Purge(ctx, sourceThrottleKey(noSource))
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Errorf("failures differ: %q and %q", m, msgs[0])
		}
	}
	if _, err := h.login(t, a, testOwner); err != nil {
		t.Fatalf("the genuine passkey stopped working: %v", err)
	}

}

// withoutAllowList drops the allow list from login options, so that an
// authenticator answers with a credential the server did not offer.
func withoutAllowList(t *testing.T, options json.RawMessage) json.RawMessage {
	t.Helper()
	var opts map[string]map[string]any
	if err := json.Unmarshal(options, &opts); err != nil {
		t.Fatal(err)
	}
	delete(opts["publicKey"], "allowCredentials")
	out, _ := json.Marshal(opts)
	return out
}

func finish(h *passkeyHome, sessionID string, cred json.RawMessage) error {
	_, err := h.in.client.FinishPasskeyLogin(context.Background(), sessionID, cred)
	return err
}

// tamper flips a bit in the base64url field of cred's response.
func tamper(t *testing.T, cred json.RawMessage, field string) json.RawMessage {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(cred, &v); err != nil {
		t.Fatal(err)
	}
	resp := v["response"].(map[string]any)
	raw, err := base64.RawURLEncoding.DecodeString(resp[field].(string))
	if err != nil {
		t.Fatal(err)
	}
	raw[len(raw)-1] ^= 0x01
	resp[field] = base64.RawURLEncoding.EncodeToString(raw)
	out, _ := json.Marshal(v)
	return out
}

// A copy of a passkey gives itself away when its sign counter falls behind
// the original's: the login is refused, whichever of the two is the copy.
func TestPasskeyCounterGoingBackwards(t *testing.T) {
	h := startPasskeys(t)
	a := webauthntest.New()
	h.register(t, a, h.tok.AccessToken, "laptop")
	clone := a.Clone()
	for range 2 {
		if _, err := h.login(t, a, testOwner); err != nil {
			t.Fatal(err)
		}
	}
	_, err := h.login(t, clone, testOwner)
	wantKind(t, err, homemesh.KindUnauthenticated)

	// Set the counter back on the original: refused as well.
	if !a.SetCounter(a.Credentials()[0], 0) {
		t.Fatal("credential not found")
	}
	_, err = h.login(t, a, "")
	wantKind(t, err, homemesh.KindUnauthenticated)
	if !strings.Contains(h.logs.String(), "sign counter went backwards") {
		t.Error("the suspected clone is not logged")
	}
}

func TestPasskeyRegistrationRefusals(t *testing.T) {
	h := startPasskeys(t)
	ctx := context.Background()
	bob := addUser(t, h.in, "bob", RoleMember, Scope{})
	begin := func(t *testing.T, token string) PasskeyCeremony {
		t.Helper()
		c, err := h.in.client.BeginPasskeyRegistration(ctx, token)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	create := func(t *testing.T, c PasskeyCeremony, origin string, opts ...webauthntest.Option) json.RawMessage {
		t.Helper()
		cred, err := webauthntest.New().Create(c.Options, origin, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return cred
	}
	tests := []struct {
		name  string
		token string
		field string
		run   func(t *testing.T) (string, string, json.RawMessage)
	}{
		{"wrong origin", h.tok.AccessToken, "credential", func(t *testing.T) (string, string, json.RawMessage) {
			c := begin(t, h.tok.AccessToken)
			return c.SessionID, "k", create(t, c, "https://evil.example")
		}},
		{"another RP ID", h.tok.AccessToken, "credential", func(t *testing.T) (string, string, json.RawMessage) {
			c := begin(t, h.tok.AccessToken)
			return c.SessionID, "k", create(t, c, testOrigin, webauthntest.WithRPIDHash("evil.example"))
		}},
		{"someone else's session", h.tok.AccessToken, "session_id", func(t *testing.T) (string, string, json.RawMessage) {
			c := begin(t, bob.AccessToken)
			return c.SessionID, "k", create(t, c, testOrigin)
		}},
		{"replayed session", h.tok.AccessToken, "session_id", func(t *testing.T) (string, string, json.RawMessage) {
			c := begin(t, h.tok.AccessToken)
			cred := create(t, c, testOrigin)
			if _, err := h.in.client.FinishPasskeyRegistration(ctx, "", h.tok.AccessToken, c.SessionID, "first", cred); err != nil {
				t.Fatal(err)
			}
			return c.SessionID, "again", cred
		}},
		{"no name", h.tok.AccessToken, "name", func(t *testing.T) (string, string, json.RawMessage) {
			c := begin(t, h.tok.AccessToken)
			return c.SessionID, " ", create(t, c, testOrigin)
		}},
		{"no credential", h.tok.AccessToken, "credential", func(t *testing.T) (string, string, json.RawMessage) {
			return begin(t, h.tok.AccessToken).SessionID, "k", nil
		}},
		{"garbage credential", h.tok.AccessToken, "credential", func(t *testing.T) (string, string, json.RawMessage) {
			return begin(t, h.tok.AccessToken).SessionID, "k", json.RawMessage(`{"id":"AA","rawId":"AA","type":"public-key","response":{}}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, name, cred := tt.run(t)
			_, err := h.in.client.FinishPasskeyRegistration(ctx, "", tt.token, id, name, cred)
			wantKind(t, err, homemesh.KindInvalid)
			if got := homemesh.ErrorField(err); got != tt.field {
				t.Errorf("field = %q, want %q (%v)", got, tt.field, err)
			}
		})
	}
	_, err := h.in.client.BeginPasskeyRegistration(ctx, "forged")
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = h.in.client.ListPasskeys(ctx, "")
	wantKind(t, err, homemesh.KindUnauthenticated)
	wantKind(t, h.in.client.RemovePasskey(ctx, "", h.tok.AccessToken, "Not An ID"), homemesh.KindInvalid)

	// Bob registers his own; he cannot see or remove the owner's.
	bobs := h.register(t, webauthntest.New(), bob.AccessToken, "bob's key")
	list, err := h.in.client.ListPasskeys(ctx, bob.AccessToken)
	if err != nil || len(list) != 1 || list[0].ID != bobs.ID {
		t.Fatalf("bob's list = %+v, %v", list, err)
	}
	owners, err := h.in.client.ListPasskeys(ctx, h.tok.AccessToken)
	if err != nil || len(owners) != 1 {
		t.Fatalf("owner's list = %+v, %v", owners, err)
	}
	wantKind(t, h.in.client.RemovePasskey(ctx, "", bob.AccessToken, owners[0].ID), homemesh.KindNotFound)
}

// Login options for a user name look alike whether the user exists, has
// passkeys or not, so they cannot be used to probe accounts.
func TestPasskeyLoginOptionsRevealNothing(t *testing.T) {
	h := startPasskeys(t)
	ctx := context.Background()
	a := webauthntest.New()
	h.register(t, a, h.tok.AccessToken, "laptop")
	allowed := func(username string) []string {
		t.Helper()
		c, err := h.in.client.BeginPasskeyLogin(ctx, username)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			PublicKey struct {
				AllowCredentials []struct {
					ID   string `json:"id"`
					Type string `json:"type"`
				} `json:"allowCredentials"`
				UserVerification string `json:"userVerification"`
			} `json:"publicKey"`
		}
		if err := json.Unmarshal(c.Options, &o); err != nil {
			t.Fatal(err)
		}
		if o.PublicKey.UserVerification != "required" {
			t.Errorf("%s: userVerification = %q", username, o.PublicKey.UserVerification)
		}
		var ids []string
		for _, d := range o.PublicKey.AllowCredentials {
			ids = append(ids, d.Type+":"+d.ID)
		}
		return ids
	}
	real, ghost := allowed(testOwner), allowed("mallory")
	if len(real) != 1 || len(ghost) != 1 || len(real[0]) != len(ghost[0]) {
		t.Fatalf("options differ in shape: %v and %v", real, ghost)
	}
	if again := allowed("mallory"); again[0] != ghost[0] {
		t.Error("the decoy changes from one request to the next")
	}
	if other := allowed("eve"); other[0] == ghost[0] {
		t.Error("two unknown users share a decoy")
	}
	_, err := h.in.client.BeginPasskeyLogin(ctx, "not a name!")
	wantKind(t, err, homemesh.KindInvalid)

	// Finishing a decoy login fails like any other, even with a genuine
	// passkey of another user that ignores the allow list.
	c, err := h.in.client.BeginPasskeyLogin(ctx, "mallory")
	if err != nil {
		t.Fatal(err)
	}
	unlisted := withoutAllowList(t, c.Options)
	cred, err := a.Get(unlisted, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, finish(h, c.SessionID, cred), homemesh.KindUnauthenticated)
}

// Failed passkey logins count towards the user name's and the source's
// locks, which then refuse passwords and passkeys alike.
func TestPasskeyThrottle(t *testing.T) {
	h := startPasskeys(t)
	ctx := context.Background()
	a := webauthntest.New()
	h.register(t, a, h.tok.AccessToken, "laptop")
	for range nameLimit.failures {
		id, cred := h.answer(t, a, testOwner, "https://evil.example")
		wantKind(t, finish(h, id, cred), homemesh.KindUnauthenticated)
	}
	id, cred := h.answer(t, a, "", testOrigin)
	_, err := h.in.client.FinishPasskeyLoginFrom(ctx, "192.0.2.1", id, cred)
	wantKind(t, err, homemesh.KindRateLimited)
	if homemesh.ErrorRetryAfter(err) <= 0 {
		t.Errorf("no Retry-After: %v", err)
	}
	_, err = h.in.client.LoginFrom(ctx, "192.0.2.1", testOwner, testPassword, "")
	wantKind(t, err, homemesh.KindRateLimited)

	// Another source, naming no user, is not affected.
	_, err = h.in.client.FinishPasskeyLoginFrom(ctx, "192.0.2.2", "malformed!", cred)
	wantKind(t, err, homemesh.KindUnauthenticated)
}

// Ceremonies end after five minutes even if the bucket has not yet dropped
// them.
func TestPasskeyCeremonyExpires(t *testing.T) {
	h := startPasskeys(t)
	ctx := context.Background()
	c, err := h.in.client.BeginPasskeyLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.in.svc.finishCeremony(ctx, c.SessionID, ceremonyLogin, time.Now().Add(ceremonyTTL+time.Second))
	if !errors.Is(err, errCeremonyGone) {
		t.Fatalf("expired ceremony: %v", err)
	}
	c, err = h.in.client.BeginPasskeyLogin(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.in.svc.finishCeremony(ctx, c.SessionID, ceremonyRegister, time.Now()); !errors.Is(err, errCeremonyGone) {
		t.Fatalf("login session finished as a registration: %v", err)
	}
}

// A flood of begun logins fills the bounded ceremony bucket and is then
// refused rather than filling the disk.
func TestPasskeyCeremoniesAreBounded(t *testing.T) {
	defer func(n int64) { ceremonyBytes = n }(ceremonyBytes)
	ceremonyBytes = 32 << 10
	h := startPasskeys(t)
	ctx := context.Background()
	var err error
	for i := 0; err == nil; i++ {
		if i > 1000 {
			t.Fatal("1000 ceremonies fit in a 32 KiB bucket")
		}
		_, err = h.in.client.BeginPasskeyLogin(ctx, "")
	}
	wantKind(t, err, homemesh.KindUnavailable)
}

func TestPasskeysNeedOrigins(t *testing.T) {
	s := bustest.Server(t)
	in := start(t, s, t.TempDir())
	_, err := in.client.BeginPasskeyLogin(context.Background(), "")
	wantKind(t, err, homemesh.KindUnavailable)
	if err := in.svc.SetWebAuthnOrigins([]string{testOrigin}); err != nil {
		t.Fatal(err)
	}
	if _, err := in.client.BeginPasskeyLogin(context.Background(), ""); err != nil {
		t.Fatalf("after SetWebAuthnOrigins: %v", err)
	}
	conn := bustest.Conn(t, s)
	for _, tc := range []struct {
		rpID    string
		origins []string
		field   string
	}{
		{"127.0.0.1", nil, "webauthn_rp_id"},
		{"https://localhost", nil, "webauthn_rp_id"},
		{"localhost", []string{"android:apk-key-hash:x"}, "webauthn_origins"},
	} {
		_, err := New(Config{DataDir: t.TempDir(), Home: testHome, WebAuthnRPID: tc.rpID, WebAuthnOrigins: tc.origins}, Deps{Bus: conn})
		if homemesh.ErrorField(err) != tc.field {
			t.Errorf("%s %v: %v, want a %s error", tc.rpID, tc.origins, err, tc.field)
		}
	}
	if in.svc.rpID != DefaultWebAuthnRPID {
		t.Errorf("default RP ID = %q", in.svc.rpID)
	}
}
