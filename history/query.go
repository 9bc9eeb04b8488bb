package history

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/oklog/ulid/v2"
)

// Query bounds.
const (
	// DefaultSpan is the span of a query that gives no From.
	DefaultSpan = 24 * time.Hour
	// MaxSpan bounds one query's span: a year of hourly statistics and a
	// little more.
	MaxSpan = 400 * 24 * time.Hour
	// maxReplyBytes bounds the JSON of one reply's rows, below the bus's
	// 1 MiB message limit; a page that would exceed it ends early with a
	// cursor.
	maxReplyBytes = 900 << 10
)

// Auto resolution thresholds: the finest tier whose rows for the span fit
// a chart of a few hundred to a few thousand points.
const (
	autoRawSpan  = 26 * time.Hour
	autoFiveSpan = 31 * 24 * time.Hour
)

// homeRequest is the part of every request that names its home.
type homeRequest struct {
	Home string `json:"home"`
}

// decodeRequest parses a request into v and rejects those addressed to
// another home: one history process serves one home, and answering for
// another would leak its data.
func (s *Service) decodeRequest(msg *nats.Msg, v any) error {
	var h homeRequest
	if err := json.Unmarshal(msg.Data, &h); err != nil {
		return homemesh.Invalid("body", "not a JSON request: %s", jsonProblem(err))
	}
	if h.Home != s.cfg.Home {
		return homemesh.Errorf(homemesh.KindNotFound, "home %q is not served here", truncate(h.Home))
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		return homemesh.Invalid("body", "not a valid request: %s", jsonProblem(err))
	}
	return nil
}

// queryRange applies the defaults to [from, to) and checks it.
func queryRange(from, to, now time.Time) (time.Time, time.Time, error) {
	if to.IsZero() {
		to = now
	}
	if from.IsZero() {
		from = to.Add(-DefaultSpan)
	}
	if from.Year() < 1970 || to.Year() > 9999 {
		return from, to, homemesh.Invalid("from", "must be between 1970 and 9999")
	}
	if !from.Before(to) {
		return from, to, homemesh.Invalid("from", "must be before to")
	}
	if to.Sub(from) > MaxSpan {
		return from, to, homemesh.Invalid("to", "span is %v, at most %v", to.Sub(from).Round(time.Hour), MaxSpan)
	}
	return from.UTC(), to.UTC(), nil
}

func queryLimit(limit int) (int, error) {
	switch {
	case limit == 0:
		return DefaultLimit, nil
	case limit < 0 || limit > MaxLimit:
		return 0, homemesh.Invalid("limit", "must be 1 to %d", MaxLimit)
	}
	return limit, nil
}

// resolve picks the tier a query reads. Auto picks by span, then moves to
// a coarser tier when From is older than the entity's kind keeps the
// finer one, so the chart is not empty at its start.
func (s *Service) resolve(entity string, r Resolution, from, to, now time.Time) (Resolution, error) {
	switch r {
	case Raw, FiveMinutes, Hourly:
		return r, nil
	case "", Auto:
	default:
		return "", homemesh.Invalid("resolution", "must be raw, 5m, 1h or auto")
	}
	span := to.Sub(from)
	switch {
	case span <= autoRawSpan:
		r = Raw
	case span <= autoFiveSpan:
		r = FiveMinutes
	default:
		r = Hourly
	}
	kind, _ := s.kindOf(entity) // unknown: the default retention
	ret := s.cfg.Retention.For(kind)
	expired := func(keep time.Duration) bool { return keep != 0 && from.Before(now.Add(-keep)) }
	if r == Raw && expired(ret.Raw) {
		r = FiveMinutes
	}
	if r == FiveMinutes && expired(ret.FiveMinutes) {
		r = Hourly
	}
	return r, nil
}

// Cursors are opaque to clients: base64url of the last row's time in
// microseconds since 1970 and, for events, "/" and its ID.

func encodeCursor(t time.Time, id string) string {
	s := strconv.FormatInt(t.UnixMicro(), 10)
	if id != "" {
		s += "/" + id
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// decodeCursor parses a cursor; withID says whether it must carry an ID.
// The time must lie within [from, to), where every cursor of the query
// lies, or in the statistics bucket that holds from.
func decodeCursor(cursor string, withID bool, from, to time.Time) (time.Time, string, error) {
	if len(cursor) > 128 {
		return time.Time{}, "", homemesh.Invalid("cursor", "too long")
	}
	raw, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil {
		return time.Time{}, "", homemesh.Invalid("cursor", "not a cursor of this query")
	}
	micros, id, hasID := strings.Cut(string(raw), "/")
	if hasID != withID {
		return time.Time{}, "", homemesh.Invalid("cursor", "not a cursor of this query")
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return time.Time{}, "", homemesh.Invalid("cursor", "not a cursor of this query")
	}
	if withID {
		if _, err := ulid.ParseStrict(id); err != nil {
			return time.Time{}, "", homemesh.Invalid("cursor", "not a cursor of this query")
		}
	}
	t := time.UnixMicro(us).UTC()
	if t.Before(from.Add(-Hourly.Bucket())) || !t.Before(to) {
		return time.Time{}, "", homemesh.Invalid("cursor", "outside the query's time range")
	}
	return t, id, nil
}

// binaryKinds are the kinds whose statistics always report on-time.
var binaryKinds = map[homemesh.EntityKind]bool{
	homemesh.KindBinarySensor: true, homemesh.KindSwitch: true, homemesh.KindLight: true,
	homemesh.KindLock: true, homemesh.KindFan: true,
}

func (s *Service) handleHistory(ctx context.Context, msg *nats.Msg) (any, error) {
	var req HistoryRequest
	if err := s.decodeRequest(msg, &req); err != nil {
		return nil, err
	}
	data, err := s.history(ctx, req)
	if err != nil {
		return nil, err
	}
	return natsbus.EncodedJSON(data), nil
}

// history answers req with the JSON of a HistoryReply, encoded as the
// page is read: encoding the records is how the page's size is measured,
// and a year of hourly statistics is too many records to encode twice.
func (s *Service) history(ctx context.Context, req HistoryRequest) ([]byte, error) {
	if err := homemesh.CheckID("entity_id", req.EntityID); err != nil {
		return nil, err
	}
	now := s.now()
	from, to, err := queryRange(req.From, req.To, now)
	if err != nil {
		return nil, err
	}
	limit, err := queryLimit(req.Limit)
	if err != nil {
		return nil, err
	}
	res, err := s.resolve(req.EntityID, req.Resolution, from, to, now)
	if err != nil {
		return nil, err
	}
	q := HistoryQuery{Home: s.cfg.Home, Entity: req.EntityID, From: from, To: to, Resolution: res, Limit: limit}
	if req.Cursor != "" {
		if q.After, _, err = decodeCursor(req.Cursor, false, from, to); err != nil {
			return nil, err
		}
	}
	page, err := s.store.History(ctx, q)
	if err != nil {
		return nil, &homemesh.Error{Op: "history.history", Kind: homemesh.KindUnavailable, Message: "history unavailable", Err: err}
	}
	reply := HistoryReply{EntityID: req.EntityID, Resolution: res}
	// Room for the whole page, which never grows past a record beyond
	// maxReplyBytes: growing a buffer of most of a megabyte copies it.
	points := reply.appendHead(make([]byte, 0, min(maxReplyBytes+4<<10, 256+120*(len(page.Points)+len(page.Stats)))))
	head := len(points)
	// The page ends before its records' JSON passes maxReplyBytes, measured
	// exactly by encoding each record as the reply will.
	skip := func(i int, err error) {
		// Never stored (stores refuse non-finite values); skipped rather
		// than failing the whole page.
		s.log.Warn("history record not encodable", "entity_id", req.EntityID, "err", err)
	}
	var taken, records int
	var last time.Time
	if res == Raw {
		records = len(page.Points)
		points, taken = encodePage(points, head, records, func(b []byte, i int) ([]byte, error) {
			p := &page.Points[i]
			rec := PointRecord{Time: p.Time.UTC()}
			if p.Numeric {
				rec.Value = p.Value
			} else {
				rec.Value = p.State
				rec.Attributes = p.Attrs
			}
			return rec.appendJSON(b)
		}, skip)
		if taken > 0 {
			last = page.Points[taken-1].Time
		}
	} else {
		kind, _ := s.kindOf(req.EntityID)
		alwaysOnTime := binaryKinds[kind]
		records = len(page.Stats)
		points, taken = encodePage(points, head, records, func(b []byte, i int) ([]byte, error) {
			return appendStatRecord(b, &page.Stats[i], alwaysOnTime)
		}, skip)
		if taken > 0 {
			last = page.Stats[taken-1].Start
		}
	}
	more := page.More || taken < records
	if more && !last.IsZero() {
		reply.Next = encodeCursor(last, "")
	}
	return reply.appendTail(points), nil
}

func (s *Service) handleEvents(ctx context.Context, msg *nats.Msg) (any, error) {
	var req EventsRequest
	if err := s.decodeRequest(msg, &req); err != nil {
		return nil, err
	}
	return s.events(ctx, req)
}

func (s *Service) events(ctx context.Context, req EventsRequest) (EventsReply, error) {
	if req.Kind != "" {
		if err := homemesh.CheckID("kind", req.Kind); err != nil {
			return EventsReply{}, err
		}
	}
	if req.DeviceID != "" {
		if err := homemesh.CheckID("device_id", req.DeviceID); err != nil {
			return EventsReply{}, err
		}
	}
	from, to, err := queryRange(req.From, req.To, s.now())
	if err != nil {
		return EventsReply{}, err
	}
	limit, err := queryLimit(req.Limit)
	if err != nil {
		return EventsReply{}, err
	}
	q := EventQuery{Home: s.cfg.Home, Kind: req.Kind, Device: req.DeviceID, From: from, To: to, Limit: limit}
	if req.Cursor != "" {
		if q.AfterTime, q.AfterID, err = decodeCursor(req.Cursor, true, from, to); err != nil {
			return EventsReply{}, err
		}
	}
	page, err := s.store.Events(ctx, q)
	if err != nil {
		return EventsReply{}, &homemesh.Error{Op: "history.events", Kind: homemesh.KindUnavailable, Message: "history unavailable", Err: err}
	}
	reply := EventsReply{Events: make([]EventRecord, 0, len(page.Events))}
	more := page.More
	size := 0
	for i, e := range page.Events {
		size += recordOverhead + len(e.ID) + jsonStringLen(e.Kind) + jsonStringLen(e.Device) + jsonStringLen(e.Entity) + jsonRawLen(e.Data)
		if size > maxReplyBytes && i > 0 {
			more = true
			break
		}
		reply.Events = append(reply.Events, EventRecord{ID: e.ID, Time: e.Time.UTC(), Kind: e.Kind,
			DeviceID: e.Device, EntityID: e.Entity, Data: e.Data})
	}
	if more && len(reply.Events) > 0 {
		last := reply.Events[len(reply.Events)-1]
		reply.Next = encodeCursor(last.Time, last.ID)
	}
	return reply, nil
}

// Reply size accounting. The estimates are upper bounds of what
// encoding/json writes, so that a page cut by them always fits.
const (
	// recordOverhead covers a record's braces, keys, separators and its
	// time (RFC 3339 with nanoseconds).
	recordOverhead = 160
)

// jsonStringLen bounds the length of s as a JSON string: escapes take up
// to six bytes, and encoding/json escapes <, > and & too. s is valid
// UTF-8 (it was decoded from JSON); a multi-byte character takes at most
// twice its bytes (U+2028 and U+2029 become \u2028 and \u2029).
func jsonStringLen(s string) int {
	n := 2
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&':
			n += 6
		case c >= 0x80:
			n += 2
		default:
			n++
		}
	}
	return n
}

// jsonRawLen bounds the length of raw JSON once encoding/json has
// compacted it and escaped <, > and &.
func jsonRawLen(raw []byte) int {
	n := len(raw)
	for _, c := range raw {
		switch {
		case c == '<' || c == '>' || c == '&':
			n += 5
		case c >= 0x80:
			n++
		}
	}
	return n
}
