package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/homemesh/homemesh/bus"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go"
)

// grant is the cached Grant of one client ID. client is the connection it
// was issued to; nil for a session restored from the store.
type grant struct {
	username string
	allow    []string
	client   *mqtt.Client
	warned   atomic.Bool     // the first denial is logged at warn, later ones at debug
	limiter  *publishLimiter // this connection's rates; nil for a restored session
}

// permits reports whether the grant covers topic (a topic name or a filter).
func (g *grant) permits(topic string) bool { return Permits(g.allow, topic) }

// grantFor returns the allow list cached for a client ID, for the store.
func (b *Broker) grantFor(clientID string) (username string, allow []string) {
	if v, ok := b.grants.Load(clientID); ok {
		g := v.(*grant)
		return g.username, g.allow
	}
	return "", nil
}

// hook authenticates clients, enforces their grants and bridges accepted
// messages to NATS.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "homemesh-access" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mqtt.OnConnect,
		mqtt.OnConnectAuthenticate,
		mqtt.OnACLCheck,
		mqtt.OnPublish,
		mqtt.OnPublished,
		mqtt.OnWillSent,
		mqtt.OnDisconnect,
		mqtt.OnClientExpired,
	}, []byte{b})
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	b := h.b
	username := string(pk.Connect.Username)
	log := b.log.With("client_id", cl.ID, "username", username)
	refuse := func(why string, args ...any) bool {
		b.metrics.authFailures.Inc()
		log.Warn("mqtt connection refused: "+why, args...)
		return false
	}
	if len(cl.ID) > maxClientIDLen {
		return refuse("client ID too long", "len", len(cl.ID))
	}
	var g Grant
	var err error
	ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
	defer cancel()
	if cert := clientCertificate(cl); cert != nil {
		// The TLS handshake verified the chain; auth decides whether the
		// identity still exists and what it may do.
		g, err = b.auth.AuthenticateCert(ctx, cert.Raw)
		if err != nil {
			return refuse("certificate not accepted", "identity", cert.Subject.CommonName, "err", err)
		}
		if g.Username == "" || (username != "" && username != g.Username) {
			return refuse("user name differs from the certificate's identity", "identity", g.Username)
		}
		username = g.Username
		log = b.log.With("client_id", cl.ID, "username", username, "auth", "certificate")
		// The identity is the client's user name from now on, so grants,
		// revocation and logs treat both kinds of client alike.
		cl.Properties.Username = []byte(username)
	} else {
		if username == "" || !pk.Connect.PasswordFlag {
			return refuse("no username and password")
		}
		g, err = b.auth.AuthenticateMQTT(ctx, username, string(pk.Connect.Password), cl.ID)
		if err != nil {
			return refuse("authentication failed", "err", err)
		}
		if g.Username != "" && g.Username != username {
			return refuse("grant is for another username")
		}
	}
	ng := &grant{username: username, allow: append([]string(nil), g.Allow...), client: cl, limiter: &publishLimiter{}}
	if pk.Connect.WillFlag && !ng.permits(pk.Connect.WillTopic) {
		b.metrics.aclDenials.Inc()
		return refuse("last will topic outside the grant", "topic", pk.Connect.WillTopic)
	}
	// A session of another credential under this client ID must not be
	// inherited: its subscriptions and queued messages are not ours.
	if old, ok := b.srv.Clients.Get(cl.ID); ok && !old.Net.Inline && string(old.Properties.Username) != username {
		log.Info("client ID taken over from another credential; dropping its session")
		b.purge(old, packets.ErrSessionTakenOver)
	}
	b.grants.Store(cl.ID, ng)
	log.Debug("mqtt client authenticated", "protocol", cl.Properties.ProtocolVersion)
	return true
}

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	b := h.b
	v, ok := b.grants.Load(cl.ID)
	if ok {
		g := v.(*grant)
		if g.username == string(cl.Properties.Username) && (g.client == nil || g.client == cl) {
			if (!write || len(topic) <= bus.MaxTopicLen) && g.permits(topic) {
				return true
			}
			b.metrics.aclDenials.Inc()
			level := slog.LevelDebug
			if g.warned.CompareAndSwap(false, true) {
				level = slog.LevelWarn
			}
			b.log.Log(context.Background(), level, "mqtt access denied", "client_id", cl.ID,
				"username", g.username, "topic", topic, "publish", write)
			return false
		}
	}
	b.metrics.aclDenials.Inc()
	b.log.Debug("mqtt access denied: no grant", "client_id", cl.ID, "topic", topic, "publish", write)
	return false
}

func (h *hook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return // it came from the bridge: never send it back
	}
	h.b.bridgeOut(cl, pk)
}

func (h *hook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	h.b.bridgeOut(cl, pk)
}

func (h *hook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	if !expire || cl.IsTakenOver() {
		return // a persistent session keeps its grant for queued deliveries
	}
	if v, ok := h.b.grants.Load(cl.ID); ok && v.(*grant).client == cl {
		h.b.grants.CompareAndDelete(cl.ID, v)
	}
}

func (h *hook) OnClientExpired(cl *mqtt.Client) {
	if v, ok := h.b.grants.Load(cl.ID); ok && v.(*grant).username == string(cl.Properties.Username) {
		h.b.grants.CompareAndDelete(cl.ID, v)
	}
}

var (
	hdrRetain = [2][]string{{"0"}, {"1"}}
	hdrQoS    = [3][]string{{"0"}, {"1"}, {"2"}}
)

// bridgeOut publishes an accepted MQTT message on its NATS subject. It does
// not flush: nats.go batches writes, and Run flushes at shutdown.
func (b *Broker) bridgeOut(cl *mqtt.Client, pk packets.Packet) {
	subject, err := bus.MQTTSubject(b.cfg.Home, pk.TopicName)
	if err != nil {
		b.log.Debug("topic not bridged", "client_id", cl.ID, "topic", pk.TopicName, "err", err)
		return
	}
	retain := 0
	if pk.FixedHeader.Retain {
		retain = 1
	}
	qos := min(pk.FixedHeader.Qos, 2)
	h := nats.Header{HeaderOrigin: b.hdrOrigin, HeaderRetain: hdrRetain[retain], HeaderQoS: hdrQoS[qos]}
	if user := cl.Properties.Username; len(user) > 0 {
		h[HeaderPublisher] = []string{string(user)}
		if strings.HasSuffix(pk.TopicName, "/config") {
			if v, ok := b.grants.Load(cl.ID); ok {
				h[HeaderAllow] = v.(*grant).allow
			}
		}
	}
	if pk.Properties.ContentType != "" {
		h[HeaderContentType] = []string{pk.Properties.ContentType}
	}
	if err := b.bus.NATS().PublishMsg(&nats.Msg{Subject: subject, Header: h, Data: pk.Payload}); err != nil {
		b.metrics.bridgeErrors.Inc()
		b.log.Warn("bridge to bus failed", "client_id", cl.ID, "topic", pk.TopicName, "err", err)
		return
	}
	b.metrics.bridgedOut.Inc()
}

// inject delivers a message from NATS to local MQTT subscribers, unless this
// instance bridged it itself.
func (b *Broker) inject(msg *nats.Msg) {
	origin := msg.Header.Get(HeaderOrigin)
	if origin == b.cfg.InstanceID {
		return
	}
	topic, err := bus.MQTTTopic(b.cfg.Home, msg.Subject)
	if err != nil || !validFilter(topic) || isSys(topic) || len(topic) > bus.MaxTopicLen {
		b.log.Debug("bus message not injected: bad topic", "subject", msg.Subject, "err", err)
		return
	}
	for i := 0; i < len(topic); i++ {
		if topic[i] == '+' || topic[i] == '#' {
			b.log.Debug("bus message not injected: wildcard in topic", "subject", msg.Subject)
			return
		}
	}
	qos := byte(1)
	switch msg.Header.Get(HeaderQoS) {
	case "0":
		qos = 0
	case "2":
		qos = 2
	}
	cl := b.serviceBridge
	if origin != "" {
		cl = b.edgeBridge
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: msg.Header.Get(HeaderRetain) == "1"},
		TopicName:   topic,
		Payload:     msg.Data,
		PacketID:    uint16(qos), // QoS is not tracked for the bridge, but validation wants an ID exactly when QoS > 0
		Properties:  packets.Properties{ContentType: msg.Header.Get(HeaderContentType)},
	}
	b.injectMu.RLock()
	defer b.injectMu.RUnlock()
	if !b.injecting {
		return
	}
	if err := b.srv.InjectPacket(cl, pk); err != nil {
		b.metrics.bridgeErrors.Inc()
		b.log.Warn("bridge from bus failed", "topic", topic, "err", err)
		return
	}
	b.metrics.bridgedIn.Inc()
}

// clientCertificate returns the certificate the client presented and the
// TLS handshake verified, or nil for clients without one.
func clientCertificate(cl *mqtt.Client) *x509.Certificate {
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return nil
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return nil
	}
	return st.PeerCertificates[0]
}
