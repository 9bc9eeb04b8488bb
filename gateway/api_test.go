package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/gateway"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go"
)

func TestOnboardLoginRefresh(t *testing.T) {
	e := newEnv(t, envOptions{})
	code := e.authSvc.OnboardingCode()

	tests := []struct {
		name       string
		path       string
		body       any
		wantStatus int
		wantKind   string
		wantField  string
	}{
		{"onboard with a wrong code", "/api/v1/onboard", map[string]string{"code": "nope", "username": testOwner, "password": testPassword}, 403, "permission", ""},
		{"onboard without a code", "/api/v1/onboard", map[string]string{"username": testOwner, "password": testPassword}, 400, "invalid", "code"},
		{"onboard with a weak password", "/api/v1/onboard", map[string]string{"code": code, "username": testOwner, "password": "x"}, 400, "invalid", "password"},
		{"onboard", "/api/v1/onboard", map[string]string{"code": code, "username": testOwner, "password": testPassword}, 201, "", ""},
		{"onboard twice", "/api/v1/onboard", map[string]string{"code": code, "username": "mallory", "password": testPassword}, 409, "conflict", ""},
		{"login with a wrong password", "/api/v1/auth/login", map[string]string{"username": testOwner, "password": "wrong password!"}, 401, "unauthenticated", ""},
		{"login without a user name", "/api/v1/auth/login", map[string]string{"password": testPassword}, 400, "invalid", "username"},
		{"refresh with garbage", "/api/v1/auth/refresh", map[string]string{"refresh_token": "garbage"}, 401, "unauthenticated", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, "POST", tt.path, "", tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
			if tt.wantKind == "" {
				return
			}
			got := r.apiError(t)
			if got.Kind != tt.wantKind || got.Field != tt.wantField {
				t.Errorf("error = %+v, want kind %q field %q", got, tt.wantKind, tt.wantField)
			}
		})
	}

	t.Run("login and refresh", func(t *testing.T) {
		tok := e.login(t)
		if tok.AccessToken == "" || tok.RefreshToken == "" || tok.ExpiresIn <= 0 || tok.TokenType != "Bearer" {
			t.Fatalf("login tokens incomplete: expires_in %d, type %q", tok.ExpiresIn, tok.TokenType)
		}
		if r := e.do(t, "GET", "/api/v1/devices", tok.AccessToken, nil); r.status != 200 {
			t.Fatalf("access token refused: %d %s", r.status, r.body)
		}
		next := decode[auth.Tokens](t, e.do(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": tok.RefreshToken}), 200)
		if next.RefreshToken == tok.RefreshToken || next.AccessToken == "" {
			t.Error("refresh did not rotate the pair")
		}
		// The spent refresh token is refused.
		if r := e.do(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": tok.RefreshToken}); r.status != 401 {
			t.Errorf("reused refresh token: status %d, want 401", r.status)
		}
	})
}

// protectedRoutes lists every route the OpenAPI document marks as needing
// a token, with path parameters filled in.
func protectedRoutes(t *testing.T) [][2]string {
	t.Helper()
	var spec struct {
		Paths map[string]map[string]struct {
			Security *[]map[string][]string `json:"security"`
		} `json:"paths"`
	}
	r := newPlainEnv(t).do(t, "GET", "/api/v1/openapi.json", "", nil)
	if err := json.Unmarshal(r.body, &spec); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var out [][2]string
	for path, ops := range spec.Paths {
		for method, op := range ops {
			if op.Security != nil && len(*op.Security) == 0 {
				continue // public
			}
			out = append(out, [2]string{strings.ToUpper(method), param.ReplaceAllString(path, "x1")})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][1]+out[i][0] < out[j][1]+out[j][0] })
	if len(out) < 8 {
		t.Fatalf("only %d protected routes in the spec", len(out))
	}
	return out
}

// newPlainEnv is a gateway without services, enough for routing and
// decoding tests that never reach the bus.
func newPlainEnv(t *testing.T) *env {
	t.Helper()
	s := bustest.Server(t)
	conn := bustest.Conn(t, s)
	gw, srv := serveGateway(t, gateway.Config{Home: testHome}, gatewayDeps(conn, hmtest.Logger(t)))
	return &env{srv: srv, gw: gw, nats: s, conn: conn}
}

func TestProtectedRoutesRequireAValidToken(t *testing.T) {
	e := newEnv(t, envOptions{accessTTL: 2 * time.Second})
	expired := e.onboard(t).AccessToken
	hmtest.WaitFor(t, 10*time.Second, "the access token to expire", func() bool {
		return e.do(t, "GET", "/api/v1/devices", expired, nil).status == 401
	})

	tokens := []struct {
		name   string
		header string
	}{
		{"missing", ""},
		{"not bearer", "Basic YWxpY2U6cGFzc3dvcmQ="},
		{"empty bearer", "Bearer "},
		{"garbage", "Bearer not-a-token"},
		{"tampered", "Bearer " + expired[:len(expired)-4] + "AAAA"},
		{"expired", "Bearer " + expired},
	}
	for _, rt := range protectedRoutes(t) {
		for _, tk := range tokens {
			t.Run(rt[0]+" "+rt[1]+"/"+tk.name, func(t *testing.T) {
				req, _ := http.NewRequest(rt[0], e.srv.URL+rt[1], strings.NewReader(`{}`))
				if tk.header != "" {
					req.Header.Set("Authorization", tk.header)
				}
				resp, err := e.srv.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				var body struct{ Error apiError }
				_ = json.NewDecoder(resp.Body).Decode(&body)
				if resp.StatusCode != 401 || body.Error.Kind != "unauthenticated" {
					t.Errorf("status %d, error %+v; want 401 unauthenticated", resp.StatusCode, body.Error)
				}
				if resp.Header.Get("WWW-Authenticate") == "" {
					t.Error("no WWW-Authenticate header")
				}
			})
		}
	}
}

func seed(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	for _, d := range []homemesh.Device{
		{ID: "lamp1", Name: "Desk lamp", Manufacturer: "Acme", Source: "mqtt"},
		{ID: "thermo1", Name: "Thermometer", Source: "mqtt"},
	} {
		if _, err := e.registry.PutDevice(ctx, d); err != nil {
			t.Fatalf("PutDevice %s: %v", d.ID, err)
		}
	}
	for _, en := range []homemesh.Entity{
		{ID: "lamp1_light", DeviceID: "lamp1", UniqueID: "0xabc_light", Kind: homemesh.KindLight, Name: "Desk lamp",
			Capabilities: homemesh.Capabilities{ColorModes: []string{"brightness"}, Commands: []string{"turn_on", "turn_off", "toggle"}}},
		{ID: "thermo1_temperature", DeviceID: "thermo1", UniqueID: "0xdef_temp", Kind: homemesh.KindSensor, Name: "Temperature",
			DeviceClass: "temperature", Unit: "°C"},
	} {
		if _, err := e.registry.PutEntity(ctx, en); err != nil {
			t.Fatalf("PutEntity %s: %v", en.ID, err)
		}
	}
	avail := true
	for _, u := range []homemesh.StateUpdate{
		{DeviceID: "lamp1", EntityID: "lamp1_light", Value: "on", HasValue: true, Attributes: map[string]any{"brightness": 200.0}, Available: &avail, Time: time.Now()},
		{DeviceID: "thermo1", EntityID: "thermo1_temperature", Value: 21.5, HasValue: true, Available: &avail, Time: time.Now()},
	} {
		if err := e.registry.Report(u); err != nil {
			t.Fatal(err)
		}
	}
	hmtest.WaitFor(t, 10*time.Second, "the reports to be stored", func() bool {
		en, err := e.registry.Entity(ctx, "thermo1_temperature")
		return err == nil && en.State.Value == 21.5
	})
}

func TestDevicesAndEntities(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	seed(t, e)

	t.Run("list devices", func(t *testing.T) {
		ds := decode[[]homemesh.Device](t, e.do(t, "GET", "/api/v1/devices", tok, nil), 200)
		var ids []string
		for _, d := range ds {
			ids = append(ids, d.ID)
		}
		if diff := cmp.Diff([]string{"lamp1", "thermo1"}, ids); diff != "" {
			t.Errorf("device IDs (-want +got):\n%s", diff)
		}
	})
	t.Run("get device", func(t *testing.T) {
		d := decode[homemesh.Device](t, e.do(t, "GET", "/api/v1/devices/lamp1", tok, nil), 200)
		want := homemesh.Device{ID: "lamp1", HomeID: testHome, Name: "Desk lamp", Manufacturer: "Acme", Source: "mqtt"}
		if diff := cmp.Diff(want, d, cmpopts.IgnoreFields(homemesh.Device{}, "CreatedAt", "UpdatedAt")); diff != "" {
			t.Errorf("device (-want +got):\n%s", diff)
		}
	})
	t.Run("get entity JSON", func(t *testing.T) {
		r := e.do(t, "GET", "/api/v1/entities/lamp1_light", tok, nil)
		raw := decode[map[string]any](t, r, 200)
		for _, k := range []string{"id", "unique_id", "kind", "device_id", "name", "state"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("entity JSON lacks %q: %s", k, r.body)
			}
		}
		st, _ := raw["state"].(map[string]any)
		for _, k := range []string{"value", "attributes", "available", "changed_at"} {
			if _, ok := st[k]; !ok {
				t.Errorf("state JSON lacks %q: %s", k, r.body)
			}
		}
		got := decode[homemesh.Entity](t, r, 200)
		if got.UniqueID != "0xabc_light" || got.Kind != homemesh.KindLight || got.State.Value != "on" || !got.State.Available {
			t.Errorf("entity = %+v", got)
		}
	})

	ids := func(es []homemesh.Entity) []string {
		out := []string{}
		for _, en := range es {
			out = append(out, en.ID)
		}
		return out
	}
	lists := []struct {
		name  string
		query string
		want  []string
	}{
		{"all", "", []string{"lamp1_light", "thermo1_temperature"}},
		{"by device", "?device_id=thermo1", []string{"thermo1_temperature"}},
		{"by kind", "?kind=light", []string{"lamp1_light"}},
		{"by device and kind", "?device_id=thermo1&kind=light", []string{}},
	}
	for _, tt := range lists {
		t.Run("list entities "+tt.name, func(t *testing.T) {
			es := decode[[]homemesh.Entity](t, e.do(t, "GET", "/api/v1/entities"+tt.query, tok, nil), 200)
			if diff := cmp.Diff(tt.want, ids(es)); diff != "" {
				t.Errorf("entity IDs (-want +got):\n%s", diff)
			}
		})
	}

	errs := []struct {
		name       string
		path       string
		wantStatus int
		wantKind   string
		wantField  string
	}{
		{"unknown device", "/api/v1/devices/nope", 404, "not_found", ""},
		{"unknown entity", "/api/v1/entities/nope", 404, "not_found", ""},
		{"invalid entity id", "/api/v1/entities/NOPE", 400, "invalid", "id"},
		{"unknown kind", "/api/v1/entities?kind=toaster", 400, "invalid", "kind"},
		{"invalid device filter", "/api/v1/entities?device_id=A.B", 400, "invalid", "device_id"},
		{"unknown query parameter", "/api/v1/entities?room=kitchen", 400, "invalid", "room"},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "GET", tt.path, tok, nil).wantError(t, tt.wantStatus, tt.wantKind, tt.wantField)
		})
	}
}

func TestCommands(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	seed(t, e)

	// A responder standing in for the MQTT edge: it records what it gets
	// and rejects brightness above 255 as the edge would.
	var (
		mu   sync.Mutex
		got  []homemesh.Command
		subj []string
	)
	sub, err := e.conn.Handle(bus.CommandSubject(testHome, "lamp1", "lamp1_light"), "edge", func(_ context.Context, msg *nats.Msg) (any, error) {
		var c homemesh.Command
		if err := json.Unmarshal(msg.Data, &c); err != nil {
			return nil, err
		}
		mu.Lock()
		got = append(got, c)
		subj = append(subj, msg.Subject)
		mu.Unlock()
		if b, ok := c.Params["brightness"].(float64); ok && b > 255 {
			return nil, homemesh.Invalid("params.brightness", "must be 0 to 255")
		}
		return struct{}{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := e.conn.Flush(); err != nil {
		t.Fatal(err)
	}

	t.Run("sent", func(t *testing.T) {
		r := e.do(t, "POST", "/api/v1/entities/lamp1_light/commands", tok, `{"command":"turn_on","params":{"brightness":128,"transition":2}}`)
		if diff := cmp.Diff(map[string]string{"status": "sent"}, decode[map[string]string](t, r, 202)); diff != "" {
			t.Errorf("reply (-want +got):\n%s", diff)
		}
		mu.Lock()
		defer mu.Unlock()
		want := []homemesh.Command{{HomeID: testHome, EntityID: "lamp1_light", Name: "turn_on",
			Params: map[string]any{"brightness": 128.0, "transition": 2.0}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("responder received (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"hm.home1.cmd.lamp1.lamp1_light"}, subj); diff != "" {
			t.Errorf("subject (-want +got):\n%s", diff)
		}
	})

	tests := []struct {
		name       string
		path       string
		body       string
		wantStatus int
		wantKind   string
		wantField  string
	}{
		{"rejected by the device service", "/api/v1/entities/lamp1_light/commands", `{"command":"turn_on","params":{"brightness":300}}`, 400, "invalid", "params.brightness"},
		{"no responder", "/api/v1/entities/thermo1_temperature/commands", `{"command":"turn_on"}`, 503, "unavailable", ""},
		{"unknown entity", "/api/v1/entities/nope/commands", `{"command":"turn_on"}`, 404, "not_found", ""},
		{"missing command", "/api/v1/entities/lamp1_light/commands", `{"params":{}}`, 400, "invalid", "command"},
		{"invalid command name", "/api/v1/entities/lamp1_light/commands", `{"command":"light.turn_on"}`, 400, "invalid", "command"},
		{"params not an object", "/api/v1/entities/lamp1_light/commands", `{"command":"turn_on","params":[1]}`, 400, "invalid", "params"},
		{"command not a string", "/api/v1/entities/lamp1_light/commands", `{"command":7}`, 400, "invalid", "command"},
		{"unknown field", "/api/v1/entities/lamp1_light/commands", `{"command":"turn_on","brightness":3}`, 400, "invalid", "brightness"},
		{"invalid parameter name", "/api/v1/entities/lamp1_light/commands", `{"command":"turn_on","params":{"Bad Name":1}}`, 400, "invalid", "params"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "POST", tt.path, tok, tt.body).wantError(t, tt.wantStatus, tt.wantKind, tt.wantField)
		})
	}
}

func TestCredentials(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken

	created := decode[auth.Credential](t, e.do(t, "POST", "/api/v1/credentials", tok,
		map[string]any{"name": "zigbee2mqtt", "allow": []string{"zigbee2mqtt/#"}}), 201)
	if created.Username == "" || created.Password == "" {
		t.Fatalf("created credential lacks username or password")
	}
	if diff := cmp.Diff([]string{"zigbee2mqtt/#"}, created.Allow); diff != "" {
		t.Errorf("allow (-want +got):\n%s", diff)
	}

	r := e.do(t, "GET", "/api/v1/credentials", tok, nil)
	if strings.Contains(string(r.body), created.Password) || strings.Contains(string(r.body), `"password":`) {
		t.Fatal("the list shows a password")
	}
	list := decode[[]auth.Credential](t, r, 200)
	want := []auth.Credential{{Username: created.Username, Kind: auth.KindPassword, Name: "zigbee2mqtt", Allow: []string{"zigbee2mqtt/#"}}}
	if diff := cmp.Diff(want, list, cmpopts.IgnoreFields(auth.Credential{}, "CreatedAt")); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	bad := []struct {
		name      string
		body      string
		wantField string
	}{
		{"no name", `{"allow":["a/#"]}`, "name"},
		{"no allow", `{"name":"x"}`, "allow"},
		{"empty filter", `{"name":"x","allow":["a/#",""]}`, "allow.1"},
		{"unknown field", `{"name":"x","allow":["a/#"],"admin":true}`, "admin"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, "POST", "/api/v1/credentials", tok, tt.body)
			if r.status != 400 {
				t.Fatalf("status = %d, want 400; body %s", r.status, r.body)
			}
			if got := r.apiError(t); got.Field != tt.wantField {
				t.Errorf("field = %q, want %q", got.Field, tt.wantField)
			}
		})
	}

	if r := e.do(t, "DELETE", "/api/v1/credentials/"+created.Username, tok, nil); r.status != 204 {
		t.Fatalf("delete: status %d, body %s", r.status, r.body)
	}
	if list := decode[[]auth.Credential](t, e.do(t, "GET", "/api/v1/credentials", tok, nil), 200); len(list) != 0 {
		t.Errorf("after delete, list = %+v", list)
	}
	if r := e.do(t, "DELETE", "/api/v1/credentials/"+created.Username, tok, nil); r.status != 404 {
		t.Errorf("second delete: status %d, want 404", r.status)
	}
}

func TestBodies(t *testing.T) {
	e := newPlainEnv(t)
	huge := `{"code":"` + strings.Repeat("a", gateway.MaxBody) + `","username":"a","password":"b"}`
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantField  string
	}{
		{"unknown field", `{"code":"c","username":"u","password":"p","admin":true}`, 400, "admin"},
		{"too large", huge, 413, "body"},
		{"empty", ``, 400, "body"},
		{"not JSON", `code=1`, 400, "body"},
		{"truncated", `{"code":"c"`, 400, "body"},
		{"an array", `[1,2]`, 400, "body"},
		{"trailing data", `{"code":"c","username":"u","password":"p"} {}`, 400, "body"},
		{"wrong type", `{"code":1,"username":"u","password":"p"}`, 400, "code"},
		{"missing field", `{"code":"c","password":"p"}`, 400, "username"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "POST", "/api/v1/onboard", "", tt.body).wantError(t, tt.wantStatus, "invalid", tt.wantField)
		})
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	e := newPlainEnv(t)
	tests := []struct {
		method, path string
		wantStatus   int
		wantKind     string
		wantAllow    string
	}{
		{"GET", "/api/v1/nope", 404, "not_found", ""},
		{"GET", "/api/v1/devices/a/b", 404, "not_found", ""},
		{"GET", "/elsewhere", 404, "not_found", ""},
		{"DELETE", "/api/v1/devices", 405, "invalid", "GET"},
		{"PUT", "/api/v1/credentials", 405, "invalid", "GET, POST"},
		{"GET", "/api/v1/auth/login", 405, "invalid", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			r := e.do(t, tt.method, tt.path, "", nil)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", r.status, tt.wantStatus, r.body)
			}
			if got := r.apiError(t); got.Kind != tt.wantKind {
				t.Errorf("kind = %q, want %q", got.Kind, tt.wantKind)
			}
			if got := r.header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow = %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestOpsEndpoints(t *testing.T) {
	e := newEnv(t, envOptions{})
	tests := []struct {
		path       string
		wantStatus int
		wantBody   string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, "ok"},
		{"/metrics", 200, `homemesh_http_requests_total{method="GET",route="GET /healthz",status="200"} 1`},
		{"/api/v1/openapi.json", 200, `"openapi": "3.1.0"`},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			r := e.do(t, "GET", tt.path, "", nil)
			if r.status != tt.wantStatus || !strings.Contains(string(r.body), tt.wantBody) {
				t.Errorf("status %d, body %.300q; want %d containing %q", r.status, r.body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// TestSecretsNeverLogged runs the secret-bearing routes, failures included,
// with the gateway logging everything, and looks for the secrets.
func TestSecretsNeverLogged(t *testing.T) {
	var logs hmtest.LogBuffer
	e := newEnv(t, envOptions{gwLog: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	code := e.authSvc.OnboardingCode()
	tok := e.onboard(t)
	seed(t, e)
	e.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": testOwner, "password": testPassword + "x"})
	next := decode[auth.Tokens](t, e.do(t, "POST", "/api/v1/auth/refresh", "", map[string]string{"refresh_token": tok.RefreshToken}), 200)
	cred := decode[auth.Credential](t, e.do(t, "POST", "/api/v1/credentials", next.AccessToken,
		map[string]any{"name": "z2m", "allow": []string{"z2m/#"}}), 201)
	e.do(t, "GET", "/api/v1/entities", next.AccessToken, nil)
	e.do(t, "POST", "/api/v1/entities/lamp1_light/commands", next.AccessToken, `{"command":"turn_on"}`) // no responder: 503, logged
	c, _, err := dial(t, e.srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	send(t, c, map[string]string{"type": "auth", "access_token": next.AccessToken})
	mustRead(t, c)

	out := logs.String()
	if !strings.Contains(out, "command") {
		t.Fatalf("the gateway logged nothing useful: %q", out)
	}
	for name, secret := range map[string]string{
		"onboarding code": code, "password": testPassword, "access token": tok.AccessToken,
		"refresh token": tok.RefreshToken, "new access token": next.AccessToken,
		"new refresh token": next.RefreshToken, "credential password": cred.Password,
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the %s appears in the logs", name)
		}
	}
}
