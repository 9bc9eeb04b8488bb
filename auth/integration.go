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
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Integration tokens are long-lived bearer tokens for scripts and other
// systems: "hmi_" and 256 random bits, shown once, stored as SHA-256 (a
// random secret of that size has no dictionary to attack, so a slow hash
// would buy nothing). A token acts for the person who created it with at
// most their role and scope; it dies when deleted, when it expires, when
// its person logs out everywhere (RevokeUserTokens) and when its person is
// deleted. It may not manage sessions, tokens, credentials or keys.
const (
	integrationPrefix = "hmi_"
	// integrationIDLen is the length of a token ID: the first bytes of the
	// token's SHA-256, hex-encoded. Knowing the hash does not help to find
	// the token, and the ID names the record without an index.
	integrationIDLen = 20
	// maxIntegrationTokenLen bounds presented tokens before hashing; ours
	// are 47 bytes.
	maxIntegrationTokenLen = 128
	// Integration token lifetimes, in days.
	DefaultIntegrationTokenDays = 365
	MaxIntegrationTokenDays     = 3650
	// maxIntegrationTokens bounds the tokens of one home, so that listing
	// stays one bus message and creating tokens cannot fill the store.
	maxIntegrationTokens = 1000
)

// EventTokenRevoked is published on bus.EventSubject(home,
// EventTokenRevoked) when an integration token is deleted, so verifiers
// drop their cached answer for it at once. Its envelope payload is a
// TokenRevocation.
const EventTokenRevoked = "token_revoked"

// TokenRevocation names a deleted integration token.
type TokenRevocation struct {
	TokenID string `json:"token_id"`
	UserID  string `json:"user_id"`
}

// IntegrationToken describes an integration token. Token, the secret, is
// set only in the reply that creates it.
type IntegrationToken struct {
	ID        string    `json:"id"`
	Token     string    `json:"token,omitempty"`
	Name      string    `json:"name"`
	Username  string    `json:"username"` // the person it acts for
	Role      string    `json:"role"`
	Scope     Scope     `json:"scope"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// TokenRequest asks for a new integration token. An empty Role or a nil
// Scope means the creator's own; ExpiresInDays 0 means
// DefaultIntegrationTokenDays.
type TokenRequest struct {
	Name          string `json:"name"`
	Role          string `json:"role,omitempty"`
	Scope         *Scope `json:"scope,omitempty"`
	ExpiresInDays int    `json:"expires_in_days,omitempty"`
}

type createTokenRequest struct {
	bearer
	TokenRequest
}

type listTokensRequest struct {
	bearer
}

type listTokensReply struct {
	Tokens []IntegrationToken `json:"tokens"`
}

type deleteTokenRequest struct {
	bearer
	ID string `json:"id"`
}

type verifyTokenRequest struct {
	Token string `json:"token"`
}

// integrationRecord is a stored integration token, keyed by its ID.
type integrationRecord struct {
	Hash      []byte    `json:"hash"`
	Name      string    `json:"name"`
	UserID    string    `json:"user_id"`
	Username  string    `json:"username"`
	Role      string    `json:"role"`
	Scope     Scope     `json:"scope,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (r integrationRecord) public(id string) IntegrationToken {
	return IntegrationToken{ID: id, Name: r.Name, Username: r.Username, Role: r.Role, Scope: r.Scope,
		CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt}
}

// integrationID is the ID of token, or "" when it is not shaped like one.
func integrationID(token string) (id string, hash []byte) {
	if !strings.HasPrefix(token, integrationPrefix) || len(token) > maxIntegrationTokenLen {
		return "", nil
	}
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:integrationIDLen], sum[:]
}

func validIntegrationID(id string) bool {
	if len(id) != integrationIDLen {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// roleRank orders roles by power; unknown roles rank lowest.
func roleRank(role string) int {
	switch role {
	case RoleOwner:
		return 4
	case RoleAdmin:
		return 3
	case RoleMember:
		return 2
	case RoleGuest:
		return 1
	}
	return 0
}

// lowerRole returns the less powerful of two roles.
func lowerRole(a, b string) string {
	if roleRank(a) <= roleRank(b) {
		return a
	}
	return b
}

// scopeWithin reports whether inner allows nothing that outer does not:
// every list outer limits, inner limits to a subset.
func scopeWithin(inner, outer Scope) bool {
	within := func(in, out []string) bool {
		if len(out) == 0 {
			return true
		}
		if len(in) == 0 {
			return false
		}
		for _, v := range in {
			if !slices.Contains(out, v) {
				return false
			}
		}
		return true
	}
	return within(inner.Rooms, outer.Rooms) && within(inner.Kinds, outer.Kinds) && within(inner.Entities, outer.Entities)
}

var errIntegrationToken = homemesh.Errorf(homemesh.KindUnauthenticated, "invalid, expired or revoked integration token")

var errNoToken = homemesh.Errorf(homemesh.KindNotFound, "no such token")

func (s *Service) handleCreateToken(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[createTokenRequest](s, ctx, msg, RoleOwner, RoleAdmin, RoleMember)
	if err != nil {
		return nil, err
	}
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	role := req.Role
	if role == "" {
		role = actor.Role
	}
	if !validRole(role) {
		return nil, homemesh.Invalid("role", "must be owner, admin, member or guest")
	}
	if roleRank(role) > roleRank(actor.Role) {
		return nil, homemesh.Errorf(homemesh.KindPermission, "a token may not have a role above your own (%s)", actor.Role)
	}
	scope := actor.Scope
	if req.Scope != nil {
		if err := ValidateScope("scope", *req.Scope); err != nil {
			return nil, err
		}
		if !scopeWithin(*req.Scope, actor.Scope) {
			return nil, homemesh.Errorf(homemesh.KindPermission, "a token may not reach beyond your own scope")
		}
		scope = *req.Scope
	}
	days := req.ExpiresInDays
	if days == 0 {
		days = DefaultIntegrationTokenDays
	}
	if days < 1 || days > MaxIntegrationTokenDays {
		return nil, homemesh.Invalid("expires_in_days", "must be 1 to %d", MaxIntegrationTokenDays)
	}
	if n, err := s.countIntegrationTokens(ctx); err != nil {
		return nil, err
	} else if n >= maxIntegrationTokens {
		return nil, homemesh.Errorf(homemesh.KindConflict, "this home has %d integration tokens, the most it may have; delete some first", n)
	}
	u, _, err := s.getUser(ctx, actor.Username)
	if err != nil {
		return nil, err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	token := integrationPrefix + base64.RawURLEncoding.EncodeToString(raw)
	id, hash := integrationID(token)
	now := issuedAt(u, time.Now()).UTC()
	rec := integrationRecord{Hash: hash, Name: req.Name, UserID: actor.UserID, Username: actor.Username,
		Role: role, Scope: scope, CreatedAt: now, ExpiresAt: now.Add(time.Duration(days) * 24 * time.Hour)}
	val, _ := json.Marshal(rec)
	if _, err := s.tokensKV.Create(ctx, id, val); err != nil {
		return nil, unavailable("store integration token", err)
	}
	s.log.Info("integration token created", "token_id", id, "name", safeLogName(req.Name), "role", role, "username", actor.Username)
	s.Audit(ctx, AuditEntry{Action: AuditTokenCreated, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: id, Details: map[string]string{"name": safeLogName(req.Name), "role": role}})
	out := rec.public(id)
	out.Token = token
	return out, nil
}

func (s *Service) countIntegrationTokens(ctx context.Context) (int, error) {
	lister, err := s.tokensKV.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return 0, nil
	}
	if err != nil {
		return 0, unavailable("list integration tokens", err)
	}
	n := 0
	for range lister.Keys() {
		n++
	}
	return n, nil
}

// integrationTokens returns the stored tokens for which keep is true, oldest
// first.
func (s *Service) integrationTokens(ctx context.Context, keep func(integrationRecord) bool) (map[string]integrationRecord, []string, error) {
	lister, err := s.tokensKV.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, unavailable("list integration tokens", err)
	}
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	recs := map[string]integrationRecord{}
	var ids []string
	for _, key := range keys {
		e, err := s.tokensKV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, nil, unavailable("read integration token", err)
		}
		var rec integrationRecord
		if json.Unmarshal(e.Value(), &rec) != nil || !keep(rec) {
			continue
		}
		recs[key] = rec
		ids = append(ids, key)
	}
	slices.SortFunc(ids, func(a, b string) int {
		if c := recs[a].CreatedAt.Compare(recs[b].CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return recs, ids, nil
}

// handleListTokens lists the caller's integration tokens, or every one for
// the owner, without their secrets.
func (s *Service) handleListTokens(ctx context.Context, msg *nats.Msg) (any, error) {
	_, actor, err := decodeAuthorized[listTokensRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	recs, ids, err := s.integrationTokens(ctx, func(r integrationRecord) bool {
		return actor.Role == RoleOwner || r.UserID == actor.UserID
	})
	if err != nil {
		return nil, err
	}
	out := []IntegrationToken{}
	for _, id := range ids {
		out = append(out, recs[id].public(id))
	}
	return listTokensReply{Tokens: out}, nil
}

// handleDeleteToken deletes an integration token: the caller's own, or any
// for an owner or admin. Others' tokens are "not found", so that their IDs
// cannot be probed.
func (s *Service) handleDeleteToken(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[deleteTokenRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	if !validIntegrationID(req.ID) {
		return nil, homemesh.Invalid("id", "not a token ID")
	}
	e, err := s.tokensKV.Get(ctx, req.ID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, errNoToken
	}
	if err != nil {
		return nil, unavailable("read integration token", err)
	}
	var rec integrationRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode integration token %s: %w", req.ID, err)
	}
	if rec.UserID != actor.UserID && actor.Role != RoleOwner && actor.Role != RoleAdmin {
		return nil, errNoToken
	}
	if err := s.revokeIntegrationToken(ctx, req.ID, rec.UserID); err != nil {
		return nil, err
	}
	s.Audit(ctx, AuditEntry{Action: AuditTokenRevoked, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Target: req.ID, Details: map[string]string{"name": safeLogName(rec.Name), "owner": rec.Username}})
	return struct{}{}, nil
}

// revokeIntegrationToken deletes the token id of the user userID and tells
// every verifier.
func (s *Service) revokeIntegrationToken(ctx context.Context, id, userID string) error {
	if err := s.tokensKV.Purge(ctx, id); err != nil {
		return unavailable("delete integration token", err)
	}
	s.log.Info("integration token revoked", "token_id", id, "user_id", userID)
	env, err := bus.NewEnvelope(s.cfg.Home, ServiceName, EventTokenRevoked, TokenRevocation{TokenID: id, UserID: userID})
	if err == nil {
		err = s.bus.Publish(bus.EventSubject(s.cfg.Home, EventTokenRevoked), env)
	}
	if err == nil {
		err = s.bus.Flush()
	}
	if err != nil {
		// Verifiers cache an answer for integrationCacheTTL at most, so a
		// lost event delays the revocation; it does not lose it.
		s.log.Error("cannot announce a revoked integration token", "token_id", id, "err", err)
	}
	return nil
}

// dropUserIntegrationTokens deletes every integration token of the user
// userID, after their tokens were revoked or before they are deleted.
// Verification already refuses them (it checks the user record); this
// clears them from lists and from verifiers' caches.
func (s *Service) dropUserIntegrationTokens(ctx context.Context, userID string) error {
	_, ids, err := s.integrationTokens(ctx, func(r integrationRecord) bool { return r.UserID == userID })
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := s.revokeIntegrationToken(ctx, id, userID); err != nil {
			return err
		}
	}
	return nil
}

// handleVerifyToken answers what an integration token may do. The user
// record is read every time: a token of a deleted user, or one created
// before its user's tokens were revoked, is refused; its role is never
// above its user's current role.
func (s *Service) handleVerifyToken(ctx context.Context, msg *nats.Msg) (any, error) {
	var req verifyTokenRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	return s.verifyIntegrationToken(ctx, req.Token)
}

func (s *Service) verifyIntegrationToken(ctx context.Context, token string) (Claims, error) {
	id, hash := integrationID(token)
	if id == "" {
		return Claims{}, errIntegrationToken
	}
	e, err := s.tokensKV.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Claims{}, errIntegrationToken
	}
	if err != nil {
		return Claims{}, unavailable("read integration token", err)
	}
	var rec integrationRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Claims{}, fmt.Errorf("decode integration token %s: %w", id, err)
	}
	if subtle.ConstantTimeCompare(rec.Hash, hash) != 1 || !time.Now().Before(rec.ExpiresAt) {
		return Claims{}, errIntegrationToken
	}
	u, found, err := s.getUser(ctx, rec.Username)
	if err != nil {
		return Claims{}, err
	}
	if !found || u.ID != rec.UserID || rec.CreatedAt.Before(u.TokensNotBefore) || !scopeWithin(rec.Scope, u.Scope) {
		return Claims{}, errIntegrationToken
	}
	return Claims{UserID: u.ID, Username: u.Username, Role: lowerRole(rec.Role, u.Role), Home: s.cfg.Home,
		Scope: rec.Scope, IssuedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt, TokenID: id}, nil
}

// CreateToken creates an integration token acting as the bearer of
// accessToken (not a guest), with at most their role and scope. The
// returned Token is shown this once.
func (c *Client) CreateToken(ctx context.Context, accessToken string, req TokenRequest) (IntegrationToken, error) {
	var t IntegrationToken
	err := c.conn.Request(ctx, subject(VerbCreateToken), createTokenRequest{bearer: bearer{accessToken}, TokenRequest: req}, &t)
	return t, err
}

// ListTokens lists the integration tokens of the bearer of accessToken, or
// every token of the home for the owner, without secrets, oldest first.
func (c *Client) ListTokens(ctx context.Context, accessToken string) ([]IntegrationToken, error) {
	var r listTokensReply
	if err := c.conn.Request(ctx, subject(VerbListTokens), listTokensRequest{bearer: bearer{accessToken}}, &r); err != nil {
		return nil, err
	}
	return r.Tokens, nil
}

// DeleteToken deletes the integration token id at once, in every verifier:
// the bearer's own, or any for an owner or admin.
func (c *Client) DeleteToken(ctx context.Context, accessToken, id string) error {
	if err := c.conn.Request(ctx, subject(VerbDeleteToken), deleteTokenRequest{bearer: bearer{accessToken}, ID: id}, nil); err != nil {
		return err
	}
	// The event may reach this client after the reply; this client's own
	// cache must not lag behind its own deletion.
	c.integration.drop(id)
	return nil
}

// Verifiers cache the answer for an integration token for at most
// integrationCacheTTL, and at most maxIntegrationCached answers (cleared
// when full). A token_revoked event drops an answer at once; the TTL bounds
// how long a missed event, or a change of the user's role, goes unnoticed.
const (
	integrationCacheTTL  = 30 * time.Second
	maxIntegrationCached = 10000
)

type integrationAnswer struct {
	claims Claims
	until  time.Time
}

// integrationCache is a Client's cache of integration token answers.
type integrationCache struct {
	subMu      sync.Mutex // one subscription attempt at a time
	subscribed bool

	mu      sync.Mutex
	answers map[string]integrationAnswer // by token
}

func newIntegrationCache() *integrationCache {
	return &integrationCache{answers: map[string]integrationAnswer{}}
}

// subscribe listens for token_revoked events of home, once.
func (ic *integrationCache) subscribe(conn *natsbus.Conn, home string) error {
	ic.subMu.Lock()
	defer ic.subMu.Unlock()
	if ic.subscribed {
		return nil
	}
	_, err := conn.NATS().Subscribe(bus.EventSubject(home, EventTokenRevoked), func(m *nats.Msg) {
		var env bus.Envelope
		var rev TokenRevocation
		if json.Unmarshal(m.Data, &env) != nil || json.Unmarshal(env.Payload, &rev) != nil || rev.TokenID == "" {
			return
		}
		ic.drop(rev.TokenID)
	})
	if err != nil {
		return &homemesh.Error{Kind: homemesh.KindUnavailable, Message: "auth unavailable", Err: err}
	}
	if err := conn.Flush(); err != nil {
		return &homemesh.Error{Kind: homemesh.KindUnavailable, Message: "auth unavailable", Err: err}
	}
	ic.subscribed = true
	return nil
}

func (ic *integrationCache) drop(tokenID string) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	for token, a := range ic.answers {
		if a.claims.TokenID == tokenID {
			delete(ic.answers, token)
		}
	}
}

func (ic *integrationCache) get(token string, now time.Time) (Claims, bool) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	a, ok := ic.answers[token]
	if !ok || !now.Before(a.until) {
		return Claims{}, false
	}
	return a.claims, true
}

func (ic *integrationCache) put(token string, c Claims, now time.Time) {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	if len(ic.answers) >= maxIntegrationCached {
		clear(ic.answers)
	}
	until := now.Add(integrationCacheTTL)
	if c.ExpiresAt.Before(until) {
		until = c.ExpiresAt
	}
	ic.answers[token] = integrationAnswer{claims: c, until: until}
}

// verifyIntegration answers for an integration token from the cache or
// from the auth service. The event subscription comes first, so no
// revocation falls between the answer and the events.
func (c *Client) verifyIntegration(ctx context.Context, token string) (Claims, error) {
	now := time.Now()
	if claims, ok := c.integration.get(token, now); ok {
		return claims, nil
	}
	if id, _ := integrationID(token); id == "" {
		return Claims{}, errIntegrationToken
	}
	home, err := c.home(ctx)
	if err != nil {
		return Claims{}, err
	}
	if err := c.integration.subscribe(c.conn, home); err != nil {
		return Claims{}, err
	}
	var claims Claims
	if err := c.conn.Request(ctx, subject(VerbVerifyToken), verifyTokenRequest{Token: token}, &claims); err != nil {
		return Claims{}, err
	}
	if claims.Home != home || claims.TokenID == "" || !validRole(claims.Role) {
		return Claims{}, errIntegrationToken
	}
	c.integration.put(token, claims, now)
	return claims, nil
}
