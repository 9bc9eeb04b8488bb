package auth

import (
	"encoding/json"
	"time"

	"github.com/homemesh/homemesh/bus"
)

// maxRequest bounds every request body. The largest legitimate one is a
// credential with its allow list, well under this.
const maxRequest = 64 << 10

func subject(verb string) string { return bus.ServiceSubject(ServiceName, verb) }

type onboardRequest struct {
	Code     string `json:"code"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
	// Source is the address the login came from, as the gateway saw it:
	// failed logins are throttled per address too.
	Source string `json:"source,omitempty"`
}

// bearer is the access token a person's request carries. Requests embed
// it, so the token stays a top-level "access_token" field on the wire and
// one prologue (decodeAuthorized) can authorize every such verb.
type bearer struct {
	AccessToken string `json:"access_token"`
}

func (b bearer) accessToken() string { return b.AccessToken }

// mfaRequest is a request about the caller's own second factors.
type mfaRequest struct {
	bearer
}

type mfaConfirmRequest struct {
	bearer
	Code string `json:"code"`
}

type mfaDisableRequest struct {
	bearer
	Password string `json:"password"`
	Code     string `json:"code"`
}

type mfaConfirmReply struct {
	RecoveryCodes []string `json:"recovery_codes"`
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// publicKey is one token verification key. Key is the raw Ed25519 public
// key (base64 in JSON).
type publicKey struct {
	KID string `json:"kid"`
	Key []byte `json:"key"`
}

type keysReply struct {
	Home string      `json:"home"`
	Keys []publicKey `json:"keys"`
}

type createCredentialRequest struct {
	bearer
	Name  string   `json:"name"`
	Allow []string `json:"allow"`
}

type deleteCredentialRequest struct {
	bearer
	Username string `json:"username"`
}

type listCredentialsRequest struct {
	bearer
	After string `json:"after,omitempty"` // start after this user name
}

type listCredentialsReply struct {
	Credentials []Credential `json:"credentials"`
	More        bool         `json:"more,omitempty"`
}

type mqttAuthRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	ClientID string `json:"client_id"`
}

// serverCertRequest asks the home CA to certify a key that never leaves
// the requesting process: only its certificate request travels.
type serverCertRequest struct {
	CSR   []byte   `json:"csr"` // PKCS #10, DER
	Hosts []string `json:"hosts"`
}

type serverCertReply struct {
	Chain [][]byte `json:"chain"` // DER: the server certificate, then the CA
}

type auditListRequest struct {
	bearer
	From     *time.Time `json:"from,omitempty"`
	To       *time.Time `json:"to,omitempty"`
	Action   string     `json:"action,omitempty"`
	AfterSeq uint64     `json:"after_seq,omitempty"`
	Limit    int        `json:"limit,omitempty"`
}

type passkeyRegisterBeginRequest struct {
	bearer
}

// passkeyRegisterFinishRequest carries the browser's PublicKeyCredential
// as the JSON it produced, for go-webauthn to parse.
type passkeyRegisterFinishRequest struct {
	bearer
	SessionID  string          `json:"session_id"`
	Name       string          `json:"name"`
	Credential json.RawMessage `json:"credential"`
	Source     string          `json:"source,omitempty"` // the caller's address, for the audit log
}

type passkeyLoginBeginRequest struct {
	Username string `json:"username,omitempty"` // "" for a usernameless login
}

type passkeyLoginFinishRequest struct {
	SessionID  string          `json:"session_id"`
	Credential json.RawMessage `json:"credential"`
	// Source is the address the login came from, as for a password login.
	Source string `json:"source,omitempty"`
}

type passkeyListRequest struct {
	bearer
}

type passkeyRemoveRequest struct {
	bearer
	ID     string `json:"id"`
	Source string `json:"source,omitempty"` // the caller's address, for the audit log
}

type createPairingRequest struct {
	bearer
	Name  string   `json:"name"`
	Allow []string `json:"allow"` // null: DefaultAllow; [] is refused
}

type claimPairingRequest struct {
	Code     string `json:"code"`
	CSR      string `json:"csr,omitempty"`       // PEM PKCS #10
	MeshKey  string `json:"mesh_key,omitempty"`  // base64 X25519 public key of a mesh node
	MeshRole string `json:"mesh_role,omitempty"` // router (default) or leaf
	Source   string `json:"source,omitempty"`    // the claimant's network address
}

type certAuthRequest struct {
	Certificate []byte `json:"certificate"` // DER
}

type createUserRequest struct {
	bearer
	NewUser
}

type listUsersRequest struct {
	bearer
	After string `json:"after,omitempty"` // start after this user name
}

type listUsersReply struct {
	Users []User `json:"users"`
	More  bool   `json:"more,omitempty"`
}

// userRequest names one user: user_get and user_delete.
type userRequest struct {
	bearer
	Username string `json:"username"`
}

type updateUserRequest struct {
	bearer
	Username string `json:"username"`
	UserUpdate
}

type changePasswordRequest struct {
	bearer
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
	Source          string `json:"source,omitempty"` // the person's network address, for throttling
}
