package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/internal/ops"
	"github.com/homemesh/homemesh/registry"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one gateway.
type Config struct {
	// Home is the ID of the home the gateway serves. Tokens of other homes
	// are refused.
	Home string
	// Listen is the host:port to bind, e.g. 127.0.0.1:8080; port 0 picks a
	// free port (see Addr).
	Listen string
	// TLSConfig, when set, makes the gateway serve HTTPS only, with TLS 1.3
	// at least. It must carry a certificate (Certificates or
	// GetCertificate).
	TLSConfig *tls.Config
}

// Deps are the gateway's collaborators.
type Deps struct {
	Bus      *natsbus.Conn
	Auth     *auth.Client
	Registry *registry.Client
	// History answers history queries; nil asks the home's history
	// service over Bus.
	History HistoryReader
	Log     *slog.Logger
	// Metrics receives the HTTP metrics and is served on /metrics. Nil
	// serves and records nothing.
	Metrics *prometheus.Registry
	// Ready reports whether the process can do its job, for /readyz. Nil
	// means always ready.
	Ready func() error
}

// Timeouts of the HTTP server and the WebSocket. Variables so tests can
// shorten them.
var (
	readHeaderTimeout = 10 * time.Second
	shutdownTimeout   = 15 * time.Second
	// commandTimeout bounds the wait for a device's answer to a command.
	commandTimeout = 5 * time.Second
)

// Gateway serves the HTTP API. Create it with New, bind with Listen, serve
// with Run; or mount Handler in a server of your own.
type Gateway struct {
	cfg     Config
	bus     *natsbus.Conn
	auth    *auth.Client
	reg     *registry.Client
	history HistoryReader
	log     *slog.Logger
	handler http.Handler
	mux     *http.ServeMux
	routes  []string // every pattern registered on mux, for the OpenAPI test
	events  *hub
	metrics *metrics

	authWait   time.Duration // see defaultAuthWait
	sendBuffer int           // see defaultSendBuffer

	// closing ends WebSocket sessions when Run shuts down; sessions counts
	// them so Run can wait until they have said goodbye.
	closing  context.Context
	close    context.CancelFunc
	sessions sync.WaitGroup

	mu sync.Mutex
	ln net.Listener
}

// New checks cfg and deps and builds the routes. It does no I/O.
func New(cfg Config, deps Deps) (*Gateway, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if deps.Bus == nil || deps.Auth == nil || deps.Registry == nil {
		return nil, errors.New("gateway: bus, auth and registry are required")
	}
	if cfg.TLSConfig != nil && len(cfg.TLSConfig.Certificates) == 0 && cfg.TLSConfig.GetCertificate == nil {
		return nil, errors.New("gateway: TLS config has no certificate")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", "gateway", "home_id", cfg.Home)
	closing, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg: cfg, bus: deps.Bus, auth: deps.Auth, reg: deps.Registry, history: deps.History, log: log,
		mux: http.NewServeMux(), closing: closing, close: cancel,
		authWait: defaultAuthWait, sendBuffer: defaultSendBuffer,
	}
	if g.history == nil {
		g.history = history.NewClient(deps.Bus, cfg.Home)
	}
	g.events = newHub(g.bus, g.reg, cfg.Home, log)
	var reg prometheus.Registerer
	if deps.Metrics != nil {
		reg = deps.Metrics
	}
	g.metrics = newMetrics(reg)
	g.routesTable(ops.Handler(deps.Ready, deps.Metrics))
	var h http.Handler = http.HandlerFunc(g.serve)
	if deps.Metrics != nil {
		h = ops.Instrument(deps.Metrics, h)
	}
	g.handler = h
	return g, nil
}

// handle registers h on pattern and remembers the pattern.
func (g *Gateway) handle(pattern string, h http.Handler) {
	g.mux.Handle(pattern, h)
	g.routes = append(g.routes, pattern)
}

// Handler returns the gateway's HTTP handler, for tests and for callers
// that run their own server.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Listen binds cfg.Listen. A taken or invalid address is an error that
// names it.
func (g *Gateway) Listen() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		return errors.New("gateway: already listening")
	}
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: cannot listen on %s: %w", g.cfg.Listen, err)
	}
	if g.cfg.TLSConfig != nil {
		tc := g.cfg.TLSConfig.Clone()
		if tc.MinVersion < tls.VersionTLS13 {
			tc.MinVersion = tls.VersionTLS13
		}
		ln = tls.NewListener(ln, tc)
	}
	g.ln = ln
	return nil
}

// Addr returns the bound address, or nil before Listen.
func (g *Gateway) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// URL returns the base URL clients reach the bound address with:
// https://host:port when the gateway serves TLS, http://host:port when
// not, "" before Listen.
func (g *Gateway) URL() string {
	addr := g.Addr()
	if addr == nil {
		return ""
	}
	scheme := "http"
	if g.cfg.TLSConfig != nil {
		scheme = "https"
	}
	return scheme + "://" + addr.String()
}

// Run serves until ctx ends, binding first if Listen was not called. It
// then stops accepting, drains in-flight requests, closes WebSockets with
// "going away", and returns nil.
func (g *Gateway) Run(ctx context.Context) error {
	if g.Addr() == nil {
		if err := g.Listen(); err != nil {
			return err
		}
	}
	g.mu.Lock()
	ln := g.ln
	g.mu.Unlock()

	srv := &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(g.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	g.log.Info("gateway listening", "addr", ln.Addr().String(), "tls", g.cfg.TLSConfig != nil)

	select {
	case err := <-errc:
		g.close()
		return fmt.Errorf("gateway: serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}

	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	g.close() // WebSockets are hijacked: Shutdown does not see them
	err := srv.Shutdown(shutCtx)
	<-errc
	done := make(chan struct{})
	go func() { g.sessions.Wait(); close(done) }()
	select {
	case <-done:
	case <-shutCtx.Done():
		err = errors.Join(err, errors.New("WebSocket sessions did not end in time"))
	}
	g.events.stop()
	if err != nil {
		g.log.Warn("gateway shutdown incomplete", "err", err)
		_ = srv.Close()
	}
	g.log.Info("gateway stopped")
	return nil
}
