package history

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
)

func testService() *Service {
	return &Service{cfg: Config{Home: "h1"}, now: time.Now, kinds: map[string]homemesh.EntityKind{}}
}

// stateEnvelope is a state-log message of home h1 carrying one change.
func stateEnvelope(t testing.TB, payload string) []byte {
	t.Helper()
	return stateLog("[" + payload + "]")
}

// stateLog is a state-log message of home h1 around payload, a JSON list.
func stateLog(payload string) []byte {
	return bus.EncodeEnvelopeRaw("h1", "registry", TypeStateChanges, []byte(payload))
}

func TestDecodeStateLog(t *testing.T) {
	s := testService()
	data := stateLog(`[{"home_id":"h1","device_id":"d","entity_id":"temp","kind":"sensor","state":{"value":21.5,"available":true,"updated_at":"2026-11-29T10:00:00Z"}},` +
		`{"home_id":"h1","device_id":"d","entity_id":"door","kind":"binary_sensor","state":{"value":"on","available":true,"updated_at":"2026-11-29T10:00:01Z"}}]`)
	var m Message
	if err := s.decodeState("hm.h1.statelog", data, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Points) != 2 || m.Points[0].Entity != "temp" || m.Points[0].Value != 21.5 || m.Points[1].State != "on" || m.Points[1].Kind != homemesh.KindBinarySensor {
		t.Fatalf("points = %+v", m.Points)
	}
}

func TestDecodeStateValues(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		state   string
		numeric bool
		value   float64
		text    string
		attrs   string
	}{
		{"number", `{"value":21.5,"available":true}`, true, 21.5, "", ""},
		{"numeric string", `{"value":" 22.25","available":true}`, true, 22.25, "", ""},
		{"infinite string stays text", `{"value":"Inf","available":true}`, false, 0, "Inf", ""},
		{"true", `{"value":true,"available":true}`, false, 0, "on", ""},
		{"false", `{"value":false,"available":true}`, false, 0, "off", ""},
		{"text", `{"value":"heat","available":true,"attributes":{"target":21}}`, false, 0, "heat", `{"target":21}`},
		{"empty attributes", `{"value":"heat","available":true,"attributes":{}}`, false, 0, "heat", ""},
		{"null", `{"value":null,"available":true}`, false, 0, "unknown", ""},
		{"unavailable", `{"value":21.5,"available":false}`, false, 0, "unavailable", ""},
		{"object", `{"value":{"r":1},"available":true}`, false, 0, `{"r":1}`, ""},
	}
	s := testService()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := `{"home_id":"h1","device_id":"d","entity_id":"e","kind":"sensor","state":` +
				strings.TrimSuffix(tt.state, "}") + `,"updated_at":"` + at.Format(time.RFC3339) + `"}}`
			var m Message
			if err := s.decodeState("hm.h1.statelog", stateEnvelope(t, payload), &m); err != nil {
				t.Fatal(err)
			}
			p := m.Points[0]
			if p.Numeric != tt.numeric || p.Value != tt.value || p.State != tt.text || string(p.Attrs) != tt.attrs ||
				!p.Time.Equal(at) || p.Kind != homemesh.KindSensor || p.Entity != "e" || p.Device != "d" {
				t.Fatalf("point = %+v", p)
			}
		})
	}
}

func TestDecodeStateTimeFallsBack(t *testing.T) {
	s := testService()
	changed := time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	var m Message
	payload := `{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1,"available":true,"changed_at":"` + changed.Format(time.RFC3339) + `"}}`
	if err := s.decodeState("hm.h1.statelog", stateEnvelope(t, payload), &m); err != nil {
		t.Fatal(err)
	}
	if !m.Points[0].Time.Equal(changed) {
		t.Errorf("time = %v, want changed_at", m.Points[0].Time)
	}
	data := stateEnvelope(t, `{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1,"available":true}}`)
	env, _ := bus.DecodeEnvelope(data)
	m = Message{}
	if err := s.decodeState("hm.h1.statelog", data, &m); err != nil {
		t.Fatal(err)
	}
	if !m.Points[0].Time.Equal(env.Time) {
		t.Errorf("time = %v, want the envelope's %v", m.Points[0].Time, env.Time)
	}
}

func TestDecodeRejects(t *testing.T) {
	s := testService()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	tele := func(payload string) []byte {
		return bus.EncodeEnvelopeRaw("h1", "edge", TypeTelemetry, []byte(payload))
	}
	tests := []struct {
		name    string
		decode  func(*Service, string, []byte, *Message) error
		subject string
		data    []byte
		reason  string
	}{
		{"not json", (*Service).decodeState, "hm.h1.statelog", []byte("{"), reasonMalformed},
		{"too large", (*Service).decodeState, "hm.h1.statelog", make([]byte, MaxMessageBytes+1), reasonTooLarge},
		{"version", (*Service).decodeState, "hm.h1.statelog", []byte(`{"v":2,"home":"h1","type":"state_changes","payload":[]}`), reasonMalformed},
		{"envelope home", (*Service).decodeState, "hm.h1.statelog", bus.EncodeEnvelopeRaw("h2", "r", TypeStateChanges, []byte(`[]`)), reasonWrongHome},
		{"subject home", (*Service).decodeState, "hm.h2.statelog", stateEnvelope(t, `{}`), reasonWrongHome},
		{"entity subject", (*Service).decodeState, "hm.h1.state.d.e", stateEnvelope(t, `{}`), reasonBadSubject},
		{"payload home", (*Service).decodeState, "hm.h1.statelog", stateEnvelope(t, `{"home_id":"h2","device_id":"d","entity_id":"e","state":{"value":1,"available":true}}`), reasonWrongHome},
		{"type", (*Service).decodeState, "hm.h1.statelog", bus.EncodeEnvelopeRaw("h1", "r", "other", []byte(`{}`)), reasonWrongType},
		{"entity", (*Service).decodeState, "hm.h1.statelog", stateEnvelope(t, `{"home_id":"h1","device_id":"d","entity_id":"E!","state":{"value":1,"available":true}}`), reasonInvalidID},
		{"kind", (*Service).decodeState, "hm.h1.statelog", stateEnvelope(t, `{"home_id":"h1","device_id":"d","entity_id":"e","kind":"toaster","state":{"value":1,"available":true}}`), reasonMalformed},
		{"future", (*Service).decodeState, "hm.h1.statelog", stateEnvelope(t, `{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1,"available":true,"updated_at":"`+future+`"}}`), reasonBadTime},
		{"huge number", (*Service).decodeState, "hm.h1.statelog", stateEnvelope(t, `{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1e999,"available":true}}`), reasonBadValue},
		{"attributes", (*Service).decodeState, "hm.h1.statelog", stateEnvelope(t, `{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1,"available":true,"attributes":[1]}}`), reasonMalformed},
		{"log type", (*Service).decodeState, "hm.h1.statelog", bus.EncodeEnvelopeRaw("h1", "registry", "state_changed", []byte(`{}`)), reasonWrongType},
		{"log not a list", (*Service).decodeState, "hm.h1.statelog", stateLog(`{}`), reasonMalformed},
		{"log with a bad change", (*Service).decodeState, "hm.h1.statelog", stateLog(`[{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1,"available":true}},{"home_id":"h1","device_id":"d","entity_id":"E!","state":{"value":1,"available":true}}]`), reasonInvalidID},
		{"telemetry subject", (*Service).decodeTelemetry, "hm.h1.telemetry.d.x", tele(`{"points":[]}`), reasonBadSubject},
		{"telemetry device", (*Service).decodeTelemetry, "hm.h1.telemetry.D", tele(`{"points":[]}`), reasonInvalidID},
		{"telemetry zero time", (*Service).decodeTelemetry, "hm.h1.telemetry.d", tele(`{"points":[{"entity_id":"e","value":1}]}`), reasonBadTime},
		{"telemetry value", (*Service).decodeTelemetry, "hm.h1.telemetry.d", tele(`{"points":[{"entity_id":"e","time":"2026-01-01T00:00:00Z","value":"x"}]}`), reasonMalformed},
		{"event subject", (*Service).decodeEvent, "hm.h1.events.x", stateEnvelope(t, `{}`), reasonBadSubject},
		{"event id", (*Service).decodeEvent, "hm.h1.event.x", []byte(`{"v":1,"id":"nope","home":"h1","time":"2026-01-01T00:00:00Z","type":"x","payload":{}}`), reasonInvalidID},
		{"event device", (*Service).decodeEvent, "hm.h1.event.x", bus.EncodeEnvelopeRaw("h1", "r", "x", []byte(`{"device_id":"Bad"}`)), reasonInvalidID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := tt.decode(s, tt.subject, tt.data, &m)
			if err == nil {
				t.Fatalf("accepted: %+v", m)
			}
			if got := rejectionReason(err); got != tt.reason {
				t.Fatalf("reason %s (%v), want %s", got, err, tt.reason)
			}
			if len(m.Points) != 0 || len(m.Events) != 0 {
				t.Fatalf("rejected message left %+v", m)
			}
		})
	}
}

func TestDecodeTelemetryAndEvent(t *testing.T) {
	s := testService()
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	data, err := bus.EncodeEnvelope("h1", "edge", TypeTelemetry, Telemetry{Points: []TelemetryPoint{
		{EntityID: "power", Time: at, Value: 12.5},
		{EntityID: "mode", Time: at, Value: 1, Kind: homemesh.KindNumber},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	if err := s.decodeTelemetry("hm.h1.telemetry.meter", data, &m); err != nil {
		t.Fatal(err)
	}
	want := []Point{
		{Entity: "power", Device: "meter", Kind: homemesh.KindSensor, Time: at, Numeric: true, Value: 12.5},
		{Entity: "mode", Device: "meter", Kind: homemesh.KindNumber, Time: at, Numeric: true, Value: 1},
	}
	if len(m.Points) != 2 || !m.Points[0].Time.Equal(at) {
		t.Fatalf("points = %+v", m.Points)
	}
	for i := range want {
		m.Points[i].Time = at
		if got, _ := json.Marshal(m.Points[i]); string(got) != string(must(json.Marshal(want[i]))) {
			t.Errorf("point %d = %s", i, got)
		}
	}

	env, _ := bus.NewEnvelope("h1", "registry", "entity_added", map[string]any{"id": "e", "device_id": "d", "entity_id": 7})
	data, _ = json.Marshal(env)
	m = Message{}
	if err := s.decodeEvent("hm.h1.event.entity_added", data, &m); err != nil {
		t.Fatal(err)
	}
	ev := m.Events[0]
	if ev.ID != env.ID || ev.Kind != "entity_added" || !ev.Time.Equal(env.Time) || string(ev.Data) != string(env.Payload) {
		t.Fatalf("event = %+v", ev)
	}
	// A non-string entity_id is no reference; the event is kept without
	// references rather than rejected.
	if ev.Device != "" || ev.Entity != "" {
		t.Errorf("references = %q %q", ev.Device, ev.Entity)
	}
	env, _ = bus.NewEnvelope("h1", "edge", "button_pressed", map[string]any{"device_id": "remote", "entity_id": "button"})
	data, _ = json.Marshal(env)
	m = Message{}
	if err := s.decodeEvent("hm.h1.event.button_pressed", data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Events[0].Device != "remote" || m.Events[0].Entity != "button" {
		t.Errorf("event = %+v", m.Events[0])
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzDecode feeds arbitrary subjects and payloads to every decoder: none
// may panic, and whatever is accepted must be storable.
func FuzzDecode(f *testing.F) {
	f.Add("hm.h1.statelog", []byte(stateEnvelopeSeed))
	f.Add("hm.h1.statelog", stateLog(`[{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":1,"available":true,"updated_at":"2026-11-29T10:00:00Z"}}]`))
	f.Add("hm.h1.telemetry.d", []byte(`{"v":1,"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K","home":"h1","time":"2026-11-29T10:00:00Z","type":"telemetry","payload":{"points":[{"entity_id":"e","time":"2026-11-29T10:00:00Z","value":1}]}}`))
	f.Add("hm.h1.event.x", []byte(`{"v":1,"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K","home":"h1","time":"2026-11-29T10:00:00Z","type":"x","payload":{"device_id":"d"}}`))
	f.Add("hm.h1.statelog", []byte(`{"v":1,"home":"h1","type":"state_changes","payload":[{"home_id":"h1","device_id":"d","entity_id":"e","state":{"value":"1e400","available":true,"attributes":null}}]}`))
	s := testService()
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		for _, decode := range []func(*Service, string, []byte, *Message) error{(*Service).decodeState, (*Service).decodeTelemetry, (*Service).decodeEvent} {
			var m Message
			if err := decode(s, subject, data, &m); err != nil {
				if len(m.Points) != 0 || len(m.Events) != 0 {
					t.Fatalf("rejected message left %+v", m)
				}
				continue
			}
			for _, p := range m.Points {
				if !homemesh.ValidID(p.Entity) || !homemesh.ValidID(p.Device) || p.Time.IsZero() ||
					(p.Numeric && (math.IsNaN(p.Value) || math.IsInf(p.Value, 0))) || (p.Kind != "" && !p.Kind.Valid()) {
					t.Fatalf("accepted a bad point %+v", p)
				}
				if p.Attrs != nil && !json.Valid(p.Attrs) {
					t.Fatalf("accepted bad attributes %q", p.Attrs)
				}
			}
			for _, e := range m.Events {
				if e.ID == "" || e.Kind == "" || e.Time.IsZero() || !json.Valid(e.Data) {
					t.Fatalf("accepted a bad event %+v", e)
				}
			}
		}
	})
}

const stateEnvelopeSeed = `{"v":1,"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K","home":"h1","source":"registry","time":"2026-11-29T10:00:00Z","type":"state_changes","payload":[{"home_id":"h1","device_id":"d","entity_id":"e","kind":"sensor","state":{"value":21.5,"available":true,"attributes":{"unit":"°C"},"updated_at":"2026-11-29T10:00:00Z"},"old_state":{"value":null,"available":false}}]}`

func BenchmarkDecodeState(b *testing.B) {
	s := testService()
	s.now = func() time.Time { return time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC) }
	data := []byte(stateEnvelopeSeed)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var m Message
		if err := s.decodeState("hm.h1.statelog", data, &m); err != nil {
			b.Fatal(err)
		}
	}
}

// benchStateLog is a state-log message of n changes shaped as the
// registry and homemesh bench history write them: sensors of devices of
// four entities, each change carrying its new and its old state.
func benchStateLog(n int, at time.Time) []byte {
	payload := []byte{'['}
	for i := range n {
		if i > 0 {
			payload = append(payload, ',')
		}
		t := at.Add(time.Duration(i) * time.Microsecond).Format(time.RFC3339Nano)
		old := at.Add(-time.Minute).Format(time.RFC3339Nano)
		payload = fmt.Appendf(payload, `{"home_id":"h1","device_id":"bench-%d","entity_id":"bench-%d_t%d","kind":"sensor",`+
			`"state":{"value":%g,"available":true,"changed_at":"%s","updated_at":"%s"},`+
			`"old_state":{"value":%g,"available":true,"changed_at":"%s","updated_at":"%s"}}`,
			i/4, i/4, i%4, 18+float64(i%100)/10, t, t, 18+float64((i+1)%100)/10, old, old)
	}
	return stateLog(string(append(payload, ']')))
}

// BenchmarkDecodeStateLog decodes a state-log message of 100 changes, the
// registry's batch and homemesh bench history's default.
func BenchmarkDecodeStateLog(b *testing.B) {
	s := testService()
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return at }
	const changes = 100
	data := benchStateLog(changes, at)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var m Message
		if err := s.decodeState("hm.h1.statelog", data, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*changes), "ns/point")
}

func BenchmarkDecodeTelemetry(b *testing.B) {
	s := testService()
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return at }
	points := make([]TelemetryPoint, 100)
	for i := range points {
		points[i] = TelemetryPoint{EntityID: fmt.Sprintf("sensor_%d", i%10), Time: at.Add(time.Duration(i) * time.Second), Value: float64(i) / 3}
	}
	data, err := bus.EncodeEnvelope("h1", "edge", TypeTelemetry, Telemetry{Points: points})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		var m Message
		if err := s.decodeTelemetry("hm.h1.telemetry.meter", data, &m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(points)), "ns/point")
}
