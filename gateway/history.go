package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/registry"
)

// HistoryReader is what the gateway needs of the history service: one page
// of an entity's history, as the service's JSON (forwarded as is: a year
// of hourly statistics is too large to decode and encode again on every
// request), and one page of stored events. *history.Client implements it.
type HistoryReader interface {
	HistoryJSON(ctx context.Context, req history.HistoryRequest) ([]byte, error)
	Events(ctx context.Context, req history.EventsRequest) (history.EventsReply, error)
}

var _ HistoryReader = (*history.Client)(nil)

// defaultSpan is how far back a history query reaches when it names no
// start.
const defaultSpan = 24 * time.Hour

// maxCursor bounds the opaque cursor a client hands back: the service's
// cursors are far shorter, and a longer one is not one of them.
const maxCursor = 1024

// historyQuery is the query string of a history or events request.
type historyQuery struct {
	from, to   time.Time
	resolution history.Resolution
	cursor     string
	limit      int
	kind       string // events only
	deviceID   string // events only
}

// The query parameters each route accepts.
var (
	historyParams = []string{"from", "to", "resolution", "cursor", "limit"}
	eventsParams  = []string{"kind", "device_id", "from", "to", "cursor", "limit"}
)

// parseHistoryQuery reads q strictly (strictQuery), accepting only the
// parameters in known. Times are RFC 3339; to defaults to now and from to
// 24 hours before to. Every error is KindInvalid naming the parameter.
func parseHistoryQuery(q url.Values, known []string, now time.Time) (historyQuery, error) {
	var hq historyQuery
	if err := strictQuery(q, known...); err != nil {
		return hq, err
	}
	var err error
	hq.to = now
	if s := q.Get("to"); s != "" {
		if hq.to, err = parseTime("to", s); err != nil {
			return hq, err
		}
	}
	hq.from = hq.to.Add(-defaultSpan)
	if s := q.Get("from"); s != "" {
		if hq.from, err = parseTime("from", s); err != nil {
			return hq, err
		}
	}
	hq.from, hq.to = hq.from.UTC(), hq.to.UTC()
	if !hq.from.Before(hq.to) {
		return hq, homemesh.Invalid("from", "must be before to")
	}
	switch r := history.Resolution(q.Get("resolution")); r {
	case "":
		hq.resolution = history.Auto
	case history.Raw, history.FiveMinutes, history.Hourly, history.Auto:
		hq.resolution = r
	default:
		return hq, homemesh.Invalid("resolution", "must be raw, 5m, 1h or auto")
	}
	if hq.cursor = q.Get("cursor"); len(hq.cursor) > maxCursor {
		return hq, homemesh.Invalid("cursor", "is not the next of a previous page")
	}
	hq.limit = history.DefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > history.MaxLimit {
			return hq, homemesh.Invalid("limit", "must be a whole number from 1 to %d", history.MaxLimit)
		}
		hq.limit = n
	}
	if s := q.Get("kind"); s != "" {
		if err := homemesh.CheckID("kind", s); err != nil {
			return hq, err
		}
		hq.kind = s
	}
	if s := q.Get("device_id"); s != "" {
		if err := homemesh.CheckID("device_id", s); err != nil {
			return hq, err
		}
		hq.deviceID = s
	}
	return hq, nil
}

// entityHistory answers GET /api/v1/entities/{id}/history. The entity is
// looked up exactly as GET /api/v1/entities/{id} does: one out of the
// caller's scope does not exist for them.
func (g *Gateway) entityHistory(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r, "id")
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	q, err := parseHistoryQuery(r.URL.Query(), historyParams, time.Now())
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if _, err := g.visibleEntity(r.Context(), c, id); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	reply, err := g.history.HistoryJSON(r.Context(), history.HistoryRequest{
		EntityID: id, From: q.from, To: q.to, Resolution: q.resolution, Cursor: q.cursor, Limit: q.limit,
	})
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSONBody(w, http.StatusOK, reply)
}

// historyEvents answers GET /api/v1/history/events. A caller with a scope
// gets only the events the event stream would show them (see
// entityIndex.visible); a page may then hold fewer events than the limit
// while more follow, so clients continue while next is set. A device
// outside the caller's scope does not exist for them.
func (g *Gateway) historyEvents(w http.ResponseWriter, r *http.Request, c caller) {
	q, err := parseHistoryQuery(r.URL.Query(), eventsParams, time.Now())
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if q.deviceID != "" && !c.claims.Scope.IsZero() {
		if _, err := g.visibleDevice(r.Context(), c, q.deviceID); err != nil {
			writeError(w, r, g.log, err)
			return
		}
	}
	reply, err := g.history.Events(r.Context(), history.EventsRequest{
		Kind: q.kind, DeviceID: q.deviceID, From: q.from, To: q.to, Cursor: q.cursor, Limit: q.limit,
	})
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	v := viewer{role: c.claims.Role, scope: c.claims.Scope}
	index := newEntityIndex()
	if !v.scope.IsZero() {
		if index, err = g.loadEntityIndex(r.Context()); err != nil {
			writeError(w, r, g.log, err)
			return
		}
	}
	kept := make([]history.EventRecord, 0, len(reply.Events))
	for _, e := range reply.Events {
		m, ok := storedEventMeta(e)
		if ok && index.visible(v, m, storedEventRoles(e.Kind)) {
			kept = append(kept, e)
		}
	}
	reply.Events = kept
	writeJSON(w, http.StatusOK, reply)
}

// loadEntityIndex builds an index of every device and entity, for scope
// decisions about many events at once.
func (g *Gateway) loadEntityIndex(ctx context.Context) (*entityIndex, error) {
	ds, err := g.reg.Devices(ctx)
	if err != nil {
		return nil, err
	}
	es, err := g.reg.Entities(ctx, registry.EntityFilter{})
	if err != nil {
		return nil, err
	}
	x := newEntityIndex()
	for _, d := range ds {
		x.rooms[d.ID] = d.RoomID
	}
	for _, e := range es {
		x.putEntity(e)
	}
	x.loaded = true
	return x, nil
}
