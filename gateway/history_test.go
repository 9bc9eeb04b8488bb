package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
)

// historyResponder answers the history service's verbs on the bus for
// testHome: it remembers every request and answers events queries from a
// list the test sets, filtered by kind, device and time as the service
// does. History queries get two points at From and To−1s, so the test
// sees what was asked.
type historyResponder struct {
	subs []*nats.Subscription

	mu       sync.Mutex
	requests []history.HistoryRequest
	events   []history.EventRecord
}

func serveHistory(t testing.TB, conn *natsbus.Conn) *historyResponder {
	t.Helper()
	hr := &historyResponder{}
	serve := func(verb string, h natsbus.Handler) {
		sub, err := conn.Handle(bus.ServiceSubject(history.ServiceName, verb), history.ServiceName, h)
		if err != nil {
			t.Fatal(err)
		}
		hr.subs = append(hr.subs, sub)
	}
	t.Cleanup(hr.stop)
	serve("history", func(_ context.Context, msg *nats.Msg) (any, error) {
		var req history.HistoryRequest
		if err := json.Unmarshal(msg.Data, &req); err != nil {
			return nil, homemesh.Invalid("body", "%v", err)
		}
		if req.Home != testHome {
			return nil, homemesh.Errorf(homemesh.KindNotFound, "home %q is not served here", req.Home)
		}
		hr.mu.Lock()
		hr.requests = append(hr.requests, req)
		hr.mu.Unlock()
		res := req.Resolution
		if res == history.Auto {
			res = history.FiveMinutes
		}
		mean := 21.5
		return history.HistoryReply{EntityID: req.EntityID, Resolution: res, Next: "after-" + req.Cursor, Points: []history.PointRecord{
			{Time: req.From, Mean: &mean, Count: 3},
			{Time: req.To.Add(-time.Second), Value: "on"},
		}}, nil
	})
	serve("events", func(_ context.Context, msg *nats.Msg) (any, error) {
		var req history.EventsRequest
		if err := json.Unmarshal(msg.Data, &req); err != nil {
			return nil, homemesh.Invalid("body", "%v", err)
		}
		if req.Home != testHome {
			return nil, homemesh.Errorf(homemesh.KindNotFound, "home %q is not served here", req.Home)
		}
		hr.mu.Lock()
		defer hr.mu.Unlock()
		out := []history.EventRecord{}
		for _, e := range hr.events {
			if (req.Kind == "" || e.Kind == req.Kind) && (req.DeviceID == "" || e.DeviceID == req.DeviceID) &&
				!e.Time.Before(req.From) && e.Time.Before(req.To) && len(out) < req.Limit {
				out = append(out, e)
			}
		}
		return history.EventsReply{Events: out}, nil
	})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	return hr
}

// stop ends the responder: the home then has no history service.
func (hr *historyResponder) stop() {
	for _, sub := range hr.subs {
		_ = sub.Unsubscribe()
	}
}

func (hr *historyResponder) last(t *testing.T) history.HistoryRequest {
	t.Helper()
	hr.mu.Lock()
	defer hr.mu.Unlock()
	if len(hr.requests) == 0 {
		t.Fatal("the history service was not asked")
	}
	return hr.requests[len(hr.requests)-1]
}

func (hr *historyResponder) setEvents(es []history.EventRecord) {
	hr.mu.Lock()
	defer hr.mu.Unlock()
	hr.events = es
}

func TestEntityHistoryForwardsTheQuery(t *testing.T) {
	h := newHome(t)
	token := h.tokens[pOwner]

	t.Run("every parameter", func(t *testing.T) {
		q := url.Values{"from": {"2026-03-01T10:00:00+01:00"}, "to": {"2026-03-02T09:00:00Z"},
			"resolution": {"1h"}, "cursor": {"c1"}, "limit": {"50"}}
		got := decode[history.HistoryReply](t, h.do(t, "GET", "/api/v1/entities/lamp_light/history?"+q.Encode(), token, nil), http.StatusOK)
		want := history.HistoryRequest{Home: testHome, EntityID: "lamp_light",
			From: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC), To: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC),
			Resolution: history.Hourly, Cursor: "c1", Limit: 50}
		if diff := cmp.Diff(want, h.history.last(t)); diff != "" {
			t.Errorf("request (-want +got):\n%s", diff)
		}
		if got.EntityID != "lamp_light" || got.Resolution != history.Hourly || got.Next != "after-c1" || len(got.Points) != 2 ||
			!got.Points[0].Time.Equal(want.From) || got.Points[0].Mean == nil || *got.Points[0].Mean != 21.5 || got.Points[1].Value != "on" {
			t.Errorf("reply = %+v", got)
		}
	})

	t.Run("defaults: the last 24 hours, auto resolution, 1000 rows", func(t *testing.T) {
		before := time.Now()
		decode[history.HistoryReply](t, h.do(t, "GET", "/api/v1/entities/lamp_light/history", token, nil), http.StatusOK)
		got := h.history.last(t)
		if got.To.Before(before.Add(-time.Second)) || got.To.After(time.Now()) {
			t.Errorf("to = %v, want about now", got.To)
		}
		if span := got.To.Sub(got.From); span != 24*time.Hour {
			t.Errorf("span = %v, want 24h", span)
		}
		if got.Resolution != history.Auto || got.Limit != history.DefaultLimit || got.Cursor != "" {
			t.Errorf("request = %+v", got)
		}
	})

	t.Run("from defaults to 24 hours before to", func(t *testing.T) {
		decode[history.HistoryReply](t, h.do(t, "GET", "/api/v1/entities/lamp_light/history?to=2026-03-02T00:00:00Z", token, nil), http.StatusOK)
		if got := h.history.last(t); !got.From.Equal(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("from = %v", got.From)
		}
	})

	bad := []struct{ query, field string }{
		{"from=yesterday", "from"},
		{"to=2026-03-02", "to"},
		{"from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z", "from"},
		{"from=2026-03-02T00:00:00Z&to=2026-03-02T00:00:00Z", "from"},
		{"resolution=10m", "resolution"},
		{"limit=0", "limit"},
		{"limit=10001", "limit"},
		{"limit=ten", "limit"},
		{"from=", "from"},
		{"limit=1&limit=2", "limit"},
		{"kind=light", "kind"}, // an events parameter
		{"color=red", "color"},
	}
	for _, tt := range bad {
		t.Run("rejects "+tt.query, func(t *testing.T) {
			h.do(t, "GET", "/api/v1/entities/lamp_light/history?"+tt.query, token, nil).wantError(t, http.StatusBadRequest, "invalid", tt.field)
		})
	}

	t.Run("an unknown entity is not found", func(t *testing.T) {
		h.do(t, "GET", "/api/v1/entities/nope/history", token, nil).wantError(t, http.StatusNotFound, "not_found", "")
	})
	t.Run("an entity outside the scope is not found", func(t *testing.T) {
		h.do(t, "GET", "/api/v1/entities/door_lock/history", h.tokens[pScopedGst], nil).wantError(t, http.StatusNotFound, "not_found", "")
		decode[history.HistoryReply](t, h.do(t, "GET", "/api/v1/entities/lamp_light/history", h.tokens[pScopedGst], nil), http.StatusOK)
	})
}

// TestHistoryEventsFollowScopeAndRole checks that stored events are shown
// as the event stream shows live ones: by role for the kind, and by scope
// for what they concern.
func TestHistoryEventsFollowScopeAndRole(t *testing.T) {
	h := newHome(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	payload := func(v any) json.RawMessage {
		data, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	lamp := homemesh.Entity{ID: "lamp_light", DeviceID: "lamp", Kind: homemesh.KindLight}
	sensor := homemesh.Entity{ID: "bedroom_temperature", DeviceID: "bedsensor", Kind: homemesh.KindSensor}
	events := []history.EventRecord{
		{ID: "e1", Time: at, Kind: registry.EventEntityUpdated, DeviceID: "lamp", EntityID: "lamp_light", Data: payload(lamp)},
		{ID: "e2", Time: at.Add(time.Minute), Kind: registry.EventEntityUpdated, DeviceID: "bedsensor", EntityID: "bedroom_temperature", Data: payload(sensor)},
		{ID: "e3", Time: at.Add(2 * time.Minute), Kind: registry.EventDeviceUpdated, DeviceID: "door", Data: payload(homemesh.Device{ID: "door", RoomID: "hall"})},
		{ID: "e4", Time: at.Add(3 * time.Minute), Kind: auth.EventCredentialRevoked, Data: payload(map[string]string{"username": "z2m"})},
		{ID: "e5", Time: at.Add(4 * time.Minute), Kind: auth.EventKeysRotated},
		{ID: "e6", Time: at.Add(5 * time.Minute), Kind: "device_throttled", DeviceID: "lamp", Data: payload(map[string]string{"reason": "rate"})},
		// The registry's kinds must carry what they concern: one that does
		// not decode is shown to nobody.
		{ID: "e7", Time: at.Add(6 * time.Minute), Kind: registry.EventEntityUpdated, DeviceID: "lamp", EntityID: "lamp_light", Data: json.RawMessage(`"garbled"`)},
	}
	h.history.setEvents(events)
	ids := func(t *testing.T, principal, query string) []string {
		t.Helper()
		q := "from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"
		if query != "" {
			q += "&" + query
		}
		page := decode[history.EventsReply](t, h.do(t, "GET", "/api/v1/history/events?"+q, h.tokens[principal], nil), http.StatusOK)
		out := []string{}
		for _, e := range page.Events {
			out = append(out, e.ID)
		}
		return out
	}
	tests := []struct {
		principal, query string
		want             []string
	}{
		{pOwner, "", []string{"e1", "e2", "e3", "e4", "e5", "e6"}},
		{pAdmin, "", []string{"e1", "e2", "e3", "e4", "e5", "e6"}},
		{pMember, "", []string{"e1", "e2", "e3"}},
		{pGuest, "", []string{"e1", "e2", "e3"}},
		{pScopedGst, "", []string{"e1"}},
		{pScopedMem, "", []string{"e2"}},
		{pOwner, "kind=device_throttled", []string{"e6"}},
		{pOwner, "device_id=lamp", []string{"e1", "e6"}},
		{pScopedGst, "device_id=lamp", []string{"e1"}},
		{pOwner, "limit=2", []string{"e1", "e2"}},
	}
	for _, tt := range tests {
		t.Run(tt.principal+" "+tt.query, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ids(t, tt.principal, tt.query)); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("a device outside the scope is not found", func(t *testing.T) {
		h.do(t, "GET", "/api/v1/history/events?device_id=door", h.tokens[pScopedGst], nil).wantError(t, http.StatusNotFound, "not_found", "")
	})
	for _, tt := range []struct{ query, field string }{
		{"device_id=Door!", "device_id"},
		{"kind=a.b", "kind"},
		{"resolution=1h", "resolution"}, // an entity history parameter
		{"to=noon", "to"},
	} {
		t.Run("rejects "+tt.query, func(t *testing.T) {
			h.do(t, "GET", "/api/v1/history/events?"+tt.query, h.tokens[pOwner], nil).wantError(t, http.StatusBadRequest, "invalid", tt.field)
		})
	}
}

// TestHistoryUnavailable checks that a home without a history service
// answers 503, not a hang or an internal error.
func TestHistoryUnavailable(t *testing.T) {
	h := newHome(t)
	h.history.stop()
	if err := h.conn.Flush(); err != nil {
		t.Fatal(err)
	}
	h.do(t, "GET", "/api/v1/entities/lamp_light/history", h.tokens[pOwner], nil).wantError(t, http.StatusServiceUnavailable, "unavailable", "")
	h.do(t, "GET", "/api/v1/history/events", h.tokens[pOwner], nil).wantError(t, http.StatusServiceUnavailable, "unavailable", "")
}
