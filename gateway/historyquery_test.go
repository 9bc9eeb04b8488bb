package gateway

import (
	"net/url"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// FuzzHistoryQuery feeds arbitrary query strings to the history query
// parser: it must never panic, must fail only with KindInvalid naming a
// field, and what it accepts must be a query the history service can run:
// a non-empty span, a known resolution and a limit within bounds.
func FuzzHistoryQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=10", "resolution=5m&cursor=abc", "kind=device_added&device_id=lamp",
		"from=2026-01-02T15:04:05Z&to=2026-01-03T00:00:00.5%2B01:00",
		"from=2026-01-03T00:00:00Z&to=2026-01-02T00:00:00Z", "to=0001-01-01T00:00:00Z",
		"limit=0", "x=1", "from=", "limit=1&limit=2", "resolution=auto", "=0",
	} {
		f.Add(s, true)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, raw string, events bool) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		known := historyParams
		if events {
			known = eventsParams
		}
		q, err := parseHistoryQuery(v, known, now)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) == "" {
				t.Fatalf("%q: error %v is not KindInvalid with a field", raw, err)
			}
			return
		}
		if !q.from.Before(q.to) {
			t.Fatalf("%q: accepted the empty span [%v, %v)", raw, q.from, q.to)
		}
		switch q.resolution {
		case history.Raw, history.FiveMinutes, history.Hourly, history.Auto:
		default:
			t.Fatalf("%q: accepted resolution %q", raw, q.resolution)
		}
		if q.limit < 1 || q.limit > history.MaxLimit {
			t.Fatalf("%q: accepted limit %d", raw, q.limit)
		}
		if (q.kind != "" && !homemesh.ValidID(q.kind)) || (q.deviceID != "" && !homemesh.ValidID(q.deviceID)) {
			t.Fatalf("%q: accepted kind %q or device %q", raw, q.kind, q.deviceID)
		}
	})
}
