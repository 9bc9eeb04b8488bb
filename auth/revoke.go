package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Revocation says that every token of a user issued before NotBefore is
// void.
type Revocation struct {
	UserID    string    `json:"user_id"`
	NotBefore time.Time `json:"not_before"`
}

type revocationsReply struct {
	Revocations []Revocation `json:"revocations"`
}

// issuedAt is the issue time recorded in u's new tokens: now, but never
// before u.TokensNotBefore. Token times have whole seconds, so revocations
// take effect from the next full second, and a token issued within the
// revoking second is stamped with that next second instead.
func issuedAt(u user, now time.Time) time.Time {
	if now.Before(u.TokensNotBefore) {
		return u.TokensNotBefore
	}
	return now
}

// RevokeUserTokens voids every access and refresh token the user named
// username holds, at once and in every process: the user record is
// stamped, the revocation is kept for as long as an access token can live,
// and an EventTokensRevoked tells every verifier. The user must log in
// again. It returns the time tokens must have been issued at or after.
func (s *Service) RevokeUserTokens(ctx context.Context, username string) (time.Time, error) {
	var u user
	err := casUpdate(ctx, s.usersKV, userKey(username), "read user", "store user", func(cur []byte, exists bool) ([]byte, error) {
		if !exists {
			return nil, homemesh.Errorf(homemesh.KindNotFound, "no user %s", username)
		}
		u = user{}
		if err := json.Unmarshal(cur, &u); err != nil {
			return nil, fmt.Errorf("decode user %q: %w", username, err)
		}
		// The next full second: tokens carry whole-second issue times, so
		// every token issued up to now has iat before it. Tokens issued
		// since an earlier revocation in this same second were stamped
		// with that revocation's time, so the new one must lie beyond it.
		// A record changed meanwhile is stamped afresh.
		nb := time.Now().UTC().Truncate(time.Second).Add(time.Second)
		if !nb.After(u.TokensNotBefore) {
			nb = u.TokensNotBefore.Add(time.Second)
		}
		u.TokensNotBefore = nb
		return json.Marshal(u)
	})
	if err != nil {
		return time.Time{}, err
	}
	rev := Revocation{UserID: u.ID, NotBefore: u.TokensNotBefore}
	raw, _ := json.Marshal(rev)
	if _, err := s.revocationsKV.Put(ctx, u.ID, raw); err != nil {
		return time.Time{}, unavailable("store revocation", err)
	}
	if err := s.publishRevocation(rev); err != nil {
		// Verifiers also re-read the revocations every few seconds, so
		// a lost event delays the revocation; it does not lose it.
		s.log.Error("cannot announce a token revocation", "user_id", u.ID, "err", err)
	}
	s.log.Info("tokens revoked", "username", username, "user_id", u.ID)
	if err := s.dropUserIntegrationTokens(ctx, u.ID); err != nil {
		// Verification checks the user record, so these tokens are
		// refused already; they only linger in lists.
		s.log.Error("cannot delete the integration tokens of a user whose tokens were revoked", "user_id", u.ID, "err", err)
	}
	return u.TokensNotBefore, nil
}

func (s *Service) publishRevocation(rev Revocation) error {
	env, err := bus.NewEnvelope(s.cfg.Home, ServiceName, EventTokensRevoked, rev)
	if err != nil {
		return err
	}
	if err := s.bus.Publish(bus.EventSubject(s.cfg.Home, EventTokensRevoked), env); err != nil {
		return err
	}
	return s.bus.Flush()
}

// handleRevocations lists the revocations still relevant: those younger
// than the longest access token lifetime (the bucket's TTL drops older ones).
func (s *Service) handleRevocations(ctx context.Context, msg *nats.Msg) (any, error) {
	lister, err := s.revocationsKV.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return revocationsReply{Revocations: []Revocation{}}, nil
	}
	if err != nil {
		return nil, unavailable("list revocations", err)
	}
	out := []Revocation{}
	for key := range lister.Keys() {
		e, err := s.revocationsKV.Get(ctx, key)
		if err != nil {
			continue // expired or deleted meanwhile
		}
		var r Revocation
		if json.Unmarshal(e.Value(), &r) == nil && r.UserID != "" {
			out = append(out, r)
		}
	}
	return revocationsReply{Revocations: out}, nil
}

// A verifier re-reads the revocation list every revocationRefetch, in case
// it missed an event (a reconnect). If auth cannot answer, it keeps going on
// events alone until the list is revocationStale old, then fails closed.
const (
	revocationRefetch = 5 * time.Second
	revocationStale   = time.Minute
)

// revocationCache is a Client's view of the revocations: filled from the
// revocations verb, kept current by EventTokensRevoked, and re-read every
// revocationRefetch.
type revocationCache struct {
	fetchMu sync.Mutex // one subscription and fetch at a time

	mu         sync.Mutex
	subscribed bool
	notBefore  map[string]time.Time // user ID → tokens issued before are void
	lastFetch  time.Time
}

func newRevocationCache() *revocationCache {
	return &revocationCache{notBefore: map[string]time.Time{}}
}

var errRevoked = homemesh.Errorf(homemesh.KindUnauthenticated, "this access token was revoked; log in again")

// check refuses claims issued before their user's revocation.
func (r *revocationCache) check(ctx context.Context, conn *natsbus.Conn, c Claims) error {
	r.mu.Lock()
	fresh := r.subscribed && time.Since(r.lastFetch) < revocationRefetch
	r.mu.Unlock()
	if !fresh {
		if err := r.sync(ctx, conn, c.Home); err != nil {
			return err
		}
	}
	r.mu.Lock()
	nb := r.notBefore[c.UserID]
	r.mu.Unlock()
	if c.IssuedAt.Before(nb) {
		return errRevoked
	}
	return nil
}

// sync subscribes to revocation events on first use and re-reads the list.
// The subscription comes first, so no revocation falls between the list
// and the events.
func (r *revocationCache) sync(ctx context.Context, conn *natsbus.Conn, home string) error {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	r.mu.Lock()
	subscribed, last := r.subscribed, r.lastFetch
	r.mu.Unlock()
	if subscribed && time.Since(last) < revocationRefetch {
		return nil // another caller just did it
	}
	if !subscribed {
		_, err := conn.NATS().Subscribe(bus.EventSubject(home, EventTokensRevoked), func(m *nats.Msg) {
			var env bus.Envelope
			var rev Revocation
			if json.Unmarshal(m.Data, &env) != nil || json.Unmarshal(env.Payload, &rev) != nil || rev.UserID == "" {
				return
			}
			r.add(rev)
		})
		if err != nil {
			return &homemesh.Error{Kind: homemesh.KindUnavailable, Message: "auth unavailable", Err: err}
		}
		r.mu.Lock()
		r.subscribed = true
		r.mu.Unlock()
	}
	var reply revocationsReply
	if err := conn.Request(ctx, subject(VerbRevocations), struct{}{}, &reply); err != nil {
		if !last.IsZero() && time.Since(last) < revocationStale {
			return nil // events still arrive; try the list again next time
		}
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rev := range reply.Revocations {
		r.addLocked(rev)
	}
	r.lastFetch = time.Now()
	return nil
}

func (r *revocationCache) add(rev Revocation) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(rev)
}

func (r *revocationCache) addLocked(rev Revocation) {
	if rev.NotBefore.After(r.notBefore[rev.UserID]) {
		r.notBefore[rev.UserID] = rev.NotBefore
	}
}
