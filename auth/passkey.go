package auth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Passkey limits.
const (
	// MaxPasskeys bounds the passkeys of one person, and so the size of the
	// user record that holds them.
	MaxPasskeys = 20
	// ceremonyTTL is how long a begun registration or login may take to
	// finish. It is the TTL of the ceremony bucket and is also enforced on
	// every session, since bucket expiry is not instantaneous.
	ceremonyTTL = 5 * time.Minute
	// maxSessionID bounds ceremony session IDs before any lookup.
	maxSessionID = 64
)

// ceremonyBytes bounds the ceremony bucket. Logins begin without a token,
// so a flood of them must hit a limit rather than the disk: once full, new
// ceremonies are refused (KindUnavailable) until old ones expire, tens of
// thousands of ceremonies later, and passkeys wait until the flood ends;
// passwords keep working. A variable so that a test can reach it.
var ceremonyBytes int64 = 64 << 20

// DefaultWebAuthnRPID is the relying party ID when none is configured.
const DefaultWebAuthnRPID = "localhost"

// rpDisplayName is what authenticators show as the relying party's name.
const rpDisplayName = "homemesh"

// Passkey is a registered passkey as its owner sees it: never the key.
type Passkey struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// PasskeyCeremony is the first half of a passkey registration or login:
// Options go to the browser's navigator.credentials.create or .get as they
// are, and SessionID names the ceremony when its second half sends the
// browser's answer. A ceremony lasts five minutes and finishes once.
type PasskeyCeremony struct {
	SessionID string          `json:"session_id"`
	Options   json.RawMessage `json:"options"`
}

// passkeyRecord is a passkey as stored in its owner's user record.
type passkeyRecord struct {
	ID         string              `json:"id"`
	Name       string              `json:"name"`
	CreatedAt  time.Time           `json:"created_at"`
	LastUsedAt time.Time           `json:"last_used_at,omitzero"`
	Credential webauthn.Credential `json:"credential"`
}

func (p passkeyRecord) public() Passkey {
	return Passkey{ID: p.ID, Name: p.Name, CreatedAt: p.CreatedAt, LastUsedAt: p.LastUsedAt}
}

// passkeyUser presents a user to go-webauthn. The user handle is the user
// ID: random, stable across renames, and free of personal data.
type passkeyUser struct{ u *user }

func (p passkeyUser) WebAuthnID() []byte          { return []byte(p.u.ID) }
func (p passkeyUser) WebAuthnName() string        { return p.u.Username }
func (p passkeyUser) WebAuthnDisplayName() string { return p.u.Username }
func (p passkeyUser) WebAuthnCredentials() []webauthn.Credential {
	out := make([]webauthn.Credential, len(p.u.Passkeys))
	for i, pk := range p.u.Passkeys {
		out[i] = pk.Credential
	}
	return out
}

// newRelyingParty checks the relying party settings and returns the
// WebAuthn verifier, or nil when no origin is configured: passkeys then
// stay off rather than trusting an origin nobody chose.
func newRelyingParty(rpID string, origins []string) (*webauthn.WebAuthn, error) {
	if err := protocol.ValidateRPID(rpID); err != nil {
		return nil, homemesh.Invalid("webauthn_rp_id", "not a valid relying party ID: %v", err)
	}
	if len(origins) == 0 {
		return nil, nil
	}
	for i, o := range origins {
		if protocol.IsOpaqueOrigin(o) {
			return nil, homemesh.Invalid("webauthn_origins", "origin %d (%q) is not an http or https origin", i+1, o)
		}
	}
	timeout := webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL}
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  rpID,
		RPDisplayName:         rpDisplayName,
		RPOrigins:             slices.Clone(origins),
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationPreferred,
		},
		Timeouts: webauthn.TimeoutsConfig{Login: timeout, Registration: timeout},
	})
	if err != nil {
		return nil, homemesh.Invalid("webauthn_origins", "%v", err)
	}
	return wa, nil
}

// SetWebAuthnOrigins replaces the origins passkeys are accepted from. It
// serves a hub whose HTTP port is chosen only when the gateway binds, after
// the service was created; ceremonies begun before keep working only if
// their origin is still listed.
func (s *Service) SetWebAuthnOrigins(origins []string) error {
	wa, err := newRelyingParty(s.rpID, origins)
	if err != nil {
		return err
	}
	s.relyingParty.Store(wa)
	return nil
}

// webauthn returns the verifier, or KindUnavailable when passkeys are not
// configured.
func (s *Service) webauthn() (*webauthn.WebAuthn, error) {
	if wa := s.relyingParty.Load(); wa != nil {
		return wa, nil
	}
	return nil, homemesh.Errorf(homemesh.KindUnavailable, "passkeys are not configured on this hub (webauthn_origins)")
}

// Ceremony kinds.
const (
	ceremonyRegister = "register"
	ceremonyLogin    = "login"
)

// ceremonyRecord is a begun ceremony in the webauthn bucket. For a login
// by user name, Username is set; UserID is set only when that user exists
// and has passkeys (otherwise the options were a decoy).
type ceremonyRecord struct {
	Kind     string               `json:"kind"`
	UserID   string               `json:"user_id,omitempty"`
	Username string               `json:"username,omitempty"`
	Session  webauthn.SessionData `json:"session"`
	Expires  time.Time            `json:"expires"`
}

func ceremonyKey(id string) string { return "c." + id }

// openCeremonyBucket opens the bucket of begun ceremonies, whose records
// expire after ceremonyTTL and whose size is bounded by ceremonyBytes.
func (s *Service) openCeremonyBucket(ctx context.Context) error {
	kv, err := s.bus.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: bucket(s.cfg.Home, "webauthn"), Description: "auth passkey ceremonies",
		TTL: ceremonyTTL, History: 1, MaxBytes: ceremonyBytes,
	})
	if err != nil {
		return err
	}
	s.webauthnKV = kv
	return nil
}

// startCeremony stores rec and returns the ceremony for the client.
func (s *Service) startCeremony(ctx context.Context, rec ceremonyRecord, options any, now time.Time) (PasskeyCeremony, error) {
	opts, err := json.Marshal(options)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("encode passkey options: %w", err)
	}
	rec.Expires = now.Add(ceremonyTTL)
	val, err := json.Marshal(rec)
	if err != nil {
		return PasskeyCeremony{}, fmt.Errorf("encode passkey session: %w", err)
	}
	id := homemesh.RandomID(32)
	if _, err := s.webauthnKV.Create(ctx, ceremonyKey(id), val); err != nil {
		return PasskeyCeremony{}, unavailable("store passkey session", err)
	}
	return PasskeyCeremony{SessionID: id, Options: opts}, nil
}

// errCeremonyGone marks a session that is unknown, expired, of another kind
// or already finished.
var errCeremonyGone = errors.New("passkey session unknown, expired or already used")

// finishCeremony takes the session id of kind out of the bucket. Deleting
// it with compare-and-set on the revision read makes every session
// single-use: of two finishes racing with one session, one fails, and a
// replayed finish finds nothing. A session is spent even when what follows
// fails, so one challenge never gets a second guess.
func (s *Service) finishCeremony(ctx context.Context, id, kind string, now time.Time) (ceremonyRecord, error) {
	var rec ceremonyRecord
	if !homemesh.ValidID(id) || len(id) > maxSessionID {
		return rec, errCeremonyGone
	}
	e, err := s.webauthnKV.Get(ctx, ceremonyKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, errCeremonyGone
	}
	if err != nil {
		return rec, unavailable("read passkey session", err)
	}
	if err := s.webauthnKV.Delete(ctx, ceremonyKey(id), jetstream.LastRevision(e.Revision())); err != nil {
		if wrongRevision(err) {
			return rec, errCeremonyGone
		}
		return rec, unavailable("spend passkey session", err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, fmt.Errorf("decode passkey session: %w", err)
	}
	if rec.Kind != kind || !now.Before(rec.Expires) {
		return rec, errCeremonyGone
	}
	return rec, nil
}

// wrongRevision reports whether err is JetStream refusing a write because
// the key moved on since it was read.
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// passkeyIndex maps a credential ID to the user holding it, so that a
// usernameless login finds its account. It lives in the users bucket under
// the "pk." prefix.
type passkeyIndex struct {
	UserID    string `json:"user_id"`
	Username  string `json:"username"`
	PasskeyID string `json:"passkey_id"`
}

// passkeyIndexKey hashes the credential ID: IDs are up to 1023 bytes of
// anything, keys are short and plain.
func passkeyIndexKey(credentialID []byte) string {
	sum := sha256.Sum256(credentialID)
	return "pk." + hex.EncodeToString(sum[:])
}

func (s *Service) lookupPasskey(ctx context.Context, credentialID []byte) (passkeyIndex, bool, error) {
	var idx passkeyIndex
	e, err := s.usersKV.Get(ctx, passkeyIndexKey(credentialID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return idx, false, nil
	}
	if err != nil {
		return idx, false, unavailable("read passkey index", err)
	}
	if err := json.Unmarshal(e.Value(), &idx); err != nil {
		return idx, false, fmt.Errorf("decode passkey index: %w", err)
	}
	return idx, true, nil
}

// errUserChanged stops updateUser when the record is not the one the
// caller authorised (deleted, or a new user under the same name).
var errUserChanged = homemesh.Errorf(homemesh.KindUnauthenticated, "invalid or expired access token")

// updateUser applies change to the stored user name with compare-and-set,
// retrying when another write got there first, and returns the stored
// result. change sees the latest record each time; its error aborts.
func (s *Service) updateUser(ctx context.Context, name, userID string, change func(*user) error) (user, error) {
	var u user
	err := casUpdate(ctx, s.usersKV, userKey(name), "read user", "store user", func(cur []byte, exists bool) ([]byte, error) {
		if !exists {
			return nil, errUserChanged
		}
		u = user{}
		if err := json.Unmarshal(cur, &u); err != nil {
			return nil, fmt.Errorf("decode user %q: %w", name, err)
		}
		if u.ID != userID {
			return nil, errUserChanged
		}
		if err := change(&u); err != nil {
			return nil, err
		}
		val, err := json.Marshal(u)
		if err != nil {
			return nil, fmt.Errorf("encode user: %w", err)
		}
		return val, nil
	})
	if err != nil {
		return user{}, err
	}
	return u, nil
}

func (s *Service) handlePasskeyRegisterBegin(ctx context.Context, msg *nats.Msg) (any, error) {
	_, actor, err := decodeAuthorized[passkeyRegisterBeginRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	wa, err := s.webauthn()
	if err != nil {
		return nil, err
	}
	u, err := s.actorRecord(ctx, actor)
	if err != nil {
		return nil, err
	}
	if len(u.Passkeys) >= MaxPasskeys {
		return nil, homemesh.Errorf(homemesh.KindConflict, "at most %d passkeys per person; remove one first", MaxPasskeys)
	}
	pu := passkeyUser{&u}
	exclude := make([]protocol.CredentialDescriptor, len(u.Passkeys))
	for i, pk := range u.Passkeys {
		exclude[i] = pk.Credential.Descriptor()
	}
	creation, session, err := wa.BeginRegistration(pu,
		webauthn.WithExclusions(exclude),
		webauthn.WithResidentKeyRequirement(protocol.ResidentKeyRequirementPreferred))
	if err != nil {
		return nil, fmt.Errorf("begin passkey registration: %w", err)
	}
	return s.startCeremony(ctx, ceremonyRecord{Kind: ceremonyRegister, UserID: u.ID, Username: u.Username, Session: *session},
		creation, time.Now())
}

func (s *Service) handlePasskeyRegisterFinish(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[passkeyRegisterFinishRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	wa, err := s.webauthn()
	if err != nil {
		return nil, err
	}
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	if err := requiredCredential(req.Credential); err != nil {
		return nil, err
	}
	source, err := auditSource(req.Source)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	cer, err := s.finishCeremony(ctx, req.SessionID, ceremonyRegister, now)
	if errors.Is(err, errCeremonyGone) || err == nil && cer.UserID != actor.UserID {
		return nil, homemesh.Invalid("session_id", "no such registration: it expired, was used or belongs to someone else; begin again")
	}
	if err != nil {
		return nil, err
	}
	u, err := s.actorRecord(ctx, actor)
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialCreationResponseBytes(req.Credential)
	if err != nil {
		return nil, homemesh.Invalid("credential", "not a WebAuthn registration response: %s", webauthnReason(err))
	}
	cred, err := wa.CreateCredential(passkeyUser{&u}, cer.Session, parsed)
	if err != nil {
		s.log.Warn("passkey registration refused", "username", u.Username, "reason", webauthnReason(err), "detail", webauthnDetail(err))
		return nil, homemesh.Invalid("credential", "the passkey could not be verified: %s", webauthnReason(err))
	}
	// The raw attestation is only needed to verify the registration; the
	// record keeps what logins use.
	cred.Attestation = webauthn.CredentialAttestation{}
	rec := passkeyRecord{ID: homemesh.RandomID(20), Name: req.Name, CreatedAt: now.UTC(), Credential: *cred}

	// Claim the credential ID first, so that one credential can never
	// belong to two accounts.
	idx, _ := json.Marshal(passkeyIndex{UserID: u.ID, Username: u.Username, PasskeyID: rec.ID})
	idxKey := passkeyIndexKey(cred.ID)
	if _, err := s.usersKV.Create(ctx, idxKey, idx); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, homemesh.Errorf(homemesh.KindConflict, "this passkey is already registered")
		}
		return nil, unavailable("store passkey index", err)
	}
	_, err = s.updateUser(ctx, u.Username, u.ID, func(u *user) error {
		if len(u.Passkeys) >= MaxPasskeys {
			return homemesh.Errorf(homemesh.KindConflict, "at most %d passkeys per person; remove one first", MaxPasskeys)
		}
		u.Passkeys = append(u.Passkeys, rec)
		return nil
	})
	if err != nil {
		if derr := s.usersKV.Delete(ctx, idxKey); derr != nil {
			s.log.Warn("cannot remove the index of a passkey not stored", "username", u.Username, "err", derr)
		}
		return nil, err
	}
	s.log.Info("passkey added", "username", u.Username, "user_id", u.ID, "passkey_id", rec.ID)
	s.Audit(ctx, AuditEntry{Action: AuditPasskeyAdded, Outcome: OutcomeSuccess, Actor: u.Username, ActorID: u.ID, Source: source,
		Target: "passkey:" + rec.ID, Details: map[string]string{"name": rec.Name}})
	return rec.public(), nil
}

func requiredCredential(c json.RawMessage) error {
	if len(c) == 0 || string(c) == "null" {
		return homemesh.Invalid("credential", "required: the PublicKeyCredential the browser returned")
	}
	return nil
}

// webauthnReason is the user-safe part of a go-webauthn error: its type
// and details, never the developer info, which can echo request data.
func webauthnReason(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		if pe.Details != "" {
			return pe.Details
		}
		return pe.Type
	}
	return "malformed"
}

// webauthnDetail adds go-webauthn's developer info to the reason, for the
// log only: it names the check that failed (an RP ID hash mismatch, a
// missing user verification flag) and holds public values at most.
func webauthnDetail(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return webauthnReason(err) + ": " + pe.DevInfo
	}
	return webauthnReason(err)
}

func (s *Service) handlePasskeyList(ctx context.Context, msg *nats.Msg) (any, error) {
	_, actor, err := decodeAuthorized[passkeyListRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	u, err := s.actorRecord(ctx, actor)
	if err != nil {
		return nil, err
	}
	out := make([]Passkey, len(u.Passkeys))
	for i, pk := range u.Passkeys {
		out[i] = pk.public()
	}
	return out, nil
}

func (s *Service) handlePasskeyRemove(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[passkeyRemoveRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	if err := homemesh.CheckID("id", req.ID); err != nil {
		return nil, err
	}
	source, err := auditSource(req.Source)
	if err != nil {
		return nil, err
	}
	var removed passkeyRecord
	_, err = s.updateUser(ctx, actor.Username, actor.UserID, func(u *user) error {
		i := slices.IndexFunc(u.Passkeys, func(p passkeyRecord) bool { return p.ID == req.ID })
		if i < 0 {
			return homemesh.Errorf(homemesh.KindNotFound, "no such passkey")
		}
		removed = u.Passkeys[i]
		u.Passkeys = slices.Delete(u.Passkeys, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The user record is the authority: a stale index entry finds no
	// credential at login, so failing to delete it only leaves litter.
	if err := s.usersKV.Delete(ctx, passkeyIndexKey(removed.Credential.ID)); err != nil {
		s.log.Warn("cannot remove a passkey's index", "username", actor.Username, "err", err)
	}
	s.log.Info("passkey removed", "username", actor.Username, "user_id", actor.UserID, "passkey_id", removed.ID)
	s.Audit(ctx, AuditEntry{Action: AuditPasskeyRemoved, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID, Source: source,
		Target: "passkey:" + removed.ID, Details: map[string]string{"name": removed.Name}})
	return struct{}{}, nil
}

// decoyUser stands in for a user name that has no passkeys, so that login
// options never tell whether a user exists or has passkeys: it has one
// credential whose ID derives from the name under a secret key, the same
// on every request and every auth process.
func (s *Service) decoyUser(name string) *user {
	mac := hmac.New(sha256.New, s.decoyKey)
	mac.Write([]byte(name))
	id := mac.Sum(nil)
	return &user{ID: "decoy", Username: name, Passkeys: []passkeyRecord{{
		Credential: webauthn.Credential{ID: id, Transport: []protocol.AuthenticatorTransport{protocol.Internal}},
	}}}
}

func (s *Service) handlePasskeyLoginBegin(ctx context.Context, msg *nats.Msg) (any, error) {
	var req passkeyLoginBeginRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	wa, err := s.webauthn()
	if err != nil {
		return nil, err
	}
	// A passkey login stands in for a password and a second factor, so it
	// must prove the person (user verification), not only the device.
	uv := webauthn.WithUserVerification(protocol.VerificationRequired)
	now := time.Now()
	if req.Username == "" {
		assertion, session, err := wa.BeginDiscoverableLogin(uv)
		if err != nil {
			return nil, fmt.Errorf("begin passkey login: %w", err)
		}
		return s.startCeremony(ctx, ceremonyRecord{Kind: ceremonyLogin, Session: *session}, assertion, now)
	}
	name, err := normalizeUsername("username", req.Username)
	if err != nil {
		return nil, err
	}
	u, found, err := s.getUser(ctx, name)
	if err != nil {
		return nil, err
	}
	rec := ceremonyRecord{Kind: ceremonyLogin, Username: name}
	target := &u
	if found && len(u.Passkeys) > 0 {
		rec.UserID = u.ID
	} else {
		target = s.decoyUser(name)
	}
	assertion, session, err := wa.BeginLogin(passkeyUser{target}, uv)
	if err != nil {
		return nil, fmt.Errorf("begin passkey login: %w", err)
	}
	rec.Session = *session
	return s.startCeremony(ctx, rec, assertion, now)
}

// errPasskeyLogin is every failed passkey login, whatever the reason, so
// that failures reveal nothing about users or their passkeys.
var errPasskeyLogin = homemesh.Errorf(homemesh.KindUnauthenticated, "the passkey was not accepted")

func (s *Service) handlePasskeyLoginFinish(ctx context.Context, msg *nats.Msg) (any, error) {
	var req passkeyLoginFinishRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	wa, err := s.webauthn()
	if err != nil {
		return nil, err
	}
	if req.SessionID == "" {
		return nil, homemesh.Invalid("session_id", "required: the session_id of the login begun")
	}
	if err := requiredCredential(req.Credential); err != nil {
		return nil, err
	}
	source, err := throttleSource("source", req.Source)
	if err != nil {
		return nil, err
	}
	if err := s.checkThrottle(ctx, "", source); err != nil {
		return nil, err
	}
	now := time.Now()
	cer, err := s.finishCeremony(ctx, req.SessionID, ceremonyLogin, now)
	if errors.Is(err, errCeremonyGone) {
		return nil, s.passkeyLoginFailed(ctx, "", source, "unknown, expired or used session")
	}
	if err != nil {
		return nil, err
	}
	parsed, err := protocol.ParseCredentialRequestResponseBytes(req.Credential)
	if err != nil {
		return nil, s.passkeyLoginFailed(ctx, cer.Username, source, "malformed credential")
	}
	// The account is the one the login named or, for a usernameless login,
	// the one holding the credential.
	name := cer.Username
	if name == "" {
		idx, found, err := s.lookupPasskey(ctx, parsed.RawID)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, s.passkeyLoginFailed(ctx, "", source, "unknown credential")
		}
		name = idx.Username
	}
	if err := s.checkThrottle(ctx, name, source); err != nil {
		return nil, err
	}
	u, found, err := s.getUser(ctx, name)
	if err != nil {
		return nil, err
	}
	if !found || cer.Username != "" && u.ID != cer.UserID {
		// A decoy ceremony, or the user changed since the login began.
		return nil, s.passkeyLoginFailed(ctx, name, source, "no such passkey")
	}
	pu := passkeyUser{&u}
	var cred *webauthn.Credential
	if cer.Username == "" {
		cred, err = wa.ValidateDiscoverableLogin(func(_, handle []byte) (webauthn.User, error) {
			if string(handle) != u.ID {
				return nil, errors.New("user handle does not match the credential's owner")
			}
			return pu, nil
		}, cer.Session, parsed)
	} else {
		cred, err = wa.ValidateLogin(pu, cer.Session, parsed)
	}
	if err != nil {
		s.log.Info("passkey assertion refused", "username", name, "detail", webauthnDetail(err))
		return nil, s.passkeyLoginFailed(ctx, name, source, webauthnReason(err))
	}
	if cred.Authenticator.CloneWarning {
		return nil, s.passkeyCloned(ctx, u, cred, source)
	}
	var used passkeyRecord
	stored, err := s.updateUser(ctx, u.Username, u.ID, func(u *user) error {
		i := slices.IndexFunc(u.Passkeys, func(p passkeyRecord) bool { return string(p.Credential.ID) == string(cred.ID) })
		if i < 0 {
			return errPasskeyLogin // removed while this login ran
		}
		// Checked again on the latest record: of two logins racing with
		// one counter value, the second is refused as a clone.
		stored := u.Passkeys[i].Credential.Authenticator.SignCount
		if cred.Authenticator.SignCount <= stored && (stored != 0 || cred.Authenticator.SignCount != 0) {
			return errCounterBackwards
		}
		u.Passkeys[i].Credential.Authenticator.SignCount = cred.Authenticator.SignCount
		u.Passkeys[i].Credential.Flags = cred.Flags
		u.Passkeys[i].LastUsedAt = now.UTC()
		used = u.Passkeys[i]
		return nil
	})
	switch {
	case errors.Is(err, errCounterBackwards):
		return nil, s.passkeyCloned(ctx, u, cred, source)
	case errors.Is(err, errPasskeyLogin), errors.Is(err, errUserChanged):
		return nil, s.passkeyLoginFailed(ctx, name, source, "no such passkey")
	case err != nil:
		return nil, err
	}
	s.recordLoginSuccess(ctx, name)
	t, err := s.issue(ctx, stored, "", now)
	if err != nil {
		return nil, err
	}
	s.log.Info("login", "username", name, "user_id", u.ID, "source", source, "method", "passkey", "passkey_id", used.ID)
	s.Audit(ctx, AuditEntry{Action: AuditLogin, Outcome: OutcomeSuccess, Actor: name, ActorID: u.ID, Source: source,
		Details: map[string]string{"method": "passkey", "passkey_id": used.ID}})
	return t, nil
}

var errCounterBackwards = errors.New("sign counter did not advance")

// passkeyLoginFailed logs why a passkey login failed, counts and audits
// the failure as a wrong password is counted (per user name when one is
// known, "" otherwise, and per source), and returns the one error every
// failure gets.
func (s *Service) passkeyLoginFailed(ctx context.Context, name, source, reason string) error {
	s.log.Warn("passkey login refused", "username", name, "source", source, "reason", reason)
	s.recordLoginFailure(ctx, name, source)
	return errPasskeyLogin
}

// passkeyCloned refuses a login whose sign counter did not advance: two
// authenticators hold the same credential, one of them a copy.
func (s *Service) passkeyCloned(ctx context.Context, u user, cred *webauthn.Credential, source string) error {
	var pkID string
	for _, p := range u.Passkeys {
		if string(p.Credential.ID) == string(cred.ID) {
			pkID = p.ID
		}
	}
	s.log.Warn("passkey refused: its sign counter went backwards, the authenticator may be cloned",
		"username", u.Username, "user_id", u.ID, "passkey_id", pkID, "sign_count", cred.Authenticator.SignCount)
	return s.passkeyLoginFailed(ctx, u.Username, source, "sign counter went backwards")
}
