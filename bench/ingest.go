package bench

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"
)

// Defaults for IngestConfig fields left at their zero value.
const (
	DefaultDevices     = 100
	DefaultMessages    = 1000
	DefaultTopicPrefix = "bench"
	DefaultDrain       = 5 * time.Second
	DefaultQoS         = 1
)

// Upper bounds that keep a run from turning into a flood.
const (
	MaxDevices  = 10000
	MaxMessages = 10_000_000 // per run, all devices together
	MaxDuration = time.Hour
)

// IngestConfig describes one ingest run. Zero values take the defaults
// above, except QoS, where zero means QoS 0: use DefaultIngestConfig for a
// config with every default filled in, QoS 1 included.
type IngestConfig struct {
	// Target labels the result; it defaults to Broker.
	Target string
	// Broker is the MQTT broker under test: host:port for plain TCP, or a
	// URL (tcp://, tls://, ws://) as the MQTT client accepts it.
	Broker             string
	Username, Password string
	// TLS, when set, makes host:port brokers connect over TLS.
	TLS *tls.Config
	// Devices is the number of publishers, one MQTT connection each.
	Devices int
	// Messages is how many messages each device sends. When Duration is set
	// too, the run ends at whichever bound is reached first; with only
	// Duration set, the count is unbounded.
	Messages int
	Duration time.Duration
	// Rate is the total offered load in messages per second, paced evenly
	// across devices. Zero sends as fast as possible: each publisher waits
	// for its message to be accepted (the PUBACK at QoS 1) before the next.
	Rate float64
	// QoS is the publish QoS, 0, 1 or 2.
	QoS byte
	// TopicPrefix: device i publishes on "<TopicPrefix>/dev-<i>/state".
	TopicPrefix string
	// Drain bounds how long Ingest waits for stragglers after the last send.
	Drain time.Duration
}

// DefaultIngestConfig returns the default configuration: 100 devices,
// 1,000 messages each, as fast as possible, QoS 1.
func DefaultIngestConfig() IngestConfig {
	return IngestConfig{
		Devices:     DefaultDevices,
		Messages:    DefaultMessages,
		QoS:         DefaultQoS,
		TopicPrefix: DefaultTopicPrefix,
		Drain:       DefaultDrain,
	}
}

// StateTopic returns the topic device i publishes on.
func (c IngestConfig) StateTopic(i int) string {
	return c.TopicPrefix + "/dev-" + strconv.Itoa(i) + "/state"
}

func (c IngestConfig) withDefaults() (IngestConfig, error) {
	if c.Broker == "" {
		return c, errors.New("bench: broker is required")
	}
	if c.Target == "" {
		c.Target = c.Broker
	}
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Messages == 0 && c.Duration == 0 {
		c.Messages = DefaultMessages
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	if c.Drain == 0 {
		c.Drain = DefaultDrain
	}
	switch {
	case c.Devices < 0 || c.Devices > MaxDevices:
		return c, fmt.Errorf("bench: devices must be 1 to %d", MaxDevices)
	case c.Messages < 0 || c.Duration < 0 || c.Rate < 0 || c.Drain < 0:
		return c, errors.New("bench: messages, duration, rate and drain must not be negative")
	case c.Duration > MaxDuration:
		return c, fmt.Errorf("bench: duration must be at most %v", MaxDuration)
	case c.Messages > 0 && int64(c.Messages)*int64(c.Devices) > MaxMessages:
		return c, fmt.Errorf("bench: at most %d messages per run", MaxMessages)
	case c.QoS > 2:
		return c, errors.New("bench: qos must be 0, 1 or 2")
	case strings.ContainsAny(c.TopicPrefix, "+#"):
		return c, errors.New("bench: topic prefix must not contain wildcards")
	}
	return c, nil
}

// Result is the outcome of one run, printed as JSON by the command line.
type Result struct {
	Target      string  `json:"target"`
	Devices     int     `json:"devices"`
	QoS         byte    `json:"qos"`
	OfferedRate float64 `json:"offered_rate"` // msgs/s; 0 = as fast as possible
	Sent        int     `json:"sent"`         // accepted by the broker (or written, at QoS 0)
	Failed      int     `json:"failed"`       // publishes that returned an error or timed out
	Delivered   int     `json:"delivered"`    // seen by the sink; QoS 1 duplicates count twice
	Lost        int     `json:"lost"`         // Sent − Delivered, when positive
	Seconds     float64 `json:"seconds"`      // first send to last delivery
	MsgsPerSec  float64 `json:"msgs_per_sec"` // Delivered / Seconds
	LatencyMS   struct {
		P50 float64 `json:"p50"`
		P90 float64 `json:"p90"`
		P99 float64 `json:"p99"`
		Max float64 `json:"max"`
	} `json:"latency_ms"`
}

// A Sink observes deliveries at the far end of the system under test. Run
// calls deliver once per message delivered, with the send timestamp decoded
// from its payload (see SentTime), until ctx ends; deliver is safe for
// concurrent use. Ready is closed once the sink is receiving, so that no
// message is sent before it can be seen.
type Sink interface {
	Run(ctx context.Context, deliver func(sentUnixNano int64)) error
	Ready() <-chan struct{}
}

// publishTimeout bounds the wait for one publish to be accepted.
const publishTimeout = 30 * time.Second

// connectConcurrency bounds how many publishers connect at once, so a large
// fleet does not overrun the broker's accept backlog.
const connectConcurrency = 16

// Ingest runs the ingest benchmark described by cfg against the broker, with
// sink observing deliveries. It connects every publisher first, then sends,
// then waits at most cfg.Drain for outstanding deliveries, and returns what
// it measured. The run is bounded by cfg's count or duration and by ctx;
// an error means the run could not take place (no sink, no connection).
func Ingest(ctx context.Context, cfg IngestConfig, sink Sink) (Result, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	res := Result{Target: cfg.Target, Devices: cfg.Devices, QoS: cfg.QoS, OfferedRate: cfg.Rate}

	var (
		hist      histogram
		delivered atomic.Int64
		lastDeliv atomic.Int64
		target    atomic.Int64 // delivered count at which the drain ends
		allIn     = make(chan struct{})
		allInOnce sync.Once
	)
	target.Store(math.MaxInt64)
	deliver := func(sent int64) {
		now := time.Now().UnixNano()
		hist.record(now - sent)
		lastDeliv.Store(now)
		if delivered.Add(1) >= target.Load() {
			allInOnce.Do(func() { close(allIn) })
		}
	}

	sinkCtx, stopSink := context.WithCancel(context.WithoutCancel(ctx))
	sinkErr := make(chan error, 1)
	go func() { sinkErr <- sink.Run(sinkCtx, deliver) }()
	defer func() {
		stopSink()
		<-sinkErr
	}()
	select {
	case <-sink.Ready():
	case err := <-sinkErr:
		sinkErr <- err // for the deferred receive
		return res, fmt.Errorf("bench: sink: %w", err)
	case <-ctx.Done():
		return res, ctx.Err()
	}

	clients, err := connectPublishers(ctx, cfg)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Disconnect(100)
			}
		}
	}()
	if err != nil {
		return res, err
	}

	var sent, failed atomic.Int64
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	runCtx := ctx
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publish(runCtx, cfg, i, c, start, deadline, &sent, &failed)
		}()
	}
	wg.Wait()
	publishedAt := time.Now()

	res.Sent, res.Failed = int(sent.Load()), int(failed.Load())
	target.Store(int64(res.Sent))
	if delivered.Load() >= int64(res.Sent) {
		allInOnce.Do(func() { close(allIn) })
	}
	drain := time.NewTimer(cfg.Drain)
	defer drain.Stop()
	select {
	case <-allIn:
	case <-drain.C:
	case <-ctx.Done():
	}

	res.Delivered = int(delivered.Load())
	if res.Sent > res.Delivered {
		res.Lost = res.Sent - res.Delivered
	}
	end := publishedAt
	if l := lastDeliv.Load(); l > end.UnixNano() {
		end = time.Unix(0, l)
	}
	res.Seconds = end.Sub(start).Seconds()
	if res.Seconds > 0 {
		res.MsgsPerSec = math.Round(float64(res.Delivered)/res.Seconds*10) / 10
	}
	ms := func(ns float64) float64 { return math.Round(ns/1e3) / 1e3 }
	res.LatencyMS.P50 = ms(hist.quantile(0.50))
	res.LatencyMS.P90 = ms(hist.quantile(0.90))
	res.LatencyMS.P99 = ms(hist.quantile(0.99))
	res.LatencyMS.Max = ms(float64(hist.maxValue()))
	return res, ctx.Err()
}

// publish sends device i's messages on c until its count or ctx's deadline is
// reached. With a rate, device i sends at start + phase + k·period, the
// phases spreading the devices evenly over one period; a device that falls
// behind (its previous publish not yet accepted) sends at once.
func publish(ctx context.Context, cfg IngestConfig, i int, c mqtt.Client, start, deadline time.Time, sent, failed *atomic.Int64) {
	topic := cfg.StateTopic(i)
	var period time.Duration
	var timer *time.Timer
	if cfg.Rate > 0 {
		period = time.Duration(float64(cfg.Devices) / cfg.Rate * float64(time.Second))
		timer = time.NewTimer(0)
		defer timer.Stop()
		<-timer.C
	}
	for seq := 0; cfg.Messages == 0 || seq < cfg.Messages; seq++ {
		if period > 0 {
			next := start.Add(period*time.Duration(seq) + period*time.Duration(i)/time.Duration(cfg.Devices))
			if !deadline.IsZero() && !next.Before(deadline) {
				return // the slot lies past the end: Rate × Duration messages in all
			}
			if d := time.Until(next); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		tok := c.Publish(topic, cfg.QoS, false, Payload(seq, time.Now().UnixNano()))
		if !tok.WaitTimeout(publishTimeout) || tok.Error() != nil {
			failed.Add(1)
			continue
		}
		sent.Add(1)
	}
}

// connectPublishers opens one connection per device, a bounded number at a
// time. On error it returns the clients connected so far for the caller to
// close.
func connectPublishers(ctx context.Context, cfg IngestConfig) ([]mqtt.Client, error) {
	clients := make([]mqtt.Client, cfg.Devices)
	run := fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffff)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(connectConcurrency)
	for i := range clients {
		g.Go(func() error {
			if gctx.Err() != nil {
				return gctx.Err()
			}
			o := clientOptions(cfg.Broker, cfg.TLS, cfg.Username, cfg.Password)
			o.SetClientID(fmt.Sprintf("hmbench-%s-%d", run, i))
			c := mqtt.NewClient(o)
			if err := wait(gctx, c.Connect()); err != nil {
				return fmt.Errorf("bench: connect device %d: %w", i, err)
			}
			clients[i] = c
			return nil
		})
	}
	return clients, g.Wait()
}

// clientOptions returns MQTT client options for a bench connection: clean
// session, no automatic reconnect (a dropped connection shows as loss).
func clientOptions(broker string, tlsCfg *tls.Config, user, pass string) *mqtt.ClientOptions {
	o := mqtt.NewClientOptions()
	o.AddBroker(BrokerURL(broker, tlsCfg != nil))
	o.SetTLSConfig(tlsCfg)
	o.SetUsername(user)
	o.SetPassword(pass)
	o.SetCleanSession(true)
	o.SetAutoReconnect(false)
	o.SetConnectTimeout(10 * time.Second)
	o.SetKeepAlive(30 * time.Second)
	o.SetWriteTimeout(publishTimeout)
	return o
}

// BrokerURL turns host:port into the URL the MQTT client dials (tls:// when
// useTLS), and passes URLs through unchanged.
func BrokerURL(broker string, useTLS bool) string {
	if strings.Contains(broker, "://") {
		return broker
	}
	if useTLS {
		return "tls://" + broker
	}
	return "tcp://" + broker
}

// wait waits for t to complete or ctx to end.
func wait(ctx context.Context, t mqtt.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}
