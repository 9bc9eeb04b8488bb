package bench

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
)

// entitiesPerDevice groups the bench entities into devices, as a real
// multi-sensor groups temperature, humidity and the like.
const entitiesPerDevice = 4

// benchEntity is one simulated entity and what its publisher remembers of
// it: the time of its last point, so that every point of an entity gets its
// own microsecond (stores keep the first point of a microsecond only), and
// its last state, which the next state change carries as the old state.
type benchEntity struct {
	device, id string
	lastMicro  int64
	lastState  []byte
}

// benchDevice is one simulated device and its entities.
type benchDevice struct {
	id       string
	subject  string // its telemetry subject
	entities []*benchEntity
}

// benchFleet builds n entities grouped into devices of entitiesPerDevice.
func benchFleet(home string, n int) []*benchDevice {
	var devices []*benchDevice
	for i := 0; i < n; i++ {
		if i%entitiesPerDevice == 0 {
			id := "bench-" + strconv.Itoa(i/entitiesPerDevice)
			devices = append(devices, &benchDevice{id: id, subject: bus.TelemetrySubject(home, id)})
		}
		d := devices[len(devices)-1]
		id := d.id + "_t" + strconv.Itoa(len(d.entities))
		d.entities = append(d.entities, &benchEntity{device: d.id, id: id})
	}
	return devices
}

// nextTime returns the time of e's next point: now, or one microsecond
// after its previous point when the clock has not moved on.
func (e *benchEntity) nextTime(now time.Time) time.Time {
	us := now.UnixMicro()
	if us <= e.lastMicro {
		us = e.lastMicro + 1
	}
	e.lastMicro = us
	return time.UnixMicro(us).UTC()
}

// benchValue is a sensor reading with one decimal, as thermometers report,
// varying with seq so that every point is a change.
func benchValue(seq int) float64 { return 18 + float64(seq%100)/10 }

// appendState appends the JSON of homemesh.State{Value: v, Available: true,
// ChangedAt: t, UpdatedAt: t}, as json.Marshal writes it.
func appendState(b []byte, v float64, t time.Time) []byte {
	b = append(b, `{"value":`...)
	b = strconv.AppendFloat(b, v, 'f', -1, 64)
	b = append(b, `,"available":true,"changed_at":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","updated_at":"`...)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// stateChangePayload returns the JSON of the registry.StateChange that
// moves e to value v at t, as the registry publishes it: built from
// the states' JSON without a second marshalling, because the load
// generator shares the machine with the system it measures.
func stateChangePayload(home string, e *benchEntity, v float64, t time.Time) []byte {
	state := appendState(make([]byte, 0, 96), v, t)
	old := e.lastState
	if old == nil {
		old = []byte(`{"value":null,"available":false}`) // the registry's state of a new entity
	}
	b := make([]byte, 0, len(state)+len(old)+len(home)+len(e.device)+len(e.id)+96)
	b = append(b, `{"home_id":"`...)
	b = append(b, home...) // IDs are [a-z0-9_-]: nothing to escape
	b = append(b, `","device_id":"`...)
	b = append(b, e.device...)
	b = append(b, `","entity_id":"`...)
	b = append(b, e.id...)
	b = append(b, `","kind":"sensor","state":`...)
	b = append(b, state...)
	b = append(b, `,"old_state":`...)
	b = append(b, old...)
	b = append(b, '}')
	e.lastState = state
	return b
}

// telemetryPayload returns the JSON of a history.Telemetry message of n
// points of d's entities, taken in turn, each at its own time.
func telemetryPayload(d *benchDevice, n, seq int, now time.Time) []byte {
	b := make([]byte, 0, 16+n*96)
	b = append(b, `{"points":[`...)
	for k := 0; k < n; k++ {
		e := d.entities[k%len(d.entities)]
		if k > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"entity_id":"`...)
		b = append(b, e.id...)
		b = append(b, `","time":"`...)
		b = e.nextTime(now).AppendFormat(b, time.RFC3339Nano)
		b = append(b, `","value":`...)
		b = strconv.AppendFloat(b, benchValue(seq+k), 'f', -1, 64)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// ingestCounts is what the publishers of one run achieved, and the flow
// control that keeps them from running too far ahead of the store.
type ingestCounts struct {
	acked, failed atomic.Int64 // messages JetStream stored or refused
	stalled       atomic.Int64 // publishes retried because the in-flight bound was reached

	// maxBacklog bounds the bytes published but not yet stored; 0 leaves
	// them unbounded. The streams keep a bounded number of bytes and drop
	// the oldest beyond it, stored or not: a publisher that outruns the
	// store by more than that loses messages, which would measure the
	// stream's limit instead of the store.
	maxBacklog          int64
	ppm                 int64
	stored              *atomic.Int64 // points the store committed
	sentMsgs, sentBytes atomic.Int64
	backlogWaits        atomic.Int64 // publishes that waited for the store
}

// backlog estimates the bytes published and not yet stored.
func (c *ingestCounts) backlog() int64 {
	msgs := c.sentMsgs.Load()
	if msgs == 0 {
		return 0
	}
	return (msgs - c.stored.Load()/c.ppm) * (c.sentBytes.Load() / msgs)
}

// waitForStore holds a publisher back while the backlog exceeds its bound.
func (c *ingestCounts) waitForStore(ctx context.Context, stop *atomic.Bool) {
	if c.maxBacklog == 0 || c.backlog() <= c.maxBacklog {
		return
	}
	c.backlogWaits.Add(1)
	for c.backlog() > c.maxBacklog && !stop.Load() && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
}

// publisher sends one share of the fleet's messages over its own
// connection, with at most inFlight publishes awaiting JetStream's ack.
type publisher struct {
	js      jetstream.JetStream
	home    string
	devices []*benchDevice
	ppm     int // points per message
	// telemetry sends telemetry; otherwise state-log batches.
	telemetry bool
}

func newPublisher(conn *natsbus.Conn, home string, devices []*benchDevice, ppm int, telemetry bool, inFlight int, counts *ingestCounts) (*publisher, error) {
	js, err := jetstream.New(conn.NATS(),
		jetstream.WithPublishAsyncMaxPending(inFlight),
		jetstream.WithPublishAsyncAckHandler(func(jetstream.JetStream, *nats.Msg, *jetstream.PubAck) { counts.acked.Add(1) }),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { counts.failed.Add(1) }),
	)
	if err != nil {
		return nil, err
	}
	return &publisher{js: js, home: home, devices: devices, ppm: ppm, telemetry: telemetry}, nil
}

// run publishes until stop is set or ctx ends, as fast as JetStream
// accepts, then waits at most settle for the acks still outstanding.
func (p *publisher) run(ctx context.Context, stop *atomic.Bool, settle time.Duration, counts *ingestCounts) error {
	var entities []*benchEntity
	for _, d := range p.devices {
		entities = append(entities, d.entities...)
	}
	for seq := 0; !stop.Load() && ctx.Err() == nil; seq++ {
		counts.waitForStore(ctx, stop)
		if stop.Load() {
			break
		}
		var subject string
		var data []byte
		now := time.Now()
		if !p.telemetry {
			// A batch of changes of consecutive entities, as the registry
			// logs a committed batch.
			subject = bus.StateLogSubject(p.home)
			payload := []byte{'['}
			for k := range p.ppm {
				if k > 0 {
					payload = append(payload, ',')
				}
				e := entities[(seq*p.ppm+k)%len(entities)]
				payload = append(payload, stateChangePayload(p.home, e, benchValue(seq*p.ppm+k), e.nextTime(now))...)
			}
			data = bus.EncodeEnvelopeRaw(p.home, "bench", "state_changes", append(payload, ']'))
		} else {
			d := p.devices[seq%len(p.devices)]
			subject = d.subject
			data = bus.EncodeEnvelopeRaw(p.home, "bench", "telemetry", telemetryPayload(d, p.ppm, seq, now))
		}
		for {
			_, err := p.js.PublishAsync(subject, data)
			if err == nil {
				counts.sentMsgs.Add(1)
				counts.sentBytes.Add(int64(len(data)))
				break
			}
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
				return err
			}
			counts.stalled.Add(1)
			if stop.Load() || ctx.Err() != nil {
				break // the message was never sent: it is not counted
			}
		}
	}
	timer := time.NewTimer(settle)
	defer timer.Stop()
	select {
	case <-p.js.PublishAsyncComplete():
		return nil
	case <-timer.C:
		return errors.New("bench: publishes still unacknowledged after " + settle.String())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// publishAll runs one publisher per connection until duration has passed
// and every publish is settled. It returns when publishing started and
// when the last publish was settled.
func publishAll(ctx context.Context, pubs []*publisher, duration time.Duration, counts *ingestCounts) (start, end time.Time, err error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make([]error, len(pubs))
	start = time.Now()
	timer := time.AfterFunc(duration, func() { stop.Store(true) })
	defer timer.Stop()
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.run(ctx, &stop, publishSettle, counts)
		}()
	}
	wg.Wait()
	return start, time.Now(), errors.Join(errs...)
}

// publishSettle bounds the wait for the acks of the last publishes.
const publishSettle = 30 * time.Second
