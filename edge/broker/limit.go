package broker

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/homemesh/homemesh/bus"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limits bound what one device may cost the broker, so that a flooding or
// compromised device is throttled while every other device keeps working.
// A zero rate disables its limit. Bursts default to 20 seconds' worth of
// their rate.
type Limits struct {
	// MessagesPerSecond and MessageBurst bound each connection's publishes.
	MessagesPerSecond, MessageBurst float64
	// BytesPerSecond and ByteBurst bound each connection's published bytes
	// (topic and payload). One message larger than the burst still passes
	// when the bucket is full; the client then waits until it refills.
	BytesPerSecond, ByteBurst float64
	// ConnectsPerSecond and ConnectBurst bound connection attempts from one
	// source address. Loopback addresses are exempt: they are processes on
	// the hub itself (bridges, simulators), and a hostile one has the hub.
	ConnectsPerSecond, ConnectBurst float64
	// ReconnectsPerSecond and ReconnectBurst bound connection attempts of
	// one device: one credential (or certificate identity) with one client
	// ID, however many addresses it comes from.
	ReconnectsPerSecond, ReconnectBurst float64
}

// Defaults a busy but healthy device never reaches. A Zigbee2MQTT bridge
// with 200 devices publishes a few hundred discovery configs and states in
// its first seconds (about 1,500 messages, 1–2 MiB with its device list)
// and then well under 100 messages per second, which is all a Zigbee radio
// carries.
const (
	DefaultMessagesPerSecond   = 200
	DefaultBytesPerSecond      = 512 << 10
	DefaultConnectsPerSecond   = 50
	DefaultReconnectsPerSecond = 1
	defaultReconnectBurst      = 10
	// burstSeconds sizes a default burst from its rate.
	burstSeconds = 20
)

// DefaultLimits returns the limits the hub runs with unless configured.
func DefaultLimits() Limits {
	return Limits{
		MessagesPerSecond: DefaultMessagesPerSecond, BytesPerSecond: DefaultBytesPerSecond,
		ConnectsPerSecond: DefaultConnectsPerSecond, ReconnectsPerSecond: DefaultReconnectsPerSecond,
		ReconnectBurst: defaultReconnectBurst,
	}
}

// withDefaults fills in bursts left zero.
func (l Limits) withDefaults() Limits {
	fill := func(burst *float64, rate float64) {
		if *burst == 0 {
			*burst = rate * burstSeconds
		}
	}
	fill(&l.MessageBurst, l.MessagesPerSecond)
	fill(&l.ByteBurst, l.BytesPerSecond)
	fill(&l.ConnectBurst, l.ConnectsPerSecond)
	fill(&l.ReconnectBurst, l.ReconnectsPerSecond)
	return l
}

// Throttle reporting: one event per client per reportEvery at most; a
// client that has more than reportEvery seconds of its message rate, and
// at least minFloodDrops messages, dropped within one reportEvery window is
// flooding and is disconnected.
const (
	reportEvery   = 10 * time.Second
	minFloodDrops = 100
)

// EventDeviceThrottled is the event kind published on
// bus.EventSubject(home, EventDeviceThrottled) when a device is throttled.
const EventDeviceThrottled = "device_throttled"

// Throttled describes a throttled device: the payload of a
// device_throttled event and what is audited.
type Throttled struct {
	ClientID string `json:"client_id,omitempty"`
	Username string `json:"username,omitempty"`
	Remote   string `json:"remote,omitempty"` // the source address
	// Reason is "messages", "bytes" or "connections": the limit hit first.
	Reason string `json:"reason"`
	// DroppedMessages and DroppedBytes count publishes refused since the
	// previous report for the same client; RefusedConnects counts refused
	// connection attempts since the previous report for the same key.
	DroppedMessages int64 `json:"dropped_messages,omitempty"`
	DroppedBytes    int64 `json:"dropped_bytes,omitempty"`
	RefusedConnects int64 `json:"refused_connects,omitempty"`
	// Disconnected is set when the client kept flooding and was dropped.
	Disconnected bool `json:"disconnected,omitempty"`
}

// Auditor records throttled devices in the home's audit log.
type Auditor interface {
	AuditThrottled(ctx context.Context, t Throttled) error
}

// bucket is a token bucket that may go into debt: a request larger than
// the burst passes when the bucket is full and leaves it in debt, so one
// large message is never refused forever, and the debt is repaid before
// the next passes.
type bucket struct {
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, rate, burst, n float64) bool {
	if b.last.IsZero() {
		b.tokens = burst
	} else if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(burst, b.tokens+d*rate)
	}
	b.last = now
	if b.tokens < min(n, burst) {
		return false
	}
	b.tokens -= n
	return true
}

// full reports whether the bucket would be full at now, so it can be
// forgotten.
func (b *bucket) full(now time.Time, rate, burst float64) bool {
	return b.tokens+now.Sub(b.last).Seconds()*rate >= burst
}

// publishLimiter is one connection's message and byte buckets and what it
// has had dropped.
type publishLimiter struct {
	mu            sync.Mutex
	msgs, bytes   bucket
	windowStart   time.Time // of the flood window
	windowDropped float64   // messages dropped in the flood window
	lastReport    time.Time
	pending       Throttled // drops since the last report
}

// verdict is what allowPublish decided.
type verdict int

const (
	allow verdict = iota
	drop
	disconnect
)

// allowPublish charges one publish of size bytes to l and says whether it
// passes. When it does not, report is set when a report is due.
func (l *publishLimiter) allowPublish(lim *Limits, now time.Time, size int) (v verdict, report *Throttled) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reason := ""
	if lim.MessagesPerSecond > 0 && !l.msgs.take(now, lim.MessagesPerSecond, lim.MessageBurst, 1) {
		reason = "messages"
	} else if lim.BytesPerSecond > 0 && !l.bytes.take(now, lim.BytesPerSecond, lim.ByteBurst, float64(size)) {
		reason = "bytes"
	}
	if reason == "" {
		return allow, nil
	}
	if l.pending.Reason == "" {
		l.pending.Reason = reason
	}
	l.pending.DroppedMessages++
	l.pending.DroppedBytes += int64(size)
	if now.Sub(l.windowStart) > reportEvery {
		l.windowStart, l.windowDropped = now, 0
	}
	l.windowDropped++
	v = drop
	rate := lim.MessagesPerSecond
	if rate == 0 {
		rate = lim.BytesPerSecond / 1024 // a kibibyte counts as a message
	}
	if l.windowDropped > max(rate*reportEvery.Seconds(), minFloodDrops) {
		v = disconnect
		l.pending.Disconnected = true
	}
	if v == disconnect || now.Sub(l.lastReport) >= reportEvery {
		r := l.pending
		l.pending = Throttled{}
		l.lastReport = now
		return v, &r
	}
	return v, nil
}

// connectLimiter keeps one bucket per key (a source address, or a
// credential with a client ID) and when each key was last reported.
type connectLimiter struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[string]*connectBucket
}

type connectBucket struct {
	bucket
	refused    int64
	lastReport time.Time
}

// maxConnectKeys bounds the map before idle keys are swept.
const maxConnectKeys = 4096

func newConnectLimiter(rate, burst float64) *connectLimiter {
	if rate <= 0 {
		return nil
	}
	return &connectLimiter{rate: rate, burst: burst, buckets: map[string]*connectBucket{}}
}

// allow charges one attempt to key. When it is refused and a report is
// due, refused is the number of refusals to report.
func (c *connectLimiter) allow(key string, now time.Time) (ok bool, refused int64) {
	if c == nil {
		return true, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buckets[key]
	if b == nil {
		if len(c.buckets) >= maxConnectKeys {
			for k, old := range c.buckets {
				if old.full(now, c.rate, c.burst) {
					delete(c.buckets, k)
				}
			}
		}
		b = &connectBucket{}
		c.buckets[key] = b
	}
	if b.take(now, c.rate, c.burst, 1) {
		return true, 0
	}
	b.refused++
	if now.Sub(b.lastReport) < reportEvery {
		return false, 0
	}
	refused, b.refused, b.lastReport = b.refused, 0, now
	return false, refused
}

// sourceIP returns the host part of a remote address, and whether it is a
// loopback address.
func sourceIP(remote string) (string, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return host, ip != nil && ip.IsLoopback()
}

// OnConnect refuses connection attempts over the connection limits, before
// any authentication work is spent on them.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	b := h.b
	now := time.Now()
	source, loopback := sourceIP(cl.Net.Remote)
	identity := string(pk.Connect.Username)
	if cert := clientCertificate(cl); cert != nil {
		identity = "cert:" + cert.Subject.CommonName
	}
	var refused int64
	ok := true
	if !loopback {
		ok, refused = b.connects.allow(source, now)
	}
	if ok {
		ok, refused = b.reconnects.allow(identity+"\x00"+cl.ID, now)
	}
	if ok {
		return nil
	}
	b.metrics.connectsRefused.Inc()
	b.log.Debug("mqtt connection refused: too many attempts", "client_id", cl.ID, "username", identity, "peer", cl.Net.Remote)
	if refused > 0 {
		b.log.Warn("mqtt connections throttled", "client_id", cl.ID, "username", identity, "peer", cl.Net.Remote, "refused", refused)
		b.reportThrottled(Throttled{ClientID: cl.ID, Username: string(pk.Connect.Username), Remote: cl.Net.Remote,
			Reason: "connections", RefusedConnects: refused})
	}
	code := packets.ErrQuotaExceeded
	if cl.Properties.ProtocolVersion < 5 {
		code = packets.ErrServerUnavailable // MQTT 3 has no "quota exceeded"
	}
	_ = b.srv.SendConnack(cl, code, false, nil)
	return code
}

// OnPublish drops publishes over the client's message or byte rate. A QoS
// 0 publish is dropped silently. A QoS 1 or 2 publish of an MQTT 5 client
// is answered "quota exceeded" (the client knows it was not taken); an
// MQTT 3 client has no negative acknowledgement, so it is disconnected and
// keeps the message to send again after reconnecting. A client that keeps
// flooding is disconnected whatever its QoS.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	b := h.b
	if cl.Net.Inline || !b.limits.publishLimited() {
		return pk, nil
	}
	v, ok := b.grants.Load(cl.ID)
	if !ok {
		return pk, nil // the ACL check has refused it already
	}
	g := v.(*grant)
	if g.limiter == nil {
		return pk, nil
	}
	size := len(pk.TopicName) + len(pk.Payload)
	verdict, report := g.limiter.allowPublish(&b.limits, time.Now(), size)
	if verdict == allow {
		return pk, nil
	}
	b.metrics.throttledMessages.Inc()
	b.metrics.throttledBytes.Add(float64(size))
	if report != nil {
		report.ClientID, report.Username, report.Remote = cl.ID, g.username, cl.Net.Remote
		b.log.Warn("mqtt client throttled", "client_id", cl.ID, "username", g.username, "reason", report.Reason,
			"dropped_messages", report.DroppedMessages, "dropped_bytes", report.DroppedBytes, "disconnected", report.Disconnected)
		b.reportThrottled(*report)
	}
	switch {
	case verdict == disconnect:
		b.metrics.floodDisconnects.Inc()
		_ = b.srv.DisconnectClient(cl, packets.ErrMessageRateTooHigh)
		return pk, packets.ErrRejectPacket
	case pk.FixedHeader.Qos == 0:
		return pk, packets.ErrRejectPacket
	case cl.Properties.ProtocolVersion >= 5:
		return pk, packets.ErrQuotaExceeded
	default:
		b.metrics.floodDisconnects.Inc()
		_ = b.srv.DisconnectClient(cl, packets.ErrQuotaExceeded)
		return pk, packets.ErrRejectPacket
	}
}

func (l *Limits) publishLimited() bool { return l.MessagesPerSecond > 0 || l.BytesPerSecond > 0 }

// reportThrottled publishes a device_throttled event and has it audited,
// off the client's read path.
func (b *Broker) reportThrottled(t Throttled) {
	env, err := bus.NewEnvelope(b.cfg.Home, "edge", EventDeviceThrottled, t)
	if err == nil {
		err = b.bus.Publish(bus.EventSubject(b.cfg.Home, EventDeviceThrottled), env)
	}
	if err != nil {
		b.log.Warn("device_throttled event not published", "client_id", t.ClientID, "err", err)
	}
	if b.audit == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
		defer cancel()
		if err := b.audit.AuditThrottled(ctx, t); err != nil {
			b.log.Warn("device throttling not audited", "client_id", t.ClientID, "err", err)
		}
	}()
}
