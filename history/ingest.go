package history

import (
	"context"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// batchRowsPerMessage × BatchSize bounds the points and events of a batch.
const batchRowsPerMessage = 50

// Write retry bounds: a failed write is retried after retryMin, doubling
// up to retryMax, until it succeeds or the service stops.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// writeTimeout bounds one write attempt, so a store that hangs is
	// treated like one that fails.
	writeTimeout = 30 * time.Second
)

// pending is a batch being built or written: the decoded messages and the
// bus messages to acknowledge once they are stored.
type pending struct {
	batch Batch
	msgs  []jetstream.Msg
	seqs  []uint64 // the stream sequence of each of msgs
	// maxSeq is the highest sequence in the batch; a message at or below
	// it may be a redelivery of one already in the batch.
	maxSeq uint64
	rows   int // points and events in the batch
}

func (p *pending) len() int { return len(p.msgs) }

// has reports whether the batch already holds the message at seq.
func (p *pending) has(seq uint64) bool {
	if seq > p.maxSeq {
		return false
	}
	for _, m := range p.batch.Messages {
		if m.Seq == seq {
			return true
		}
	}
	return false
}

// ingest consumes one stream: messages are decoded as they arrive into
// the next batch while the previous one is written, and acknowledged only
// once the store has committed them. While the store fails, the batch is
// retried and no more messages are pulled than the two batches hold and
// the pull buffer.
func (s *Service) ingest(ctx context.Context, st ingestStream, cons jetstream.Consumer) {
	msgs := make(chan jetstream.Msg, s.cfg.BatchSize)
	go func() {
		defer close(msgs)
		s.pull(ctx, st, cons, msgs)
	}()

	toWrite := make(chan *pending)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for p := range toWrite {
			s.write(ctx, p)
		}
	}()
	defer func() { close(toWrite); <-written }()

	newPending := func() *pending {
		return &pending{
			batch: Batch{Home: s.cfg.Home, Stream: st.name, Messages: make([]Message, 0, s.cfg.BatchSize)},
			msgs:  make([]jetstream.Msg, 0, s.cfg.BatchSize),
			seqs:  make([]uint64, 0, s.cfg.BatchSize),
		}
	}
	cur := newPending()
	lag := s.metrics.lag.WithLabelValues(st.name)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	heartbeat := time.NewTicker(ackWait / 3)
	defer heartbeat.Stop()
	// A batch is due once it holds BatchSize messages (or its rows
	// bound) or has waited BatchWait. A due batch goes to the writer as
	// soon as the writer is free; while the writer is still busy with the
	// previous one, the due batch keeps growing up to growFactor times
	// its size. Under sustained load batches therefore grow until one
	// write absorbs what arrived during the last: the statistics rows a
	// write merges follow the entities in a batch, not its points, so a
	// larger batch costs much less per point. At low load batches stay
	// small and prompt.
	due := false
	for {
		full := cur.len() >= growFactor*s.cfg.BatchSize || cur.rows >= growFactor*s.batchRows()
		var toWriter chan<- *pending
		if due || full {
			toWriter = toWrite
		}
		var incoming <-chan jetstream.Msg
		if !full {
			incoming = msgs
		}
		select {
		case toWriter <- cur:
			cur, due = newPending(), false
			timer.Stop()
		case <-heartbeat.C:
			// Messages held while the writer is busy or the store is down
			// are marked in progress, so that JetStream does not hand them
			// to another process meanwhile.
			inProgress(cur.msgs)
		case <-timer.C:
			due = cur.len() > 0
		case m, ok := <-incoming:
			if !ok {
				if cur.len() > 0 {
					toWrite <- cur
				}
				return
			}
			if s.add(st, cur, m, lag) && cur.len() == 1 {
				timer.Reset(s.cfg.BatchWait)
			}
			if cur.len() >= s.cfg.BatchSize || cur.rows >= s.batchRows() {
				due = true
			}
		}
	}
}

// growFactor bounds how far a due batch grows while the writer is busy.
// A process then holds at most two such batches, the pull buffer and the
// channel between them: heldMessages batch sizes, within the consumer's
// MaxAckPending.
const (
	growFactor   = 5
	heldMessages = 2*growFactor + 3
)

// pullHeartbeat is how often the server proves a pull is alive; two
// missed heartbeats mean the consumer is gone.
var pullHeartbeat = 5 * time.Second

// pullMaxBytes bounds what one stream's pull asks the server for. The
// three streams share one connection, and a server whose output to a
// connection exceeds its max_pending (64 MiB by default) cuts it off as a
// slow consumer: every message then in flight waits out AckWait before
// it is delivered again, stalling ingest for tens of seconds. Pulling by
// message count alone asked for 2 × BatchSize state-log messages of 100
// changes, about 40 MiB a stream, and hit that limit under load.
const pullMaxBytes = 8 << 20

// pull passes the messages of cons to msgs until ctx ends. A consumer that
// disappears (deleted by an operator, lost with a server's state) is
// created again: it then delivers the stream from its start, and the
// store skips what it already holds.
func (s *Service) pull(ctx context.Context, st ingestStream, cons jetstream.Consumer, msgs chan<- jetstream.Msg) {
	for ctx.Err() == nil {
		it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(2*s.cfg.BatchSize, pullMaxBytes),
			jetstream.PullExpiry(2*pullHeartbeat+time.Second), jetstream.PullHeartbeat(pullHeartbeat),
			jetstream.WithMessagesErrOnMissingHeartbeat(true))
		if err == nil {
			stopDrain := context.AfterFunc(ctx, it.Drain)
			for {
				var m jetstream.Msg
				if m, err = it.Next(); err != nil {
					break
				}
				msgs <- m
			}
			stopDrain()
			it.Stop()
			if ctx.Err() != nil {
				return // drained: a clean stop
			}
		}
		s.log.Warn("history consumer lost; creating it again", "stream", st.name, "err", err)
		for ctx.Err() == nil {
			// Pause first: a server that keeps refusing is not hammered.
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			if cons, err = s.consumer(ctx, st); err == nil {
				break
			}
		}
	}
}

// batchRows bounds the points and events of one batch: telemetry carries
// up to MaxTelemetryPoints per message, and a batch of BatchSize such
// messages would be one enormous transaction.
func (s *Service) batchRows() int { return batchRowsPerMessage * s.cfg.BatchSize }

// add decodes m into p. A message that cannot be stored is terminated: it
// would fail the same way on every redelivery. It reports whether m joined
// the batch.
func (s *Service) add(st ingestStream, p *pending, m jetstream.Msg, lag prometheus.Gauge) bool {
	meta, err := m.Metadata()
	if err != nil {
		s.log.Warn("history message without metadata", "stream", st.name, "subject", m.Subject(), "err", err)
		s.metrics.rejected.WithLabelValues(reasonMalformed).Inc()
		_ = m.Term()
		return false
	}
	seq := meta.Sequence.Stream
	lag.Set(float64(meta.NumPending))
	if p.has(seq) {
		// A redelivery of a message this batch holds: it is stored (or
		// not) with the batch, and acknowledged with it.
		p.msgs = append(p.msgs, m)
		p.seqs = append(p.seqs, seq)
		return true
	}
	msg := Message{Seq: seq}
	if err := st.decode(s, m.Subject(), m.Data(), &msg); err != nil {
		reason := rejectionReason(err)
		s.rejected(reason, st.name, seq, m.Subject(), err)
		_ = m.TermWithReason("history: " + reason)
		return false
	}
	p.batch.Messages = append(p.batch.Messages, msg)
	p.rows += len(msg.Points) + len(msg.Events)
	p.msgs = append(p.msgs, m)
	p.seqs = append(p.seqs, seq)
	p.maxSeq = max(p.maxSeq, seq)
	return true
}

// keepInProgress marks msgs in progress every third of the ack wait until
// the returned function is called, so that neither a slow write nor an
// outage makes JetStream hand them to another process meanwhile.
func (s *Service) keepInProgress(msgs []jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(ackWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				inProgress(msgs)
			}
		}
	}()
	return func() { close(done); <-stopped }
}

func inProgress(msgs []jetstream.Msg) {
	for _, m := range msgs {
		_ = m.InProgress()
	}
}

// write stores p, then acknowledges its messages. A lost ack only causes
// a redelivery, which the store recognises and skips, so acks are not
// waited for. If the service stops while the store is down, p is handed
// back unstored and JetStream delivers it again.
//
// A batch the store refuses as invalid would be refused forever: its
// messages are written one by one so that only the ones at fault are
// terminated. The decoder checks what stores check, so this is a safety
// net against a consumer stuck on one message.
func (s *Service) write(ctx context.Context, p *pending) {
	err := s.writeRetrying(ctx, p)
	switch {
	case err == nil:
		for _, m := range p.msgs {
			_ = m.Ack()
		}
	case homemesh.ErrorKind(err) != homemesh.KindInvalid:
		// Stopped with the store down: handed back at once, for another
		// history process or the next start, rather than after the ack
		// wait.
		for _, m := range p.msgs {
			_ = m.Nak()
		}
	case len(p.batch.Messages) == 1:
		s.rejected(reasonRefused, p.batch.Stream, p.batch.Messages[0].Seq, p.msgs[0].Subject(), err)
		for _, m := range p.msgs {
			_ = m.TermWithReason("history: " + reasonRefused)
		}
	default:
		for _, msg := range p.batch.Messages {
			one := &pending{batch: Batch{Home: p.batch.Home, Stream: p.batch.Stream, Messages: []Message{msg}}, maxSeq: msg.Seq}
			for i, seq := range p.seqs {
				if seq == msg.Seq {
					one.msgs = append(one.msgs, p.msgs[i])
					one.seqs = append(one.seqs, seq)
				}
			}
			s.write(ctx, one)
		}
	}
}

// writeRetrying stores p, retrying with a capped exponential backoff until
// the store accepts it, refuses it as invalid, or the service stops.
func (s *Service) writeRetrying(ctx context.Context, p *pending) error {
	defer s.keepInProgress(p.msgs)()
	delay := retryMin
	var failingSince time.Time
	for attempt := 1; ; attempt++ {
		start := time.Now()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		res, err := s.store.Write(wctx, p.batch)
		cancel()
		if err == nil {
			s.metrics.writeSeconds.Observe(time.Since(start).Seconds())
			s.metrics.points.Add(float64(res.Points))
			s.metrics.events.Add(float64(res.Events))
			s.metrics.duplicates.Add(float64(res.Duplicates))
			if !failingSince.IsZero() {
				s.log.Info("history store writable again", "stream", p.batch.Stream,
					"attempts", attempt, "outage", time.Since(failingSince).Round(time.Millisecond).String())
			}
			return nil
		}
		s.metrics.writeErrors.Inc()
		if homemesh.ErrorKind(err) == homemesh.KindInvalid {
			return err
		}
		if failingSince.IsZero() {
			failingSince = start
			// Logged once per outage: a retry loop must not flood the log.
			s.log.Error("history store write failed; retrying until it recovers", "stream", p.batch.Stream,
				"messages", len(p.batch.Messages), "err", err)
		}
		if ctx.Err() != nil {
			s.log.Warn("history stopping with a batch not stored; it will be delivered again",
				"stream", p.batch.Stream, "messages", len(p.batch.Messages), "err", err)
			return err
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
		delay = min(2*delay, retryMax)
	}
}

// Rejection log bounds: a burst of rejectLogBurst lines, then
// rejectLogRate a second. A device flooding the bus with garbage must not
// flood the log too; every rejection is still counted.
const (
	rejectLogBurst = 20
	rejectLogRate  = 5
)

// rejectLog is a token bucket for rejection lines.
type rejectLog struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

// allow reports whether a line may be logged now and how many were
// suppressed since the last one.
func (r *rejectLog) allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		r.tokens = rejectLogBurst
	} else {
		r.tokens = min(rejectLogBurst, r.tokens+now.Sub(r.last).Seconds()*rejectLogRate)
	}
	r.last = now
	if r.tokens < 1 {
		r.suppressed++
		return false, 0
	}
	r.tokens--
	n := r.suppressed
	r.suppressed = 0
	return true, n
}

// rejected counts a message that can never be stored and logs why,
// without its payload.
func (s *Service) rejected(reason, stream string, seq uint64, subject string, err error) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	ok, suppressed := s.rejectLog.allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"reason", reason, "stream", stream, "stream_seq", seq, "subject", subject, "err", err}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	s.log.Warn("history message rejected", attrs...)
}
