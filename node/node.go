// Package node hosts homemesh services in one process. It builds the bus
// (an embedded NATS server or a connection to an external one), reads or
// creates the home's identity, binds every listener before anything starts
// (so a taken port is reported at once, naming the flag to change), and runs
// an explicit table of services until the context ends.
//
// The all-in-one hub (`homemesh up`) and each split-mode process
// (`homemesh serve registry …`) are the same Node with a different service
// list; services talk only over the bus in both.
package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/edge"
	"github.com/homemesh/homemesh/edge/broker"
	"github.com/homemesh/homemesh/gateway"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/internal/ops"
	"github.com/homemesh/homemesh/mesh/border"
	"github.com/homemesh/homemesh/registry"
	"github.com/prometheus/client_golang/prometheus"
)

// Services lists every service a node can host, in start order: each
// one's dependencies come before it, so the gateway, which asks all the
// others, comes last.
var Services = []string{"auth", "registry", "edge", "history", "border", "gateway"}

// Node is one homemesh process.
type Node struct {
	cfg     config.Config
	log     *slog.Logger
	out     io.Writer
	names   []string
	create  bool
	metrics *prometheus.Registry

	home    homemesh.Home
	server  *natsbus.Server
	conns   []*natsbus.Conn
	stores  []io.Closer // closed after the services stopped
	runners []runner
	opsSrv  *http.Server
	opsLn   net.Listener
	ready   chan struct{}
	unlock  func() // releases the data directory lock, when held

	// busIDs are the identities this node's connections present; callout
	// is set when the embedded server admits clients through auth, whose
	// callout responder stopCallout ends. natsTLS is the certificate the
	// embedded listener serves once auth has loaded the home CA.
	busIDs      *busIdentities
	callout     bool
	stopCallout func()
	natsTLS     natsTLSConfig
	maintenance bool

	// Exposed after Start for tests and the demo.
	authSvc *auth.Service
	broker  *broker.Broker
	gw      *gateway.Gateway
	border  *border.Border
}

type runner struct {
	name string
	run  func(ctx context.Context) error
	// ready, when set, is closed once the service answers; /readyz waits
	// for every one.
	ready <-chan struct{}
}

// Options select what a node hosts.
type Options struct {
	// Services to host; nil means all (the hub).
	Services []string
	// CreateHome lets the node create the home on first start. The hub
	// does; split-mode processes must find an existing one.
	CreateHome bool
	// Out receives what a person starting the hub must see (the onboarding
	// code, the addresses). Logs go to the logger.
	Out io.Writer
}

// New checks the configuration and the service list. Nothing is started
// until Start.
func New(cfg config.Config, opts Options, log *slog.Logger) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	names := opts.Services
	if len(names) == 0 {
		// The hub runs the mesh border unless --mesh turned it off.
		names = slices.DeleteFunc(slices.Clone(Services), func(s string) bool { return s == "border" && cfg.Mesh == "" })
	} else if slices.Contains(names, "border") && cfg.Mesh == "" {
		return nil, homemesh.Invalid("mesh", "the border needs the UDP address of its mesh node")
	}
	for _, n := range names {
		if !slices.Contains(Services, n) {
			return nil, homemesh.Invalid("service", "unknown service %q (known: %s)", n, strings.Join(Services, ", "))
		}
	}
	if cfg.NATSListen != "" && cfg.NATS == "" && !slices.Contains(names, "auth") {
		return nil, homemesh.Invalid("nats-listen", "only a process hosting auth can admit other processes to its bus")
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	return &Node{
		cfg: cfg, log: log, out: opts.Out, names: names, create: opts.CreateHome,
		metrics: ops.NewRegistry(), ready: make(chan struct{}),
	}, nil
}

func (n *Node) hosts(name string) bool { return slices.Contains(n.names, name) }

// Home returns the home this node serves (valid after Start).
func (n *Node) Home() homemesh.Home { return n.home }

// Auth returns the auth service when this node hosts it.
func (n *Node) Auth() *auth.Service { return n.authSvc }

// Broker returns the MQTT broker when this node hosts the edge.
func (n *Node) Broker() *broker.Broker { return n.broker }

// NATSURL is the URL other processes reach the embedded NATS server on,
// or "" when it does not listen (or the node uses an external one).
func (n *Node) NATSURL() string {
	if n.server == nil || n.cfg.NATSListen == "" {
		return ""
	}
	return n.server.ClientURL()
}

// Border returns the mesh border when this node hosts it.
func (n *Node) Border() *border.Border { return n.border }

// Gateway returns the API gateway when this node hosts it.
func (n *Node) Gateway() *gateway.Gateway { return n.gw }

// Connect opens another connection to this node's bus, for in-process
// tools such as the demo devices, benchmarks and maintenance. Where the bus
// checks identities the tools act as the auth service, the home's trust
// root, which only a holder of the secret key can be.
func (n *Node) Connect(name string) (*natsbus.Conn, error) {
	id := n.identity(auth.ServiceName)
	if n.server != nil {
		if n.callout {
			return n.server.ConnectAs(name, id)
		}
		return n.server.Connect(name)
	}
	return natsbus.DialAs(n.natsURL(), name, id, n.log)
}

func (n *Node) natsURL() string {
	if n.cfg.NATSToken == "" || strings.Contains(n.cfg.NATS, "@") {
		return n.cfg.NATS
	}
	// nats://token@host:port is how nats.go takes a token in a URL.
	return strings.Replace(n.cfg.NATS, "://", "://"+n.cfg.NATSToken+"@", 1)
}

// Start prepares the data directory, the home, the bus, every listener and
// every service. On error everything already started is stopped.
func (n *Node) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	if err := os.MkdirAll(n.cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create data directory %s (--data): %w", n.cfg.Data, err)
	}
	if n.home, err = n.loadHome(); err != nil {
		return err
	}

	// Whoever already holds the secret key derives the bus identities;
	// other processes are given theirs.
	if err := n.loadBusIdentities(n.hosts("auth") || n.cfg.NATSListen != "" || (n.maintenance && n.cfg.NATS != "")); err != nil {
		return err
	}
	if n.cfg.NATS == "" {
		if n.unlock, err = lockData(n.cfg.Data); err != nil {
			return err
		}
		scfg := natsbus.ServerConfig{
			Name: "homemesh-" + n.home.ID, StoreDir: filepath.Join(n.cfg.Data, "jetstream"),
			Listen: n.cfg.NATSListen, Token: n.cfg.NATSToken,
		}
		// A listening hub admits other processes only as services, with
		// their permissions; so do its own services. Without a listener
		// nothing outside the process reaches the server.
		if n.cfg.NATSListen != "" {
			if err := n.embeddedCallout(&scfg); err != nil {
				return err
			}
			n.callout = true
		}
		n.server, err = natsbus.StartServer(scfg, n.log.With("service", "nats", "home_id", n.home.ID))
		if err != nil {
			return fmt.Errorf("start embedded NATS (--nats-listen %s): %w", n.cfg.NATSListen, err)
		}
	}
	conn := func(service string) (*natsbus.Conn, error) {
		c, err := n.dialService(service)
		if err != nil {
			return nil, fmt.Errorf("%s: connect to NATS (--nats %s): %w", service, n.cfg.NATS, err)
		}
		n.conns = append(n.conns, c)
		return c, nil
	}

	if n.hosts("auth") {
		c, err := conn("auth")
		if err != nil {
			return err
		}
		key, previous, err := n.secretKeys()
		if err != nil {
			return err
		}
		ttl, err := n.cfg.TokenLifetime()
		if err != nil {
			return err
		}
		n.authSvc, err = auth.New(auth.Config{DataDir: n.cfg.Data, Home: n.home.ID, SecretKey: key, PreviousSecretKeys: previous, AccessTokenTTL: ttl,
			WebAuthnRPID: n.cfg.WebAuthnRPID, WebAuthnOrigins: n.cfg.WebAuthnOriginsFor(n.cfg.HTTP)},
			auth.Deps{Bus: c, Log: n.log, Metrics: n.metrics})
		if err != nil {
			return fmt.Errorf("auth: %w", err)
		}
		// The other services are admitted by this callout, so it must
		// answer before they connect.
		if n.callout || (n.cfg.NATS != "" && n.cfg.NATSToken == "") {
			if n.stopCallout, err = n.authSvc.ServeBusCallout(); err != nil {
				return fmt.Errorf("auth: %w", err)
			}
		}
		if err := n.loadNATSCertificate(); err != nil {
			return err
		}
		n.runners = append(n.runners, runner{"auth", n.authSvc.Run, n.authSvc.Ready()})
	}
	if n.hosts("registry") {
		c, err := conn("registry")
		if err != nil {
			return err
		}
		svc, err := registry.New(registry.Config{Home: n.home.ID}, registry.Deps{Bus: c, Log: n.log})
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		n.runners = append(n.runners, runner{"registry", svc.Run, svc.Ready()})
	}
	if n.hosts("edge") {
		if err := n.startEdge(ctx, conn); err != nil {
			return err
		}
	}
	if n.hosts("history") {
		if err := n.startHistory(ctx, conn); err != nil {
			return err
		}
	}
	if n.hosts("border") {
		if err := n.startBorder(conn); err != nil {
			return err
		}
	}
	if n.hosts("gateway") {
		c, err := conn("gateway")
		if err != nil {
			return err
		}
		tlsCfg, err := n.gatewayTLS(ctx, c)
		if err != nil {
			return err
		}
		n.gw, err = gateway.New(gateway.Config{Home: n.home.ID, Listen: n.cfg.HTTP, TLSConfig: tlsCfg}, gateway.Deps{
			Bus: c, Auth: auth.NewClient(c), Registry: registry.NewClient(c, n.home.ID), History: history.NewClient(c, n.home.ID),
			Log: n.log, Metrics: n.metrics, Ready: n.readyErr,
		})
		if err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
		if err := n.gw.Listen(); err != nil {
			return takenPort(err, "--http")
		}
		// With --http on port 0 the passkey origins are known only now.
		if n.authSvc != nil && len(n.cfg.WebAuthnOrigins) == 0 {
			if err := n.authSvc.SetWebAuthnOrigins(n.cfg.WebAuthnOriginsFor(n.gw.Addr().String())); err != nil {
				return fmt.Errorf("auth: %w", err)
			}
		}
		n.runners = append(n.runners, runner{"gateway", n.gw.Run, nil})
	}
	if n.cfg.Ops != "" {
		n.opsLn, err = net.Listen("tcp", n.cfg.Ops)
		if err != nil {
			return takenPort(fmt.Errorf("cannot listen on %s: %w", n.cfg.Ops, err), "--ops")
		}
		n.opsSrv = &http.Server{Handler: ops.Handler(n.readyErr, n.metrics), ReadHeaderTimeout: 5 * time.Second}
	}
	return nil
}

// serverTLS returns a server TLS configuration from the home CA: directly
// when the auth service runs in this process, else over the bus, waiting a
// little for a split-mode auth process that is still starting.
func (n *Node) serverTLS(ctx context.Context, c *natsbus.Conn, hosts []string) (*tls.Config, error) {
	if n.authSvc != nil {
		return n.authSvc.ServerTLSConfig(hosts)
	}
	client := auth.NewClient(c)
	cfg, err := client.ServerTLSConfig(ctx, hosts)
	for deadline := time.Now().Add(15 * time.Second); homemesh.ErrorKind(err) == homemesh.KindUnavailable && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		cfg, err = client.ServerTLSConfig(ctx, hosts)
	}
	return cfg, err
}

func (n *Node) startEdge(ctx context.Context, conn func(string) (*natsbus.Conn, error)) error {
	c, err := conn("edge")
	if err != nil {
		return err
	}
	rates, err := n.cfg.MQTTRates()
	if err != nil {
		return err
	}
	limits := broker.DefaultLimits()
	limits.MessagesPerSecond, limits.BytesPerSecond, limits.ConnectsPerSecond = rates.Messages, rates.Bytes, rates.Connects
	bcfg := broker.Config{Home: n.home.ID, InstanceID: homemesh.RandomID(10), TCP: n.cfg.MQTT, Limits: limits}
	if n.cfg.MQTTS != "" {
		tlsCfg, err := n.serverTLS(ctx, c, n.certHosts(n.cfg.MQTTS))
		if err != nil {
			return fmt.Errorf("edge: MQTTS certificate (--mqtts): %w", err)
		}
		bcfg.TLS, bcfg.TLSConfig = n.cfg.MQTTS, tlsCfg
		// Paired devices authenticate with certificates of the home CA.
		if bcfg.ClientCAs, err = issuerPool(tlsCfg); err != nil {
			return fmt.Errorf("edge: MQTTS client CA (--mqtts): %w", err)
		}
	}
	ac := mqttAuth{auth.NewClient(c)}
	n.broker, err = broker.New(bcfg, broker.Deps{Bus: c, Auth: ac, Audit: ac, Log: n.log, Metrics: n.metrics})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	if err := n.broker.Listen(); err != nil {
		flag := "--mqtt"
		if bcfg.TLS != "" && bcfg.TLS != bcfg.TCP && strings.Contains(err.Error(), bcfg.TLS) {
			flag = "--mqtts"
		}
		return takenPort(err, flag)
	}
	devices, err := edge.New(edge.Config{Home: n.home.ID}, edge.Deps{Bus: c, Registry: registry.NewClient(c, n.home.ID), Log: n.log})
	if err != nil {
		return fmt.Errorf("edge: %w", err)
	}
	runBroker := func(ctx context.Context) error {
		select {
		case <-devices.Ready():
		case <-ctx.Done():
			return nil
		}
		return n.broker.Run(ctx)
	}
	n.runners = append(n.runners, runner{"edge", devices.Run, devices.Ready()}, runner{"edge-broker", runBroker, n.broker.Ready()})
	return nil
}

// startBorder prepares the mesh border. Its node binds its socket once
// auth has certified the hub, when the services run; the address is tried
// here so that a taken port stops the start at once.
func (n *Node) startBorder(conn func(string) (*natsbus.Conn, error)) error {
	probe, err := net.ListenPacket("udp", n.cfg.Mesh)
	if err != nil {
		return takenPort(fmt.Errorf("cannot listen on UDP %s: %w", n.cfg.Mesh, err), "--mesh")
	}
	probe.Close()
	c, err := conn("border")
	if err != nil {
		return err
	}
	ac := auth.NewClient(c)
	hubCert := func(ctx context.Context, key []byte, addrs []string) (border.HubCert, error) {
		r, err := ac.MeshHubCert(ctx, key, addrs)
		if err != nil {
			return border.HubCert{}, err
		}
		ca, err := x509.ParseCertificate(r.CACertificate)
		if err != nil {
			return border.HubCert{}, fmt.Errorf("the home CA certificate from auth: %w", err)
		}
		return border.HubCert{Cert: r.Certificate, Roots: []*x509.Certificate{ca}}, nil
	}
	n.border, err = border.New(border.Config{
		Home: n.home.ID, DataDir: filepath.Join(n.cfg.Data, "mesh"), Listen: n.cfg.Mesh,
		Peers: n.cfg.MeshPeers, Multicast: n.cfg.MeshMulticast, Advertise: n.cfg.MeshAdvertise,
	}, border.Deps{
		Bus: c, Registry: registry.NewClient(c, n.home.ID), HubCert: hubCert, Log: n.log, Metrics: n.metrics,
		Revocations: meshRevocations{conn: c, auth: ac, home: n.home.ID, log: n.log},
	})
	if err != nil {
		return fmt.Errorf("border: %w", err)
	}
	n.runners = append(n.runners, runner{"border", n.border.Run, n.border.Ready()})
	return nil
}

// takenPort tells the person starting the process which flag to change.
func takenPort(err error, flag string) error {
	msg := err.Error()
	var he *homemesh.Error
	if errors.As(err, &he) && he.Message != "" {
		msg = he.Message
	}
	return &homemesh.Error{Kind: homemesh.KindConflict, Message: msg + "; choose another address with " + flag, Err: err}
}

// mqttAuth adapts the auth client to the broker's Authenticator.
type mqttAuth struct{ c *auth.Client }

func (a mqttAuth) AuthenticateMQTT(ctx context.Context, username, password, clientID string) (broker.Grant, error) {
	g, err := a.c.AuthenticateMQTT(ctx, username, password, clientID)
	return broker.Grant{Username: g.Username, Allow: g.Allow}, err
}

func (a mqttAuth) AuthenticateCert(ctx context.Context, certDER []byte) (broker.Grant, error) {
	g, err := a.c.AuthenticateCert(ctx, certDER)
	return broker.Grant{Username: g.Username, Allow: g.Allow}, err
}

// AuditThrottled records a throttled device in the audit log.
func (a mqttAuth) AuditThrottled(ctx context.Context, t broker.Throttled) error {
	details := map[string]string{"reason": t.Reason, "client_id": t.ClientID}
	for k, v := range map[string]int64{"dropped_messages": t.DroppedMessages, "dropped_bytes": t.DroppedBytes, "refused_connects": t.RefusedConnects} {
		if v > 0 {
			details[k] = strconv.FormatInt(v, 10)
		}
	}
	if t.Disconnected {
		details["disconnected"] = "true"
	}
	return a.c.Audit(ctx, auth.AuditEntry{Action: auth.AuditDeviceThrottled, Outcome: auth.OutcomeDenied,
		Actor: t.Username, Source: t.Remote, Target: t.ClientID, Details: details})
}

// issuerPool returns a pool holding the CA that issued cfg's server
// certificate: the home CA, which also issues device certificates. It is
// read from the certificate chain so that a split-mode edge, which only
// ever sees that chain, needs nothing more.
func issuerPool(cfg *tls.Config) (*x509.CertPool, error) {
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		return nil, err
	}
	if len(cert.Certificate) < 2 {
		return nil, errors.New("the server certificate chain lacks its CA")
	}
	ca, err := x509.ParseCertificate(cert.Certificate[len(cert.Certificate)-1])
	if err != nil {
		return nil, fmt.Errorf("parse the CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return pool, nil
}

func (n *Node) readyErr() error {
	select {
	case <-n.ready:
		return nil
	default:
	}
	for _, r := range n.runners {
		if r.ready == nil {
			continue
		}
		select {
		case <-r.ready:
		default:
			return fmt.Errorf("%s is starting", r.name)
		}
	}
	return errors.New("starting")
}

// Ready is closed once every service answers.
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Run runs every service until ctx ends or one fails, then stops them all
// and closes the bus. It returns the first failure, or nil on a clean stop.
func (n *Node) Run(ctx context.Context) error {
	defer n.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(n.runners)+1)
	for _, r := range n.runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", r.name, err)
				cancel()
			}
		}()
	}
	if n.opsSrv != nil {
		go func() {
			if err := n.opsSrv.Serve(n.opsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- fmt.Errorf("ops: %w", err)
				cancel()
			}
		}()
	}
	go func() {
		for _, r := range n.runners {
			if r.ready == nil {
				continue
			}
			select {
			case <-r.ready:
			case <-ctx.Done():
				return
			}
		}
		close(n.ready)
	}()
	<-ctx.Done()
	if n.opsSrv != nil {
		shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.opsSrv.Shutdown(shutdownCtx)
		stop()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func (n *Node) close() {
	if n.stopCallout != nil {
		n.stopCallout()
		n.stopCallout = nil
	}
	for i := len(n.conns) - 1; i >= 0; i-- {
		n.conns[i].Close()
	}
	n.conns = nil
	for i := len(n.stores) - 1; i >= 0; i-- {
		if err := n.stores[i].Close(); err != nil {
			n.log.Warn("closing a store failed", "err", err)
		}
	}
	n.stores = nil
	if n.server != nil {
		n.server.Shutdown()
		n.server = nil
	}
	if n.unlock != nil {
		n.unlock()
		n.unlock = nil
	}
}

// homeFile is where the hub remembers its home.
const homeFile = "home.json"

func (n *Node) loadHome() (homemesh.Home, error) {
	path := filepath.Join(n.cfg.Data, homeFile)
	var h homemesh.Home
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &h); err != nil || !homemesh.ValidID(h.ID) {
			return h, fmt.Errorf("%s is damaged; restore it from a backup: %v", path, err)
		}
		if n.cfg.Home != "" && n.cfg.Home != h.ID {
			return h, homemesh.Invalid("home", "%q differs from the home %q stored in %s", n.cfg.Home, h.ID, path)
		}
		return h, nil
	case !errors.Is(err, os.ErrNotExist):
		return h, fmt.Errorf("read %s: %w", path, err)
	}
	if n.cfg.Home != "" && !n.create {
		return homemesh.Home{ID: n.cfg.Home, Name: n.cfg.Home}, nil
	}
	if !n.create {
		return h, homemesh.Invalid("home", "no home in %s; pass --home or run the hub there first", n.cfg.Data)
	}
	h = homemesh.Home{ID: n.cfg.Home, Name: "Home", CreatedAt: time.Now().UTC()}
	if h.ID == "" {
		h.ID = "h" + homemesh.RandomID(9)
	}
	data, _ = json.MarshalIndent(h, "", "  ")
	if err := os.WriteFile(path, append(data, '\n'), 0o600); err != nil {
		return h, fmt.Errorf("write %s: %w", path, err)
	}
	n.log.Info("home created", "home_id", h.ID)
	return h, nil
}
