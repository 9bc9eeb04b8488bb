package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/gateway"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go"
)

// The principals of the authorization tests, in the order of the matrix's
// columns.
const (
	pNone      = "no token"
	pInvalid   = "invalid token"
	pOwner     = "owner"
	pAdmin     = "admin"
	pMember    = "member"
	pGuest     = "guest"
	pScopedGst = "scoped guest"  // living room, lights only
	pScopedMem = "scoped member" // bedroom only
)

var principals = []string{pNone, pInvalid, pOwner, pAdmin, pMember, pGuest, pScopedGst, pScopedMem}

// home is a seeded home for the authorization tests: rooms, a device per
// kind that matters, a user per principal, and a stand-in device service
// that accepts every command.
type home struct {
	*env
	tokens map[string]string // principal → access token
	users  map[string]string // principal → user name
	logs   *hmtest.LogBuffer // the auth service's log, where audit entries show
}

// newHome builds the home. Devices: a living-room light, a front-door lock
// and an alarm panel in the hall, a bedroom temperature sensor.
func newHome(t testing.TB) *home {
	t.Helper()
	logs := &hmtest.LogBuffer{}
	e := newEnv(t, envOptions{authLog: slog.New(slog.NewJSONHandler(logs, nil))})
	h := &home{env: e, logs: logs, tokens: map[string]string{pInvalid: "not-a-token"}, users: map[string]string{}}
	h.tokens[pOwner] = e.onboard(t).AccessToken
	h.users[pOwner] = testOwner
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.authSvc.SetWebAuthnOrigins([]string{"http://localhost:" + u.Port()}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, name := range []string{"Living room", "Bedroom", "Hall"} {
		if _, err := e.registry.CreateRoom(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct {
		dev    homemesh.Device
		entity homemesh.Entity
	}{
		{homemesh.Device{ID: "lamp", Name: "Sofa lamp", RoomID: "living_room", Source: "mqtt"},
			homemesh.Entity{ID: "lamp_light", UniqueID: "lamp-l", Kind: homemesh.KindLight, Name: "Sofa lamp"}},
		{homemesh.Device{ID: "door", Name: "Front door", RoomID: "hall", Source: "mqtt"},
			homemesh.Entity{ID: "door_lock", UniqueID: "door-l", Kind: homemesh.KindLock, Name: "Front door"}},
		{homemesh.Device{ID: "alarm", Name: "Alarm", RoomID: "hall", Source: "mqtt"},
			homemesh.Entity{ID: "alarm_panel", UniqueID: "alarm-p", Kind: homemesh.KindAlarmControlPanel, Name: "Alarm"}},
		{homemesh.Device{ID: "bedsensor", Name: "Bedroom sensor", RoomID: "bedroom", Source: "mqtt"},
			homemesh.Entity{ID: "bedroom_temperature", UniqueID: "bed-t", Kind: homemesh.KindSensor, Name: "Temperature"}},
	} {
		if _, err := e.registry.PutDevice(ctx, d.dev); err != nil {
			t.Fatal(err)
		}
		d.entity.DeviceID = d.dev.ID
		if _, err := e.registry.PutEntity(ctx, d.entity); err != nil {
			t.Fatal(err)
		}
	}
	sub, err := e.conn.Handle(bus.CommandWildcard(testHome), "devices", func(context.Context, *nats.Msg) (any, error) {
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	border := serveTopology(t, e.conn, testTopology)
	t.Cleanup(func() { _ = border.Unsubscribe() })
	if err := e.conn.Flush(); err != nil {
		t.Fatal(err)
	}

	for _, u := range []struct {
		principal, name, role string
		scope                 *auth.Scope
	}{
		{pAdmin, "adam", auth.RoleAdmin, nil},
		{pMember, "mia", auth.RoleMember, nil},
		{pGuest, "gus", auth.RoleGuest, nil},
		{pScopedGst, "sally", auth.RoleGuest, &auth.Scope{Rooms: []string{"living_room"}, Kinds: []string{"light"}}},
		{pScopedMem, "sam", auth.RoleMember, &auth.Scope{Rooms: []string{"bedroom"}}},
	} {
		body := map[string]any{"username": u.name, "password": testPassword, "role": u.role}
		if u.scope != nil {
			body["scope"] = u.scope
		}
		decode[auth.User](t, h.do(t, "POST", "/api/v1/users", h.tokens[pOwner], body), http.StatusCreated)
		h.tokens[u.principal] = h.loginAs(t, u.name).AccessToken
		h.users[u.principal] = u.name
	}
	return h
}

func (h *home) loginAs(t testing.TB, name string) auth.Tokens {
	t.Helper()
	r := h.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": name, "password": testPassword})
	return decode[auth.Tokens](t, r, http.StatusOK)
}

// allowed marks a matrix cell where the principal may act: any 1xx or 2xx
// status, or 400 (allowed, but the body is refused). Denials are exact:
// 401, 403 or 404.
const allowed = 0

// request is one call of a matrix row for one principal.
type request struct {
	method, path string
	body         any
}

// matrixRow is one route: how to call it as a principal, and what each
// principal must get, in the order of principals.
type matrixRow struct {
	route string
	call  func(t *testing.T, h *home, principal string) request
	want  [8]int
	// then, when set, runs after each call, to repair what it spent.
	then func(t *testing.T, h *home, principal string)
}

// fixed calls a route the same way for every principal.
func fixed(method, path string, body any) func(*testing.T, *home, string) request {
	return func(*testing.T, *home, string) request { return request{method, path, body} }
}

// slug turns a principal into a name part.
func slug(principal string) string { return strings.ReplaceAll(principal, " ", "-") }

var (
	public      = [8]int{allowed, allowed, allowed, allowed, allowed, allowed, allowed, allowed}
	authedAll   = [8]int{401, 401, allowed, allowed, allowed, allowed, allowed, allowed}
	adminsOnly  = [8]int{401, 401, allowed, allowed, 403, 403, 403, 403}
	hallDevice  = [8]int{401, 401, allowed, allowed, allowed, allowed, 404, 404} // the door: outside both scopes
	unlockLock  = [8]int{401, 401, allowed, allowed, allowed, 403, 404, 404}
	conflictAll = [8]int{409, 409, 409, 409, 409, 409, 409, 409}
	refusedAll  = [8]int{401, 401, 401, 401, 401, 401, 401, 401}
	// forbiddenAll: a public route refusing a wrong secret, whoever asks.
	forbiddenAll = [8]int{403, 403, 403, 403, 403, 403, 403, 403}
)

// matrix is the authorization matrix: every route × every principal. A
// route registered without a row here fails TestAuthorizationMatrix.
var matrix = []matrixRow{
	{"POST /api/v1/onboard", fixed("POST", "/api/v1/onboard", map[string]string{"code": "AAAAA-AAAAA", "username": "x", "password": testPassword}), conflictAll, nil},
	{"POST /api/v1/auth/login", fixed("POST", "/api/v1/auth/login", map[string]string{"username": "gus", "password": testPassword}), public, nil},
	{"POST /api/v1/auth/refresh", fixed("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": "hmr_forged"}), refusedAll, nil},
	{"POST /api/v1/auth/logout", fixed("POST", "/api/v1/auth/logout", map[string]string{"refresh_token": "hmr_forged"}), public, nil},
	{"POST /api/v1/pairings/claim", fixed("POST", "/api/v1/pairings/claim", map[string]string{"code": "WRONG-CODE"}), forbiddenAll, nil},
	{"GET /api/v1/openapi.json", fixed("GET", "/api/v1/openapi.json", nil), public, nil},
	{"GET /healthz", fixed("GET", "/healthz", nil), public, nil},
	{"GET /readyz", fixed("GET", "/readyz", nil), public, nil},
	{"GET /metrics", fixed("GET", "/metrics", nil), public, nil},

	{"GET /api/v1/devices", fixed("GET", "/api/v1/devices", nil), authedAll, nil},
	{"GET /api/v1/devices/{id}", fixed("GET", "/api/v1/devices/door", nil), hallDevice, nil},
	{"PATCH /api/v1/devices/{id}", fixed("PATCH", "/api/v1/devices/door", map[string]string{"name": "Front door"}), adminsOnly, nil},
	{"GET /api/v1/entities", fixed("GET", "/api/v1/entities", nil), authedAll, nil},
	{"GET /api/v1/entities/{id}", fixed("GET", "/api/v1/entities/door_lock", nil), hallDevice, nil},
	{"GET /api/v1/entities/{id}/history", fixed("GET", "/api/v1/entities/door_lock/history", nil), hallDevice, nil},
	{"GET /api/v1/history/events", fixed("GET", "/api/v1/history/events", nil), authedAll, nil},
	{"POST /api/v1/entities/{id}/commands", fixed("POST", "/api/v1/entities/door_lock/commands", map[string]string{"command": "unlock"}), unlockLock, nil},

	// Every mesh node is a device: the topology is for unlimited scopes.
	{"GET /api/v1/mesh/topology", fixed("GET", "/api/v1/mesh/topology", nil), [8]int{401, 401, allowed, allowed, allowed, allowed, 403, 403}, nil},
	{"GET /api/v1/mesh/nodes", fixed("GET", "/api/v1/mesh/nodes", nil), adminsOnly, nil},
	{"DELETE /api/v1/mesh/nodes/{id}", func(t *testing.T, h *home, p string) request {
		return request{"DELETE", "/api/v1/mesh/nodes/" + pairMeshNode(t, h.conn, h.tokens[pOwner], "spare "+p, "matrix-"+slug(p)), nil}
	}, adminsOnly, nil},
	{"GET /api/v1/rooms", fixed("GET", "/api/v1/rooms", nil), authedAll, nil},
	{"POST /api/v1/rooms", func(_ *testing.T, _ *home, p string) request {
		return request{"POST", "/api/v1/rooms", map[string]string{"name": "Room of " + p}}
	}, adminsOnly, nil},
	{"DELETE /api/v1/rooms/{id}", func(t *testing.T, h *home, p string) request {
		r, err := h.registry.CreateRoom(context.Background(), "Spare "+p)
		if err != nil {
			t.Fatal(err)
		}
		return request{"DELETE", "/api/v1/rooms/" + r.ID, nil}
	}, adminsOnly, nil},

	{"POST /api/v1/credentials", fixed("POST", "/api/v1/credentials", map[string]any{"name": "z2m", "allow": []string{"z2m/#"}}), adminsOnly, nil},
	{"GET /api/v1/credentials", fixed("GET", "/api/v1/credentials", nil), adminsOnly, nil},
	{"DELETE /api/v1/credentials/{username}", func(t *testing.T, h *home, p string) request {
		c, err := h.authSvc.IssueCredential(context.Background(), "spare "+p, []string{"spare/#"})
		if err != nil {
			t.Fatal(err)
		}
		return request{"DELETE", "/api/v1/credentials/" + c.Username, nil}
	}, adminsOnly, nil},

	{"POST /api/v1/users", func(_ *testing.T, _ *home, p string) request {
		return request{"POST", "/api/v1/users", map[string]string{"username": "new-" + slug(p), "password": testPassword, "role": auth.RoleGuest}}
	}, adminsOnly, nil},
	{"GET /api/v1/users", fixed("GET", "/api/v1/users", nil), adminsOnly, nil},
	{"GET /api/v1/users/{username}", fixed("GET", "/api/v1/users/gus", nil), adminsOnly, nil},
	{"PATCH /api/v1/users/{username}", func(t *testing.T, h *home, p string) request {
		return request{"PATCH", "/api/v1/users/" + h.spareUser(t, p), map[string]any{"scope": map[string]any{"kinds": []string{"light"}}}}
	}, adminsOnly, nil},
	{"DELETE /api/v1/users/{username}", func(t *testing.T, h *home, p string) request {
		return request{"DELETE", "/api/v1/users/" + h.spareUser(t, p), nil}
	}, adminsOnly, nil},
	{"GET /api/v1/me", fixed("GET", "/api/v1/me", nil), authedAll, nil},
	// A new password that is too short: refused with 400 only once the
	// caller was authorised, so a password is never changed here.
	{"POST /api/v1/auth/password", fixed("POST", "/api/v1/auth/password", map[string]string{"current_password": testPassword, "new_password": "short"}), authedAll, nil},
	{"POST /api/v1/pairings", fixed("POST", "/api/v1/pairings", map[string]string{"name": "sensor"}), adminsOnly, nil},
	{"POST /api/v1/tokens", func(_ *testing.T, _ *home, p string) request {
		return request{"POST", "/api/v1/tokens", map[string]string{"name": "integration of " + p}}
	}, [8]int{401, 401, allowed, allowed, allowed, 403, 403, allowed}, nil},
	{"GET /api/v1/tokens", fixed("GET", "/api/v1/tokens", nil), authedAll, nil},
	// The owner's token: members and guests cannot even see it exists.
	{"DELETE /api/v1/tokens/{id}", func(t *testing.T, h *home, p string) request {
		tok := decode[auth.IntegrationToken](t, h.do(t, "POST", "/api/v1/tokens", h.tokens[pOwner],
			map[string]string{"name": "spare for " + p}), http.StatusCreated)
		return request{"DELETE", "/api/v1/tokens/" + tok.ID, nil}
	}, [8]int{401, 401, allowed, allowed, 404, 404, 404, 404}, nil},
	{"GET /api/v1/audit", fixed("GET", "/api/v1/audit", nil), adminsOnly, nil},
	{"POST /api/v1/auth/passkeys/login/begin", fixed("POST", "/api/v1/auth/passkeys/login/begin", map[string]string{"username": "gus"}), public, nil},
	{"POST /api/v1/auth/passkeys/login/finish", fixed("POST", "/api/v1/auth/passkeys/login/finish", map[string]any{"session_id": "forged", "credential": map[string]any{}}), refusedAll, nil},
	{"POST /api/v1/auth/passkeys/register/begin", fixed("POST", "/api/v1/auth/passkeys/register/begin", nil), authedAll, nil},
	// A forged ceremony: refused with 400 only once the caller was authorised.
	{"POST /api/v1/auth/passkeys/register/finish", fixed("POST", "/api/v1/auth/passkeys/register/finish", map[string]any{"session_id": "forged", "name": "key", "credential": map[string]any{}}), authedAll, nil},
	{"GET /api/v1/auth/passkeys", fixed("GET", "/api/v1/auth/passkeys", nil), authedAll, nil},
	// Nobody has a passkey "nope": not found, once authenticated.
	{"DELETE /api/v1/auth/passkeys/{id}", fixed("DELETE", "/api/v1/auth/passkeys/nope", nil), [8]int{401, 401, 404, 404, 404, 404, 404, 404}, nil},
	{"GET /api/v1/auth/mfa", fixed("GET", "/api/v1/auth/mfa", nil), authedAll, nil},
	{"POST /api/v1/auth/mfa/totp", fixed("POST", "/api/v1/auth/mfa/totp", nil), authedAll, nil},
	// A code that cannot be one: refused with 400 only once the caller was
	// authorised, so nobody's TOTP is enabled here.
	{"POST /api/v1/auth/mfa/totp/confirm", fixed("POST", "/api/v1/auth/mfa/totp/confirm", map[string]string{"code": "abcdef"}), authedAll, nil},
	// Nobody has TOTP enabled: a conflict, once authenticated.
	{"DELETE /api/v1/auth/mfa/totp", fixed("DELETE", "/api/v1/auth/mfa/totp", map[string]string{"password": testPassword, "code": "123456"}),
		[8]int{401, 401, 409, 409, 409, 409, 409, 409}, nil},
	{"GET /api/v1/events", fixed("WEBSOCKET", "/api/v1/events", nil), authedAll, nil},
	// Tokens signed before a rotation stay valid, so the columns after the
	// owner are unaffected.
	{"POST /api/v1/auth/keys/rotate", fixed("POST", "/api/v1/auth/keys/rotate", nil), [8]int{401, 401, allowed, 403, 403, 403, 403, 403}, nil},
	// Last: it ends every session of the caller, who logs in again after.
	{"POST /api/v1/auth/revoke-all", fixed("POST", "/api/v1/auth/revoke-all", nil), authedAll, func(t *testing.T, h *home, p string) {
		if name := h.users[p]; name != "" {
			h.tokens[p] = h.loginAs(t, name).AccessToken
		}
	}},
}

// spareUser creates a guest to change or delete, a fresh one per call.
func (h *home) spareUser(t *testing.T, principal string) string {
	t.Helper()
	name := fmt.Sprintf("spare-%s-%d", slug(principal), time.Now().UnixNano())
	decode[auth.User](t, h.do(t, "POST", "/api/v1/users", h.tokens[pOwner],
		map[string]string{"username": name, "password": testPassword, "role": auth.RoleGuest}), http.StatusCreated)
	return name
}

// status makes req as principal and returns the status. WEBSOCKET opens
// the event stream: with a token in the header it upgrades (101) or is
// refused with a plain status.
func (h *home) status(t *testing.T, req request, principal string) int {
	t.Helper()
	token := h.tokens[principal]
	if req.method != "WEBSOCKET" {
		return h.do(t, req.method, req.path, token, req.body).status
	}
	if token == "" {
		return h.do(t, "GET", req.path, "", nil).status
	}
	c, resp, err := dial(t, h.srv.URL, token)
	if err != nil {
		if resp == nil {
			t.Fatalf("dial: %v", err)
		}
		return resp.StatusCode
	}
	if m := mustRead(t, c); m["type"] != "auth_ok" {
		t.Fatalf("first message = %v, want auth_ok", m)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	return resp.StatusCode
}

// TestAuthorizationMatrix calls every route the gateway registers as every
// principal, against real services, and checks who is let through.
func TestAuthorizationMatrix(t *testing.T) {
	h := newHome(t)
	rows := map[string]matrixRow{}
	for _, row := range matrix {
		rows[row.route] = row
	}
	registered := gateway.Routes(h.gw)
	for _, route := range registered {
		if _, ok := rows[route]; !ok {
			t.Errorf("route %s has no row in the authorization matrix", route)
		}
	}
	for route := range rows {
		if !slices.Contains(registered, route) {
			t.Errorf("matrix row %s names no registered route", route)
		}
	}
	for _, row := range matrix {
		for i, p := range principals {
			t.Run(row.route+"/"+p, func(t *testing.T) {
				got := h.status(t, row.call(t, h, p), p)
				if row.then != nil {
					row.then(t, h, p)
				}
				want := row.want[i]
				if want == allowed {
					if got >= 300 && got != http.StatusBadRequest {
						t.Errorf("status %d, want it allowed (1xx, 2xx or 400)", got)
					}
					return
				}
				if got != want {
					t.Errorf("status %d, want %d", got, want)
				}
			})
		}
	}

	t.Run("a guest's unlock is audited as denied", func(t *testing.T) {
		h.wantAudit(t, auth.AuditCommandDenied, "gus", "door_lock")
		h.wantAudit(t, auth.AuditCommand, testOwner, "door_lock")
		h.wantAudit(t, auth.AuditCommandDenied, "sally", "door_lock") // out of scope: 404, audited all the same
	})
}

// auditRecords reads the whole audit log as the owner, through
// GET /api/v1/audit.
func (h *home) auditRecords(t *testing.T) []auth.AuditRecord {
	t.Helper()
	var out []auth.AuditRecord
	path := "/api/v1/audit"
	for {
		p := decode[auth.AuditPage](t, h.do(t, "GET", path, h.tokens[pOwner], nil), http.StatusOK)
		out = append(out, p.Records...)
		if p.Next == 0 {
			return out
		}
		path = fmt.Sprintf("/api/v1/audit?after=%d", p.Next)
	}
}

// wantAudit checks that the audit log holds an entry of action by actor on
// target.
func (h *home) wantAudit(t *testing.T, action, actor, target string) {
	t.Helper()
	hmtest.WaitFor(t, 5*time.Second, "audit entry "+action+" by "+actor+" on "+target, func() bool {
		for _, r := range h.auditRecords(t) {
			if r.Action == action && r.Actor == actor && r.Target == target {
				return true
			}
		}
		return false
	})
}

func TestScopesNarrowWhatIsSeenAndCommanded(t *testing.T) {
	h := newHome(t)
	ids := func(t *testing.T, path, principal string) []string {
		t.Helper()
		var out []string
		for _, v := range decode[[]map[string]any](t, h.do(t, "GET", path, h.tokens[principal], nil), 200) {
			out = append(out, v["id"].(string))
		}
		return out
	}
	every := []string{"alarm_panel", "bedroom_temperature", "door_lock", "lamp_light"}
	tests := []struct {
		principal                string
		entities, devices, rooms []string
	}{
		{pOwner, every, []string{"alarm", "bedsensor", "door", "lamp"}, []string{"bedroom", "hall", "living_room"}},
		{pGuest, every, []string{"alarm", "bedsensor", "door", "lamp"}, []string{"bedroom", "hall", "living_room"}},
		{pScopedGst, []string{"lamp_light"}, []string{"lamp"}, []string{"living_room"}},
		{pScopedMem, []string{"bedroom_temperature"}, []string{"bedsensor"}, []string{"bedroom"}},
	}
	for _, tt := range tests {
		t.Run(tt.principal, func(t *testing.T) {
			if diff := cmp.Diff(tt.entities, ids(t, "/api/v1/entities", tt.principal)); diff != "" {
				t.Errorf("entities (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.devices, ids(t, "/api/v1/devices", tt.principal)); diff != "" {
				t.Errorf("devices (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.rooms, ids(t, "/api/v1/rooms", tt.principal)); diff != "" {
				t.Errorf("rooms (-want +got):\n%s", diff)
			}
		})
	}

	commands := []struct {
		name, principal, entity, command string
		want                             int
	}{
		{"a guest switches a light", pGuest, "lamp_light", "turn_on", 202},
		{"a scoped guest switches the living-room light", pScopedGst, "lamp_light", "toggle", 202},
		{"a guest never disarms the alarm", pGuest, "alarm_panel", "alarm_disarm", 403},
		{"a guest never locks either", pGuest, "door_lock", "lock", 403},
		{"a member disarms the alarm", pMember, "alarm_panel", "alarm_disarm", 202},
		{"a scoped member cannot reach the lamp", pScopedMem, "lamp_light", "turn_on", 404},
		{"a scoped guest cannot reach the bedroom", pScopedGst, "bedroom_temperature", "turn_on", 404},
	}
	// Letters in the code keep it from turning up by chance inside the
	// nanosecond digits of a log line's timestamp.
	const alarmCode = "4711-secret-code"
	for _, tt := range commands {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(t, "POST", "/api/v1/entities/"+tt.entity+"/commands", h.tokens[tt.principal],
				map[string]any{"command": tt.command, "params": map[string]string{"code": alarmCode}})
			if r.status != tt.want {
				t.Fatalf("status %d, want %d; body %s", r.status, tt.want, r.body)
			}
			if tt.want == 404 && !strings.Contains(string(r.body), "no entity") {
				t.Errorf("a hidden entity answers differently from a missing one: %s", r.body)
			}
		})
	}
	h.wantAudit(t, auth.AuditCommandDenied, "gus", "alarm_panel")
	h.wantAudit(t, auth.AuditCommand, "mia", "alarm_panel")
	raw, _ := json.Marshal(h.auditRecords(t))
	if strings.Contains(string(raw), alarmCode) || strings.Contains(h.logs.String(), alarmCode) {
		t.Error("an alarm code reached the audit log or a log line")
	}

	// A device moved into the scoped guest's room becomes visible to them.
	if r := h.do(t, "PATCH", "/api/v1/devices/bedsensor", h.tokens[pAdmin], map[string]string{"room_id": "living_room"}); r.status != 200 {
		t.Fatalf("move: status %d, body %s", r.status, r.body)
	}
	if got := ids(t, "/api/v1/devices", pScopedMem); len(got) != 0 {
		t.Errorf("the scoped member still sees %v after the move", got)
	}
	if r := h.do(t, "PATCH", "/api/v1/devices/bedsensor", h.tokens[pAdmin], map[string]string{"room_id": "attic"}); r.status != 400 {
		t.Errorf("move to an unknown room: status %d, want 400", r.status)
	}
}

func TestUsersAPI(t *testing.T) {
	h := newHome(t)
	owner := h.tokens[pOwner]
	bad := []struct {
		name, body, field string
	}{
		{"scope and scopes", `{"username":"x","password":"correct horse","role":"guest","scope":{},"scopes":{}}`, "scopes"},
		{"bad kind", `{"username":"x","password":"correct horse","role":"guest","scopes":{"kinds":["light","toaster"]}}`, "scopes.kinds[1]"},
		{"bad room", `{"username":"x","password":"correct horse","role":"guest","scope":{"rooms":["Living Room"]}}`, "scope.rooms[0]"},
		{"unknown role", `{"username":"x","password":"correct horse","role":"root"}`, "role"},
		{"no role", `{"username":"x","password":"correct horse"}`, "role"},
		{"unknown field", `{"username":"x","password":"correct horse","role":"guest","admin":true}`, "admin"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			h.do(t, "POST", "/api/v1/users", owner, tt.body).wantError(t, 400, "invalid", tt.field)
		})
	}
	h.do(t, "POST", "/api/v1/users", owner, map[string]string{"username": "gus", "password": testPassword, "role": "guest"}).
		wantError(t, 409, "conflict", "username")
	h.do(t, "POST", "/api/v1/users", h.tokens[pAdmin], map[string]string{"username": "eve", "password": testPassword, "role": "admin"}).
		wantError(t, 403, "permission", "")
	h.do(t, "PATCH", "/api/v1/users/alice", owner, map[string]string{"role": "member"}).wantError(t, 409, "conflict", "")
	h.do(t, "PATCH", "/api/v1/users/gus", owner, `{}`).wantError(t, 400, "invalid", "body")

	r := h.do(t, "GET", "/api/v1/users", owner, nil)
	if strings.Contains(string(r.body), "argon2") || strings.Contains(string(r.body), "password") {
		t.Fatalf("the user list shows a secret: %s", r.body)
	}
	if n := len(decode[[]auth.User](t, r, 200)); n != 6 {
		t.Errorf("%d users listed, want 6", n)
	}
	me := decode[auth.User](t, h.do(t, "GET", "/api/v1/me", h.tokens[pScopedGst], nil), 200)
	if me.Username != "sally" || me.Role != auth.RoleGuest || !cmp.Equal(me.Scope.Kinds, []string{"light"}) {
		t.Errorf("me = %+v", me)
	}

	// A scope change takes effect at once: the old token is refused and the
	// next login sees the new scope.
	old := h.tokens[pScopedGst]
	decode[auth.User](t, h.do(t, "PATCH", "/api/v1/users/sally", h.tokens[pAdmin], map[string]any{"scopes": map[string]any{"rooms": []string{"bedroom"}}}), 200)
	hmtest.WaitFor(t, 5*time.Second, "the old token to be refused", func() bool {
		return h.do(t, "GET", "/api/v1/entities", old, nil).status == 401
	})
	fresh := h.loginAs(t, "sally").AccessToken
	es := decode[[]homemesh.Entity](t, h.do(t, "GET", "/api/v1/entities", fresh, nil), 200)
	if len(es) != 1 || es[0].ID != "bedroom_temperature" {
		t.Errorf("entities after the scope change = %+v", es)
	}

	// Changing one's own password: a wrong current one is refused; the
	// right one returns fresh tokens and ends the other sessions.
	h.do(t, "POST", "/api/v1/auth/password", fresh, map[string]string{"current_password": "not the password", "new_password": testPassword + "!"}).
		wantError(t, 403, "permission", "current_password")
	next := decode[auth.Tokens](t, h.do(t, "POST", "/api/v1/auth/password", fresh,
		map[string]string{"current_password": testPassword, "new_password": testPassword + "!"}), 200)
	if r := h.do(t, "GET", "/api/v1/me", next.AccessToken, nil); r.status != 200 {
		t.Errorf("the continued session: status %d", r.status)
	}
	hmtest.WaitFor(t, 5*time.Second, "the other session to end", func() bool {
		return h.do(t, "GET", "/api/v1/me", fresh, nil).status == 401
	})

	if r := h.do(t, "DELETE", "/api/v1/users/sally", h.tokens[pAdmin], nil); r.status != 204 {
		t.Fatalf("delete: status %d, body %s", r.status, r.body)
	}
	hmtest.WaitFor(t, 5*time.Second, "the deleted user's token to be refused", func() bool {
		return h.do(t, "GET", "/api/v1/entities", next.AccessToken, nil).status == 401
	})
	h.do(t, "GET", "/api/v1/users/sally", owner, nil).wantError(t, 404, "not_found", "")
}

func TestEventsFollowScopeAndRole(t *testing.T) {
	h := newHome(t)
	open := func(principal string) *websocket.Conn {
		c, _, err := dial(t, h.srv.URL, h.tokens[principal])
		if err != nil {
			t.Fatal(err)
		}
		if m := mustRead(t, c); m["type"] != "auth_ok" {
			t.Fatalf("first message = %v", m)
		}
		return c
	}
	guest, owner, member := open(pScopedGst), open(pOwner), open(pMember)

	// The door changes first, then the lamp: the scoped guest's first
	// state change must be the lamp's.
	report := func(device, entity string, value any) {
		if err := h.registry.Report(homemesh.StateUpdate{DeviceID: device, EntityID: entity, Value: value, HasValue: true, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := h.registry.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	report("door", "door_lock", "unlocked")
	report("lamp", "lamp_light", "on")
	if m := readUntil(t, guest, "state_changed"); m["entity_id"] != "lamp_light" {
		t.Errorf("the scoped guest saw %v", m["entity_id"])
	}
	if m := readUntil(t, owner, "state_changed"); m["entity_id"] != "door_lock" {
		t.Errorf("the owner's first change is %v, want door_lock", m["entity_id"])
	}

	// A credential revocation reaches the owner, not a member.
	cred, err := h.authSvc.IssueCredential(context.Background(), "events", []string{"events/#"})
	if err != nil {
		t.Fatal(err)
	}
	if r := h.do(t, "DELETE", "/api/v1/credentials/"+cred.Username, h.tokens[pOwner], nil); r.status != 204 {
		t.Fatalf("delete credential: %d", r.status)
	}
	readUntil(t, owner, auth.EventCredentialRevoked)
	report("bedsensor", "bedroom_temperature", 19.5)
	for {
		m := mustRead(t, member)
		if m["type"] == auth.EventCredentialRevoked {
			t.Fatal("a member received a credential revocation")
		}
		if m["type"] == "state_changed" && m["entity_id"] == "bedroom_temperature" {
			break
		}
	}

	// Renewing with a token of the same user is fine; a session cannot
	// change its scope by renewing, so the guest's role change ends it.
	send(t, guest, map[string]string{"type": "auth", "access_token": h.loginAs(t, "sally").AccessToken})
	readUntil(t, guest, "auth_ok")
	decode[auth.User](t, h.do(t, "PATCH", "/api/v1/users/sally", h.tokens[pOwner], map[string]any{"scope": map[string]any{}}), 200)
	if got := closeStatus(t, guest); got != websocket.StatusPolicyViolation {
		t.Errorf("close status after the revocation = %v, want policy violation", got)
	}
}

func TestEventsReverifyTheToken(t *testing.T) {
	gateway.SetReverifyEvery(100 * time.Millisecond)
	t.Cleanup(func() { gateway.SetReverifyEvery(30 * time.Second) })
	h := newHome(t)
	c, _, err := dial(t, h.srv.URL, h.tokens[pGuest])
	if err != nil {
		t.Fatal(err)
	}
	if m := mustRead(t, c); m["type"] != "auth_ok" {
		t.Fatalf("first message = %v", m)
	}
	// A revocation stored without its event, as a verifier that missed the
	// event sees it: the periodic re-check alone must end the session. The
	// auth service keeps revocations in this bucket, keyed by user ID.
	gus := decode[auth.User](t, h.do(t, "GET", "/api/v1/users/gus", h.tokens[pOwner], nil), 200)
	kv, err := h.conn.JetStream().KeyValue(context.Background(), "auth-"+testHome+"-revocations")
	if err != nil {
		t.Fatal(err)
	}
	rev, _ := json.Marshal(auth.Revocation{UserID: gus.ID, NotBefore: time.Now().Add(2 * time.Second).Truncate(time.Second)})
	if _, err := kv.Put(context.Background(), gus.ID, rev); err != nil {
		t.Fatal(err)
	}
	if got := closeStatus(t, c); got != websocket.StatusPolicyViolation {
		t.Errorf("close status = %v, want policy violation", got)
	}
}
