package gateway

import (
	"net/url"
	"testing"

	"github.com/homemesh/homemesh"
)

// FuzzAuditQuery feeds arbitrary query strings to the audit query parser:
// it must never panic, must fail only with KindInvalid naming a field, and
// what it accepts must be a query the audit log accepts.
func FuzzAuditQuery(f *testing.F) {
	for _, s := range []string{
		"", "limit=10", "after=5&limit=2", "action=login_failed",
		"from=2026-01-02T15:04:05Z&to=2026-01-03T00:00:00.5%2B01:00",
		"limit=0", "x=1", "from=", "limit=1&limit=2", "after=18446744073709551616", "=0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parseAuditQuery(v)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) == "" {
				t.Fatalf("%q: error %v is not KindInvalid with a field", raw, err)
			}
			return
		}
		if err := q.Check(); err != nil {
			t.Fatalf("%q: accepted a query the log refuses: %v", raw, err)
		}
	})
}
