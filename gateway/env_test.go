package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/gateway"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/internal/ops"
	"github.com/homemesh/homemesh/registry"
)

const (
	testHome     = "home1"
	testOwner    = "alice"
	testPassword = "correct horse battery"
)

// env is a home with real services: embedded NATS, the registry, auth and
// a gateway behind an httptest server.
type env struct {
	srv      *httptest.Server
	gw       *gateway.Gateway
	nats     *natsbus.Server
	conn     *natsbus.Conn // the test's own connection, for responders and seeding
	registry *registry.Client
	authSvc  *auth.Service
	gwDeps   gateway.Deps
	history  *historyResponder // the home's history service
}

type envOptions struct {
	accessTTL time.Duration
	gwLog     *slog.Logger // the gateway's logger; default hmtest.Logger
	authLog   *slog.Logger // the auth service's logger; default hmtest.Logger
}

// run runs fn in a goroutine until the test ends and checks it returns nil.
func run(t testing.TB, name string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s.Run: %v", name, err)
		}
	})
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	log := hmtest.Logger(t)
	s := bustest.Server(t)

	runRegistry(t, s, log)

	authConn := bustest.Conn(t, s)
	authLog := log
	if opts.authLog != nil {
		authLog = opts.authLog
	}
	authSvc, err := auth.New(auth.Config{DataDir: t.TempDir(), Home: testHome, AccessTokenTTL: opts.accessTTL},
		auth.Deps{Bus: authConn, Log: authLog})
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	run(t, "auth", authSvc.Run)
	select {
	case <-authSvc.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("auth not ready")
	}

	gwConn := bustest.Conn(t, s)
	if opts.gwLog != nil {
		log = opts.gwLog
	}
	deps := gatewayDeps(gwConn, log)
	deps.Metrics = ops.NewRegistry()
	gw, srv := serveGateway(t, gateway.Config{Home: testHome, Listen: "127.0.0.1:0"}, deps)

	conn := bustest.Conn(t, s)
	e := &env{srv: srv, gw: gw, nats: s, conn: conn, registry: registry.NewClient(conn, testHome), authSvc: authSvc, gwDeps: deps,
		history: serveHistory(t, conn)}
	e.waitForRegistry(t)
	return e
}

// runRegistry runs a registry service for testHome on a connection of its
// own to s until the test ends.
func runRegistry(t testing.TB, s *natsbus.Server, log *slog.Logger) {
	t.Helper()
	reg, err := registry.New(registry.Config{Home: testHome}, registry.Deps{Bus: bustest.Conn(t, s), Log: log})
	if err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	run(t, "registry", reg.Run)
}

// gatewayDeps are a gateway's dependencies with its auth and registry
// clients on conn, the same connection the gateway uses for the bus.
func gatewayDeps(conn *natsbus.Conn, log *slog.Logger) gateway.Deps {
	return gateway.Deps{Bus: conn, Auth: auth.NewClient(conn), Registry: registry.NewClient(conn, testHome), Log: log}
}

// serveGateway builds a gateway and serves its handler from an httptest
// server that closes when the test ends.
func serveGateway(t testing.TB, c gateway.Config, deps gateway.Deps) (*gateway.Gateway, *httptest.Server) {
	t.Helper()
	gw, err := gateway.New(c, deps)
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewServer(gw.Handler())
	t.Cleanup(srv.Close)
	return gw, srv
}

// waitForRegistry waits until the registry answers on the test's own
// connection, so that a test's first request does not race its start.
func (e *env) waitForRegistry(t testing.TB) {
	t.Helper()
	hmtest.WaitFor(t, 10*time.Second, "registry to answer", func() bool {
		_, err := e.registry.Devices(context.Background())
		return err == nil
	})
}

// response is what a request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errorBody decodes the body as an API error.
func (r response) apiError(t *testing.T) apiError {
	t.Helper()
	var b struct {
		Error apiError `json:"error"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error.Kind == "" {
		t.Fatalf("status %d: body is not an API error: %q", r.status, r.body)
	}
	if got := r.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("error Content-Type = %q", got)
	}
	return b.Error
}

// wantError checks the status and, when kind is not empty, the error's
// kind and field.
func (r response) wantError(t *testing.T, status int, kind, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if kind == "" {
		return
	}
	if got := r.apiError(t); got.Kind != kind || got.Field != field {
		t.Errorf("error = %+v, want kind %q field %q", got, kind, field)
	}
}

type apiError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// do sends a request. body is sent as is when it is a string, as JSON
// otherwise; nil sends none.
func (e *env) do(t testing.TB, method, path, token string, body any) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// decode fails the test unless r has status want, then decodes its body.
func decode[T any](t testing.TB, r response, want int) T {
	t.Helper()
	var v T
	if r.status != want {
		t.Fatalf("status = %d, want %d; body %s", r.status, want, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// onboard creates the owner through the API and logs in.
func (e *env) onboard(t testing.TB) auth.Tokens {
	t.Helper()
	code := e.authSvc.OnboardingCode()
	if code == "" {
		t.Fatal("no onboarding code")
	}
	r := e.do(t, "POST", "/api/v1/onboard", "", map[string]string{"code": code, "username": testOwner, "password": testPassword})
	if r.status != http.StatusCreated {
		t.Fatalf("onboard: status %d, body %s", r.status, r.body)
	}
	return e.login(t)
}

func (e *env) login(t testing.TB) auth.Tokens {
	t.Helper()
	r := e.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": testOwner, "password": testPassword})
	return decode[auth.Tokens](t, r, http.StatusOK)
}
