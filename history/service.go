package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// StatesStream keeps a home's state log (bus.StateLogSubject): every state
// change the registry stored, in its batches.
func StatesStream(home string) string { return "STATES_" + home }

// TelemetryStream holds a home's raw telemetry until history has stored
// it. Like the registry's, history's streams are per home (see
// registry.ReportsStream for why).
func TelemetryStream(home string) string { return "TELEMETRY_" + home }

// EventsStream captures every event published in a home.
func EventsStream(home string) string { return "EVENTS_" + home }

// Config configures the history service of one home.
type Config struct {
	// Home is the ID of the home whose history this service keeps.
	Home string
	// Retention says how long each tier is kept; the zero value means
	// DefaultRetention.
	Retention RetentionPolicy
	// BatchSize is how many bus messages make a batch due for writing,
	// and 50 × BatchSize how many points and events. Default 1000
	// (measured against 250 and 4000 with SQLite). While the writer is
	// busy a due batch grows, up to growFactor times these bounds, so that
	// under sustained load the cost of merging statistics is spread over
	// more points; a batch still stays well within the ack window.
	BatchSize int
	// BatchWait bounds how long a partial batch waits for more messages.
	// Default 5ms.
	BatchWait time.Duration
	// PurgeInterval is how often expired rows are purged. Default 1 minute.
	PurgeInterval time.Duration
}

// Deps are the history service's collaborators.
type Deps struct {
	Bus     *natsbus.Conn
	Store   Store
	Log     *slog.Logger
	Metrics prometheus.Registerer // may be nil
}

// Service is the history service of one home.
type Service struct {
	cfg     Config
	bus     *natsbus.Conn
	store   Store
	log     *slog.Logger
	metrics *metrics
	ready   chan struct{}
	now     func() time.Time

	// kinds remembers the kind of every entity seen in a state change, so
	// that a query can choose a tier by the entity's retention.
	kindsMu sync.RWMutex
	kinds   map[string]homemesh.EntityKind

	rejectLog rejectLog
}

// Ingestion bounds. A message over MaxMessageBytes, or telemetry with more
// than MaxTelemetryPoints points, is rejected rather than stored: one
// message must never make a batch too large to commit.
const (
	MaxMessageBytes    = 1 << 20
	MaxTelemetryPoints = 10000
	// maxFuture is how far ahead of this host's clock a point or event may
	// be: a device with a wrong clock must not write into next year.
	maxFuture = 5 * time.Minute
)

// ackWait is how long JetStream waits for an ack before redelivering a
// message; pending messages are marked in progress well within it while a
// write is retried.
var ackWait = 30 * time.Second

// New checks cfg and returns a service ready to Run.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, err
	}
	if deps.Bus == nil {
		return nil, errors.New("history: no bus connection")
	}
	if deps.Store == nil {
		return nil, errors.New("history: no store")
	}
	if cfg.Retention.Kinds == nil && cfg.Retention.Default == (Retention{}) && cfg.Retention.Events == 0 {
		cfg.Retention = DefaultRetention()
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = defaultBatchSize
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 5 * time.Millisecond
	}
	if cfg.PurgeInterval <= 0 {
		cfg.PurgeInterval = time.Minute
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Metrics)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg: cfg, bus: deps.Bus, store: deps.Store, metrics: m,
		log:   log.With("service", ServiceName, "home_id", cfg.Home),
		ready: make(chan struct{}),
		now:   time.Now,
		kinds: map[string]homemesh.EntityKind{},
	}, nil
}

// Streams declares the streams of home history consumes (the registry's
// state log, telemetry and events) and history's durable consumer on each.
// The streams keep a message only until every consumer has it (interest
// retention), so a full stream refuses new messages instead of dropping
// accepted ones nobody has stored; a message published while no consumer
// exists would not be kept at all, which is why the consumers are created
// here, with the streams, by every process that declares them for history.
// Declaring is idempotent.
func Streams(ctx context.Context, conn *natsbus.Conn, home string) error {
	if err := registry.Streams(ctx, conn, home); err != nil {
		return err
	}
	for _, st := range ingestStreams(home) {
		if _, err := conn.Stream(ctx, jetstream.StreamConfig{
			Name:        st.name,
			Description: st.what + " of home " + home + ", for history",
			Subjects:    []string{st.filter},
			Retention:   jetstream.InterestPolicy,
			Storage:     jetstream.FileStorage,
			MaxAge:      48 * time.Hour,
			MaxBytes:    st.maxBytes,
			Discard:     jetstream.DiscardNew,
		}); err != nil {
			return err
		}
	}
	js := conn.JetStream()
	for _, st := range ingestStreams(home) {
		_, err := js.Consumer(ctx, st.name, consumerName(home))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			_, err = js.CreateOrUpdateConsumer(ctx, st.name, consumerConfig(home, st, defaultBatchSize))
		}
		if err != nil {
			return &homemesh.Error{Op: "history.streams", Kind: homemesh.KindUnavailable,
				Message: "consumer on " + st.name + " unavailable", Err: err}
		}
	}
	return nil
}

// Ready is closed once the service consumes its streams and answers
// queries.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// ingestStream is one stream history consumes and the decoder of its
// messages.
type ingestStream struct {
	name   string
	filter string // the stream's one subject, and its consumer's filter
	decode func(s *Service, subject string, data []byte, out *Message) error

	what     string // for the stream's description
	maxBytes int64
}

func (s *Service) streams() []ingestStream { return ingestStreams(s.cfg.Home) }

// defaultBatchSize is Config.BatchSize's default.
const defaultBatchSize = 1000

func ingestStreams(h string) []ingestStream {
	return []ingestStream{
		{StatesStream(h), bus.StateLogSubject(h), (*Service).decodeState, "the registry's state log", 512 << 20},
		{TelemetryStream(h), bus.TelemetryWildcard(h), (*Service).decodeTelemetry, "raw telemetry", 512 << 20},
		{EventsStream(h), bus.EventWildcard(h), (*Service).decodeEvent, "every event", 256 << 20},
	}
}

// consumerName is the durable consumer every history process of the home
// shares on each stream, so that they split the work.
func consumerName(home string) string { return "history_" + home }

func consumerConfig(home string, st ingestStream, batchSize int) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       consumerName(home),
		Description:   "history of home " + home,
		FilterSubject: st.filter,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxAckPending: max(20000, heldMessages*batchSize),
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// Run consumes the streams, stores what they carry, purges what the
// retention no longer keeps and answers queries, until ctx ends. It then
// stops pulling, stores what it holds and returns nil.
func (s *Service) Run(ctx context.Context) error {
	err := s.run(ctx)
	if ctx.Err() != nil {
		return nil // stopped, possibly while starting: a clean stop all the same
	}
	return err
}

func (s *Service) run(ctx context.Context) error {
	if err := Streams(ctx, s.bus, s.cfg.Home); err != nil {
		return err
	}
	var consumers []jetstream.Consumer
	for _, st := range s.streams() {
		cons, err := s.consumer(ctx, st)
		if err != nil {
			return err
		}
		consumers = append(consumers, cons)
	}

	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Drain()
		}
	}()
	// Each subscription answers one request at a time; two per verb let a
	// slow query not hold up the next.
	for verb, h := range map[string]natsbus.Handler{verbHistory: s.handleHistory, verbEvents: s.handleEvents} {
		for range 2 {
			sub, err := s.bus.Handle(bus.ServiceSubject(ServiceName, verb), ServiceName, h)
			if err != nil {
				return fmt.Errorf("history: serve %s: %w", verb, err)
			}
			subs = append(subs, sub)
		}
	}

	// Ready means answering: make sure the server has the subscriptions
	// before saying so.
	if err := s.bus.Flush(); err != nil {
		return &homemesh.Error{Op: "history.serve", Kind: homemesh.KindUnavailable, Message: "bus unavailable", Err: err}
	}
	var wg sync.WaitGroup
	for i, st := range s.streams() {
		wg.Add(1)
		go func() { defer wg.Done(); s.ingest(ctx, st, consumers[i]) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.purgeLoop(ctx) }()

	s.log.Info("history ready", "batch_size", s.cfg.BatchSize, "batch_wait", s.cfg.BatchWait.String())
	close(s.ready)
	wg.Wait()
	// Acks are published without waiting for the server; make sure the
	// last batch's acks left this process before it stops.
	_ = s.bus.Flush()
	return nil
}

// consumer creates, or opens, the durable consumer of the home on st.
func (s *Service) consumer(ctx context.Context, st ingestStream) (jetstream.Consumer, error) {
	cons, err := s.bus.JetStream().CreateOrUpdateConsumer(ctx, st.name, consumerConfig(s.cfg.Home, st, s.cfg.BatchSize))
	if err != nil {
		return nil, &homemesh.Error{Op: "history.consumer", Kind: homemesh.KindUnavailable,
			Message: "consumer on " + st.name + " unavailable", Err: err}
	}
	return cons, nil
}

// noteKind remembers the kind of an entity.
func (s *Service) noteKind(entity string, kind homemesh.EntityKind) {
	s.kindsMu.RLock()
	known, ok := s.kinds[entity]
	s.kindsMu.RUnlock()
	if ok && known == kind {
		return
	}
	s.kindsMu.Lock()
	s.kinds[entity] = kind
	s.kindsMu.Unlock()
}

// kindOf returns the kind of entity, if a state change of it was seen.
func (s *Service) kindOf(entity string) (homemesh.EntityKind, bool) {
	s.kindsMu.RLock()
	defer s.kindsMu.RUnlock()
	k, ok := s.kinds[entity]
	return k, ok
}
