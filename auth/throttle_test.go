package auth

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
)

// TestThrottleSchedule follows one counter through a day of failures on a
// synthetic clock: the lock starts at the limit, lasts the window, doubles
// with each further failure up to maxDelay, and the counter is forgotten
// after a quiet period.
func TestThrottleSchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		limit throttleLimit
		steps []throttleStep
	}{
		{"five quick failures lock until the minute is over", nameLimit, []throttleStep{
			{0, 0, 1}, {time.Second, 0, 2}, {2 * time.Second, 0, 3}, {3 * time.Second, 0, 4},
			{4 * time.Second, 56 * time.Second, 5},
		}},
		{"failures after the lock double the wait", nameLimit, []throttleStep{
			{0, 0, 1}, {0, 0, 2}, {0, 0, 3}, {0, 0, 4}, {0, time.Minute, 5},
			{time.Minute, 2 * time.Second, 6}, {time.Minute + 2*time.Second, 4 * time.Second, 7},
			{time.Minute + 6*time.Second, 8 * time.Second, 8},
		}},
		{"the wait is capped", nameLimit, append(repeat(5, 0), repeat(30, 2*time.Minute)...)},
		{"slow failures never lock", nameLimit, []throttleStep{
			{0, 0, 1}, {20 * time.Second, 0, 2}, {40 * time.Second, 0, 3}, {59 * time.Second, 0, 4},
			{61 * time.Second, 0, 1}, {62 * time.Second, 0, 2},
		}},
		{"a quiet period forgets a lock", nameLimit, []throttleStep{
			{0, 0, 1}, {0, 0, 2}, {0, 0, 3}, {0, 0, 4}, {0, time.Minute, 5},
			{time.Minute + quietPeriod, 0, 1},
		}},
		{"a source has a higher limit", sourceLimit, append(repeat(19, 0), throttleStep{0, time.Minute, 20})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r throttleRecord
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				r = r.fail(tt.limit, now)
				var lock time.Duration
				if r.Until.After(now) {
					lock = r.Until.Sub(now)
				}
				if st.wantCount >= 0 && r.Failures != st.wantCount {
					t.Fatalf("step %d: failures = %d, want %d", i, r.Failures, st.wantCount)
				}
				if st.wantLock >= 0 && lock != st.wantLock {
					t.Fatalf("step %d (%d failures): lock = %v, want %v", i, r.Failures, lock, st.wantLock)
				}
			}
			if tt.name == "the wait is capped" && r.Until.Sub(r.Last) != maxDelay {
				t.Errorf("last lock = %v, want %v", r.Until.Sub(r.Last), maxDelay)
			}
		})
	}
}

// throttleStep is a failure at a time after t0, with the lock it should
// earn (0 for none) and the count it should reach; -1 checks nothing.
type throttleStep struct {
	at        time.Duration
	wantLock  time.Duration
	wantCount int
}

// repeat returns n failures at the same time, checking neither count nor
// lock.
func repeat(n int, at time.Duration) []throttleStep {
	out := make([]throttleStep, n)
	for i := range out {
		out[i] = throttleStep{at, -1, -1}
	}
	return out
}

func TestThrottleSource(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"", noSource, false},
		{"192.0.2.7", "192.0.2.7", false},
		{"::ffff:192.0.2.7", "192.0.2.7", false},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", false},
		{"fe80::1%eth0", "fe80::/64", false},
		{"192.0.2.7:1234", "", true},
		{"example.com", "", true},
		{strings.Repeat("1", 100), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := throttleSource("source", tt.in)
			if tt.wantErr {
				wantKind(t, err, homemesh.KindInvalid)
				if homemesh.ErrorField(err) != "source" {
					t.Errorf("field = %q", homemesh.ErrorField(err))
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("throttleSource(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func FuzzThrottleSource(f *testing.F) {
	for _, seed := range []string{"", "192.0.2.1", "::1", "fe80::1%eth0", "::ffff:1.2.3.4", "1.2.3.4:5", "x"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := throttleSource("source", in)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "source" {
				t.Fatalf("error without kind or field: %v", err)
			}
			return
		}
		if got == "" || len(got) > 64 {
			t.Fatalf("%q normalised to %q", in, got)
		}
		if again, err := throttleSource("source", strings.TrimSuffix(got, "/64")); in != "" && (err != nil || (again != got)) {
			t.Fatalf("%q normalised to %q, which normalises to %q, %v", in, got, again, err)
		}
	})
}

// wantThrottled checks that err refuses a login for a while, and returns
// how long.
func wantThrottled(t testing.TB, err error) time.Duration {
	t.Helper()
	wantKind(t, err, homemesh.KindRateLimited)
	d := homemesh.ErrorRetryAfter(err)
	if d < time.Second || d > maxDelay {
		t.Fatalf("retry after %v", d)
	}
	if !strings.Contains(homemesh.ErrorMessage(err), "too many failed logins") {
		t.Errorf("message = %q", homemesh.ErrorMessage(err))
	}
	return d
}

// TestLoginThrottlePerName: the 6th wrong password within a minute is
// refused, the right one too, whether or not the user exists, with the same
// message; other names and addresses are not affected.
func TestLoginThrottlePerName(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	var msgs []string
	for _, name := range []string{testOwner, "mallory"} {
		for i := range nameLimit.failures {
			_, err := in.client.LoginFrom(ctx, fmt.Sprintf("192.0.2.%d", i+1), name, "wrong password!", "")
			wantKind(t, err, homemesh.KindUnauthenticated)
		}
		_, err := in.client.LoginFrom(ctx, "192.0.2.99", name, "wrong password!", "")
		wantThrottled(t, err)
		msgs = append(msgs, homemesh.ErrorMessage(err))
		_, err = in.client.LoginFrom(ctx, "192.0.2.99", name, testPassword, "")
		wantThrottled(t, err)
	}
	// The message for an unknown name differs at most in the seconds.
	digits := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return -1
			}
			return r
		}, s)
	}
	if digits(msgs[0]) != digits(msgs[1]) {
		t.Errorf("throttled messages differ: %q vs %q", msgs[0], msgs[1])
	}
	_, err := in.client.LoginFrom(ctx, "192.0.2.99", "bob", "wrong password!", "")
	wantKind(t, err, homemesh.KindUnauthenticated)
}

// TestLoginThrottlePerSource sprays one wrong password over many user
// names from one address, never often enough for any one name: the
// address is refused, for every name; another address is not.
func TestLoginThrottlePerSource(t *testing.T) {
	s, in, _ := onboarded(t)
	ctx := context.Background()
	for i := range sourceLimit.failures {
		// Two addresses of one IPv6 /64 count together.
		src := fmt.Sprintf("2001:db8::%x", i%2+1)
		_, err := in.client.LoginFrom(ctx, src, fmt.Sprintf("user%d", i), "wrong password!", "")
		wantKind(t, err, homemesh.KindUnauthenticated)
	}
	_, err := in.client.LoginFrom(ctx, "2001:db8::ff", testOwner, testPassword, "")
	wantThrottled(t, err)
	if _, err := in.client.LoginFrom(ctx, "2001:db8:0:1::1", testOwner, testPassword, ""); err != nil {
		t.Fatalf("another /64 refused: %v", err)
	}
	if _, err := in.client.LoginFrom(ctx, "198.51.100.1", testOwner, testPassword, ""); err != nil {
		t.Fatalf("another address refused: %v", err)
	}
	_, err = in.client.LoginFrom(ctx, "not an address", testOwner, testPassword, "")
	wantKind(t, err, homemesh.KindInvalid)

	// A second process enforces the same counters.
	b := startPeer(t, s, in)
	in.stop()
	_, err = b.client.LoginFrom(ctx, "2001:db8::1", testOwner, testPassword, "")
	wantThrottled(t, err)
}

// TestLoginSuccessClearsName: failures below the limit are forgotten after
// a successful login, so a user who mistypes now and then is never locked.
func TestLoginSuccessClearsName(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	for range 3 {
		for range nameLimit.failures - 1 {
			_, err := in.client.LoginFrom(ctx, "192.0.2.1", testOwner, "wrong password!", "")
			wantKind(t, err, homemesh.KindUnauthenticated)
		}
		if _, err := in.client.LoginFrom(ctx, "192.0.2.1", testOwner, testPassword, ""); err != nil {
			t.Fatalf("login after %d failures: %v", nameLimit.failures-1, err)
		}
	}
}
