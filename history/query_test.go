package history

import (
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/oklog/ulid/v2"
)

func TestCursorRoundTrip(t *testing.T) {
	from := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	at := from.Add(90*time.Minute + 123*time.Microsecond)
	got, id, err := decodeCursor(encodeCursor(at, ""), false, from, to)
	if err != nil || !got.Equal(at) || id != "" {
		t.Fatalf("history cursor: %v %q %v", got, id, err)
	}
	eid := ulid.Make().String()
	got, id, err = decodeCursor(encodeCursor(at, eid), true, from, to)
	if err != nil || !got.Equal(at) || id != eid {
		t.Fatalf("event cursor: %v %q %v", got, id, err)
	}
	for name, c := range map[string]string{
		"history cursor for events": encodeCursor(at, ""),
		"outside the range":         encodeCursor(to, eid),
		"not base64":                "***",
		"bad id":                    encodeCursor(at, "nope"),
	} {
		if _, _, err := decodeCursor(c, true, from, to); homemesh.ErrorField(err) != "cursor" {
			t.Errorf("%s: got %v, want invalid cursor", name, err)
		}
	}
}

func FuzzCursor(f *testing.F) {
	from := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	to := from.Add(24 * time.Hour)
	f.Add(encodeCursor(from.Add(time.Hour), ""))
	f.Add(encodeCursor(from.Add(time.Hour), "01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K"))
	f.Add("MTIz")
	f.Fuzz(func(t *testing.T, cursor string) {
		for _, withID := range []bool{false, true} {
			at, id, err := decodeCursor(cursor, withID, from, to)
			if err != nil {
				if homemesh.ErrorField(err) != "cursor" {
					t.Fatalf("error %v does not name the cursor", err)
				}
				continue
			}
			if at.Before(from.Add(-time.Hour)) || !at.Before(to) || (withID && id == "") {
				t.Fatalf("accepted %q → %v %q", cursor, at, id)
			}
			again, id2, err := decodeCursor(encodeCursor(at, id), withID, from, to)
			if err != nil || !again.Equal(at) || id2 != id {
				t.Fatalf("re-encoded %q does not round-trip: %v %q %v", cursor, again, id2, err)
			}
		}
	})
}

// FuzzReplySizeBounds checks that the events reply's size estimates never
// fall short of what encoding/json writes. (History replies are measured
// exactly, by their own encoder: FuzzReplyJSON.)
func FuzzReplySizeBounds(f *testing.F) {
	f.Add("on", []byte(`{"a":"<b>&"}`))
	f.Add("\u2028\x00\"\\é", []byte(`[1, 2,  3]`))
	f.Add("", []byte(`"\u003c"`))
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		if utf8.ValidString(s) {
			if got, _ := json.Marshal(s); len(got) > jsonStringLen(s) {
				t.Fatalf("%q encodes to %d bytes, estimated %d", s, len(got), jsonStringLen(s))
			}
		}
		if json.Valid(raw) {
			if got, _ := json.Marshal(json.RawMessage(raw)); len(got) > jsonRawLen(raw) {
				t.Fatalf("%q encodes to %d bytes, estimated %d", raw, len(got), jsonRawLen(raw))
			}
		}
	})
}
