package border

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// ServiceName is the border's name on the bus: its verbs are
// bus.ServiceSubject(ServiceName, verb), its bus identity is "border".
const ServiceName = "border"

// VerbTopology returns the mesh as this hub sees it: a Topology. The
// request is {"home": …}.
const VerbTopology = "topology"

// queueGroup spreads commands and topology requests over the home's
// border processes.
const queueGroup = "border"

// AgentsBucket is the JetStream key-value bucket in which the border keeps
// what it learned of each agent (its static key, its entities), keyed by
// node id.
func AgentsBucket(home string) string { return "hm_" + home + "_mesh_agents" }

// Config configures the border.
type Config struct {
	// Home is the ID of the home served.
	Home string
	// DataDir holds the hub's static key (mesh-hub.key) and the routing
	// seqno; it must persist across restarts.
	DataDir string
	// Listen is the UDP address of the mesh node, e.g. "0.0.0.0:4790";
	// port 0 picks a free port.
	Listen string
	// Peers are neighbour addresses (host:port) to link with.
	Peers []string
	// Advertise lists the UDP addresses (host:port) agents reach the hub
	// on, as auth hands them to pairing agents. Empty: Listen, or with an
	// unspecified host, the machine's interface addresses.
	Advertise []string
	// Multicast lists the interfaces on which neighbours are found by UDP
	// multicast; MulticastGroup overrides the group address.
	Multicast      []string
	MulticastGroup string
	// Route tunes the routing core (Hello interval …).
	Route route.Config
	// Grace is how long an agent's route may be missing before its
	// entities are marked unavailable. Default 10 s.
	Grace time.Duration
	// CommandTimeout bounds the wait for an agent's result. It must stay
	// below the gateway's own wait (5 s) for the error to say why. Default
	// 4 s.
	CommandTimeout time.Duration
	// ResyncInterval is the least time between two resyncs sent to one
	// agent. Default 5 s.
	ResyncInterval time.Duration
	// CheckInterval is how often routes are checked for availability.
	// Default Grace/10, at least 100 ms.
	CheckInterval time.Duration
	// LinksMaxAge is how long an agent's report of its links stays in the
	// topology without a newer one: agents report every minute, so an
	// older report is of an agent that may be gone. Default 3 min.
	LinksMaxAge time.Duration
}

func (c *Config) setDefaults() {
	if c.Grace <= 0 {
		c.Grace = 10 * time.Second
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = 4 * time.Second
	}
	if c.ResyncInterval <= 0 {
		c.ResyncInterval = 5 * time.Second
	}
	if c.CheckInterval <= 0 {
		c.CheckInterval = max(c.Grace/10, 100*time.Millisecond)
	}
	if c.LinksMaxAge <= 0 {
		c.LinksMaxAge = 3 * time.Minute
	}
}

// Registry is what the border needs of the registry service.
type Registry interface {
	PutDevice(ctx context.Context, d homemesh.Device) (homemesh.Device, error)
	PutEntity(ctx context.Context, e homemesh.Entity) (homemesh.Entity, error)
	RemoveEntity(ctx context.Context, id string) error
	Report(u homemesh.StateUpdate) error
}

var _ Registry = (*registry.Client)(nil)

// HubCert is the hub's node certificate and the home's CA certificates,
// the mesh's trust roots.
type HubCert struct {
	Cert  []byte // DER, role hub, for the hub's static key
	Roots []*x509.Certificate
}

// HubCertifier obtains the hub's node certificate for its static public
// key and records the UDP addresses agents may reach it on (the auth
// verb mesh_hub_cert).
type HubCertifier func(ctx context.Context, key []byte, addrs []string) (HubCert, error)

// Mesh is what the border needs of its mesh node (mesh/meshnode).
type Mesh interface {
	ID() route.NodeID
	Addr() *net.UDPAddr
	// Run runs the node until ctx ends.
	Run(ctx context.Context) error
	// Send seals payload end to end for dst and routes it, queueing while
	// the route or the end-to-end channel is missing.
	Send(dst route.NodeID, payload []byte) error
	// Topology is a snapshot, safe from any goroutine.
	Topology() Topology
	// Revoke makes the node refuse the nodes ids from now on and cut
	// what it had with them; safe from any goroutine.
	Revoke(ids []route.NodeID)
}

// MeshConfig is what a Mesh is built from.
type MeshConfig struct {
	Identity       link.Identity
	Verifier       *link.Verifier
	Listen         string
	Peers          []string
	Multicast      []string
	MulticastGroup string
	Route          route.Config
	StateDir       string
	Log            *slog.Logger
	// OnMessage receives every end-to-end payload with its verified
	// source, on the node's goroutine: it must not block.
	OnMessage func(from link.Peer, payload []byte)
	// KeyOf returns the static key of a node to reach end to end.
	KeyOf func(id route.NodeID) (key []byte, ok bool)
}

// NewMesh builds the mesh node; the node's socket is bound when it
// returns.
type NewMesh func(MeshConfig) (Mesh, error)

// Deps are the border's collaborators.
type Deps struct {
	Bus      *natsbus.Conn
	Registry Registry
	HubCert  HubCertifier
	// Revocations lists and announces the nodes the home revoked; nil:
	// none is ever revoked (tests that are not about revocation).
	Revocations Revocations
	// NewMesh builds the mesh node; nil: NewMeshNode.
	NewMesh NewMesh
	Log     *slog.Logger
	// Metrics receives the mesh metrics; nil records none.
	Metrics prometheus.Registerer
}

// Border is the mesh border service.
type Border struct {
	cfg  Config
	deps Deps
	log  *slog.Logger
	met  *metrics

	mesh  Mesh
	self  route.NodeID
	kv    jetstream.KeyValue
	ready chan struct{}
	work  []chan inbound

	mu     sync.Mutex
	agents map[route.NodeID]*agent
	// keys is KeyOf's view of the agents' static keys: read on the mesh
	// node's goroutine, so it never waits for mu.
	keys sync.Map // route.NodeID → []byte
	// revoked holds the nodes the home revoked: never again an agent.
	revoked map[route.NodeID]bool
	pending map[uint64]*pending
	nextID  atomic.Uint64
	// closed is set once the workers stopped; OnMessage then drops.
	closed atomic.Bool
	inMu   sync.RWMutex
	// cmdSlots bounds the commands waiting for agents at once.
	cmdSlots chan struct{}
	cmdWG    sync.WaitGroup
}

// inbound is one end-to-end payload waiting for a worker.
type inbound struct {
	from    link.Peer
	payload []byte
	at      time.Time
}

// Number of workers that handle agents' messages, and the messages each
// may hold. Messages of one agent always go to the same worker, so their
// order is kept.
const (
	workers      = 4
	workerBuffer = 1024
	maxCommands  = 256
)

// New checks cfg and deps. Nothing is bound until Run.
func New(cfg Config, deps Deps) (*Border, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		return nil, homemesh.Invalid("data", "the border needs a data directory for its key")
	}
	if cfg.Listen == "" {
		return nil, homemesh.Invalid("mesh", "a UDP listen address is required")
	}
	if deps.Bus == nil || deps.Registry == nil || deps.HubCert == nil {
		return nil, errors.New("border: bus, registry and hub certifier are required")
	}
	if deps.NewMesh == nil {
		deps.NewMesh = NewMeshNode
	}
	cfg.setDefaults()
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Border{
		cfg: cfg, deps: deps, log: log.With("service", ServiceName, "home_id", cfg.Home),
		ready:    make(chan struct{}),
		agents:   map[route.NodeID]*agent{},
		revoked:  map[route.NodeID]bool{},
		pending:  map[uint64]*pending{},
		cmdSlots: make(chan struct{}, maxCommands),
	}
	// Command ids start at a random point, so that a late result to a
	// command of an earlier run cannot answer one of this run.
	b.nextID.Store(mathrand.Uint64() >> 1)
	b.met = newMetrics(b)
	if deps.Metrics != nil {
		if err := deps.Metrics.Register(b.met); err != nil {
			return nil, fmt.Errorf("border: register metrics: %w", err)
		}
	}
	return b, nil
}

// Ready is closed once the mesh node is up and commands are served.
func (b *Border) Ready() <-chan struct{} { return b.ready }

// ID returns the hub's node id; the zero id before Ready.
func (b *Border) ID() route.NodeID {
	if !b.isReady() {
		return route.NodeID{}
	}
	return b.self
}

// Addr returns the mesh node's bound UDP address; nil before Ready.
func (b *Border) Addr() *net.UDPAddr {
	if !b.isReady() {
		return nil
	}
	return b.mesh.Addr()
}

func (b *Border) isReady() bool {
	select {
	case <-b.ready:
		return true
	default:
		return false
	}
}

// Run starts the mesh node and serves until ctx ends.
func (b *Border) Run(ctx context.Context) error {
	key, err := loadKey(b.cfg.DataDir)
	if err != nil {
		return err
	}
	if err := registry.Streams(ctx, b.deps.Bus, b.cfg.Home); err != nil {
		return err
	}
	if b.kv, err = b.deps.Bus.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: AgentsBucket(b.cfg.Home), History: 1, Storage: jetstream.FileStorage,
		Description: "mesh agents known to the hubs of home " + b.cfg.Home,
	}); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	// The revoked nodes are known before any agent record is taken in or
	// any packet arrives: none of them gets in, even for a moment.
	revoked, revokeEvents, err := b.startRevocations(watchCtx)
	if err != nil {
		return err
	}
	b.mu.Lock()
	for _, id := range revoked {
		b.revoked[id] = true
	}
	b.mu.Unlock()
	if err := b.watchAgents(watchCtx); err != nil {
		return err
	}
	listen, addrs, err := resolveListen(b.cfg.Listen, b.cfg.Advertise)
	if err != nil {
		return homemesh.Invalid("mesh", "%v", err)
	}
	hc, err := b.hubCert(ctx, key.PublicKey().Bytes(), addrs)
	if err != nil {
		return err
	}
	verifier, err := link.NewVerifier(hc.Roots, b.cfg.Home)
	if err != nil {
		return fmt.Errorf("border: mesh trust roots: %w", err)
	}
	verifier.Revoke(revoked...)
	b.mesh, err = b.deps.NewMesh(MeshConfig{
		Identity: link.Identity{Key: key, Cert: hc.Cert}, Verifier: verifier,
		Listen: listen, Peers: b.cfg.Peers, Multicast: b.cfg.Multicast, MulticastGroup: b.cfg.MulticastGroup,
		Route: b.cfg.Route, StateDir: b.cfg.DataDir, Log: b.log,
		OnMessage: b.onMessage, KeyOf: b.keyOf,
	})
	if err != nil {
		return &homemesh.Error{Kind: homemesh.KindConflict, Message: fmt.Sprintf("mesh node on %s: %v; choose another address with --mesh", listen, err), Err: err}
	}
	b.self = b.mesh.ID()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The workers exist before the node runs: it may deliver at once.
	work := make([]chan inbound, workers)
	var workWG sync.WaitGroup
	for i := range work {
		work[i] = make(chan inbound, workerBuffer)
		workWG.Add(1)
		go func(in chan inbound) {
			defer workWG.Done()
			for m := range in {
				b.handle(ctx, m)
			}
		}(work[i])
	}
	b.inMu.Lock()
	b.work = work
	b.inMu.Unlock()
	var wg sync.WaitGroup
	meshErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := b.mesh.Run(ctx); err != nil && ctx.Err() == nil {
			meshErr <- err
			cancel()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.watchRoutes(ctx)
	}()
	// Records of agents revoked while no border ran are deleted now, and
	// their entities marked unavailable.
	b.dropRevokedAgents(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.watchRevocations(ctx, revokeEvents)
	}()
	subs, serveErr := b.serve(ctx)
	if serveErr != nil {
		cancel()
	}
	<-ctx.Done()
	for _, sub := range subs {
		_ = sub.Drain()
	}
	// Drain returns at once; its callbacks may still run a little.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if !slices.ContainsFunc(subs, (*nats.Subscription).IsValid) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.cmdWG.Wait()
	wg.Wait()
	b.inMu.Lock()
	b.closed.Store(true)
	for _, ch := range work {
		close(ch)
	}
	b.inMu.Unlock()
	workWG.Wait()
	flushCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if f, ok := b.deps.Registry.(interface{ Flush(context.Context) error }); ok {
		_ = f.Flush(flushCtx)
	}
	select {
	case err := <-meshErr:
		return fmt.Errorf("border: mesh node: %w", err)
	default:
		return serveErr
	}
}

// serve subscribes to commands and the topology verb and says the border
// is ready; Run drains the subscriptions.
func (b *Border) serve(ctx context.Context) ([]*nats.Subscription, error) {
	cmdSub, err := b.deps.Bus.NATS().QueueSubscribe(bus.CommandWildcard(b.cfg.Home), queueGroup, func(m *nats.Msg) { b.onCommand(ctx, m) })
	if err != nil {
		return nil, fmt.Errorf("border: serve commands: %w", err)
	}
	topoSub, err := b.deps.Bus.Handle(bus.ServiceSubject(ServiceName, VerbTopology), queueGroup, b.handleTopology)
	if err != nil {
		return []*nats.Subscription{cmdSub}, fmt.Errorf("border: serve %s: %w", VerbTopology, err)
	}
	// The subscriptions reach the server asynchronously; a command sent
	// right after Ready must find them.
	if err := b.deps.Bus.Flush(); err != nil {
		b.log.Warn("bus flush failed", "err", err)
	}
	b.log.Info("mesh border ready", "node_id", b.self.String(), "addr", b.mesh.Addr().String())
	close(b.ready)
	return []*nats.Subscription{cmdSub, topoSub}, nil
}

// hubCert asks auth for the hub certificate, waiting for an auth process
// that is still starting (split mode).
func (b *Border) hubCert(ctx context.Context, key []byte, addrs []string) (HubCert, error) {
	hc, err := b.deps.HubCert(ctx, key, addrs)
	for wait := 50 * time.Millisecond; homemesh.ErrorKind(err) == homemesh.KindUnavailable && ctx.Err() == nil && wait < 20*time.Second; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		hc, err = b.deps.HubCert(ctx, key, addrs)
	}
	if err != nil {
		return hc, fmt.Errorf("border: hub certificate from auth: %w", err)
	}
	return hc, nil
}

// onMessage hands an end-to-end payload to the worker of its source. It
// runs on the mesh node's goroutine and never blocks: when the worker is
// that far behind, the payload is dropped and counted.
func (b *Border) onMessage(from link.Peer, payload []byte) {
	b.inMu.RLock()
	defer b.inMu.RUnlock()
	if b.closed.Load() || b.work == nil {
		return
	}
	h := fnv.New32a()
	h.Write(from.ID[:])
	select {
	case b.work[h.Sum32()%uint32(len(b.work))] <- inbound{from: from, payload: payload, at: time.Now().UTC()}:
	default:
		b.met.dropped.WithLabelValues("backlog").Inc()
	}
}

// keyOf is the mesh node's lookup of agents' static keys.
func (b *Border) keyOf(id route.NodeID) ([]byte, bool) {
	k, ok := b.keys.Load(id)
	if !ok {
		return nil, false
	}
	return k.([]byte), true
}

// handleTopology answers VerbTopology.
func (b *Border) handleTopology(_ context.Context, msg *nats.Msg) (any, error) {
	var req topologyRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		return nil, homemesh.Invalid("body", "not a JSON request: %v", err)
	}
	if req.Home != b.cfg.Home {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "home %q is not served here", req.Home)
	}
	return b.Topology(), nil
}
