package registry

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
)

func TestDecodeReports(t *testing.T) {
	one, err := decodeReports([]byte(` {"home_id":"h1","device_id":"d","entity_id":"e","value":"on","has_value":true}`), nil)
	if err != nil || len(one) != 1 || one[0].Value != "on" {
		t.Fatalf("one report: %+v %v", one, err)
	}
	many, err := decodeReports([]byte(`[{"entity_id":"a"},{"entity_id":"b"}]`), one)
	if err != nil || len(many) != 3 || many[2].EntityID != "b" {
		t.Fatalf("batch appended: %+v %v", many, err)
	}
	for _, bad := range []string{``, `nope`, `[{"entity_id":1}]`, `{"time":"yesterday"}`} {
		if _, err := decodeReports([]byte(bad), nil); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestMerge(t *testing.T) {
	yes := true
	cur := homemesh.State{Value: "off", Attributes: map[string]any{"power": 1.0}}
	next, diff := merge(cur, homemesh.StateUpdate{Value: "off", HasValue: true})
	if diff || next.Value != "off" {
		t.Fatal("a repeat is not a change")
	}
	next, diff = merge(cur, homemesh.StateUpdate{Attributes: map[string]any{"power": 2.0}})
	if !diff || next.Attributes["power"] != 2.0 || cur.Attributes["power"] != 1.0 {
		t.Fatal("attribute change must copy, not mutate")
	}
	if _, diff = merge(cur, homemesh.StateUpdate{Available: &yes}); !diff {
		t.Fatal("availability change missed")
	}
}

func FuzzDecodeReports(f *testing.F) {
	f.Add([]byte(`[{"home_id":"h1","entity_id":"a","attributes":{"t":1}}]`))
	f.Add([]byte(`{"value":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = decodeReports(data, nil)
	})
}

func TestStateChangeJSONMatchesMarshal(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	next := homemesh.State{Value: 21.5, Attributes: map[string]any{"unit": "°C", "q": "a\"b"}, Available: true, ChangedAt: now, UpdatedAt: now}
	old := homemesh.State{Value: nil}
	nextRaw, _ := json.Marshal(next)
	oldRaw, _ := json.Marshal(old)
	for _, kind := range []homemesh.EntityKind{homemesh.KindSensor, ""} {
		got := stateChangeJSON("h1", "dev-1", "temp_1", kind, nextRaw, oldRaw)
		want, _ := json.Marshal(StateChange{HomeID: "h1", DeviceID: "dev-1", EntityID: "temp_1", Kind: kind, State: next, Old: old})
		if string(got) != string(want) {
			t.Fatalf("kind %q:\ngot  %s\nwant %s", kind, got, want)
		}
	}
}
