package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/nats-io/nats.go"
)

// TestIntegrationTokens: a token works as a bearer token with the role it
// was given, not the creator's; it cannot manage anything; it is listed
// without its secret; and it dies at once on DELETE.
func TestIntegrationTokens(t *testing.T) {
	e := newEnv(t, envOptions{})
	owner := e.onboard(t).AccessToken
	seed(t, e)
	// A device that accepts every command, so a permitted command gets 202.
	sub, err := e.conn.Handle(bus.CommandSubject(testHome, "lamp1", "lamp1_light"), "edge", func(context.Context, *nats.Msg) (any, error) {
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e.conn.Flush()

	bad := []struct {
		name       string
		body       string
		wantStatus int
		wantKind   string
		wantField  string
	}{
		{"no name", `{"role":"guest"}`, 400, "invalid", "name"},
		{"unknown role", `{"name":"x","role":"king"}`, 400, "invalid", "role"},
		{"lifetime too long", `{"name":"x","expires_in_days":99999}`, 400, "invalid", "expires_in_days"},
		{"unknown scope kind", `{"name":"x","scope":{"kinds":["toaster"]}}`, 400, "invalid", "scope.kinds[0]"},
		{"unknown field", `{"name":"x","admin":true}`, 400, "invalid", "admin"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "POST", "/api/v1/tokens", owner, tt.body).wantError(t, tt.wantStatus, tt.wantKind, tt.wantField)
		})
	}

	guest := decode[auth.IntegrationToken](t, e.do(t, "POST", "/api/v1/tokens", owner,
		`{"name":"wall display","role":"guest","scope":{"rooms":["living"]},"expires_in_days":30}`), http.StatusCreated)
	if !strings.HasPrefix(guest.Token, "hmi_") || guest.Role != "guest" || guest.ID == "" || len(guest.Scope.Rooms) != 1 {
		t.Fatalf("created %+v", guest)
	}
	member := decode[auth.IntegrationToken](t, e.do(t, "POST", "/api/v1/tokens", owner, `{"name":"automation","role":"member"}`), http.StatusCreated)

	uses := []struct {
		name       string
		token      string
		method     string
		path       string
		body       any
		wantStatus int
	}{
		{"guest reads devices", guest.Token, "GET", "/api/v1/devices", nil, 200},
		// The lamp is in no room, so outside the token's scope: hidden.
		{"guest may not command outside its scope", guest.Token, "POST", "/api/v1/entities/lamp1_light/commands", `{"command":"turn_on"}`, 404},
		{"member commands", member.Token, "POST", "/api/v1/entities/lamp1_light/commands", `{"command":"turn_on"}`, 202},
		{"member may not manage credentials", member.Token, "GET", "/api/v1/credentials", nil, 403},
		{"no tokens from tokens", member.Token, "POST", "/api/v1/tokens", `{"name":"more"}`, 403},
		{"no token lists for tokens", member.Token, "GET", "/api/v1/tokens", nil, 403},
		{"no revoke-all for tokens", member.Token, "POST", "/api/v1/auth/revoke-all", nil, 403},
		{"no deleting with tokens", member.Token, "DELETE", "/api/v1/tokens/" + guest.ID, nil, 403},
		{"a forged token", "hmi_" + strings.Repeat("A", 43), "GET", "/api/v1/devices", nil, 401},
	}
	for _, u := range uses {
		t.Run(u.name, func(t *testing.T) {
			r := e.do(t, u.method, u.path, u.token, u.body)
			if r.status != u.wantStatus {
				t.Fatalf("status %d, want %d; body %s", r.status, u.wantStatus, r.body)
			}
		})
	}

	r := e.do(t, "GET", "/api/v1/tokens", owner, nil)
	if strings.Contains(string(r.body), guest.Token) || strings.Contains(string(r.body), `"token"`) {
		t.Fatalf("the list shows a secret: %s", r.body)
	}
	list := decode[[]auth.IntegrationToken](t, r, http.StatusOK)
	if len(list) != 2 || list[0].ID != guest.ID || list[1].ID != member.ID || list[0].Name != "wall display" {
		t.Errorf("list = %+v", list)
	}

	if r := e.do(t, "DELETE", "/api/v1/tokens/"+guest.ID, owner, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: status %d body %s", r.status, r.body)
	}
	e.do(t, "GET", "/api/v1/devices", guest.Token, nil).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
	e.do(t, "DELETE", "/api/v1/tokens/"+guest.ID, owner, nil).wantError(t, http.StatusNotFound, "not_found", "")
	e.do(t, "DELETE", "/api/v1/tokens/NOT-AN-ID", owner, nil).wantError(t, http.StatusBadRequest, "invalid", "id")

	// The WebSocket accepts an integration token too.
	c, _, err := dial(t, e.srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, map[string]string{"type": "auth", "access_token": member.Token})
	if reply := mustRead(t, c); reply["type"] != "auth_ok" {
		t.Fatalf("WebSocket auth reply %v", reply)
	}
}
