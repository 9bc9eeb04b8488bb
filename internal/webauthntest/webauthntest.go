// Package webauthntest is a software WebAuthn authenticator for tests: it
// answers the options a relying party sends for navigator.credentials.create
// and navigator.credentials.get with the PublicKeyCredential JSON a browser
// would post back, so a test can register and use passkeys end to end.
//
// It is a real authenticator, not a recording: every credential has its own
// ECDSA P-256 key, registration returns a CBOR attestation object in the
// "none" format whose authenticator data carries the RP ID hash, the flags,
// the sign counter and the attested credential data (AAGUID, credential ID,
// COSE key), and every assertion is signed over the authenticator data and
// the hash of the client data. Credentials created with a resident key
// requirement of "required" or "preferred" are discoverable, so usernameless
// logins work.
//
// It plays the authenticator and the parts of the browser that build the
// client data, but it does not enforce the browser's origin rules: a test
// chooses the origin it claims, which is how a relying party's origin check
// is tested. Options such as WithRPIDHash make it misbehave in the other ways
// a relying party must catch.
package webauthntest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"sync"

	"github.com/fxamacker/cbor/v2"
)

// Authenticator flags (WebAuthn §6.1).
const (
	flagUserPresent    = 0x01
	flagUserVerified   = 0x04
	flagBackupEligible = 0x08
	flagBackupState    = 0x10
	flagAttestedData   = 0x40
)

// coseES256 is the COSE algorithm identifier of ECDSA P-256 with SHA-256,
// the only algorithm this authenticator implements.
const coseES256 = -7

// ErrExcluded is returned by Create when the relying party excludes a
// credential this authenticator already holds for it (the browser's
// InvalidStateError).
var ErrExcluded = errors.New("webauthntest: the authenticator already holds an excluded credential")

// ErrNoCredential is returned by Get when no credential matches the request.
var ErrNoCredential = errors.New("webauthntest: no matching credential")

// AAGUID identifies this authenticator model in attested credential data.
var AAGUID = [16]byte{'h', 'o', 'm', 'e', 'm', 'e', 's', 'h', '-', 's', 'o', 'f', 't', 'k', 'e', 'y'}

// Authenticator holds credentials and answers ceremonies. The zero value is
// not usable; create one with New. It is safe for concurrent use.
type Authenticator struct {
	// BackupEligible makes new credentials synced passkeys: they carry the
	// backup eligible and backup state flags.
	BackupEligible bool
	// SkipUserVerification leaves the user verified flag unset, as an
	// authenticator without a PIN or biometric would.
	SkipUserVerification bool

	mu    sync.Mutex
	creds []*credential
}

type credential struct {
	id         []byte
	key        *ecdsa.PrivateKey
	rpID       string
	userHandle []byte
	resident   bool
	backup     bool
	counter    uint32
}

// New returns an authenticator without credentials whose credentials are
// bound to it (not backup eligible).
func New() *Authenticator { return &Authenticator{} }

// Clone returns an authenticator holding copies of a's credentials, keys
// and counters included: what an attacker who extracted them would hold.
func (a *Authenticator) Clone() *Authenticator {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &Authenticator{BackupEligible: a.BackupEligible, SkipUserVerification: a.SkipUserVerification}
	for _, cr := range a.creds {
		cp := *cr
		c.creds = append(c.creds, &cp)
	}
	return c
}

// Credentials returns the IDs of the credentials held, oldest first.
func (a *Authenticator) Credentials() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([][]byte, len(a.creds))
	for i, c := range a.creds {
		out[i] = bytes.Clone(c.id)
	}
	return out
}

// Option changes how one ceremony is answered.
type Option func(*ceremony)

type ceremony struct {
	rpIDHash     string
	credentialID []byte
}

// WithRPIDHash puts the hash of rpID in the authenticator data instead of
// the hash of the relying party's ID, as a credential scoped to another
// relying party would.
func WithRPIDHash(rpID string) Option { return func(c *ceremony) { c.rpIDHash = rpID } }

// WithCredential makes Get answer with the credential id, when it matches
// the request, rather than the first one that does.
func WithCredential(id []byte) Option { return func(c *ceremony) { c.credentialID = bytes.Clone(id) } }

// Create answers navigator.credentials.create with options, the JSON the
// relying party sent ({"publicKey": {...}} or the inner object alone),
// claiming origin as the page's origin. It returns the PublicKeyCredential
// as the JSON a browser posts back.
func (a *Authenticator) Create(options []byte, origin string, opts ...Option) (json.RawMessage, error) {
	o, err := ParseCreationOptions(options)
	if err != nil {
		return nil, err
	}
	var cer ceremony
	for _, opt := range opts {
		opt(&cer)
	}
	if !slices.ContainsFunc(o.Params, func(p credentialParam) bool { return p.Type == "public-key" && p.Alg == coseES256 }) {
		return nil, errors.New("webauthntest: the relying party does not accept ES256")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, ex := range o.Exclude {
		if slices.ContainsFunc(a.creds, func(c *credential) bool { return c.rpID == o.RP.ID && bytes.Equal(c.id, ex.ID) }) {
			return nil, ErrExcluded
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cred := &credential{
		id: randomBytes(32), key: key, rpID: o.RP.ID, userHandle: o.User.ID,
		resident: o.Selection.ResidentKey == "required" || o.Selection.ResidentKey == "preferred" || o.Selection.RequireResidentKey,
		backup:   a.BackupEligible,
	}
	rpIDHash := cred.rpID
	if cer.rpIDHash != "" {
		rpIDHash = cer.rpIDHash
	}
	cose, err := coseKey(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	authData := a.authData(rpIDHash, cred, flagAttestedData)
	authData = append(authData, AAGUID[:]...)
	authData = binary.BigEndian.AppendUint16(authData, uint16(len(cred.id)))
	authData = append(authData, cred.id...)
	authData = append(authData, cose...)
	attObj, err := encMode.Marshal(attestationObject{Fmt: "none", AttStmt: map[string]any{}, AuthData: authData})
	if err != nil {
		return nil, err
	}
	clientData, err := clientDataJSON("webauthn.create", o.Challenge, origin)
	if err != nil {
		return nil, err
	}
	a.creds = append(a.creds, cred)
	return json.Marshal(publicKeyCredential{
		ID: b64(cred.id), RawID: b64(cred.id), Type: "public-key", Attachment: "platform",
		Response: credentialResponse{
			ClientDataJSON: b64(clientData), AttestationObject: b64(attObj), Transports: []string{"internal"},
		},
		Extensions: map[string]any{},
	})
}

// Get answers navigator.credentials.get with options, the JSON the relying
// party sent, claiming origin as the page's origin. With an allow list it
// uses a listed credential; without one, a discoverable credential of the
// relying party. Each use advances that credential's sign counter.
func (a *Authenticator) Get(options []byte, origin string, opts ...Option) (json.RawMessage, error) {
	o, err := ParseRequestOptions(options)
	if err != nil {
		return nil, err
	}
	var cer ceremony
	for _, opt := range opts {
		opt(&cer)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var cred *credential
	for _, c := range a.creds {
		if c.rpID != o.RPID || cer.credentialID != nil && !bytes.Equal(c.id, cer.credentialID) {
			continue
		}
		listed := slices.ContainsFunc(o.Allow, func(d credentialDescriptor) bool { return bytes.Equal(d.ID, c.id) })
		if listed || len(o.Allow) == 0 && c.resident {
			cred = c
			break
		}
	}
	if cred == nil {
		return nil, ErrNoCredential
	}
	cred.counter++
	rpIDHash := cred.rpID
	if cer.rpIDHash != "" {
		rpIDHash = cer.rpIDHash
	}
	authData := a.authData(rpIDHash, cred, 0)
	clientData, err := clientDataJSON("webauthn.get", o.Challenge, origin)
	if err != nil {
		return nil, err
	}
	clientHash := sha256.Sum256(clientData)
	digest := sha256.Sum256(append(bytes.Clone(authData), clientHash[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, cred.key, digest[:])
	if err != nil {
		return nil, err
	}
	return json.Marshal(publicKeyCredential{
		ID: b64(cred.id), RawID: b64(cred.id), Type: "public-key", Attachment: "platform",
		Response: credentialResponse{
			ClientDataJSON: b64(clientData), AuthenticatorData: b64(authData),
			Signature: b64(sig), UserHandle: b64(cred.userHandle),
		},
		Extensions: map[string]any{},
	})
}

// authData returns the fixed part of the authenticator data: RP ID hash,
// flags and sign counter.
func (a *Authenticator) authData(rpID string, c *credential, extra byte) []byte {
	flags := byte(flagUserPresent) | extra
	if !a.SkipUserVerification {
		flags |= flagUserVerified
	}
	if c.backup {
		flags |= flagBackupEligible | flagBackupState
	}
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	return binary.BigEndian.AppendUint32(out, c.counter)
}

// encMode encodes CBOR in the deterministic form CTAP2 requires.
var encMode = func() cbor.EncMode {
	em, err := cbor.CTAP2EncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

type attestationObject struct {
	Fmt      string         `cbor:"fmt"`
	AttStmt  map[string]any `cbor:"attStmt"`
	AuthData []byte         `cbor:"authData"`
}

// coseKey encodes pub as a COSE_Key (RFC 9053): EC2, ES256, P-256, x, y.
func coseKey(pub *ecdsa.PublicKey) ([]byte, error) {
	raw, err := pub.Bytes() // 0x04 || x || y
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(map[int]any{
		1:  2,         // kty: EC2
		3:  coseES256, // alg
		-1: 1,         // crv: P-256
		-2: raw[1:33], // x
		-3: raw[33:],  // y
	})
}

func clientDataJSON(typ string, challenge []byte, origin string) ([]byte, error) {
	return json.Marshal(struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
	}{typ, b64(challenge), origin, false})
}

type publicKeyCredential struct {
	ID         string             `json:"id"`
	RawID      string             `json:"rawId"`
	Type       string             `json:"type"`
	Attachment string             `json:"authenticatorAttachment,omitempty"`
	Response   credentialResponse `json:"response"`
	Extensions map[string]any     `json:"clientExtensionResults"`
}

type credentialResponse struct {
	ClientDataJSON    string   `json:"clientDataJSON"`
	AttestationObject string   `json:"attestationObject,omitempty"`
	Transports        []string `json:"transports,omitempty"`
	AuthenticatorData string   `json:"authenticatorData,omitempty"`
	Signature         string   `json:"signature,omitempty"`
	UserHandle        string   `json:"userHandle,omitempty"`
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// SetCounter sets the sign counter of the credential id, so a test can make
// it go backwards. It reports whether the credential exists.
func (a *Authenticator) SetCounter(id []byte, n uint32) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.creds {
		if bytes.Equal(c.id, id) {
			c.counter = n
			return true
		}
	}
	return false
}
