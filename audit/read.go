package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Paging limits of List.
const (
	DefaultLimit = 100
	MaxLimit     = 500
	// maxScan bounds the records one List call reads while filtering, so a
	// narrow filter over a long log costs bounded work per page; the cursor
	// carries on from where the scan stopped.
	maxScan = 5000
)

// fetchBatch is how many records one fetch from the stream asks for.
const fetchBatch = 256

// fetchWait is how long a fetch waits for records the stream's state
// promised; it ends a scan whose last records storage no longer serves.
const fetchWait = 2 * time.Second

// Query selects records for List. Zero fields select everything.
type Query struct {
	From     time.Time // records at or after this time
	To       time.Time // records before this time
	Action   string    // records of this action
	AfterSeq uint64    // records after this sequence number (the cursor)
	Limit    int       // at most this many records; DefaultLimit when 0, at most MaxLimit
}

// Page is one page of List, in sequence order. Next, when not zero, is the
// AfterSeq of the following page; a page may hold fewer than Limit records
// (even none) and still have a Next, when the scan stopped at its bound.
type Page struct {
	Records []Record `json:"records"`
	Next    uint64   `json:"next,omitempty"`
}

// Check validates q, naming the offending field.
func (q Query) Check() error {
	switch {
	case q.Limit < 0 || q.Limit > MaxLimit:
		return homemesh.Invalid("limit", "must be between 1 and %d", MaxLimit)
	case q.Action != "" && !validAction(q.Action):
		return homemesh.Invalid("action", "must be 1 to %d characters of a-z, 0-9 and _", maxActionName)
	case !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To):
		return homemesh.Invalid("to", "must be after from")
	}
	return nil
}

func (q Query) match(r Record) bool {
	return (q.From.IsZero() || !r.Time.Before(q.From)) &&
		(q.To.IsZero() || r.Time.Before(q.To)) &&
		(q.Action == "" || r.Action == q.Action)
}

// List returns the records that q selects, one page at a time. A stored
// record that does not decode is an error: it means the log was tampered
// with, which `homemesh audit verify` explains.
func (l *Log) List(ctx context.Context, q Query) (Page, error) {
	if err := q.Check(); err != nil {
		return Page{}, err
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	page := Page{Records: []Record{}}
	scanned := 0
	end, err := l.scan(ctx, q.AfterSeq+1, func(pos uint64, data []byte) (bool, error) {
		rec, err := Decode(data)
		if err != nil {
			return false, &homemesh.Error{Op: "audit.list", Kind: homemesh.KindInternal,
				Message: fmt.Sprintf("audit record %d is damaged; run homemesh audit verify", pos), Err: err}
		}
		scanned++
		if q.match(rec) {
			page.Records = append(page.Records, rec)
		}
		if len(page.Records) == limit || scanned == maxScan {
			page.Next = pos
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return Page{}, err
	}
	if page.Next >= end {
		page.Next = 0 // nothing after it
	}
	return page, nil
}

// Result is what verifying a whole stored log found.
type Result struct {
	Records uint64 `json:"records"`
	Head    Head   `json:"head"`             // the last good record
	Anchor  *Head  `json:"anchor,omitempty"` // the stored head anchor
}

// Verify reads the whole log, from the first record, and checks it with a
// Verifier against the head anchor and the expected heads (see
// Verifier.Expect). A tampered log yields a *Problem naming the first bad
// record; other errors mean the log could not be read.
func (l *Log) Verify(ctx context.Context, expect ...Head) (Result, error) {
	anchor, err := l.Anchor(ctx)
	if err != nil {
		return Result{}, err
	}
	v := NewVerifier(l.home, anchor)
	v.Expect(expect...)
	var n uint64
	last, err := l.scan(ctx, 1, func(pos uint64, data []byte) (bool, error) {
		rec, err := Decode(data)
		if err != nil {
			return false, v.Malformed(pos, err)
		}
		if err := v.CheckStored(pos, rec); err != nil {
			return false, err
		}
		n++
		return true, nil
	})
	res := Result{Records: n, Head: v.Head(), Anchor: anchor}
	if err != nil {
		return res, err
	}
	if err := v.Ended(last); err != nil {
		return res, err
	}
	return res, v.Finish()
}

// scan calls visit with each stored message from sequence start on, in
// order, until visit returns false or an error, or the messages stored when
// the scan began are exhausted. It returns the stream's last sequence at
// that time.
func (l *Log) scan(ctx context.Context, start uint64, visit func(pos uint64, data []byte) (bool, error)) (uint64, error) {
	info, err := l.stream.Info(ctx)
	if err != nil {
		return 0, unavailable("read the audit stream state", err)
	}
	last := info.State.LastSeq
	if start > last || info.State.Msgs == 0 {
		return last, nil
	}
	cons, err := l.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return last, unavailable("read the audit log", err)
	}
	for {
		batch, err := cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			return last, unavailable("read the audit log", err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return last, unavailable("read the audit log", err)
			}
			more, err := visit(md.Sequence.Stream, msg.Data())
			if err != nil || !more {
				return last, err
			}
			if md.Sequence.Stream >= last || md.NumPending == 0 {
				return last, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
			return last, unavailable("read the audit log", err)
		}
		if got == 0 {
			// The state promised more, but storage serves nothing further.
			return last, nil
		}
	}
}
