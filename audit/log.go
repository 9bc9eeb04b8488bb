package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Subject is the subject a home's audit records are stored under.
func Subject(home string) string { return bus.Prefix + "." + home + ".audit" }

// StreamName is the JetStream stream that holds a home's audit records.
func StreamName(home string) string { return "AUDIT_" + home }

// AnchorBucket is the key-value bucket that holds a home's head anchor,
// under the key AnchorKey.
func AnchorBucket(home string) string { return "audit-" + home }

// AnchorKey is the key of the head anchor in AnchorBucket.
const AnchorKey = "head"

// maxAttempts bounds how often one append retries after another process
// appended first. Each retry follows a record that did get in, so running
// out means other appenders kept winning for this many rounds.
const maxAttempts = 100

// Options are the optional parts of a Log.
type Options struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer // may be nil
	// Now is the clock records are stamped with; time.Now when nil.
	Now func() time.Time
}

// Log is the audit log of one home, stored on the bus. Appends from one
// Log are serialised, and appends from every Log of a home, in any process,
// form one linear chain. It is safe for concurrent use.
type Log struct {
	home    string
	subject string
	js      jetstream.JetStream
	stream  jetstream.Stream
	anchors jetstream.KeyValue
	log     *slog.Logger
	now     func() time.Time
	metrics *metrics

	mu        sync.Mutex
	tail      Head // the last record this Log knows of
	tailKnown bool
	anchor    Head   // the anchor as this Log last wrote or read it
	anchorRev uint64 // its KV revision; 0 when unknown
}

// Open opens the audit log of home on conn, creating its stream and anchor
// bucket when they do not exist. The stream keeps records in files, without
// limits, and refuses deletes and purges through the API.
func Open(ctx context.Context, conn *natsbus.Conn, home string, opts Options) (*Log, error) {
	if err := homemesh.CheckID("home", home); err != nil {
		return nil, err
	}
	stream, err := conn.Stream(ctx, jetstream.StreamConfig{
		Name:        StreamName(home),
		Description: "homemesh audit log (hash-chained, append-only)",
		Subjects:    []string{Subject(home)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     -1, MaxBytes: -1, MaxAge: 0, MaxMsgsPerSubject: -1,
		MaxMsgSize: MaxRecordSize,
		Discard:    jetstream.DiscardNew, // never drop old records to make room
		DenyDelete: true,
		DenyPurge:  true,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	anchors, err := conn.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: AnchorBucket(home), Description: "homemesh audit log head anchor", History: 1,
		Storage: jetstream.FileStorage,
	})
	if err != nil {
		return nil, err
	}
	l := &Log{
		home: home, subject: Subject(home), js: conn.JetStream(), stream: stream, anchors: anchors,
		log: opts.Log, now: opts.Now, metrics: newMetrics(opts.Metrics),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// Home is the home whose log this is.
func (l *Log) Home() string { return l.home }

// Append adds e to the end of the chain and returns the stored record. The
// entry is normalised first (see Normalize). When another process appended
// since this Log last looked, it re-reads the end of the chain and tries
// again. The head anchor is advanced after the record is stored; failing
// that is logged, not returned, because the record itself is safe and the
// next append advances the anchor past it.
func (l *Log) Append(ctx context.Context, e Entry) (Record, error) {
	e, err := Normalize(e)
	if err != nil {
		return Record{}, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, err := l.appendLocked(ctx, e)
	if err != nil {
		l.metrics.failures.Inc()
		return Record{}, err
	}
	l.metrics.appends.Inc()
	if err := l.advanceAnchor(ctx, rec.Head()); err != nil {
		l.metrics.anchorFailures.Inc()
		l.log.Error("audit head anchor not advanced", "seq", rec.Seq, "err", err)
	}
	return rec, nil
}

func (l *Log) appendLocked(ctx context.Context, e Entry) (Record, error) {
	var lastSeq uint64 // the stream's last sequence, as a lost race reported it
	for attempt := range maxAttempts {
		if !l.tailKnown {
			if err := l.loadTail(ctx, lastSeq); err != nil {
				return Record{}, err
			}
		}
		rec := Record{Seq: l.tail.Seq + 1, Time: l.now().UTC(), Home: l.home, Entry: e, Prev: l.tail.Hash}
		rec.Seal()
		data, err := rec.Encode()
		if err != nil {
			return Record{}, err
		}
		// The message ID makes a retried publish whose first attempt got in
		// a duplicate rather than a second record.
		ack, err := l.js.PublishMsg(ctx, &nats.Msg{Subject: l.subject, Data: data},
			jetstream.WithExpectStream(StreamName(l.home)), jetstream.WithExpectLastSequence(l.tail.Seq),
			jetstream.WithMsgID(rec.Hash))
		if err == nil && ack.Sequence == rec.Seq {
			l.tail = rec.Head()
			return rec, nil
		}
		l.tailKnown = false
		if err == nil {
			return Record{}, fmt.Errorf("append audit record %d: stored at %d", rec.Seq, ack.Sequence)
		}
		if seq, ok := wrongLastSequence(err); ok {
			l.metrics.conflicts.Inc()
			lastSeq = seq
			// A short random pause desynchronises appenders that keep
			// colliding, so that none of them starves.
			time.Sleep(time.Duration(rand.Int64N(int64(min(attempt+1, 20)) * int64(100*time.Microsecond))))
			continue
		}
		// The publish may have been stored even though its reply was lost.
		if lerr := l.loadTail(ctx, 0); lerr == nil && l.tail.Hash == rec.Hash {
			return rec, nil
		}
		return Record{}, unavailable("append audit record", err)
	}
	return Record{}, unavailable("append audit record", fmt.Errorf("lost the race for the end of the chain %d times", maxAttempts))
}

// wrongLastSequence reports whether err says another append came first,
// and the stream's last sequence when the server named it ("wrong last
// sequence: 123"), which saves reading the stream state again.
func wrongLastSequence(err error) (last uint64, ok bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || (apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence &&
		apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return 0, false
	}
	_, num, found := strings.Cut(apiErr.Description, ": ")
	if n, err := strconv.ParseUint(num, 10, 64); found && err == nil {
		return n, true
	}
	return 0, true
}

// loadTail reads the last stored record, at sequence last when known (not
// 0). A last record that storage cannot serve, or that does not verify,
// stops appends: chaining onto it would bless the damage.
func (l *Log) loadTail(ctx context.Context, last uint64) error {
	if last == 0 {
		info, err := l.stream.Info(ctx)
		if err != nil {
			return unavailable("read the audit stream state", err)
		}
		last = info.State.LastSeq
	}
	if last == 0 {
		l.tail, l.tailKnown = Head{Seq: 0, Hash: ZeroHash}, true
		return nil
	}
	msg, err := l.stream.GetMsg(ctx, last)
	if err != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders)) {
		return unavailable("read the end of the audit log", err)
	}
	var rec Record
	if err == nil {
		rec, err = Decode(msg.Data)
	}
	if err == nil && (rec.Seq != last || rec.ComputeHash() != rec.Hash || rec.Home != l.home) {
		err = errors.New("its content does not match its hash and place")
	}
	if err != nil {
		return &homemesh.Error{Op: "audit.append", Kind: homemesh.KindInternal,
			Message: "the audit log is damaged; run homemesh audit verify",
			Err:     fmt.Errorf("last audit record %d: %w", last, err)}
	}
	l.tail, l.tailKnown = rec.Head(), true
	return nil
}

// advanceAnchor moves the head anchor forward to h, never backward: with
// several appenders a slower one must not overwrite a newer head.
func (l *Log) advanceAnchor(ctx context.Context, h Head) error {
	data, _ := json.Marshal(h)
	for range maxAttempts {
		if l.anchorRev == 0 {
			if err := l.readAnchor(ctx); err != nil {
				return err
			}
		}
		if l.anchor.Seq >= h.Seq {
			return nil
		}
		var rev uint64
		var err error
		if l.anchorRev == 0 {
			rev, err = l.anchors.Create(ctx, AnchorKey, data)
		} else {
			rev, err = l.anchors.Update(ctx, AnchorKey, data, l.anchorRev)
		}
		if err == nil {
			l.anchor, l.anchorRev = h, rev
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			l.anchorRev = 0
			return err
		}
		l.anchorRev = 0 // another process moved it: read and compare again
	}
	return errors.New("anchor kept moving")
}

// readAnchor loads the anchor and its revision; an absent anchor leaves
// both zero.
func (l *Log) readAnchor(ctx context.Context) error {
	a, rev, err := l.loadAnchor(ctx)
	if err != nil {
		return err
	}
	l.anchor, l.anchorRev = Head{}, 0
	if a != nil {
		l.anchor, l.anchorRev = *a, rev
	}
	return nil
}

// loadAnchor returns the stored head anchor, or nil when there is none.
func (l *Log) loadAnchor(ctx context.Context) (*Head, uint64, error) {
	e, err := l.anchors.Get(ctx, AnchorKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, unavailable("read the audit head anchor", err)
	}
	var h Head
	if err := json.Unmarshal(e.Value(), &h); err != nil || (h.Seq > 0 && !validHash(h.Hash)) {
		// A damaged anchor cannot vouch for anything; the verifier then
		// reports the chain as unanchored.
		return &Head{Seq: h.Seq, Hash: "damaged"}, e.Revision(), nil
	}
	return &h, e.Revision(), nil
}

// Anchor returns the head anchor, or nil when nothing was ever appended.
func (l *Log) Anchor(ctx context.Context) (*Head, error) {
	a, _, err := l.loadAnchor(ctx)
	return a, err
}

func unavailable(what string, err error) error {
	return &homemesh.Error{Op: "audit", Kind: homemesh.KindUnavailable, Message: "the audit log is unavailable",
		Err: fmt.Errorf("%s: %w", what, err)}
}
