package registry

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/nats-io/nats.go"
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

// A batch too large for one state-log message is split, every change
// logged once and in order, each message a JSON list under the bound.
func TestStateLogSplitsLargeBatches(t *testing.T) {
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	s, err := New(Config{Home: "h1"}, Deps{Bus: conn})
	if err != nil {
		t.Fatal(err)
	}
	var changes [][]byte
	for i := range 3000 {
		state := []byte(fmt.Sprintf(`{"value":%d,"available":true,"attributes":{"pad":%q}}`, i, strings.Repeat("x", 200)))
		changes = append(changes, stateChangeJSON("h1", "d", fmt.Sprintf("e%d", i), homemesh.KindSensor, state, []byte(`{"value":null,"available":false}`)))
	}
	msgs := make(chan *nats.Msg, 100)
	sub, err := conn.NATS().ChanSubscribe(bus.StateLogSubject("h1"), msgs)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	s.publishStateLog(changes)
	next := 0
	for next < len(changes) {
		select {
		case m := <-msgs:
			if len(m.Data) > stateLogBytes+1024 {
				t.Fatalf("a state-log message of %d bytes", len(m.Data))
			}
			env, err := bus.DecodeEnvelope(m.Data)
			if err != nil {
				t.Fatal(err)
			}
			var batch []StateChange
			if err := json.Unmarshal(env.Payload, &batch); err != nil {
				t.Fatal(err)
			}
			for _, sc := range batch {
				if want := fmt.Sprintf("e%d", next); sc.EntityID != want {
					t.Fatalf("logged %s, want %s", sc.EntityID, want)
				}
				next++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d changes logged", next, len(changes))
		}
	}
}
