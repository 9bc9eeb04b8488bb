package auth

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go/jetstream"
)

// Login throttling. Failed logins are counted per user name and per source
// address, in KV so that every auth process enforces the same counts.
//
// Once a counter reaches its limit within throttleWindow, every further
// attempt on that counter is refused, without checking the password, until
// the window is over (at least firstDelay). Each failure after that doubles
// the wait, up to maxDelay. A successful login clears the user name's
// counter; both counters are forgotten after quietPeriod without failures
// past their last lock.
//
// The per-name limit stops guessing one account's password from many
// addresses; the higher per-source limit, across user names, stops one
// address spraying common passwords over many accounts. A success does not
// clear the source's counter, or an attacker could reset it by logging
// into an account of their own between guesses.
const (
	throttleWindow = time.Minute
	firstDelay     = time.Second
	maxDelay       = 15 * time.Minute
	quietPeriod    = 15 * time.Minute
	// throttleTTL drops records nobody has written for longer than any
	// record can matter: a longest lock followed by a quiet period.
	throttleTTL = maxDelay + quietPeriod + time.Minute
)

// A throttleLimit is one kind of counter.
type throttleLimit struct {
	prefix   string // KV key prefix
	failures int    // failures within throttleWindow that start a lock
}

var (
	nameLimit   = throttleLimit{prefix: "n.", failures: 5}
	sourceLimit = throttleLimit{prefix: "s.", failures: 20}
)

// throttleRecord is the stored state of one counter.
type throttleRecord struct {
	Failures int       `json:"failures"` // since the counter was last forgotten
	First    time.Time `json:"first"`    // the first of them
	Last     time.Time `json:"last"`     // the latest of them
	Until    time.Time `json:"until,omitzero"`
}

// forgotten reports whether r no longer counts at now: quiet for
// quietPeriod after its last failure and lock, or below the limit with its
// window over.
func (r throttleRecord) forgotten(l throttleLimit, now time.Time) bool {
	if r.Failures == 0 || !now.Before(later(r.Last, r.Until).Add(quietPeriod)) {
		return true
	}
	return r.Failures < l.failures && !now.Before(r.First.Add(throttleWindow))
}

// fail counts one more failure at now and sets the lock it earns.
func (r throttleRecord) fail(l throttleLimit, now time.Time) throttleRecord {
	if r.forgotten(l, now) {
		r = throttleRecord{First: now}
	}
	r.Failures++
	r.Last = now
	if over := r.Failures - l.failures; over >= 0 {
		delay := maxDelay
		if over < 20 { // 1 s << 20 is far beyond maxDelay
			delay = min(firstDelay<<over, maxDelay)
		}
		r.Until = later(now.Add(delay), r.First.Add(throttleWindow))
	}
	return r
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func nameThrottleKey(name string) string { return nameLimit.prefix + hex.EncodeToString([]byte(name)) }

// noSource stands for logins that arrive without an address (over the bus
// from a process of the hub rather than through the gateway). They share
// one counter.
const noSource = "-"

// throttleSource normalises a login's source address to what is counted:
// the address itself for IPv4, its /64 for IPv6 (one subscriber usually
// holds a whole /64), noSource when there is none. Anything else is
// KindInvalid naming field.
func throttleSource(field, source string) (string, error) {
	if source == "" {
		return noSource, nil
	}
	if len(source) > 64 {
		return "", homemesh.Invalid(field, "must be an IP address")
	}
	addr, err := netip.ParseAddr(source)
	if err != nil {
		return "", homemesh.Invalid(field, "must be an IP address")
	}
	addr = addr.WithZone("").Unmap()
	if addr.Is4() {
		return addr.String(), nil
	}
	p, err := addr.Prefix(64)
	if err != nil {
		return "", homemesh.Invalid(field, "must be an IP address")
	}
	return p.String(), nil
}

func sourceThrottleKey(source string) string {
	return sourceLimit.prefix + hex.EncodeToString([]byte(source))
}

// errThrottled is the refusal of a throttled login. It says neither which
// counter refused nor whether the user exists.
func errThrottled(wait time.Duration) error {
	secs := int64((wait + time.Second - 1) / time.Second)
	return &homemesh.Error{Kind: homemesh.KindRateLimited, RetryAfter: time.Duration(secs) * time.Second,
		Message: "too many failed logins; try again in " + strconv.FormatInt(secs, 10) + " seconds"}
}

// checkThrottle refuses a login attempt for name (normalised, or "" when
// malformed) from source (as throttleSource returns it) while either
// counter is locked. Every login path calls it before checking a secret.
func (s *Service) checkThrottle(ctx context.Context, name, source string) error {
	now := time.Now()
	var until time.Time
	keys := []string{sourceThrottleKey(source)}
	if name != "" {
		keys = append(keys, nameThrottleKey(name))
	}
	for _, key := range keys {
		e, err := s.throttleKV.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return unavailable("read throttle", err)
		}
		var r throttleRecord
		if json.Unmarshal(e.Value(), &r) == nil {
			until = later(until, r.Until)
		}
	}
	if !now.Before(until) {
		return nil
	}
	s.log.Warn("login refused: throttled", "username", name, "source", source)
	return errThrottled(until.Sub(now))
}

// recordLoginFailure counts a failed login for name (normalised, or ""
// when malformed) from source on both counters and audits it, and audits
// the lock when the failure earns one. Unknown user names count exactly
// like known ones.
func (s *Service) recordLoginFailure(ctx context.Context, name, source string) {
	now := time.Now()
	type counted struct {
		limit throttleLimit
		key   string
	}
	counters := []counted{{sourceLimit, sourceThrottleKey(source)}}
	if name != "" {
		counters = append(counters, counted{nameLimit, nameThrottleKey(name)})
	}
	failures := map[string]string{}
	var until time.Time
	for _, c := range counters {
		r, err := s.countFailure(ctx, c.limit, c.key, now)
		if err != nil {
			s.log.Error("cannot record a failed login", "username", name, "source", source, "err", err)
			continue
		}
		failures[c.limit.prefix] = strconv.Itoa(r.Failures)
		until = later(until, r.Until)
	}
	s.log.Warn("login failed", "username", name, "source", source,
		"failures", failures[nameLimit.prefix], "source_failures", failures[sourceLimit.prefix])
	s.Audit(ctx, AuditEntry{Action: AuditLoginFailed, Outcome: OutcomeFailure, Actor: name, Source: source,
		Details: map[string]string{"failures": failures[nameLimit.prefix], "source_failures": failures[sourceLimit.prefix]}})
	if now.Before(until) {
		wait := until.Sub(now).Round(time.Second).String()
		s.log.Warn("login throttled", "username", name, "source", source, "retry_after", wait)
		s.Audit(ctx, AuditEntry{Action: AuditLoginThrottled, Outcome: OutcomeDenied, Actor: name, Source: source,
			Details: map[string]string{"retry_after": wait}})
	}
}

// recordLoginSuccess forgets name's failures after a successful login.
func (s *Service) recordLoginSuccess(ctx context.Context, name string) {
	if err := s.throttleKV.Purge(ctx, nameThrottleKey(name)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.log.Warn("cannot reset login throttle", "username", name, "err", err)
	}
}

// countFailure adds a failure to the counter at key with compare-and-set,
// so that concurrent failures on several processes all count.
func (s *Service) countFailure(ctx context.Context, l throttleLimit, key string, now time.Time) (throttleRecord, error) {
	var r throttleRecord
	err := casUpdate(ctx, s.throttleKV, key, "read throttle", "write throttle", func(cur []byte, exists bool) ([]byte, error) {
		r = throttleRecord{}
		if exists && json.Unmarshal(cur, &r) != nil {
			r = throttleRecord{}
		}
		r = r.fail(l, now)
		return json.Marshal(r)
	})
	if errors.Is(err, errContention) {
		// The key says which counter is contended, user or address.
		return throttleRecord{}, unavailable("write throttle", fmt.Errorf("%s: %w", key, errContention))
	}
	if err != nil {
		return throttleRecord{}, err
	}
	return r, nil
}
