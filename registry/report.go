package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/nats-io/nats.go/jetstream"
)

// consume merges reports in batches: a batch's states are stored, its state
// changes published, and only then are its reports acknowledged.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer) error {
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * s.cfg.BatchSize))
	if err != nil {
		return &homemesh.Error{Op: "registry.consume", Kind: homemesh.KindUnavailable, Message: "report consumer unavailable", Err: err}
	}
	msgs := make(chan jetstream.Msg, s.cfg.BatchSize)
	go func() {
		defer close(msgs)
		for {
			m, err := it.Next()
			if err != nil {
				if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					s.log.Warn("report consumer stopped", "err", err)
				}
				return
			}
			msgs <- m
		}
	}()
	go func() {
		<-ctx.Done()
		it.Drain()
	}()

	s.stored = make(chan storeJob, 4)
	finished := make(chan struct{})
	go func() { s.finisher(); close(finished) }()
	defer func() { close(s.stored); <-finished }()

	batch := make([]jetstream.Msg, 0, s.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var m jetstream.Msg
		var ok bool
		if len(batch) == 0 {
			m, ok = <-msgs
		} else {
			select {
			case m, ok = <-msgs:
			case <-timer.C:
				s.commit(ctx, batch)
				batch = batch[:0]
				continue
			}
		}
		if !ok {
			if len(batch) > 0 {
				s.commit(context.Background(), batch)
			}
			return nil
		}
		if len(batch) == 0 {
			timer.Reset(s.cfg.BatchWait)
		}
		batch = append(batch, m)
		if len(batch) >= s.cfg.BatchSize {
			timer.Stop()
			s.commit(ctx, batch)
			batch = batch[:0]
		}
	}
}

// commit applies a batch. Reports that cannot be stored are not
// acknowledged, so JetStream redelivers them after AckWait.
func (s *Service) commit(ctx context.Context, batch []jetstream.Msg) {
	// Every report that changes something yields its own state change, so
	// history and automations see each step; only the last state of each
	// entity in the batch is stored.
	final := map[string][]byte{} // entity → JSON of its last state
	var order []string
	var changes [][]byte // state-change payloads, in order
	var changeSubjects []string
	var updates []homemesh.StateUpdate
	for _, m := range batch {
		var err error
		if updates, err = decodeReports(m.Data(), updates[:0]); err != nil {
			// A malformed report can never succeed: terminate it rather
			// than redeliver it forever.
			s.log.Warn("dropping malformed report", "subject", m.Subject(), "err", err)
			_ = m.Term()
			continue
		}
		for _, u := range updates {
			s.apply1(u, final, &order, &changes, &changeSubjects)
		}
	}

	// Publish the changes at once: subscribers see them without waiting for
	// storage. The reports are acknowledged only once the states are
	// stored (finish, in the background); if storing fails they are
	// redelivered and applied again, so delivery is at least once.
	for i, payload := range changes {
		data := bus.EncodeEnvelopeRaw(s.cfg.Home, "registry", "state_changed", payload)
		if err := s.bus.NATS().Publish(changeSubjects[i], data); err != nil {
			s.log.Warn("state change not published", "subject", changeSubjects[i], "err", err)
		}
	}
	s.publishStateLog(changes)
	job := storeJob{reports: slices.Clone(batch)}
	for _, id := range order {
		f, err := s.js.PublishAsync("$KV."+s.bucket("states")+"."+id, final[id])
		if err != nil {
			job.failed = true
			s.releasePending(id, 0)
			continue
		}
		job.writes = append(job.writes, stateWrite{id, f})
	}
	select {
	case s.stored <- job:
	case <-ctx.Done():
		s.finish(job) // shutting down: settle this batch here
	}
}

// apply1 merges one report into the cache and notes the change, if any.
func (s *Service) apply1(u homemesh.StateUpdate, final map[string][]byte, order *[]string, changes *[][]byte, subjects *[]string) {
	if u.HomeID != s.cfg.Home {
		s.log.Warn("dropping a report for another home", "home_id", u.HomeID)
		return
	}
	if u.Time.IsZero() {
		u.Time = time.Now().UTC()
	}
	s.mu.Lock()
	e, known := s.entity(u.EntityID)
	if !known || e.DeviceID != u.DeviceID {
		s.mu.Unlock()
		s.log.Debug("report for unknown entity", "entity_id", u.EntityID, "device_id", u.DeviceID)
		return
	}
	next, diff := merge(e.State, u)
	rec := s.states[u.EntityID]
	if rec == nil {
		rec = &stateRecord{}
		s.states[u.EntityID] = rec
	}
	if diff {
		oldRaw := rec.raw
		if oldRaw == nil {
			oldRaw, _ = json.Marshal(e.State)
		}
		nextRaw, _ := json.Marshal(next) // cannot fail: JSON-decoded values
		rec.raw = nextRaw
		if _, seen := final[e.ID]; !seen {
			*order = append(*order, e.ID)
			rec.pending++
		}
		final[e.ID] = nextRaw
		*changes = append(*changes, stateChangeJSON(s.cfg.Home, e.DeviceID, e.ID, e.Kind, nextRaw, oldRaw))
		*subjects = append(*subjects, bus.StateSubject(s.cfg.Home, e.DeviceID, e.ID))
	} else {
		rec.raw = nil // only UpdatedAt moved; marshal afresh when needed
	}
	rec.state = next
	s.mu.Unlock()
}

type stateWrite struct {
	id  string
	ack jetstream.PubAckFuture
}

// storeJob is one batch whose states are being stored.
type storeJob struct {
	reports []jetstream.Msg
	writes  []stateWrite
	failed  bool
}

// finisher settles batches in the order they were committed. The channel's
// small buffer bounds how many batches may wait for storage at once.
func (s *Service) finisher() {
	for job := range s.stored {
		s.finish(job)
	}
}

func (s *Service) finish(job storeJob) {
	for _, w := range job.writes {
		select {
		case ack := <-w.ack.Ok():
			s.releasePending(w.id, ack.Sequence)
		case err := <-w.ack.Err():
			job.failed = true
			s.releasePending(w.id, 0)
			s.log.Warn("state not stored", "entity_id", w.id, "err", err)
		case <-time.After(10 * time.Second):
			job.failed = true
			s.releasePending(w.id, 0)
		}
	}
	if job.failed {
		s.log.Warn("batch not stored; reports will be redelivered", "reports", len(job.reports))
		for _, m := range job.reports {
			_ = m.Nak()
		}
		return
	}
	for _, m := range job.reports {
		_ = m.Ack()
	}
}

func (s *Service) releasePending(id string, rev uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec := s.states[id]; rec != nil {
		if rec.pending > 0 {
			rec.pending--
		}
		if rev > rec.rev {
			rec.rev = rev
		}
	}
}

// merge applies u to cur. It reports whether anything a subscriber cares
// about (value, attributes, availability) changed; a repeat of the same
// report only moves UpdatedAt.
func merge(cur homemesh.State, u homemesh.StateUpdate) (homemesh.State, bool) {
	next := cur
	next.UpdatedAt = u.Time
	diff := false
	if u.HasValue && !reflect.DeepEqual(cur.Value, u.Value) {
		next.Value = u.Value
		next.ChangedAt = u.Time
		diff = true
	}
	if len(u.Attributes) > 0 {
		attrs := make(map[string]any, len(cur.Attributes)+len(u.Attributes))
		maps.Copy(attrs, cur.Attributes)
		for k, v := range u.Attributes {
			if old, ok := attrs[k]; !ok || !reflect.DeepEqual(old, v) {
				diff = true
			}
			attrs[k] = v
		}
		next.Attributes = attrs
	}
	if u.Available != nil && *u.Available != cur.Available {
		next.Available = *u.Available
		next.ChangedAt = u.Time
		diff = true
	}
	return next, diff
}

// decodeReports appends the reports in data to out: one JSON object, or an
// array of them as Reporter batches them.
func decodeReports(data []byte, out []homemesh.StateUpdate) ([]homemesh.StateUpdate, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var list []homemesh.StateUpdate
		if err := json.Unmarshal(data, &list); err != nil {
			return out, err
		}
		return append(out, list...), nil
	}
	var u homemesh.StateUpdate
	if err := json.Unmarshal(data, &u); err != nil {
		return out, err
	}
	return append(out, u), nil
}

// stateChangeJSON is json.Marshal(StateChange{…}) from states already in
// JSON, so a state is marshalled once for storage, its change, and as the
// old state of the next change.
func stateChangeJSON(home, device, entity string, kind homemesh.EntityKind, state, old []byte) []byte {
	b := make([]byte, 0, len(state)+len(old)+len(home)+len(device)+len(entity)+len(kind)+72)
	b = append(b, `{"home_id":"`...)
	b = append(b, home...) // IDs are [a-z0-9_-]: nothing to escape
	b = append(b, `","device_id":"`...)
	b = append(b, device...)
	b = append(b, `","entity_id":"`...)
	b = append(b, entity...)
	b = append(b, '"')
	if kind != "" {
		q, _ := json.Marshal(kind) // cannot fail for a string
		b = append(b, `,"kind":`...)
		b = append(b, q...)
	}
	b = append(b, `,"state":`...)
	b = append(b, state...)
	b = append(b, `,"old_state":`...)
	b = append(b, old...)
	return append(b, '}')
}

// stateLogBytes bounds one state-log message, well under the bus's 1 MiB.
const stateLogBytes = 512 << 10

// publishStateLog publishes a batch's changes on the state log, as few
// messages of type state_changes (a JSON array of StateChange) as fit the
// bound. The stream STATES_<home> keeps them for history, which then
// stores, acknowledges and decodes one message per batch instead of one
// per change: the per-message cost was most of a stored state's cost.
func (s *Service) publishStateLog(changes [][]byte) {
	subject := bus.StateLogSubject(s.cfg.Home)
	for len(changes) > 0 {
		payload := []byte{'['}
		n := 0
		for n < len(changes) && (n == 0 || len(payload)+len(changes[n]) < stateLogBytes) {
			if n > 0 {
				payload = append(payload, ',')
			}
			payload = append(payload, changes[n]...)
			n++
		}
		payload = append(payload, ']')
		data := bus.EncodeEnvelopeRaw(s.cfg.Home, "registry", TypeStateChanges, payload)
		if err := s.bus.NATS().Publish(subject, data); err != nil {
			s.log.Warn("state changes not logged", "subject", subject, "changes", n, "err", err)
		}
		changes = changes[n:]
	}
}
