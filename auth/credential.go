package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits on credential requests.
const (
	MaxAllow          = 64  // topic filters per credential
	MaxFilterLen      = 256 // bytes per topic filter
	MaxCredentialName = 128 // bytes
)

// mqttUserPrefix starts every MQTT credential user name.
const mqttUserPrefix = "mqtt-"

// credRecord is a stored MQTT credential. The password is a 256-bit random
// secret, so a plain SHA-256 of it is enough: there is no dictionary to
// attack, and a slow hash would make each of 10,000 device connects cost
// tens of milliseconds of CPU for no gain.
type credRecord struct {
	Kind      string    `json:"kind,omitempty"` // "" for a password credential, KindCertificate for a certRecord
	Hash      []byte    `json:"hash"`
	Name      string    `json:"name"`
	Allow     []string  `json:"allow"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// validateName checks a credential's display name.
func validateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return homemesh.Invalid("name", "required")
	case len(name) > MaxCredentialName:
		return homemesh.Invalid("name", "must be at most %d bytes", MaxCredentialName)
	case !utf8.ValidString(name):
		return homemesh.Invalid("name", "must be valid UTF-8 text")
	case strings.ContainsFunc(name, unicode.IsControl):
		return homemesh.Invalid("name", "must not contain control characters")
	}
	return nil
}

// ValidateAllow checks an allow list of MQTT topic filters: 1 to MaxAllow
// filters, each a valid filter ('+' a whole level, '#' only as the whole
// last level) of at most MaxFilterLen bytes of UTF-8 text without control
// characters. The error names the offending entry, e.g. "allow[2]".
func ValidateAllow(allow []string) error {
	if len(allow) == 0 {
		return homemesh.Invalid("allow", "at least one topic filter is required")
	}
	if len(allow) > MaxAllow {
		return homemesh.Invalid("allow", "at most %d topic filters", MaxAllow)
	}
	for i, f := range allow {
		field := fmt.Sprintf("allow[%d]", i)
		switch {
		case f == "":
			return homemesh.Invalid(field, "must not be empty")
		case len(f) > MaxFilterLen:
			return homemesh.Invalid(field, "must be at most %d bytes", MaxFilterLen)
		case !utf8.ValidString(f):
			return homemesh.Invalid(field, "must be valid UTF-8 text")
		case strings.ContainsFunc(f, unicode.IsControl):
			return homemesh.Invalid(field, "must not contain control characters")
		}
		if _, _, err := bus.MQTTFilterSubject("x", f); err != nil {
			return homemesh.Invalid(field, "not a valid MQTT topic filter: %v", err)
		}
	}
	return nil
}

// validMQTTUser reports whether name looks like a credential user name.
func validMQTTUser(name string) bool {
	return strings.HasPrefix(name, mqttUserPrefix) && len(name) <= 64 && homemesh.ValidID(name)
}

// authorize verifies the actor's access token and checks, against the
// stored user rather than the token alone, that the actor still exists and
// holds one of roles.
func (s *Service) authorize(ctx context.Context, accessToken string, roles ...string) (Claims, error) {
	if strings.HasPrefix(accessToken, integrationPrefix) {
		return Claims{}, homemesh.Errorf(homemesh.KindPermission, "an integration token may not do this; sign in as a person")
	}
	c, err := parseAccess(accessToken, s.cfg.Home, s.lookupKey)
	if err != nil {
		return Claims{}, err
	}
	u, found, err := s.getUser(ctx, c.Username)
	if err != nil {
		return Claims{}, err
	}
	if !found || u.ID != c.UserID || c.IssuedAt.Before(u.TokensNotBefore) {
		return Claims{}, errBadToken
	}
	c.Role, c.Scope = u.Role, u.Scope
	if !slices.Contains(roles, c.Role) {
		s.log.Warn("permission denied", "username", c.Username, "role", c.Role)
		return Claims{}, homemesh.Errorf(homemesh.KindPermission, "this needs the role %s", strings.Join(roles, " or "))
	}
	return c, nil
}

// everyRole is for verbs any person may use on their own account.
var everyRole = []string{RoleOwner, RoleAdmin, RoleMember, RoleGuest}

// tokenBearer is a request made with a person's access token.
type tokenBearer interface{ accessToken() string }

// decodeAuthorized decodes a person's request and authorizes its token for
// roles: the prologue of every verb a person acts through. It is a
// function, not a method, because methods cannot take type parameters.
func decodeAuthorized[T tokenBearer](s *Service, ctx context.Context, msg *nats.Msg, roles ...string) (T, Claims, error) {
	var req T
	if err := decode(msg, &req); err != nil {
		return req, Claims{}, err
	}
	actor, err := s.authorize(ctx, req.accessToken(), roles...)
	return req, actor, err
}

// actorRecord re-reads the actor's user record for a verb that needs more
// than the claims; a user deleted and re-created under the same name since
// the token was issued is refused like a bad token.
func (s *Service) actorRecord(ctx context.Context, actor Claims) (user, error) {
	u, found, err := s.getUser(ctx, actor.Username)
	if err != nil {
		return user{}, err
	}
	if !found || u.ID != actor.UserID {
		return user{}, errBadToken
	}
	return u, nil
}

func (s *Service) handleCreateCredential(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[createCredentialRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	if err := ValidateAllow(req.Allow); err != nil {
		return nil, err
	}
	cred, err := s.issueCredential(ctx, req.Name, req.Allow, actor.UserID)
	if err != nil {
		return nil, err
	}
	s.log.Info("credential created", "mqtt_username", cred.Username, "name", cred.Name, "by", actor.Username)
	s.Audit(ctx, AuditEntry{Action: AuditCredentialCreated, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: cred.Username, Details: map[string]string{"name": cred.Name, "allow": strings.Join(cred.Allow, " ")}})
	return cred, nil
}

// issueCredential creates and stores a credential; the password is returned once and
// only its hash is kept.
func (s *Service) issueCredential(ctx context.Context, name string, allow []string, createdBy string) (Credential, error) {
	return s.storeCredential(ctx, newCredentialUsername(), name, allow, createdBy)
}

// newCredentialUsername returns a fresh, unguessable credential user name.
func newCredentialUsername() string { return mqttUserPrefix + homemesh.RandomID(20) }

// storeCredential creates the credential username with a fresh password.
func (s *Service) storeCredential(ctx context.Context, username, name string, allow []string, createdBy string) (Credential, error) {
	secret := make([]byte, 32)
	rand.Read(secret)
	cred := Credential{
		Username:  username,
		Password:  base64.RawURLEncoding.EncodeToString(secret),
		Kind:      KindPassword,
		Name:      name,
		Allow:     slices.Clone(allow),
		CreatedAt: time.Now().UTC(),
	}
	sum := sha256.Sum256([]byte(cred.Password))
	rec, _ := json.Marshal(credRecord{Hash: sum[:], Name: cred.Name, Allow: cred.Allow, CreatedAt: cred.CreatedAt, CreatedBy: createdBy})
	if _, err := s.credsKV.Create(ctx, cred.Username, rec); err != nil {
		return Credential{}, unavailable("store credential", err)
	}
	return cred, nil
}

// systemCreator marks credentials issued to the hub's own components.
const systemCreator = "system"

// IssueCredential creates an MQTT credential for a component running in
// this process (the demo devices), without a person's token: it is not
// reachable over the bus. Earlier credentials this method issued under the
// same name are revoked, so restarts do not pile them up.
func (s *Service) IssueCredential(ctx context.Context, name string, allow []string) (Credential, error) {
	if err := validateName(name); err != nil {
		return Credential{}, err
	}
	if err := ValidateAllow(allow); err != nil {
		return Credential{}, err
	}
	keys, err := s.credsKV.ListKeys(ctx)
	if err != nil {
		return Credential{}, unavailable("list credentials", err)
	}
	for key := range keys.Keys() {
		e, err := s.credsKV.Get(ctx, key)
		if err != nil {
			continue
		}
		var rec credRecord
		if json.Unmarshal(e.Value(), &rec) == nil && rec.Name == name && rec.CreatedBy == systemCreator {
			if err := s.credsKV.Purge(ctx, key); err == nil {
				_ = s.publishRevoked(key)
			}
		}
	}
	return s.issueCredential(ctx, name, allow, systemCreator)
}

func (s *Service) handleDeleteCredential(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[deleteCredentialRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	if !validMQTTUser(req.Username) && !validDeviceIdentity(req.Username) {
		return nil, homemesh.Invalid("username", "not an MQTT credential user name or device identity")
	}
	e, err := s.credsKV.Get(ctx, req.Username)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no credential %s", req.Username)
	} else if err != nil {
		return nil, unavailable("read credential", err)
	}
	var rec credRecord
	_ = json.Unmarshal(e.Value(), &rec)
	// Without its record no password and no certificate of the identity
	// is accepted any more: deleting it is the revocation.
	if err := s.credsKV.Purge(ctx, req.Username); err != nil {
		return nil, unavailable("delete credential", err)
	}
	action, kind := AuditCredentialRevoked, KindPassword
	if rec.Kind == KindCertificate {
		action, kind = AuditCertificateRevoked, KindCertificate
	}
	s.log.Info("credential revoked", "mqtt_username", req.Username, "kind", kind, "by", actor.Username)
	s.Audit(ctx, AuditEntry{Action: action, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: req.Username, Details: map[string]string{"name": rec.Name}})
	if err := s.publishRevoked(req.Username); err != nil {
		s.log.Error("cannot announce a revoked credential", "mqtt_username", req.Username, "err", err)
	}
	return struct{}{}, nil
}

// validDeviceIdentity reports whether name looks like a certificate
// identity.
func validDeviceIdentity(name string) bool {
	return strings.HasPrefix(name, deviceIDPrefix) && len(name) <= 64 && homemesh.ValidID(name)
}

// RevokedEvent is published on bus.EventSubject(home,
// EventCredentialRevoked). It is a bus.Envelope whose payload is
// {"username": …}; the user name is repeated at the top level so that a
// reader may decode either.
type RevokedEvent struct {
	bus.Envelope
	Username string `json:"username"`
}

func (s *Service) publishRevoked(username string) error {
	env, err := bus.NewEnvelope(s.cfg.Home, ServiceName, EventCredentialRevoked, map[string]string{"username": username})
	if err != nil {
		return err
	}
	if err := s.bus.Publish(bus.EventSubject(s.cfg.Home, EventCredentialRevoked), RevokedEvent{Envelope: env, Username: username}); err != nil {
		return err
	}
	return s.bus.Flush()
}

func (s *Service) handleListCredentials(ctx context.Context, msg *nats.Msg) (any, error) {
	req, _, err := decodeAuthorized[listCredentialsRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	lister, err := s.credsKV.ListKeys(ctx)
	if err != nil {
		return nil, unavailable("list credentials", err)
	}
	var keys []string
	for key := range lister.Keys() {
		if key > req.After {
			keys = append(keys, key)
		}
	}
	lister.Stop()
	// One page per reply, in user-name order, so a reply stays under the
	// bus's message size however many devices have credentials.
	slices.Sort(keys)
	if len(keys) > credentialPage {
		keys = keys[:credentialPage]
	}
	out := []Credential{}
	for _, key := range keys {
		e, err := s.credsKV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, unavailable("read credential", err)
		}
		var rec credRecord
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("decode credential %s: %w", key, err)
		}
		kind := rec.Kind
		if kind == "" {
			kind = KindPassword
		}
		out = append(out, Credential{Username: key, Kind: kind, Name: rec.Name, Allow: rec.Allow, CreatedAt: rec.CreatedAt})
	}
	return listCredentialsReply{Credentials: out, More: len(keys) == credentialPage}, nil
}

// credentialPage bounds one list reply: 500 credentials with long allow
// lists stay well under 1 MiB.
const credentialPage = 500

var errMQTT = homemesh.Errorf(homemesh.KindUnauthenticated, "wrong MQTT user name or password")

// dummyCredHash is compared against when a user name is unknown, so both
// paths do the same work.
var dummyCredHash = sha256.Sum256([]byte("homemesh unknown credential"))

func (s *Service) handleAuthenticateMQTT(ctx context.Context, msg *nats.Msg) (any, error) {
	var req mqttAuthRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	if len(req.ClientID) > 256 || len(req.Password) > 256 {
		return nil, errMQTT
	}
	want := dummyCredHash[:]
	var rec credRecord
	found := false
	if validMQTTUser(req.Username) {
		e, err := s.credsKV.Get(ctx, req.Username)
		switch {
		case err == nil:
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return nil, fmt.Errorf("decode credential: %w", err)
			}
			want, found = rec.Hash, true
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, unavailable("read credential", err)
		}
	}
	got := sha256.Sum256([]byte(req.Password))
	if subtle.ConstantTimeCompare(got[:], want) != 1 || !found {
		s.log.Warn("mqtt authentication failed", "mqtt_username", safeLogName(req.Username), "client_id", safeLogName(req.ClientID))
		return nil, errMQTT
	}
	return Grant{Username: req.Username, Allow: rec.Allow}, nil
}

// safeLogName trims attacker-chosen strings before they reach a log line.
func safeLogName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
