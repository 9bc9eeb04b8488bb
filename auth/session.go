package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var errLogin = homemesh.Errorf(homemesh.KindUnauthenticated, "wrong user name or password")

var errRefresh = homemesh.Errorf(homemesh.KindUnauthenticated, "invalid or expired refresh token")

// userKey is the KV key of a user name. Names may contain '.', which KV
// treats as a separator, so they are hex-encoded.
func userKey(name string) string { return "u." + hex.EncodeToString([]byte(name)) }

func (s *Service) getUser(ctx context.Context, name string) (user, bool, error) {
	e, err := s.usersKV.Get(ctx, userKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return user{}, false, nil
	}
	if err != nil {
		return user{}, false, unavailable("read user", err)
	}
	var u user
	if err := json.Unmarshal(e.Value(), &u); err != nil {
		return user{}, false, fmt.Errorf("decode user %q: %w", name, err)
	}
	return u, true, nil
}

func (s *Service) handleOnboard(ctx context.Context, msg *nats.Msg) (any, error) {
	var req onboardRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	if s.onboarded.Load() {
		return nil, homemesh.Errorf(homemesh.KindConflict, "this home already has an owner")
	}
	if _, err := s.usersKV.Get(ctx, ownerKey); err == nil {
		s.onboarded.Store(true)
		return nil, homemesh.Errorf(homemesh.KindConflict, "this home already has an owner")
	}
	// The code has 100 bits, so guessing it online is hopeless; it is not
	// throttled, because throttling would only let a neighbour lock the
	// owner out of onboarding.
	if !s.checkCode(req.Code) {
		s.log.Warn("onboarding refused: wrong code")
		s.Audit(ctx, AuditEntry{Action: AuditOnboarded, Outcome: OutcomeDenied, Actor: req.Username, Details: map[string]string{"reason": "wrong onboarding code"}})
		return nil, homemesh.Errorf(homemesh.KindPermission, "wrong onboarding code")
	}
	name, err := normalizeUsername("username", req.Username)
	if err != nil {
		return nil, err
	}
	if err := checkPassword("password", req.Password); err != nil {
		return nil, err
	}
	release, err := s.hashLimit(ctx)
	if err != nil {
		return nil, err
	}
	hash := hashPassword(req.Password)
	release()
	u := user{ID: homemesh.RandomID(20), Username: name, Role: RoleOwner, PasswordHash: hash, CreatedAt: time.Now().UTC()}
	if _, err := s.usersKV.Create(ctx, ownerKey, []byte(u.ID)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			s.onboarded.Store(true)
			return nil, homemesh.Errorf(homemesh.KindConflict, "this home already has an owner")
		}
		return nil, unavailable("create owner marker", err)
	}
	rec, _ := json.Marshal(u)
	if _, err := s.usersKV.Put(ctx, userKey(name), rec); err != nil {
		// Undo the marker so onboarding can be retried with the same code.
		s.usersKV.Delete(ctx, ownerKey)
		return nil, unavailable("store owner", err)
	}
	s.onboarded.Store(true)
	if err := s.keysKV.Purge(ctx, "onboarding"); err != nil {
		s.log.Warn("cannot purge the onboarding code", "err", err)
	}
	s.removeCodeFile()
	s.log.Info("owner onboarded", "username", name, "user_id", u.ID)
	s.Audit(ctx, AuditEntry{Action: AuditOnboarded, Outcome: OutcomeSuccess, Actor: name, ActorID: u.ID, Target: name, Details: map[string]string{"role": RoleOwner}})
	return struct{}{}, nil
}

// checkCode compares an entered code with the onboarding code, ignoring
// case, dashes and spaces, in constant time.
func (s *Service) checkCode(entered string) bool {
	if s.code == "" || len(entered) > 64 {
		return false
	}
	norm := func(c string) []byte {
		return []byte(strings.NewReplacer("-", "", " ", "").Replace(strings.ToUpper(c)))
	}
	return subtle.ConstantTimeCompare(norm(entered), norm(s.code)) == 1
}

func (s *Service) handleLogin(ctx context.Context, msg *nats.Msg) (any, error) {
	var req loginRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	source, err := throttleSource("source", req.Source)
	if err != nil {
		return nil, err
	}
	// A malformed name cannot exist; it is throttled by its source alone.
	name, nameErr := normalizeUsername("username", req.Username)
	if nameErr != nil {
		name = ""
	}
	if err := s.checkThrottle(ctx, name, source); err != nil {
		return nil, err
	}
	var u user
	found := false
	if name != "" && len(req.Password) <= MaxPasswordLen {
		var err error
		if u, found, err = s.getUser(ctx, name); err != nil {
			return nil, err
		}
	}
	release, err := s.hashLimit(ctx)
	if err != nil {
		return nil, err
	}
	// An unknown user costs the same hash as a known one, so timing does
	// not reveal which user names exist.
	var ok bool
	if found {
		ok = verifyPassword(u.PasswordHash, req.Password)
	} else {
		verifyPassword(s.dummyHash, req.Password[:min(len(req.Password), MaxPasswordLen)])
	}
	release()
	if !ok {
		s.recordLoginFailure(ctx, name, source)
		return nil, errLogin
	}
	if err := s.checkLoginCode(ctx, u, req.TOTP, source); err != nil {
		return nil, err
	}
	s.recordLoginSuccess(ctx, name)
	t, err := s.issue(ctx, u, "", time.Now())
	if err != nil {
		return nil, err
	}
	s.log.Info("login", "username", name, "user_id", u.ID, "source", source)
	s.Audit(ctx, AuditEntry{Action: AuditLogin, Outcome: OutcomeSuccess, Actor: name, ActorID: u.ID, Source: source})
	return t, nil
}

// refreshRecord is the stored state of one refresh token, keyed by the
// SHA-256 of the token: a leak of the bucket yields no usable token.
type refreshRecord struct {
	UserID    string    `json:"user_id"`
	IssuedAt  time.Time `json:"issued_at"`
	Username  string    `json:"username"`
	Family    string    `json:"family"`
	ExpiresAt time.Time `json:"expires_at"`
	Spent     bool      `json:"spent,omitempty"`
}

// refreshPrefix marks homemesh refresh tokens so secret scanners can spot
// them.
const refreshPrefix = "hmr_"

func refreshKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "t." + hex.EncodeToString(sum[:])
}

func familyKey(family string) string { return "f." + family }

// issue creates an access token and a refresh token in family (a new
// family when "").
func (s *Service) issue(ctx context.Context, u user, family string, now time.Time) (Tokens, error) {
	st := s.signing()
	access, _, err := signAccess(st.signer, st.kid, s.cfg.Home, u, now, s.cfg.AccessTokenTTL)
	if err != nil {
		return Tokens{}, fmt.Errorf("sign access token: %w", err)
	}
	if family == "" {
		family = homemesh.RandomID(24)
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	refresh := refreshPrefix + base64.RawURLEncoding.EncodeToString(raw)
	rec, _ := json.Marshal(refreshRecord{UserID: u.ID, Username: u.Username, Family: family,
		IssuedAt: issuedAt(u, now), ExpiresAt: now.Add(s.cfg.RefreshTokenTTL)})
	if _, err := s.refreshKV.Create(ctx, refreshKey(refresh), rec); err != nil {
		return Tokens{}, unavailable("store refresh token", err)
	}
	return Tokens{AccessToken: access, RefreshToken: refresh, ExpiresIn: int(s.cfg.AccessTokenTTL / time.Second), TokenType: "Bearer"}, nil
}

func (s *Service) handleRefresh(ctx context.Context, msg *nats.Msg) (any, error) {
	var req refreshRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(req.RefreshToken, refreshPrefix) || len(req.RefreshToken) > 128 {
		return nil, errRefresh
	}
	now := time.Now()
	key := refreshKey(req.RefreshToken)
	e, err := s.refreshKV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, errRefresh
	}
	if err != nil {
		return nil, unavailable("read refresh token", err)
	}
	var rec refreshRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode refresh record: %w", err)
	}
	if _, err := s.refreshKV.Get(ctx, familyKey(rec.Family)); err == nil {
		return nil, errRefresh // family revoked
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, unavailable("read refresh family", err)
	}
	if rec.Spent {
		return nil, s.revokeFamily(ctx, rec)
	}
	if !now.Before(rec.ExpiresAt) {
		return nil, errRefresh
	}
	// Spend the token with compare-and-set: of two concurrent uses, one
	// loses, and a lost race is treated as reuse.
	rec.Spent = true
	val, _ := json.Marshal(rec)
	if _, err := s.refreshKV.Update(ctx, key, val, e.Revision()); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil, s.revokeFamily(ctx, rec)
		}
		return nil, unavailable("spend refresh token", err)
	}
	u, found, err := s.getUser(ctx, rec.Username)
	if err != nil {
		return nil, err
	}
	if !found || u.ID != rec.UserID || rec.IssuedAt.Before(u.TokensNotBefore) {
		return nil, errRefresh
	}
	return s.issue(ctx, u, rec.Family, now)
}

// revokeFamily answers the reuse of a spent refresh token: it was copied,
// so every token descended from the same login is revoked.
func (s *Service) revokeFamily(ctx context.Context, rec refreshRecord) error {
	if err := s.markFamilyRevoked(ctx, rec.Family); err != nil {
		return err
	}
	s.log.Warn("refresh token reuse detected; session revoked", "username", rec.Username, "user_id", rec.UserID)
	s.Audit(ctx, AuditEntry{Action: AuditRefreshReuse, Outcome: OutcomeDenied, Actor: rec.Username, ActorID: rec.UserID})
	return errRefresh
}

// markFamilyRevoked voids every refresh token of family.
func (s *Service) markFamilyRevoked(ctx context.Context, family string) error {
	if _, err := s.refreshKV.Put(ctx, familyKey(family), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return unavailable("revoke refresh family", err)
	}
	return nil
}
