package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/mesh/route"
)

// ServiceName is the name of the auth service on the bus.
const ServiceName = "auth"

// Queue is the queue group every auth process serves its verbs in.
const Queue = "auth"

// The verbs of the service: requests go to bus.ServiceSubject(ServiceName, verb).
const (
	VerbOnboard          = "onboard"
	VerbLogin            = "login"
	VerbRefresh          = "refresh"
	VerbKeys             = "keys"
	VerbCreateCredential = "credential_create"
	VerbDeleteCredential = "credential_delete"
	VerbListCredentials  = "credential_list"
	VerbAuthenticateMQTT = "mqtt_authenticate"
	VerbServerCert       = "server_certificate"
	VerbCreatePairing    = "pairing_create"
	VerbClaimPairing     = "pairing_claim"
	VerbAuthenticateCert = "mqtt_authenticate_cert"
	VerbMeshHubCert      = "mesh_hub_cert"
	VerbMeshNodes        = "mesh_nodes"
	VerbMeshRevokeNode   = "mesh_node_revoke"
	VerbMeshRevoked      = "mesh_revoked"
	VerbAuditAppend      = "audit_append"
	VerbRevocations      = "revocations"
	VerbAuditList        = "audit_list"
	VerbLogout           = "logout"
	VerbRevokeAll        = "revoke_all"
	VerbMFAStatus        = "mfa_status"
	VerbMFATOTPBegin     = "mfa_totp_begin"
	VerbMFATOTPConfirm   = "mfa_totp_confirm"
	VerbMFATOTPDisable   = "mfa_totp_disable"

	VerbPasskeyRegisterBegin  = "passkey_register_begin"
	VerbPasskeyRegisterFinish = "passkey_register_finish"
	VerbPasskeyLoginBegin     = "passkey_login_begin"
	VerbPasskeyLoginFinish    = "passkey_login_finish"
	VerbPasskeyList           = "passkey_list"
	VerbPasskeyRemove         = "passkey_remove"
	VerbCreateToken           = "token_create"
	VerbListTokens            = "token_list"
	VerbDeleteToken           = "token_delete"
	VerbVerifyToken           = "token_verify"
	VerbCreateUser            = "user_create"
	VerbListUsers             = "user_list"
	VerbGetUser               = "user_get"
	VerbUpdateUser            = "user_update"
	VerbDeleteUser            = "user_delete"
	VerbChangePassword        = "password_change"
	VerbRotateKeys            = "keys_rotate"
)

// EventCredentialRevoked is the event kind published on
// bus.EventSubject(home, EventCredentialRevoked) when an MQTT credential is
// deleted, so that MQTT edges disconnect its clients at once.
const EventCredentialRevoked = "credential_revoked"

// EventTokensRevoked is published on bus.EventSubject(home,
// EventTokensRevoked) when every token a user holds is revoked, so token
// verifiers stop accepting them at once. Its envelope payload is a
// Revocation.
const EventTokensRevoked = "tokens_revoked"

// EventMeshNodeRevoked is published on bus.EventSubject(home,
// EventMeshNodeRevoked) when a paired mesh node is revoked, so the border
// cuts it off at once and tells the agents. It is a MeshNodeRevokedEvent.
const EventMeshNodeRevoked = "mesh_node_revoked"

// Roles known to the service. The owner is created by onboarding.
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
	RoleGuest  = "guest"
)

// Tokens is the result of a login or a refresh.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"` // seconds until AccessToken expires
	TokenType    string `json:"token_type"` // always "Bearer"
}

// Claims are what a verified access token says about its bearer.
type Claims struct {
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Home      string    `json:"home"`
	Scope     Scope     `json:"scope,omitzero"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// TokenID is set when the bearer presented an integration token
	// rather than an access token: the token's ID.
	TokenID string `json:"token_id,omitempty"`
}

// Scope narrows what a user may see and command, within their role. Each
// non-empty list is a limit: an entity is in scope when it passes every
// non-empty list (its device's room, its kind, its ID). The zero Scope
// limits nothing.
type Scope struct {
	Rooms    []string `json:"rooms,omitempty"`
	Kinds    []string `json:"kinds,omitempty"`
	Entities []string `json:"entities,omitempty"`
}

// Credential is an MQTT credential. Password is set only in the reply that
// creates it; it is never stored in the clear and never listed.
type Credential struct {
	Username  string    `json:"username"`
	Password  string    `json:"password,omitempty"`
	Kind      string    `json:"kind"` // KindPassword or KindCertificate (a paired device's certificate identity)
	Name      string    `json:"name"`
	Allow     []string  `json:"allow"` // MQTT topic filters the client may use
	CreatedAt time.Time `json:"created_at"`
}

// Grant is what an authenticated MQTT client may do.
type Grant struct {
	Username string   `json:"username"`
	Allow    []string `json:"allow"`
}

// MFAStatus is what a person has set up as a second factor.
type MFAStatus struct {
	TOTPEnabled       bool `json:"totp_enabled"`
	RecoveryCodesLeft int  `json:"recovery_codes_left"`
}

// TOTPEnrollment is a new TOTP key awaiting confirmation: the secret for
// typing into an authenticator app, the otpauth:// URI it stands for, and
// that URI as a 256×256 QR code in PNG (base64 in JSON).
type TOTPEnrollment struct {
	Secret     string `json:"secret"`
	OTPAuthURI string `json:"otpauth_uri"`
	QRPNG      []byte `json:"qr_png"`
}

// Client calls the auth service over the bus. It is safe for concurrent use.
// The home it serves comes back from the service with its public keys.
type Client struct {
	conn        *natsbus.Conn
	keys        *keyCache
	revoked     *revocationCache
	integration *integrationCache

	keyEventsMu sync.Mutex  // one subscription attempt at a time
	keyEvents   atomic.Bool // subscribed to EventKeysRotated
}

// NewClient returns a client that talks to the auth service over conn.
func NewClient(conn *natsbus.Conn) *Client {
	return &Client{conn: conn, keys: newKeyCache(), revoked: newRevocationCache(), integration: newIntegrationCache()}
}

// Onboard creates the owner account with the one-time onboarding code. It
// succeeds once per home: a wrong code is KindPermission, a home that has an
// owner already is KindConflict, and a bad user name or weak password is
// KindInvalid naming the field.
func (c *Client) Onboard(ctx context.Context, code, username, password string) error {
	return c.conn.Request(ctx, subject(VerbOnboard), onboardRequest{Code: code, Username: username, Password: password}, nil)
}

// Login checks a user name and password and returns a fresh token pair.
// Every wrong combination is KindUnauthenticated with the same message;
// after too many failures for one user name, attempts are refused for a
// while with KindRateLimited and a RetryAfter. Logins through Login share
// one source address counter; a gateway uses LoginFrom. Once the user has
// enabled TOTP, the right password with an empty totp is
// KindUnauthenticated naming the field "totp"; totp then takes a current
// code from the authenticator app or one of the recovery codes, and each
// code works once.
func (c *Client) Login(ctx context.Context, username, password, totp string) (Tokens, error) {
	return c.LoginFrom(ctx, "", username, password, totp)
}

// LoginFrom is Login for a request that came from the IP address source:
// failed logins are throttled per user name and per source address.
func (c *Client) LoginFrom(ctx context.Context, source, username, password, totp string) (Tokens, error) {
	var t Tokens
	err := c.conn.Request(ctx, subject(VerbLogin), loginRequest{Username: username, Password: password, TOTP: totp, Source: source}, &t)
	return t, err
}

// Refresh spends refreshToken and returns a new pair. A refresh token works
// once: presenting a spent one revokes every token descended from the same
// login, on the assumption that it was stolen.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (Tokens, error) {
	var t Tokens
	err := c.conn.Request(ctx, subject(VerbRefresh), refreshRequest{RefreshToken: refreshToken}, &t)
	return t, err
}

// MFAStatus reports the second factors of the bearer of accessToken.
func (c *Client) MFAStatus(ctx context.Context, accessToken string) (MFAStatus, error) {
	var st MFAStatus
	err := c.conn.Request(ctx, subject(VerbMFAStatus), mfaRequest{bearer: bearer{accessToken}}, &st)
	return st, err
}

// BeginTOTP starts enrolling a TOTP authenticator for the bearer of
// accessToken, replacing an enrolment begun before and not confirmed. It is
// KindConflict when TOTP is already enabled. Nothing changes for logins
// until ConfirmTOTP succeeds.
func (c *Client) BeginTOTP(ctx context.Context, accessToken string) (TOTPEnrollment, error) {
	var e TOTPEnrollment
	err := c.conn.Request(ctx, subject(VerbMFATOTPBegin), mfaRequest{bearer: bearer{accessToken}}, &e)
	return e, err
}

// ConfirmTOTP enables the enrolment begun with BeginTOTP once code, from
// the authenticator app, proves the key was stored. From then on every
// login needs a code. It returns the recovery codes, each good for one
// login without the app; they are shown this once.
func (c *Client) ConfirmTOTP(ctx context.Context, accessToken, code string) ([]string, error) {
	var r mfaConfirmReply
	err := c.conn.Request(ctx, subject(VerbMFATOTPConfirm), mfaConfirmRequest{bearer: bearer{accessToken}, Code: code}, &r)
	return r.RecoveryCodes, err
}

// DisableTOTP turns TOTP off for the bearer of accessToken, which takes
// their password and a current code or a recovery code. Wrong guesses count
// as failed logins.
func (c *Client) DisableTOTP(ctx context.Context, accessToken, password, code string) error {
	return c.conn.Request(ctx, subject(VerbMFATOTPDisable),
		mfaDisableRequest{bearer: bearer{accessToken}, Password: password, Code: code}, nil)
}

// VerifyAccessToken checks token locally against the service's public keys,
// which it fetches over the bus once and again only when a token names a key
// it does not know, and against the revocations the service announces (a
// user's "log out everywhere", a role change, a deleted user). It also
// accepts an integration token ("hmi_…"), whose answer it asks the service
// for and caches for at most 30 seconds, dropping it at once when the token
// is deleted. A bad, expired, revoked or foreign token is
// KindUnauthenticated.
func (c *Client) VerifyAccessToken(ctx context.Context, token string) (Claims, error) {
	var claims Claims
	var err error
	if strings.HasPrefix(token, integrationPrefix) {
		claims, err = c.verifyIntegration(ctx, token)
	} else if err = c.watchKeyEvents(ctx); err == nil {
		claims, err = c.keys.verify(ctx, token, c.fetchKeys)
	}
	if err != nil {
		return Claims{}, err
	}
	if err := c.revoked.check(ctx, c.conn, claims); err != nil {
		return Claims{}, err
	}
	return claims, nil
}

func (c *Client) fetchKeys(ctx context.Context) (keysReply, error) {
	var r keysReply
	err := c.conn.Request(ctx, subject(VerbKeys), struct{}{}, &r)
	return r, err
}

// home returns the home the auth service serves, asking it once.
func (c *Client) home(ctx context.Context) (string, error) {
	home, _, last := c.keys.snapshot()
	if home != "" {
		return home, nil
	}
	home, _, err := c.keys.refresh(ctx, last, c.fetchKeys)
	return home, err
}

// CreateCredential creates an MQTT credential limited to the topic filters
// in allow, acting as the bearer of accessToken, who must be an owner or an
// admin. The returned Password is shown this once.
func (c *Client) CreateCredential(ctx context.Context, accessToken, name string, allow []string) (Credential, error) {
	var cr Credential
	err := c.conn.Request(ctx, subject(VerbCreateCredential),
		createCredentialRequest{bearer: bearer{accessToken}, Name: name, Allow: allow}, &cr)
	return cr, err
}

// DeleteCredential revokes the MQTT credential username at once, acting as
// the bearer of accessToken (owner or admin), and announces it with an
// EventCredentialRevoked event so edges drop its connections.
func (c *Client) DeleteCredential(ctx context.Context, accessToken, username string) error {
	return c.conn.Request(ctx, subject(VerbDeleteCredential),
		deleteCredentialRequest{bearer: bearer{accessToken}, Username: username}, nil)
}

// ListCredentials lists the MQTT credentials, without secrets, in user-name
// order, acting as the bearer of accessToken (owner or admin). It fetches
// as many pages as there are.
func (c *Client) ListCredentials(ctx context.Context, accessToken string) ([]Credential, error) {
	return fetchAll(func(after string) ([]Credential, bool, error) {
		var r listCredentialsReply
		err := c.conn.Request(ctx, subject(VerbListCredentials), listCredentialsRequest{bearer: bearer{accessToken}, After: after}, &r)
		return r.Credentials, r.More, err
	}, func(cr Credential) string { return cr.Username })
}

// fetchAll fetches a paged list whole: page asks for the page after a key
// ("" for the first) and says whether more follow; key names an item, so
// the last item of a page says where the next starts.
func fetchAll[T any](page func(after string) ([]T, bool, error), key func(T) string) ([]T, error) {
	out := []T{}
	after := ""
	for {
		items, more, err := page(after)
		if err != nil {
			return nil, err
		}
		out = append(out, items...)
		if !more || len(items) == 0 {
			return out, nil
		}
		after = key(items[len(items)-1])
	}
}

// AuthenticateMQTT checks an MQTT client's user name and password and
// returns what it may do. Unknown, wrong and revoked credentials are all
// KindUnauthenticated.
func (c *Client) AuthenticateMQTT(ctx context.Context, username, password, clientID string) (Grant, error) {
	var g Grant
	err := c.conn.Request(ctx, subject(VerbAuthenticateMQTT),
		mqttAuthRequest{Username: username, Password: password, ClientID: clientID}, &g)
	return g, err
}

// CreatePairing makes a one-time setup code for a device called name,
// acting as the bearer of accessToken (owner or admin). The device gets the
// MQTT topic filters in allow, or DefaultAllow of its identity when allow
// is nil. The code is shown this once and expires after PairingTTL.
func (c *Client) CreatePairing(ctx context.Context, accessToken, name string, allow []string) (Pairing, error) {
	var p Pairing
	err := c.conn.Request(ctx, subject(VerbCreatePairing), createPairingRequest{bearer: bearer{accessToken}, Name: name, Allow: allow}, &p)
	return p, err
}

// ClaimPairing spends a setup code for the device that presents it, from
// the network address source (which bounds how often codes may be tried).
// With csr, a PEM certificate request, it returns a device certificate;
// without, an MQTT credential. An unknown, spent or expired code is
// KindPermission; too many attempts from source are KindRateLimited.
func (c *Client) ClaimPairing(ctx context.Context, code, csr, source string) (PairingClaim, error) {
	return c.Claim(ctx, ClaimRequest{Code: code, CSR: csr, Source: source})
}

// Claim spends a setup code as ClaimPairing does, and with req.MeshKey
// returns a mesh node certificate of role req.MeshRole (router or leaf)
// for that key, with the home's hubs. A malformed key or role is
// KindInvalid naming mesh_key or mesh_role, and leaves the code unspent.
func (c *Client) Claim(ctx context.Context, req ClaimRequest) (PairingClaim, error) {
	var pc PairingClaim
	err := c.conn.Request(ctx, subject(VerbClaimPairing), claimPairingRequest{
		Code: req.Code, CSR: req.CSR, MeshKey: req.MeshKey, MeshRole: req.MeshRole, Source: req.Source}, &pc)
	return pc, err
}

// MeshHubCert issues the hub's mesh node certificate (role hub) for its
// static X25519 public key and records the hub, reachable at addresses
// (UDP host:port), for the claims of mesh agents; a later call for the
// same key replaces the record. Only the border may call it.
func (c *Client) MeshHubCert(ctx context.Context, key []byte, addresses []string) (MeshHubCert, error) {
	var r MeshHubCert
	err := c.conn.Request(ctx, subject(VerbMeshHubCert), meshHubCertRequest{Key: key, Addresses: addresses}, &r)
	return r, err
}

// MeshNodes lists the paired mesh nodes, revoked ones included, in node id
// order, acting as the bearer of accessToken (owner or admin). It fetches
// as many pages as there are.
func (c *Client) MeshNodes(ctx context.Context, accessToken string) (MeshNodes, error) {
	nodes, err := fetchAll(func(after string) ([]MeshNode, bool, error) {
		var r meshNodesReply
		err := c.conn.Request(ctx, subject(VerbMeshNodes), meshNodesRequest{bearer: bearer{accessToken}, After: after}, &r)
		return r.Nodes, r.More, err
	}, func(n MeshNode) string { return n.NodeID })
	if err != nil {
		return MeshNodes{}, err
	}
	return MeshNodes{Nodes: nodes}, nil
}

// RevokeMeshNode revokes the paired mesh node nodeID (16 hex digits) at
// once, acting as the bearer of accessToken (owner or admin), and
// announces it with an EventMeshNodeRevoked event so the border cuts it
// off. Its key can never pair again. A malformed id is KindInvalid naming
// node_id, an unknown one KindNotFound; revoking a revoked node succeeds.
func (c *Client) RevokeMeshNode(ctx context.Context, accessToken, nodeID string) error {
	return c.conn.Request(ctx, subject(VerbMeshRevokeNode), meshRevokeNodeRequest{bearer: bearer{accessToken}, NodeID: nodeID}, nil)
}

// MeshRevoked returns the ids of every revoked mesh node, sorted. Only the
// border may call it. An id the service sends that does not parse is an
// error, rather than a revocation silently dropped.
func (c *Client) MeshRevoked(ctx context.Context) ([]route.NodeID, error) {
	var r MeshRevoked
	if err := c.conn.Request(ctx, subject(VerbMeshRevoked), struct{}{}, &r); err != nil {
		return nil, err
	}
	ids := make([]route.NodeID, 0, len(r.Nodes))
	for _, s := range r.Nodes {
		id, err := route.ParseNodeID(s)
		if err != nil {
			return nil, fmt.Errorf("mesh revocation list: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// AuthenticateCert checks a client certificate (DER) that an MQTTS client
// presented and returns what its identity may do. A certificate of another
// CA, an expired or superseded one, and one whose identity was revoked are
// all KindUnauthenticated.
func (c *Client) AuthenticateCert(ctx context.Context, certDER []byte) (Grant, error) {
	var g Grant
	err := c.conn.Request(ctx, subject(VerbAuthenticateCert), certAuthRequest{Certificate: certDER}, &g)
	return g, err
}

// ServerTLSConfig returns a TLS server configuration whose certificate for
// hosts (loopback names are always added) the home CA issues over the bus.
// The private key is made here and never leaves the process; the
// certificate is renewed on a handshake within 30 days of its expiry. It
// serves processes such as a split-mode MQTT edge that do not hold the CA.
func (c *Client) ServerTLSConfig(ctx context.Context, hosts []string) (*tls.Config, error) {
	var mu sync.Mutex
	cert, err := c.serverCertificate(ctx, hosts)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			if time.Now().Add(leafRenewBefore).After(cert.Leaf.NotAfter) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if fresh, err := c.serverCertificate(ctx, hosts); err == nil {
					cert = fresh
				}
			}
			return cert, nil
		},
	}, nil
}

func (c *Client) serverCertificate(ctx context.Context, hosts []string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	var reply serverCertReply
	if err := c.conn.Request(ctx, subject(VerbServerCert), serverCertRequest{CSR: csr, Hosts: hosts}, &reply); err != nil {
		return nil, err
	}
	if len(reply.Chain) == 0 {
		return nil, homemesh.Errorf(homemesh.KindInternal, "empty certificate chain")
	}
	leaf, err := x509.ParseCertificate(reply.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	return &tls.Certificate{Certificate: reply.Chain, PrivateKey: key, Leaf: leaf}, nil
}

// BeginPasskeyRegistration starts registering a passkey for the bearer of
// accessToken (any role). The ceremony's Options exclude the passkeys the
// person has, prefer a discoverable credential and prefer user
// verification.
func (c *Client) BeginPasskeyRegistration(ctx context.Context, accessToken string) (PasskeyCeremony, error) {
	var r PasskeyCeremony
	err := c.conn.Request(ctx, subject(VerbPasskeyRegisterBegin), passkeyRegisterBeginRequest{bearer: bearer{accessToken}}, &r)
	return r, err
}

// FinishPasskeyRegistration verifies credential, the JSON of the
// PublicKeyCredential the browser returned for the ceremony sessionID, and
// stores it as the bearer's passkey called name. A credential that does not
// verify, or a session that is unknown, expired, spent or someone else's,
// is KindInvalid naming the field. source is the caller's address, for the
// audit log ("" when unknown).
func (c *Client) FinishPasskeyRegistration(ctx context.Context, source, accessToken, sessionID, name string, credential json.RawMessage) (Passkey, error) {
	var p Passkey
	err := c.conn.Request(ctx, subject(VerbPasskeyRegisterFinish), passkeyRegisterFinishRequest{
		bearer: bearer{accessToken}, SessionID: sessionID, Name: name, Credential: credential, Source: source}, &p)
	return p, err
}

// BeginPasskeyLogin starts a passkey login. With a user name the options
// list that person's passkeys (or, for a name without any, a decoy that
// looks the same); with "" the login is usernameless and the authenticator
// offers its discoverable credentials.
func (c *Client) BeginPasskeyLogin(ctx context.Context, username string) (PasskeyCeremony, error) {
	var r PasskeyCeremony
	err := c.conn.Request(ctx, subject(VerbPasskeyLoginBegin), passkeyLoginBeginRequest{Username: username}, &r)
	return r, err
}

// FinishPasskeyLogin verifies credential, the JSON of the
// PublicKeyCredential the browser returned for the ceremony sessionID, and
// returns a fresh token pair, as a password login with its second factor
// would. Every failure is KindUnauthenticated with the same message and
// is throttled as a wrong password is (KindRateLimited once locked).
// Logins through FinishPasskeyLogin share one source address counter; a
// gateway uses FinishPasskeyLoginFrom.
func (c *Client) FinishPasskeyLogin(ctx context.Context, sessionID string, credential json.RawMessage) (Tokens, error) {
	return c.FinishPasskeyLoginFrom(ctx, "", sessionID, credential)
}

// FinishPasskeyLoginFrom is FinishPasskeyLogin for a request that came from
// the IP address source.
func (c *Client) FinishPasskeyLoginFrom(ctx context.Context, source, sessionID string, credential json.RawMessage) (Tokens, error) {
	var t Tokens
	err := c.conn.Request(ctx, subject(VerbPasskeyLoginFinish),
		passkeyLoginFinishRequest{SessionID: sessionID, Credential: credential, Source: source}, &t)
	return t, err
}

// ListPasskeys lists the bearer's own passkeys, oldest first, without keys.
func (c *Client) ListPasskeys(ctx context.Context, accessToken string) ([]Passkey, error) {
	out := []Passkey{}
	err := c.conn.Request(ctx, subject(VerbPasskeyList), passkeyListRequest{bearer: bearer{accessToken}}, &out)
	if out == nil {
		out = []Passkey{}
	}
	return out, err
}

// RemovePasskey removes the bearer's passkey id at once: it can no longer
// log in. Another person's passkey, or none, is KindNotFound. source is the
// caller's address, for the audit log ("" when unknown).
func (c *Client) RemovePasskey(ctx context.Context, source, accessToken, id string) error {
	return c.conn.Request(ctx, subject(VerbPasskeyRemove), passkeyRemoveRequest{bearer: bearer{accessToken}, ID: id, Source: source}, nil)
}

// CreateUser creates a user, acting as the bearer of accessToken. Owners may
// create any role; admins only members and guests. A taken name is
// KindConflict naming "username".
func (c *Client) CreateUser(ctx context.Context, accessToken string, nu NewUser) (User, error) {
	var u User
	err := c.conn.Request(ctx, subject(VerbCreateUser), createUserRequest{bearer: bearer{accessToken}, NewUser: nu}, &u)
	return u, err
}

// ListUsers lists every user, without secrets, in name order, acting as
// the bearer of accessToken (owner or admin).
func (c *Client) ListUsers(ctx context.Context, accessToken string) ([]User, error) {
	return fetchAll(func(after string) ([]User, bool, error) {
		var r listUsersReply
		err := c.conn.Request(ctx, subject(VerbListUsers), listUsersRequest{bearer: bearer{accessToken}, After: after}, &r)
		return r.Users, r.More, err
	}, func(u User) string { return u.Username })
}

// GetUser returns the user username. Everyone may read their own profile;
// owners and admins anyone's.
func (c *Client) GetUser(ctx context.Context, accessToken, username string) (User, error) {
	var u User
	err := c.conn.Request(ctx, subject(VerbGetUser), userRequest{bearer: bearer{accessToken}, Username: username}, &u)
	return u, err
}

// UpdateUser changes a user's role, scope or password and voids every
// token the user holds, so the change takes effect at once. Owners may
// change anyone but never remove the last owner; admins only members and
// guests, and never grant admin or owner.
func (c *Client) UpdateUser(ctx context.Context, accessToken, username string, up UserUpdate) (User, error) {
	var u User
	err := c.conn.Request(ctx, subject(VerbUpdateUser), updateUserRequest{bearer: bearer{accessToken}, Username: username, UserUpdate: up}, &u)
	return u, err
}

// DeleteUser deletes a user and voids their tokens, with the same rules
// as UpdateUser.
func (c *Client) DeleteUser(ctx context.Context, accessToken, username string) error {
	return c.conn.Request(ctx, subject(VerbDeleteUser), userRequest{bearer: bearer{accessToken}, Username: username}, nil)
}

// ChangePassword changes the bearer's own password after checking the
// current one (wrong guesses count towards the login throttle). Every
// other session of the user ends; the returned tokens continue this one.
func (c *Client) ChangePassword(ctx context.Context, accessToken, current, next string) (Tokens, error) {
	return c.ChangePasswordFrom(ctx, "", accessToken, current, next)
}

// ChangePasswordFrom is ChangePassword for a request that came from the IP
// address source, which wrong current passwords are counted against.
func (c *Client) ChangePasswordFrom(ctx context.Context, source, accessToken, current, next string) (Tokens, error) {
	var t Tokens
	err := c.conn.Request(ctx, subject(VerbChangePassword),
		changePasswordRequest{bearer: bearer{accessToken}, CurrentPassword: current, NewPassword: next, Source: source}, &t)
	return t, err
}
