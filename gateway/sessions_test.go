package gateway_test

import (
	"net/http"
	"strconv"
	"testing"
)

// TestLoginThrottled is the black-box check of login throttling: the 6th
// wrong password within a minute gets 429 with Retry-After, and so does the
// right one while the lock lasts, for a user who exists and one who does
// not alike.
func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.onboard(t)
	for _, name := range []string{testOwner, "nobody"} {
		t.Run(name, func(t *testing.T) {
			wrong := map[string]string{"username": name, "password": "wrong password!"}
			for i := range 5 {
				r := e.do(t, "POST", "/api/v1/auth/login", "", wrong)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("attempt %d: status %d, want 401; body %s", i+1, r.status, r.body)
				}
			}
			for _, pw := range []string{"wrong password!", testPassword} {
				r := e.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": name, "password": pw})
				r.wantError(t, http.StatusTooManyRequests, "rate_limited", "")
				secs, err := strconv.Atoi(r.header.Get("Retry-After"))
				if err != nil || secs < 1 || secs > 15*60 {
					t.Errorf("Retry-After = %q, want 1 to 900 seconds", r.header.Get("Retry-After"))
				}
			}
		})
	}
}
