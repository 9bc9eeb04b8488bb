package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures one broker instance.
type Config struct {
	Home       string      // home ID; bridged subjects are bus.MQTTSubject(Home, topic)
	InstanceID string      // unique per edge process; marks messages this instance bridged so it does not re-inject its own. Empty picks a random one.
	TCP        string      // host:port for plain MQTT; "" = none
	TLS        string      // host:port for MQTTS; "" = none
	TLSConfig  *tls.Config // required when TLS is set; MinVersion defaults to TLS 1.3 and is never below TLS 1.2
	// ClientCAs, when set, lets MQTTS clients authenticate with a client
	// certificate these CAs issued instead of a user name and password.
	// The Authenticator still decides whether the certificate's identity
	// may connect; clients without a certificate keep using passwords.
	ClientCAs  *x509.CertPool
	MaxClients int // 0 = unlimited
	// Limits bound each device's messages, bytes and connection attempts;
	// the zero value limits nothing (DefaultLimits is what the hub uses).
	Limits Limits
}

// Authenticator decides who may connect and what each may touch. It must
// return an error for unknown, wrong or revoked credentials and
// certificates. AuthenticateCert is given the client certificate (DER)
// that the TLS handshake verified against Config.ClientCAs; the Grant's
// Username is the identity the client is known by from then on.
type Authenticator interface {
	AuthenticateMQTT(ctx context.Context, username, password, clientID string) (Grant, error)
	AuthenticateCert(ctx context.Context, certDER []byte) (Grant, error)
}

// Grant is what an authenticated credential may do: Allow lists the MQTT
// topic filters it may publish to and subscribe to (subscriptions must be
// subsets of one of them).
type Grant struct {
	Username string
	Allow    []string
}

// Deps are the broker's collaborators.
type Deps struct {
	Bus     *natsbus.Conn
	Auth    Authenticator
	Log     *slog.Logger
	Metrics prometheus.Registerer // may be nil
	Audit   Auditor               // records throttled devices; may be nil
}

// Header names the bridge sets on NATS messages.
const (
	HeaderOrigin      = "Hm-Origin"       // the InstanceID of the edge that bridged the message
	HeaderRetain      = "Hm-Retain"       // "1" when the MQTT message was retained
	HeaderQoS         = "Hm-Qos"          // "0", "1" or "2"
	HeaderContentType = "Hm-Content-Type" // the MQTT 5 content type, when set
	// HeaderPublisher names the credential (or certificate identity) that
	// published the message; devices cannot set NATS headers, so it is
	// the broker's word.
	HeaderPublisher = "Hm-Publisher"
	// HeaderAllow repeats the publisher's allow list, one filter per
	// value, on messages whose topic ends in "/config" (discovery
	// configs), so the edge can check the topics a config names.
	HeaderAllow = "Hm-Allow"
)

// Listener names for Addr.
const (
	ListenerTCP = "tcp"
	ListenerTLS = "tls"
)

// Bridge clients inject messages that arrive over NATS. Messages of other
// edge instances are already persisted by their origin; service messages
// are persisted by every instance.
const (
	edgeBridgeID    = "$hm-bridge-edge"
	serviceBridgeID = "$hm-bridge-service"
)

const (
	authTimeout    = 5 * time.Second
	maxClientIDLen = 256
	// revokedEvent is the event kind auth publishes when a credential is
	// deleted (auth.EventCredentialRevoked; repeated to keep the packages
	// independent).
	revokedEvent = "credential_revoked"
)

// Broker is an MQTT broker bridged into NATS. Create it with New, bind its
// sockets with Listen (or let Run do it) and serve with Run.
type Broker struct {
	cfg     Config
	bus     *natsbus.Conn
	auth    Authenticator
	log     *slog.Logger
	srv     *mqtt.Server
	store   *store
	metrics *metrics
	ready   chan struct{}
	audit   Auditor

	limits               Limits
	connects, reconnects *connectLimiter

	edgeBridge, serviceBridge *mqtt.Client
	grants                    sync.Map // client ID → *grant

	mu      sync.Mutex
	lns     map[string]*listener
	started bool

	injectMu  sync.RWMutex
	injecting bool // false once shutdown began

	hdrOrigin []string
}

// maxPendingWrites bounds each client's queue of messages not yet written.
const maxPendingWrites = 512

// New checks cfg and deps and builds a broker. It does not touch the
// network or the bus.
func New(cfg Config, deps Deps) (*Broker, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, err
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = "edge-" + homemesh.RandomID(12)
	}
	if strings.ContainsAny(cfg.InstanceID, "\r\n\x00") || len(cfg.InstanceID) > homemesh.MaxIDLen {
		return nil, homemesh.Invalid("instance_id", "must be at most %d characters on one line", homemesh.MaxIDLen)
	}
	if cfg.TCP == "" && cfg.TLS == "" {
		return nil, homemesh.Invalid("tcp", "at least one of the TCP and TLS listen addresses is required")
	}
	if cfg.TLS != "" && cfg.TLSConfig == nil {
		return nil, homemesh.Invalid("tls_config", "a TLS certificate is required for the MQTTS listener %s", cfg.TLS)
	}
	if cfg.MaxClients < 0 {
		return nil, homemesh.Invalid("max_clients", "must not be negative")
	}
	for _, l := range []struct {
		field string
		v     float64
	}{
		{"limits.messages_per_second", cfg.Limits.MessagesPerSecond}, {"limits.message_burst", cfg.Limits.MessageBurst},
		{"limits.bytes_per_second", cfg.Limits.BytesPerSecond}, {"limits.byte_burst", cfg.Limits.ByteBurst},
		{"limits.connects_per_second", cfg.Limits.ConnectsPerSecond}, {"limits.connect_burst", cfg.Limits.ConnectBurst},
		{"limits.reconnects_per_second", cfg.Limits.ReconnectsPerSecond}, {"limits.reconnect_burst", cfg.Limits.ReconnectBurst},
	} {
		if l.v < 0 || l.v != l.v {
			return nil, homemesh.Invalid(l.field, "must not be negative")
		}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	if deps.Bus == nil {
		return nil, homemesh.Invalid("bus", "a bus connection is required")
	}
	if deps.Auth == nil {
		return nil, homemesh.Invalid("auth", "an authenticator is required: the broker admits no anonymous clients")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", "edge", "component", "mqtt_broker", "home_id", cfg.Home)

	caps := mqtt.NewDefaultServerCapabilities()
	if cfg.MaxClients > 0 {
		caps.MaximumClients = int64(cfg.MaxClients)
	}
	// Retained messages (discovery configs) must not vanish after a day;
	// only an MQTT 5 message expiry removes them.
	caps.MaximumMessageExpiryInterval = 0
	// Forgotten persistent sessions are dropped after 30 days.
	caps.MaximumSessionExpiryInterval = 30 * 24 * 3600
	caps.Compatibilities.ObscureNotAuthorized = false
	// mochi allocates each client's outbound queue up front; its default of
	// 8,192 slots costs 64 KiB per connection, most of a hub's memory at
	// 10,000 devices. 512 pending writes (Mosquitto's max_queued_messages
	// is 1,000) is plenty for a device; a subscriber that falls further
	// behind is dropped rather than slowing the hub.
	caps.MaximumClientWritesPending = maxPendingWrites

	srv := mqtt.New(&mqtt.Options{
		// Small per-connection buffers: device messages are small, and the
		// hub must hold 10,000 connections in little memory.
		ClientNetReadBufferSize:  1024,
		ClientNetWriteBufferSize: 1024,
		Capabilities:             caps,
		Logger:                   slog.New(&mochiHandler{h: log.Handler()}),
		SysTopicResendInterval:   60,
	})
	b := &Broker{
		cfg:        cfg,
		bus:        deps.Bus,
		auth:       deps.Auth,
		log:        log,
		srv:        srv,
		ready:      make(chan struct{}),
		lns:        map[string]*listener{},
		hdrOrigin:  []string{cfg.InstanceID},
		audit:      deps.Audit,
		limits:     cfg.Limits,
		connects:   newConnectLimiter(cfg.Limits.ConnectsPerSecond, cfg.Limits.ConnectBurst),
		reconnects: newConnectLimiter(cfg.Limits.ReconnectsPerSecond, cfg.Limits.ReconnectBurst),
	}
	b.edgeBridge = srv.NewClient(nil, mqtt.LocalListener, edgeBridgeID, true)
	b.serviceBridge = srv.NewClient(nil, mqtt.LocalListener, serviceBridgeID, true)
	b.edgeBridge.Properties.ProtocolVersion = 5
	b.serviceBridge.Properties.ProtocolVersion = 5
	b.store = newStore(cfg.Home, deps.Bus, log, b.grantFor)
	m, err := newMetrics(deps.Metrics, srv)
	if err != nil {
		return nil, err
	}
	b.metrics = m
	return b, nil
}

// Listen binds the configured listeners. A taken or invalid address is a
// *homemesh.Error naming it. Calling Listen again does nothing; Run calls
// it when the caller did not. Sockets bound here are released by Run.
func (b *Broker) Listen() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lns) > 0 {
		return nil
	}
	bind := func(name, addr string, tc *tls.Config) error {
		if addr == "" {
			return nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			msg := fmt.Sprintf("cannot listen for MQTT on %s", addr)
			if errors.Is(err, syscall.EADDRINUSE) {
				msg = fmt.Sprintf("MQTT address %s is already in use", addr)
			}
			return &homemesh.Error{Op: "broker.listen", Kind: homemesh.KindConflict, Message: msg, Err: err}
		}
		b.lns[name] = newListener(name, ln, tc, b.log)
		return nil
	}
	var tc *tls.Config
	if b.cfg.TLS != "" {
		tc = b.cfg.TLSConfig.Clone()
		if tc.MinVersion == 0 {
			tc.MinVersion = tls.VersionTLS13
		}
		if tc.MinVersion < tls.VersionTLS12 {
			tc.MinVersion = tls.VersionTLS12
		}
		if b.cfg.ClientCAs != nil {
			// Certificates are optional: devices with passwords connect
			// to the same port.
			tc.ClientAuth = tls.VerifyClientCertIfGiven
			tc.ClientCAs = b.cfg.ClientCAs
		}
	}
	if err := bind(ListenerTCP, b.cfg.TCP, nil); err != nil {
		return err
	}
	if err := bind(ListenerTLS, b.cfg.TLS, tc); err != nil {
		for _, l := range b.lns {
			l.ln.Close()
		}
		clear(b.lns)
		return err
	}
	return nil
}

// Run opens the JetStream buckets, loads retained messages and sessions,
// starts the bridge and serves MQTT until ctx ends. Then it closes the
// listeners, disconnects every client, flushes persistence and bridged
// messages, and returns nil. Errors before serving are returned at once.
func (b *Broker) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.started {
		b.mu.Unlock()
		return homemesh.Errorf(homemesh.KindConflict, "broker already running")
	}
	b.started = true
	b.mu.Unlock()

	if err := b.Listen(); err != nil {
		return err
	}
	closeListeners := func() {
		for _, l := range b.lns {
			l.ln.Close()
		}
	}
	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := b.store.open(openCtx)
	cancel()
	if err != nil {
		closeListeners()
		return err
	}
	for _, rec := range b.store.loadedSessions {
		b.grants.Store(rec.Client.ID, &grant{username: rec.Grant.Username, allow: rec.Grant.Allow})
	}
	if err := b.srv.AddHook(b.store, nil); err != nil {
		closeListeners()
		b.store.Stop()
		return fmt.Errorf("add storage hook: %w", err)
	}
	if err := b.srv.AddHook(&hook{b: b}, nil); err != nil {
		closeListeners()
		b.srv.Close()
		return fmt.Errorf("add access hook: %w", err)
	}
	if err := b.srv.Serve(); err != nil { // loads the store; no listener is attached yet
		closeListeners()
		b.srv.Close()
		return fmt.Errorf("start mqtt server: %w", err)
	}
	b.log.Info("mqtt state loaded", "retained", len(b.store.loadedRetained),
		"sessions", len(b.store.loadedSessions), "inflight", len(b.store.loadedInflight))
	b.store.releaseLoaded()

	b.injectMu.Lock()
	b.injecting = true
	b.injectMu.Unlock()
	nc := b.bus.NATS()
	bridgeSub, err := nc.Subscribe(bus.MQTTWildcard(b.cfg.Home), b.inject)
	if err == nil {
		_ = bridgeSub.SetPendingLimits(1<<20, 256<<20)
		var revokeSub *nats.Subscription
		revokeSub, err = nc.Subscribe(bus.EventSubject(b.cfg.Home, revokedEvent), b.onRevoked)
		if err == nil {
			defer revokeSub.Unsubscribe()
		}
		defer bridgeSub.Unsubscribe()
	}
	if err == nil {
		err = nc.Flush() // the subscriptions are in place before devices arrive
	}
	if err != nil {
		closeListeners()
		b.shutdown()
		return &homemesh.Error{Op: "broker.run", Kind: homemesh.KindUnavailable, Message: "cannot subscribe to the bus", Err: err}
	}

	for name, l := range b.lns {
		if err := b.srv.AddListener(l); err != nil {
			closeListeners()
			b.shutdown()
			return fmt.Errorf("attach listener %s: %w", name, err)
		}
		b.srv.Listeners.Serve(name, b.srv.EstablishConnection)
		b.log.Info("mqtt listening", "listener", name, "addr", l.Address())
	}
	close(b.ready)

	<-ctx.Done()
	b.shutdown()
	if err := nc.Flush(); err != nil {
		b.log.Warn("flush bridged messages", "err", err)
	}
	b.log.Info("mqtt broker stopped")
	return nil
}

// shutdown stops injecting, then closes listeners and clients and flushes
// the store (mochi stops the hooks in Close).
func (b *Broker) shutdown() {
	b.injectMu.Lock()
	b.injecting = false
	b.injectMu.Unlock()
	b.srv.Close()
}

// Ready is closed once the listeners accept connections.
func (b *Broker) Ready() <-chan struct{} { return b.ready }

// Addr returns the bound address of listener "tcp" or "tls", or nil when it
// is not configured or not yet bound.
func (b *Broker) Addr(listener string) net.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l, ok := b.lns[listener]; ok {
		return l.ln.Addr()
	}
	return nil
}

// Clients reports how many MQTT clients are connected now.
func (b *Broker) Clients() int { return int(atomic.LoadInt64(&b.srv.Info.ClientsConnected)) }

// Disconnect drops every client of the credential username now and discards
// their persistent sessions, so nothing more is queued for them.
func (b *Broker) Disconnect(username string) {
	n := 0
	for _, cl := range b.srv.Clients.GetAll() {
		if cl.Net.Inline || string(cl.Properties.Username) != username {
			continue
		}
		b.purge(cl, packets.ErrNotAuthorized)
		n++
	}
	if n > 0 {
		b.log.Info("credential disconnected", "username", username, "clients", n)
	}
}

// purge disconnects cl if connected and forgets its session everywhere.
func (b *Broker) purge(cl *mqtt.Client, code packets.Code) {
	if v, ok := b.grants.Load(cl.ID); ok && v.(*grant).username == string(cl.Properties.Username) {
		b.grants.CompareAndDelete(cl.ID, v)
	}
	if !cl.Closed() {
		_ = b.srv.DisconnectClient(cl, code)
	}
	b.srv.UnsubscribeClient(cl)
	cl.ClearInflights()
	if cur, ok := b.srv.Clients.Get(cl.ID); ok && cur == cl {
		b.srv.Clients.Delete(cl.ID)
	}
	b.store.deleteSession(cl.ID)
}

// onRevoked handles auth's credential_revoked event, bare or enveloped.
func (b *Broker) onRevoked(msg *nats.Msg) {
	var ev struct {
		Username string          `json:"username"`
		Payload  json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		b.log.Warn("malformed credential_revoked event", "subject", msg.Subject, "err", err)
		return
	}
	if ev.Username == "" && len(ev.Payload) > 0 {
		var p struct {
			Username string `json:"username"`
		}
		if err := json.Unmarshal(ev.Payload, &p); err == nil {
			ev.Username = p.Username
		}
	}
	if ev.Username == "" {
		b.log.Warn("credential_revoked event without a username", "subject", msg.Subject)
		return
	}
	b.Disconnect(ev.Username)
}
