package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Access tokens are signed by the newest key of a key set, stored sealed
// under signingRecord in the keys bucket. Rotating adds a new key and
// retires the previous one: it stops signing at once but keeps verifying
// until every token it signed has expired, so nobody is logged out. Every
// auth process watches the record and picks a new set up at once; verifiers
// are told by an EventKeysRotated and fetch keys again.
const signingRecord = "signing"

// EventKeysRotated is published on bus.EventSubject(home, EventKeysRotated)
// when the signing key is rotated, so verifiers fetch the public keys again
// before the first token signed by the new key reaches them. Its payload
// is {"kid": …} with the new key's ID.
const EventKeysRotated = "keys_rotated"

// signingKey is one key of the key set.
type signingKey struct {
	KID  string `json:"kid"`
	Seed []byte `json:"seed"`
	// CreatedAt is zero for the key of a home from before key sets.
	CreatedAt time.Time `json:"created_at,omitzero"`
	// VerifyUntil is set when a newer key retires this one: the last moment
	// a token this key signed can be valid. Zero for the signing key.
	VerifyUntil time.Time `json:"verify_until,omitzero"`
}

// keySet is the stored record: the signing key first, then retired keys
// that still verify.
type keySet struct {
	Keys []signingKey `json:"keys"`
}

// keyID names an Ed25519 key by its public key: the first 8 bytes of its
// SHA-256, hex-encoded.
func keyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

func newSigningKey(now time.Time) (signingKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return signingKey{}, err
	}
	return signingKey{KID: keyID(pub), Seed: priv.Seed(), CreatedAt: now.UTC()}, nil
}

// parseKeySet reads the stored record: a key set, or the single raw seed
// homes stored before key sets existed.
func parseKeySet(plain []byte) (keySet, error) {
	if len(plain) == ed25519.SeedSize {
		pub := ed25519.NewKeyFromSeed(plain).Public().(ed25519.PublicKey)
		return keySet{Keys: []signingKey{{KID: keyID(pub), Seed: plain}}}, nil
	}
	var ks keySet
	if err := json.Unmarshal(plain, &ks); err != nil {
		return keySet{}, fmt.Errorf("decode signing key set: %w", err)
	}
	if len(ks.Keys) == 0 {
		return keySet{}, errors.New("decode signing key set: no keys")
	}
	for i, k := range ks.Keys {
		if len(k.Seed) != ed25519.SeedSize {
			return keySet{}, fmt.Errorf("decode signing key set: key %d has %d bytes", i, len(k.Seed))
		}
		ks.Keys[i].KID = keyID(ed25519.NewKeyFromSeed(k.Seed).Public().(ed25519.PublicKey))
	}
	return ks, nil
}

// signingState is what a process signs and verifies with, replaced as a
// whole when the key set changes.
type signingState struct {
	signer ed25519.PrivateKey
	kid    string
	verify map[string]verifyKey
}

type verifyKey struct {
	key   ed25519.PublicKey
	until time.Time // zero: no limit
}

func newSigningState(ks keySet) *signingState {
	st := &signingState{verify: map[string]verifyKey{}}
	for i, k := range ks.Keys {
		priv := ed25519.NewKeyFromSeed(k.Seed)
		if i == 0 {
			st.signer, st.kid = priv, k.KID
		}
		st.verify[k.KID] = verifyKey{key: priv.Public().(ed25519.PublicKey), until: k.VerifyUntil}
	}
	return st
}

// lookup returns the public key kid names if it still verifies at now.
func (st *signingState) lookup(kid string, now time.Time) (ed25519.PublicKey, bool) {
	v, ok := st.verify[kid]
	if !ok || (!v.until.IsZero() && now.After(v.until)) {
		return nil, false
	}
	return v.key, true
}

// signingKeys holds a process's current signing state and when it last
// re-read it because of an unknown kid.
type signingKeys struct {
	state      atomic.Pointer[signingState]
	lastReload atomic.Int64 // unix nanoseconds
}

// reloadEvery bounds how often a token with an unknown kid makes the
// service re-read its key set.
const reloadEvery = time.Second

func (s *Service) signing() *signingState { return s.keys.state.Load() }

func (s *Service) loadSigner(ctx context.Context) error {
	plain, err := s.loadShared(ctx, signingRecord, func() ([]byte, error) {
		k, err := newSigningKey(time.Now())
		if err != nil {
			return nil, err
		}
		return json.Marshal(keySet{Keys: []signingKey{k}})
	})
	if err != nil {
		return err
	}
	ks, err := parseKeySet(plain)
	if err != nil {
		return err
	}
	s.keys.state.Store(newSigningState(ks))
	return nil
}

// reloadKeys re-reads the key set from the bucket.
func (s *Service) reloadKeys(ctx context.Context) error {
	e, err := s.keysKV.Get(ctx, signingRecord)
	if err != nil {
		return unavailable("read signing keys", err)
	}
	return s.applyKeys(e.Value())
}

func (s *Service) applyKeys(sealed []byte) error {
	plain, err := s.seal.open(signingRecord, sealed)
	if err != nil {
		return err
	}
	ks, err := parseKeySet(plain)
	if err != nil {
		return err
	}
	st := newSigningState(ks)
	if old := s.keys.state.Swap(st); old == nil || old.kid != st.kid {
		s.log.Info("signing key set loaded", "kid", st.kid)
	}
	return nil
}

// watchKeys starts applying every change of the key set that another
// process makes, until ctx ends; wait for the returned function. The watch
// is in place when it returns, and the set is re-read after, so no change
// falls between loading and watching.
func (s *Service) watchKeys(ctx context.Context) (wait func()) {
	w, err := s.keysKV.Watch(ctx, signingRecord, jetstream.UpdatesOnly())
	if err != nil {
		s.log.Error("cannot watch the signing keys; a rotation elsewhere is seen on the first unknown kid", "err", err)
		return func() {}
	}
	if err := s.reloadKeys(ctx); err != nil {
		s.log.Warn("cannot re-read the signing keys", "err", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer w.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				if err := s.applyKeys(e.Value()); err != nil {
					s.log.Error("cannot load a changed signing key set", "err", err)
				}
			}
		}
	}()
	return func() { <-done }
}

// lookupKey is the service's own key lookup for verifying access tokens. A
// kid it does not know makes it re-read the key set, at most once per
// reloadEvery, in case another process has just rotated.
func (s *Service) lookupKey(kid string) (ed25519.PublicKey, bool) {
	now := time.Now()
	if key, ok := s.signing().lookup(kid, now); ok {
		return key, true
	}
	last := s.keys.lastReload.Load()
	if now.UnixNano()-last < int64(reloadEvery) || !s.keys.lastReload.CompareAndSwap(last, now.UnixNano()) {
		return nil, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.reloadKeys(ctx); err != nil {
		s.log.Warn("cannot re-read the signing keys", "err", err)
		return nil, false
	}
	return s.signing().lookup(kid, now)
}

func (s *Service) handleKeys(ctx context.Context, msg *nats.Msg) (any, error) {
	st, now := s.signing(), time.Now()
	keys := []publicKey{{KID: st.kid, Key: st.verify[st.kid].key}}
	for kid := range st.verify {
		if key, ok := st.lookup(kid, now); ok && kid != st.kid {
			keys = append(keys, publicKey{KID: kid, Key: key})
		}
	}
	return keysReply{Home: s.cfg.Home, Keys: keys}, nil
}

// RotateSigningKey makes a new key sign every access token from now on.
// The previous signing key keeps verifying until the tokens it signed have
// expired (the access token lifetime plus the clock leeway), so nobody is
// logged out; older retired keys are dropped once past that. Every auth
// process signs with the new key at once, and verifiers are told to fetch
// it. It returns the new key's ID.
func (s *Service) RotateSigningKey(ctx context.Context) (string, error) {
	var old, next keySet
	var k signingKey
	err := casUpdate(ctx, s.keysKV, signingRecord, "read signing keys", "store signing keys", func(cur []byte, exists bool) ([]byte, error) {
		if !exists {
			return nil, unavailable("read signing keys", jetstream.ErrKeyNotFound)
		}
		plain, err := s.seal.open(signingRecord, cur)
		if err != nil {
			return nil, err
		}
		if old, err = parseKeySet(plain); err != nil {
			return nil, err
		}
		// After a lost race this runs again on the set that won, so the
		// key just put in is retired rather than dropped.
		now := time.Now().UTC()
		if k, err = newSigningKey(now); err != nil {
			return nil, err
		}
		next = keySet{Keys: []signingKey{k}}
		for _, prev := range old.Keys {
			if prev.VerifyUntil.IsZero() {
				prev.VerifyUntil = now.Add(s.cfg.AccessTokenTTL + clockSkew)
			}
			if now.Before(prev.VerifyUntil) {
				next.Keys = append(next.Keys, prev)
			}
		}
		val, _ := json.Marshal(next)
		return s.seal.seal(signingRecord, val), nil
	})
	if err != nil {
		return "", err
	}
	s.keys.state.Store(newSigningState(next))
	s.log.Info("signing key rotated", "kid", k.KID, "previous_kid", old.Keys[0].KID)
	if err := s.publishKeysRotated(k.KID); err != nil {
		// Verifiers also fetch keys on an unknown kid, at most every
		// refetchEvery; a lost event delays them that long.
		s.log.Error("cannot announce a signing key rotation", "err", err)
	}
	return k.KID, nil
}

func (s *Service) publishKeysRotated(kid string) error {
	env, err := bus.NewEnvelope(s.cfg.Home, ServiceName, EventKeysRotated, map[string]string{"kid": kid})
	if err != nil {
		return err
	}
	if err := s.bus.Publish(bus.EventSubject(s.cfg.Home, EventKeysRotated), env); err != nil {
		return err
	}
	return s.bus.Flush()
}

type rotateKeysRequest struct {
	bearer
	Source string `json:"source,omitempty"` // for the audit log
}

// RotatedKey is the reply to a signing key rotation.
type RotatedKey struct {
	KID string `json:"kid"` // the key that signs from now on
}

func (s *Service) handleRotateKeys(ctx context.Context, msg *nats.Msg) (any, error) {
	var req rotateKeysRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	source, err := auditSource(req.Source)
	if err != nil {
		return nil, err
	}
	actor, err := s.authorize(ctx, req.AccessToken, RoleOwner)
	if err != nil {
		return nil, err
	}
	previous := s.signing().kid
	kid, err := s.RotateSigningKey(ctx)
	if err != nil {
		s.Audit(ctx, AuditEntry{Action: AuditKeyRotated, Outcome: OutcomeFailure, Actor: actor.Username, ActorID: actor.UserID,
			Source: source, Target: "signing key"})
		return nil, err
	}
	s.Audit(ctx, AuditEntry{Action: AuditKeyRotated, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
		Source: source, Target: "signing key", Details: map[string]string{"kid": kid, "previous_kid": previous}})
	return RotatedKey{KID: kid}, nil
}

// RotateKeys makes a new key sign access tokens, acting as the bearer of
// accessToken, who must be the owner. Tokens signed before stay valid until
// they expire. source is the caller's address, for the audit log.
func (c *Client) RotateKeys(ctx context.Context, source, accessToken string) (RotatedKey, error) {
	var r RotatedKey
	if err := c.conn.Request(ctx, subject(VerbRotateKeys), rotateKeysRequest{bearer: bearer{accessToken}, Source: source}, &r); err != nil {
		return RotatedKey{}, err
	}
	// The event may reach this client after the reply; this client must
	// know the new key as soon as its caller does.
	c.keys.stale.Store(true)
	return r, nil
}

// watchKeyEvents subscribes, once, to EventKeysRotated of the home, which
// lets the key cache fetch keys for an unknown kid at once.
func (c *Client) watchKeyEvents(ctx context.Context) error {
	if c.keyEvents.Load() {
		return nil
	}
	c.keyEventsMu.Lock()
	defer c.keyEventsMu.Unlock()
	if c.keyEvents.Load() {
		return nil
	}
	home, err := c.home(ctx)
	if err != nil {
		return err
	}
	if _, err := c.conn.NATS().Subscribe(bus.EventSubject(home, EventKeysRotated), func(*nats.Msg) {
		c.keys.stale.Store(true)
	}); err != nil {
		return &homemesh.Error{Kind: homemesh.KindUnavailable, Message: "auth unavailable", Err: err}
	}
	c.keyEvents.Store(true)
	return nil
}
