package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/homemesh/homemesh/auth"
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

func (e *env) refresh(t *testing.T, refreshToken string) response {
	t.Helper()
	return e.do(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": refreshToken})
}

// TestRefreshReuseRevokesFamily presents a spent refresh token after two
// rotations: the newest descendant dies with it; another login lives on.
func TestRefreshReuseRevokesFamily(t *testing.T) {
	e := newEnv(t, envOptions{})
	first := e.onboard(t)
	other := e.login(t)
	second := decode[auth.Tokens](t, e.refresh(t, first.RefreshToken), http.StatusOK)
	third := decode[auth.Tokens](t, e.refresh(t, second.RefreshToken), http.StatusOK)
	e.refresh(t, first.RefreshToken).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	e.refresh(t, third.RefreshToken).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	decode[auth.Tokens](t, e.refresh(t, other.RefreshToken), http.StatusOK)
}

func TestLogout(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t)
	other := e.login(t)
	next := decode[auth.Tokens](t, e.refresh(t, tok.RefreshToken), http.StatusOK)
	tests := []struct {
		name       string
		body       any
		wantStatus int
		wantField  string
	}{
		{"logout", map[string]string{"refresh_token": next.RefreshToken}, http.StatusNoContent, ""},
		{"again", map[string]string{"refresh_token": next.RefreshToken}, http.StatusNoContent, ""},
		{"unknown token", map[string]string{"refresh_token": "hmr_nope"}, http.StatusNoContent, ""},
		{"no token", map[string]string{}, http.StatusBadRequest, "refresh_token"},
		{"unknown field", `{"refresh_token":"x","all":true}`, http.StatusBadRequest, "all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, "POST", "/api/v1/auth/logout", "", tt.body)
			if tt.wantStatus == http.StatusNoContent {
				if r.status != tt.wantStatus || len(r.body) != 0 {
					t.Fatalf("status %d body %q, want 204 without a body", r.status, r.body)
				}
				return
			}
			r.wantError(t, tt.wantStatus, "invalid", tt.wantField)
		})
	}
	e.refresh(t, next.RefreshToken).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	decode[auth.Tokens](t, e.refresh(t, other.RefreshToken), http.StatusOK)
}

// TestRevokeAll logs out everywhere: the access and refresh tokens of
// every session stop working at once; a new login works.
func TestRevokeAll(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t)
	other := e.login(t)
	if r := e.do(t, "GET", "/api/v1/devices", other.AccessToken, nil); r.status != http.StatusOK {
		t.Fatalf("before: status %d", r.status)
	}
	e.do(t, "POST", "/api/v1/auth/revoke-all", "", nil).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	if r := e.do(t, "POST", "/api/v1/auth/revoke-all", tok.AccessToken, nil); r.status != http.StatusNoContent {
		t.Fatalf("revoke-all: status %d body %s", r.status, r.body)
	}
	for _, access := range []string{tok.AccessToken, other.AccessToken} {
		e.do(t, "GET", "/api/v1/devices", access, nil).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	}
	for _, refresh := range []string{tok.RefreshToken, other.RefreshToken} {
		e.refresh(t, refresh).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	}
	fresh := e.login(t)
	if r := e.do(t, "GET", "/api/v1/devices", fresh.AccessToken, nil); r.status != http.StatusOK {
		t.Fatalf("after a new login: status %d body %s", r.status, r.body)
	}
}

// TestRotateSigningKey rotates through the API: nobody is logged out, and
// new tokens, signed by the new key, work at once.
func TestRotateSigningKey(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t)
	guest := decode[auth.IntegrationToken](t, e.do(t, "POST", "/api/v1/tokens", tok.AccessToken, `{"name":"x","role":"guest"}`), http.StatusCreated)
	e.do(t, "POST", "/api/v1/auth/keys/rotate", guest.Token, nil).wantError(t, http.StatusForbidden, "permission", "")
	e.do(t, "POST", "/api/v1/auth/keys/rotate", "", nil).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	kidOf := func(token string) string {
		t.Helper()
		header, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
		if err != nil {
			t.Fatal(err)
		}
		var h struct{ KID string }
		json.Unmarshal(header, &h)
		return h.KID
	}
	rotated := decode[auth.RotatedKey](t, e.do(t, "POST", "/api/v1/auth/keys/rotate", tok.AccessToken, nil), http.StatusOK)
	if rotated.KID == "" || rotated.KID == kidOf(tok.AccessToken) {
		t.Fatalf("rotated to %q from %q", rotated.KID, kidOf(tok.AccessToken))
	}
	fresh := e.login(t)
	if kidOf(fresh.AccessToken) != rotated.KID {
		t.Errorf("new token signed by %q, want %q", kidOf(fresh.AccessToken), rotated.KID)
	}
	for name, access := range map[string]string{"old token": tok.AccessToken, "new token": fresh.AccessToken} {
		if r := e.do(t, "GET", "/api/v1/devices", access, nil); r.status != http.StatusOK {
			t.Errorf("%s: status %d body %s", name, r.status, r.body)
		}
	}
}
