package auth

import (
	"context"
	"crypto/ed25519"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/homemesh/homemesh"
)

// issuer is the iss claim of every access token.
const issuer = "homemesh-auth"

// clockSkew is the leeway for exp and iat: in split mode the issuing and the
// verifying process may read slightly different clocks. Hosts keep time with
// NTP to within milliseconds; a larger leeway would only extend the life of
// every stolen token.
const clockSkew = 5 * time.Second

// maxTokenLen bounds tokens before any parsing; ours are a few hundred bytes.
const maxTokenLen = 4096

// accessClaims is the JWT body of an access token.
type accessClaims struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	Home     string `json:"home"`
	Scope    Scope  `json:"scope,omitzero"`
	jwt.RegisteredClaims
}

// signAccess issues an access token for u, valid for ttl. Its iat is never
// before u.TokensNotBefore, so a token issued right after a revocation (in
// the same second) is not mistaken for one issued before it.
func signAccess(key ed25519.PrivateKey, kid, home string, u user, now time.Time, ttl time.Duration) (string, time.Time, error) {
	now = issuedAt(u, now)
	exp := now.Add(ttl).Truncate(time.Second)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, accessClaims{
		Username: u.Username, Role: u.Role, Home: home, Scope: u.Scope,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: issuer, Subject: u.ID, ID: homemesh.RandomID(20),
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
		},
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	return s, exp, err
}

var errBadToken = homemesh.Errorf(homemesh.KindUnauthenticated, "invalid or expired access token")

// errUnknownKey marks a token whose kid is not (yet) known.
var errUnknownKey = errors.New("unknown signing key")

// parseAccess verifies token with the key that lookup returns for its kid
// and checks that it belongs to home. The algorithm is pinned to EdDSA, so a
// token cannot choose how it is checked.
func parseAccess(token, home string, lookup func(kid string) (ed25519.PublicKey, bool)) (Claims, error) {
	if token == "" || len(token) > maxTokenLen {
		return Claims{}, errBadToken
	}
	var c accessClaims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, ok := lookup(kid)
		if !ok {
			return nil, errUnknownKey
		}
		return key, nil
	}, jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}), jwt.WithExpirationRequired(),
		jwt.WithIssuer(issuer), jwt.WithIssuedAt(), jwt.WithStrictDecoding(), jwt.WithLeeway(clockSkew))
	if err != nil {
		if errors.Is(err, errUnknownKey) {
			return Claims{}, &homemesh.Error{Kind: homemesh.KindUnauthenticated, Message: errBadToken.Message, Err: errUnknownKey}
		}
		return Claims{}, &homemesh.Error{Kind: homemesh.KindUnauthenticated, Message: errBadToken.Message, Err: err}
	}
	if c.Home != home || c.Subject == "" || c.ExpiresAt == nil || !validRole(c.Role) {
		return Claims{}, errBadToken
	}
	var iat time.Time
	if c.IssuedAt != nil {
		iat = c.IssuedAt.Time
	}
	return Claims{UserID: c.Subject, Username: c.Username, Role: c.Role, Home: c.Home, Scope: c.Scope,
		IssuedAt: iat, ExpiresAt: c.ExpiresAt.Time}, nil
}

func validRole(r string) bool {
	switch r {
	case RoleOwner, RoleAdmin, RoleMember, RoleGuest:
		return true
	}
	return false
}

// keyCache holds the service's public keys for a Client, and the claims of
// tokens already verified, so that verifying the same token again costs a
// map lookup rather than a signature check. The key map is replaced, never
// mutated, so verification runs outside the lock.
type keyCache struct {
	fetchMu sync.Mutex // one key fetch at a time

	mu        sync.Mutex
	home      string
	keys      map[string]ed25519.PublicKey
	lastFetch time.Time
	verified  map[string]Claims
	// stale is set when the service announces a new signing key: the next
	// token with an unknown kid fetches keys at once, without waiting for
	// refetchEvery.
	stale atomic.Bool
}

// maxVerified bounds the verified-token cache; it is cleared when full.
const maxVerified = 10000

// refetchEvery limits how often a token with an unknown kid triggers a key
// fetch, so a flood of forged tokens cannot flood the bus.
const refetchEvery = 2 * time.Second

func newKeyCache() *keyCache {
	return &keyCache{keys: map[string]ed25519.PublicKey{}, verified: map[string]Claims{}}
}

func (k *keyCache) snapshot() (string, map[string]ed25519.PublicKey, time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.home, k.keys, k.lastFetch
}

func (k *keyCache) verify(ctx context.Context, token string, fetch func(context.Context) (keysReply, error)) (Claims, error) {
	now := time.Now()
	k.mu.Lock()
	c, ok := k.verified[token]
	k.mu.Unlock()
	if ok {
		if now.Before(c.ExpiresAt) {
			return c, nil
		}
		return Claims{}, errBadToken
	}
	if len(token) > maxTokenLen {
		return Claims{}, errBadToken
	}
	home, keys, last := k.snapshot()
	if home == "" || (unknownKID(token, keys) && (now.Sub(last) >= refetchEvery || k.stale.Swap(false))) {
		var err error
		if home, keys, err = k.refresh(ctx, last, fetch); err != nil {
			return Claims{}, err
		}
	}
	c, err := parseAccess(token, home, func(kid string) (ed25519.PublicKey, bool) {
		key, ok := keys[kid]
		return key, ok
	})
	if err != nil {
		return Claims{}, err
	}
	k.mu.Lock()
	if len(k.verified) >= maxVerified {
		clear(k.verified)
	}
	k.verified[token] = c
	k.mu.Unlock()
	return c, nil
}

// refresh fetches the keys unless another caller did so since last.
func (k *keyCache) refresh(ctx context.Context, last time.Time, fetch func(context.Context) (keysReply, error)) (string, map[string]ed25519.PublicKey, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()
	if home, keys, l := k.snapshot(); l != last && home != "" {
		return home, keys, nil
	}
	r, err := fetch(ctx)
	if err != nil {
		return "", nil, err
	}
	keys := map[string]ed25519.PublicKey{}
	for _, pk := range r.Keys {
		if len(pk.Key) == ed25519.PublicKeySize && pk.KID != "" {
			keys[pk.KID] = ed25519.PublicKey(pk.Key)
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.home, k.keys, k.lastFetch = r.Home, keys, time.Now()
	return k.home, k.keys, nil
}

// unknownKID reports whether token names a key id not in keys. It only
// peeks at the header; the signature is checked later.
func unknownKID(token string, keys map[string]ed25519.PublicKey) bool {
	t, _, err := jwt.NewParser().ParseUnverified(token, &accessClaims{})
	if err != nil {
		return false
	}
	kid, _ := t.Header["kid"].(string)
	_, ok := keys[kid]
	return !ok
}
