package history

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/registry"
	"github.com/oklog/ulid/v2"
)

// The decoders as they were with encoding/json alone, kept verbatim but for
// their names as the reference the decoders must match: FuzzDecodeMatchesJSON
// runs both on the same input.

// jsonOpenEnvelope parses data as an envelope carrying a P and checks what
// every stream's envelope must satisfy. typ, when set, is the type the
// stream carries.
func jsonOpenEnvelope[P any](s *Service, data []byte, typ string, env *envelope[P]) error {
	if len(data) > MaxMessageBytes {
		return reject(reasonTooLarge, "%d bytes, at most %d", len(data), MaxMessageBytes)
	}
	if err := json.Unmarshal(data, env); err != nil {
		// A payload of another type fails to decode as this one: say so
		// rather than calling it malformed.
		var head struct {
			Type string `json:"type"`
		}
		if typ != "" && json.Unmarshal(data, &head) == nil && head.Type != typ {
			return reject(reasonWrongType, "envelope type is not %q", typ)
		}
		return reject(reasonMalformed, "not a JSON envelope: %s", jsonProblem(err))
	}
	if env.V != bus.EnvelopeVersion {
		return reject(reasonMalformed, "envelope version %d", env.V)
	}
	if env.Home != s.cfg.Home {
		return reject(reasonWrongHome, "envelope of another home")
	}
	if typ != "" && env.Type != typ {
		return reject(reasonWrongType, "envelope type is not %q", typ)
	}
	return nil
}

// jsonDecodeState turns a message of the home's state log
// (bus.StateLogSubject), a batch of type state_changes, into points. A
// batch with one bad change is refused whole, like a telemetry message:
// it is the producer's error, not a partial truth.
func (s *Service) jsonDecodeState(subject string, data []byte, out *Message) error {
	if subject != bus.StateLogSubject(s.cfg.Home) {
		if home, rest, _ := strings.Cut(strings.TrimPrefix(subject, bus.Prefix+"."), "."); rest == "statelog" && home != s.cfg.Home {
			return reject(reasonWrongHome, "subject of another home")
		}
		return reject(reasonBadSubject, "not the state log's subject")
	}
	var env envelope[[]stateChangeWire]
	if err := jsonOpenEnvelope(s, data, TypeStateChanges, &env); err != nil {
		return err
	}
	if len(env.Payload) > MaxStateChanges {
		return reject(reasonTooMany, "%d state changes, at most %d", len(env.Payload), MaxStateChanges)
	}
	now, stored := s.now(), len(out.Points)
	for i := range env.Payload {
		if err := s.jsonAppendStatePoint(&env.Payload[i], env.Time, now, out); err != nil {
			out.Points = out.Points[:stored]
			return err
		}
	}
	return nil
}

// jsonAppendStatePoint checks one state change and appends its point to out.
func (s *Service) jsonAppendStatePoint(sc *stateChangeWire, sent, now time.Time, out *Message) error {
	if sc.HomeID != s.cfg.Home {
		return reject(reasonWrongHome, "state change of another home")
	}
	if err := checkID("device_id", sc.DeviceID); err != nil {
		return err
	}
	if err := checkID("entity_id", sc.EntityID); err != nil {
		return err
	}
	if sc.Kind != "" && !sc.Kind.Valid() {
		return reject(reasonMalformed, "unknown entity kind")
	}
	p := Point{Entity: sc.EntityID, Device: sc.DeviceID, Kind: sc.Kind}
	switch {
	case !sc.State.UpdatedAt.IsZero():
		p.Time = sc.State.UpdatedAt
	case !sc.State.ChangedAt.IsZero():
		p.Time = sc.State.ChangedAt
	default:
		p.Time = sent
	}
	if err := s.checkTime("time", p.Time, now); err != nil {
		return err
	}
	if !sc.State.Available {
		p.State = "unavailable"
	} else if err := jsonSetValue(&p, sc.State.Value); err != nil {
		return err
	}
	if attrs := bytes.TrimSpace(sc.State.Attributes); len(attrs) > 0 && !bytes.Equal(attrs, []byte("null")) && !bytes.Equal(attrs, []byte("{}")) {
		if attrs[0] != '{' {
			return reject(reasonMalformed, "attributes are not a JSON object")
		}
		p.Attrs = attrs
	}
	if sc.Kind != "" {
		s.noteKind(sc.EntityID, sc.Kind)
	}
	out.Points = append(out.Points, p)
	return nil
}

// jsonSetValue stores a JSON state value in p: numbers, and strings that are
// finite numbers, as numeric; booleans as "on"/"off"; other strings as
// they are; null as "unknown"; anything else as its JSON text.
func jsonSetValue(p *Point, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		p.State = "unknown"
		return nil
	}
	switch raw[0] {
	case '"':
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return reject(reasonMalformed, "value: %s", jsonProblem(err))
		}
		if f, err := strconv.ParseFloat(strings.TrimSpace(str), 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			p.Numeric, p.Value = true, f
			return nil
		}
		p.State = str
	case 't', 'f':
		if string(raw) == "true" {
			p.State = "on"
		} else {
			p.State = "off"
		}
	case '{', '[':
		p.State = string(raw)
	default:
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return reject(reasonBadValue, "value is not a finite number")
		}
		p.Numeric, p.Value = true, f
	}
	return nil
}

// jsonDecodeTelemetry turns an envelope of type telemetry carrying Telemetry
// into its points.
func (s *Service) jsonDecodeTelemetry(subject string, data []byte, out *Message) error {
	parts, err := s.subjectTokens(subject, "telemetry")
	if err != nil {
		return err
	}
	if len(parts) != 4 {
		return reject(reasonBadSubject, "telemetry subject has %d tokens, want 4", len(parts))
	}
	device := parts[3]
	if err := checkID("device", device); err != nil {
		return err
	}
	var env envelope[Telemetry]
	if err := jsonOpenEnvelope(s, data, TypeTelemetry, &env); err != nil {
		return err
	}
	tm := &env.Payload
	if len(tm.Points) > MaxTelemetryPoints {
		return reject(reasonTooMany, "%d points, at most %d", len(tm.Points), MaxTelemetryPoints)
	}
	now := s.now()
	start := len(out.Points)
	for i, tp := range tm.Points {
		if err := checkID(fmt.Sprintf("points[%d].entity_id", i), tp.EntityID); err != nil {
			out.Points = out.Points[:start]
			return err
		}
		if err := s.checkTime(fmt.Sprintf("points[%d].time", i), tp.Time, now); err != nil {
			out.Points = out.Points[:start]
			return err
		}
		kind := tp.Kind
		if kind == "" {
			kind = homemesh.KindSensor
		} else if !kind.Valid() {
			out.Points = out.Points[:start]
			return reject(reasonMalformed, "points[%d].kind is not an entity kind", i)
		}
		out.Points = append(out.Points, Point{Entity: tp.EntityID, Device: device, Kind: kind, Time: tp.Time, Numeric: true, Value: tp.Value})
	}
	return nil
}

// jsonDecodeEvent turns any envelope on an event subject into an event.
func (s *Service) jsonDecodeEvent(subject string, data []byte, out *Message) error {
	parts, err := s.subjectTokens(subject, "event")
	if err != nil {
		return err
	}
	kind := parts[len(parts)-1]
	if err := checkID("kind", kind); err != nil {
		return err
	}
	var env envelope[json.RawMessage]
	if err := jsonOpenEnvelope(s, data, "", &env); err != nil {
		return err
	}
	if len(env.Payload) == 0 {
		return reject(reasonMalformed, "no payload")
	}
	if _, err := ulid.ParseStrict(env.ID); err != nil {
		return reject(reasonInvalidID, "envelope id is not a ULID")
	}
	if err := s.checkTime("envelope time", env.Time, s.now()); err != nil {
		return err
	}
	ev := Event{ID: env.ID, Time: env.Time, Kind: kind, Data: env.Payload}
	if p := bytes.TrimSpace(env.Payload); len(p) > 0 && p[0] == '{' {
		var refs eventRefs
		// Payloads are free-form: a device_id that is not a string is not
		// a reference, and the event is kept without one.
		if json.Unmarshal(p, &refs) == nil {
			if refs.DeviceID != nil && *refs.DeviceID != "" {
				if err := checkID("device_id", *refs.DeviceID); err != nil {
					return err
				}
				ev.Device = *refs.DeviceID
			}
			if refs.EntityID != nil && *refs.EntityID != "" {
				if err := checkID("entity_id", *refs.EntityID); err != nil {
					return err
				}
				ev.Entity = *refs.EntityID
			}
		}
	}
	out.Events = append(out.Events, ev)
	return nil
}

// producedMessage is a message as a producer writes it, which the reader
// must read itself rather than leave to encoding/json.
type producedMessage struct {
	name string
	kind string // "state", "telemetry" or "event"
	data []byte
}

// producedMessages are messages of home h1 as the registry, devices, the
// bench's generators and the tests write them.
func producedMessages(tb testing.TB) []producedMessage {
	tb.Helper()
	at := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)
	change := func(device, entity string, kind homemesh.EntityKind, st, old homemesh.State) string {
		return string(must(json.Marshal(registry.StateChange{HomeID: "h1", DeviceID: device, EntityID: entity, Kind: kind, State: st, Old: old})))
	}
	registryLog := "[" + strings.Join([]string{
		change("d", "temp", homemesh.KindSensor,
			homemesh.State{Value: 21.5, Attributes: map[string]any{"unit": "°C", "precision": 1, "limits": []any{-40, 85.5, nil, true}, "note": "a \"quoted\"\nline\t\u2028"}, Available: true, ChangedAt: at, UpdatedAt: at},
			homemesh.State{Value: nil, Available: false}),
		change("d", "door", homemesh.KindBinarySensor,
			homemesh.State{Value: "on", Available: true, ChangedAt: at.Add(-time.Minute), UpdatedAt: at},
			homemesh.State{Value: "off", Available: true, ChangedAt: at.Add(-time.Hour), UpdatedAt: at.Add(-time.Hour)}),
		change("lamp-1", "light", homemesh.KindLight,
			homemesh.State{Value: true, Attributes: map[string]any{"brightness": 128, "rgb": map[string]any{"r": 255, "g": 0, "b": 12}}, Available: true, UpdatedAt: at},
			homemesh.State{Value: false, Available: true, UpdatedAt: at.Add(-time.Second)}),
		change("hvac", "mode", "",
			homemesh.State{Value: "heat é", Available: true, ChangedAt: at.In(time.FixedZone("", 2*3600))},
			homemesh.State{}),
		change("hvac", "target", homemesh.KindNumber,
			homemesh.State{Value: "21.25", Available: true, UpdatedAt: at},
			homemesh.State{Value: map[string]any{"x": []any{}}, Available: true}),
		change("hvac", "gone", homemesh.KindClimate,
			homemesh.State{Value: 1e-7, Available: false, UpdatedAt: at},
			homemesh.State{Value: -0.0, Available: true}),
	}, ",") + "]"
	telemetry, err := bus.EncodeEnvelope("h1", "edge", TypeTelemetry, Telemetry{Points: []TelemetryPoint{
		{EntityID: "power", Time: at, Value: 12.5},
		{EntityID: "mode", Time: at.Add(time.Millisecond), Value: -3e-9, Kind: homemesh.KindNumber},
		{EntityID: "energy", Time: at.In(time.FixedZone("", -7*3600)), Value: 1e21},
	}})
	if err != nil {
		tb.Fatal(err)
	}
	benchTelemetry := `{"points":[`
	for i := range 8 {
		if i > 0 {
			benchTelemetry += ","
		}
		benchTelemetry += fmt.Sprintf(`{"entity_id":"bench-3_t%d","time":"%s","value":%g}`, i%4, at.Add(time.Duration(i)*time.Microsecond).Format(time.RFC3339Nano), 18+float64(i)/10)
	}
	benchTelemetry += "]}"
	event := func(typ string, payload any) []byte {
		env, err := bus.NewEnvelope("h1", "registry", typ, payload)
		if err != nil {
			tb.Fatal(err)
		}
		return must(json.Marshal(env))
	}
	return []producedMessage{
		{"test state seed", "state", []byte(stateEnvelopeSeed)},
		{"bench state log", "state", benchStateLog(8, at)},
		{"registry state log", "state", stateLog(registryLog)},
		{"empty state log", "state", stateLog(`[]`)},
		{"telemetry", "telemetry", telemetry},
		{"bench telemetry", "telemetry", bus.EncodeEnvelopeRaw("h1", "bench", TypeTelemetry, []byte(benchTelemetry))},
		{"event", "event", event("entity_added", map[string]any{"id": "e", "device_id": "d", "entity_id": 7})},
		{"button event", "event", event("button_pressed", map[string]any{"device_id": "remote", "entity_id": "button", "press": "long"})},
		{"bare event", "event", event("started", nil)},
	}
}

// mutatedMessages are produced messages with one part changed into what
// the reader must leave to encoding/json or must read just as it does:
// duplicate, differently cased and escaped keys, escapes and invalid
// UTF-8, nulls and wrong types, numbers and times at their edges, deep
// nesting, syntax errors.
func mutatedMessages(tb testing.TB) [][]byte {
	tb.Helper()
	const state = `{"v":1,"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K","home":"h1","source":"registry","time":"2026-11-29T10:00:00Z","type":"state_changes","payload":[` +
		`{"home_id":"h1","device_id":"d","entity_id":"e","kind":"sensor","state":{"value":21.5,"available":true,"attributes":{"unit":"°C"},"changed_at":"2026-11-29T09:00:00Z","updated_at":"2026-11-29T10:00:00Z"},"old_state":{"value":null,"available":false}}]}`
	const telemetry = `{"v":1,"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K","home":"h1","time":"2026-11-29T10:00:00Z","type":"telemetry","payload":{"points":[{"entity_id":"e","time":"2026-11-29T10:00:00Z","value":1,"kind":"number"}]}}`
	const event = `{"v":1,"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K","home":"h1","time":"2026-11-29T10:00:00Z","type":"x","payload":{"device_id":"d"}}`
	deep := func(n int) string { return strings.Repeat(`{"a":[`, n) + "1" + strings.Repeat("]}", n) }
	edits := []struct {
		base     string
		old      string
		variants []string
	}{
		{state, `"v":1`, []string{`"v":1.0`, `"v":1e0`, `"v":01`, `"v":-0`, `"v":-1`, `"v":"1"`, `"v":null`, `"v":100000000000000000000`, `"v":999999999999999999`, `"V":1`, `"v":1,"v":1`, `"v":2`, `"v" : 1 `, `"\u0076":1`}},
		{state, `"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K"`, []string{`"id":null`, `"id":7`, `"ID":"x"`, `"id":"a\"b"`, "\"id\":\"\xff\"", `"id":"é"`, `"id":""`}},
		{state, `"home":"h1"`, []string{`"home":"h2"`, `"home":"h\u0031"`, `"HOME":"h1"`, `"home":"h1","home":"h1"`, `"home":null`, "\"home\":\"h1\xff\"", "\"home\":\"h1\x01\"", `"hoMe":"h2"`}},
		{state, `"source":"registry"`, []string{`"Source":"x"`, `"source":{"a":[1,2,{"b":null}]}`, `"source":[1 2]`, `"\u00e9":1`, `"payloaD":[]`, `"":1`, "\"source\":\"\xff\xfe\"", `"source":"\ud800"`, `"source":"\u12G4"`}},
		{state, `"time":"2026-11-29T10:00:00Z"`, []string{`"time":null`, `"time":"2026-11-29T10:00:00z"`, `"time":"2026-11-29T10:00:00+01:00"`, `"time":"2026-11-29T10:00:00\u005a"`, `"time":1`, `"time":"x"`, `"time":{}`, `"Time":"2026-11-29T10:00:00Z"`}},
		{state, `"type":"state_changes"`, []string{`"type":"telemetry"`, `"type":"state\u005fchanges"`, `"Type":"state_changes"`, `"type":null`, `"type":1`, `"type":"state_changes","type":"state_changes"`}},
		{state, `"payload":[`, []string{`"payload":[],"x":[`, `"payload":null,"x":[`, `"payload":{},"x":[`, `"payload":[null],"x":[`, `"payload":[1],"x":[`, `"payload":[{}],"x":[`, `"payload":[],"payload":[`, `"payload":[{"home_id":"h1","device_id":"d","entity_id":"e","kind":"light","state":{"value":"on","available":true}}],"payload":[`, `"Payload":[`, `"payload": [ `}},
		{state, `"home_id":"h1"`, []string{`"home_id":"h2"`, `"HOME_ID":"h1"`, `"home\u005fid":"h1"`, `"home_id":null`, `"home_id":1`, `"home_id":"h\u0031"`, `"home_id":"h1","home_id":"h1"`, "\"home_id\":\"h1\xff\""}},
		{state, `"device_id":"d"`, []string{`"device_id":"D"`, `"device_id":""`, `"device_id":"d\u0000"`, `"Device_id":"d"`, `"device_id":null`, `"device_id":["d"]`}},
		{state, `"entity_id":"e"`, []string{`"entity_id":"E!"`, `"entity_id":"é"`, `"entity_id":"e\/"`, `"entity_id":"e","entity_id":"f"`, `"entity_Id":"e"`, `"entity_id":true`}},
		{state, `"kind":"sensor"`, []string{`"kind":"toaster"`, `"kind":""`, `"kind":"\u0073ensor"`, `"kind":null`, `"KIND":"sensor"`, `"kind":"Sensor"`, `"kind":"light","kind":"sensor"`, `"kind":"number"`}},
		{state, `"value":21.5`, []string{`"value":"21.5"`, `"value":" 22 "`, `"value":"\u0032"`, `"value":1e999`, `"value":-0`, `"value":[1,{"a":"b"}]`, `"value":"NaN"`, `"value":"é"`, "\"value\":\"\xff\"", `"value":tru`, `"value":01`, `"value":1.`, `"value":.5`, `"value":1e`, `"value":1E+2`, "\"value\":\"a\x01\"", `"value":null`, `"value":false`, `"value":"on","value":2`, `"Value":3`, `"value":"Inf"`, `"value":"0x1p-2"`, `"value":"1_000"`, `"value":  7 `}},
		{state, `"state":{"value":21.5,`, []string{`"state":{"value":1,"available":false},"state":{"value":21.5,`, `"STATE":{"value":21.5,`, `"state":null,"x":{"value":21.5,`, `"state":[],"x":{"value":21.5,`}},
		{state, `"available":true`, []string{`"available":null`, `"available":"true"`, `"available":1`, `"available":false`, `"available":truex`, `"available":true,"available":false`, `"AVAILABLE":true`}},
		{state, `"attributes":{"unit":"°C"}`, []string{`"attributes":[1]`, `"attributes":null`, `"attributes":{}`, `"attributes": { } `, `"attributes":"x"`, `"attributes":` + deep(70), `"attributes":` + deep(30), `"attributes":{"a":1,}`, `"attributes":{"a" 1}`, `"attributes":{"a":"\ud800"}`, `"attributes":{"\u00e9":1}`, `"attributes":{"a":1},"attributes":{"b":2}`, `"attributes":{"a":[]}`, "\"attributes\":{\"a\":\"\x7f\x80\"}", "\"attributes\":{\"a\":\"\t\"}"}},
		{state, `"changed_at":"2026-11-29T09:00:00Z"`, []string{`"changed_at":null`, `"changed_at":"2026-11-29T09:00:00.5-07:30"`, `"changed_at":"0001-01-01T00:00:00Z"`, `"changed_at":"2026-11-29T10:00:00Z"`, `"changed_at":"2026-11-29 09:00:00Z"`, `"changed_at":"2026-11-29T09:00:00Z","changed_at":"2026-11-29T09:00:01Z"`}},
		{state, `"updated_at":"2026-11-29T10:00:00Z"`, []string{`"updated_at":null`, `"updated_at":"2026-11-29T10:00:00+01:00"`, `"updated_at":"2026-11-29T10:00:00.123456789Z"`, `"updated_at":"2026-13-29T10:00:00Z"`, `"updated_at":"2026-11-29T10:00:00Z "`, `"updated_at":"1969-12-31T23:59:59Z"`, `"updated_at":"2999-01-01T00:00:00Z"`, `"Updated_At":"2026-11-29T10:00:00Z"`, `"updated_at":"2026-11-29T09:00:00Z"`}},
		{state, `"old_state":{"value":null,"available":false}`, []string{`"state":{"available":false},"old_state":{}`, `"old_state":{"value":1,}`, `"old_state":[1 2]`, "\"old_state\":\"\x01\"", `"old_state":{"value":"\u00"}`, `"old_state":{"value":"\q"}`, `"old_state":` + deep(63), `"old_state":` + deep(64), `"old_state":-`, `"old_state":nul`, `"old_state":[,]`, `"old_state":{,}`, `"old_state":{"a":1 "b":2}`, `"old_state":"\\\"\/\b\f\n\r\t\uABcd"`}},
		{state, `}]}`, []string{`}],"payload":[{"home_id":"h1"}]}`, `}],"payload":[]}`, `},"old_state":{}}]}`, `}]} `, "}]}\n\t\r ", `}]}x`, `}]}{}`, `}],}`, `}]`, `},]}`, `}] }`}},
		{state, `{"v"`, []string{` {"v"`, "\ufeff{\"v\"", `[{"v"`, `{ "v"`}},
		{telemetry, `"value":1`, []string{`"value":1}]},"points":[{"entity_id":"f"}],"x":{"y":1`, `"value":1e400`, `"value":null`, `"value":"1"`, `"value":-0.0`, `"value":1E+2`, `"value":-1e-400`, `"value":1,"value":2`, `"VALUE":1`}},
		{telemetry, `"points":[`, []string{`"points":[{"entity_id":"f","time":"2026-11-29T10:00:00Z","kind":"sensor","value":5}],"points":[`, `"points":null,"x":[`, `"points":{},"x":[`, `"Points":[`, `"points":[],"x":[`, `"points":[null],"x":[`, `"points":[1],"x":[`}},
		{telemetry, `"entity_id":"e"`, []string{`"entity_id":"E"`, `"entity_id":"\u0065"`, `"entity_id":null`, `"Entity_ID":"e"`}},
		{telemetry, `"kind":"number"`, []string{`"kind":"toaster"`, `"kind":""`, `"kind":null`, `"kind":"binary_sensor"`}},
		{telemetry, `"time":"2026-11-29T10:00:00Z","value"`, []string{`"time":null,"value"`, `"time":"2026-11-29T10:00:00+05:45","value"`, `"time":"1970-01-01T00:00:00Z","value"`, `"TIME":"2026-11-29T10:00:00Z","value"`}},
		{event, `"payload":{"device_id":"d"}`, []string{`"payload":null`, `"payload":"x"`, `"payload":{"device_id":1}`, `"payload":  {"a":1} `, `"payload":{"device_id":"D"}`, `"payload":[1,2]`, `"payload":{"device_id":"d","entity_id":"\u0065"}`, `"payload":{}`, `"payload":{"a":` + deep(70) + `}`}},
		{event, `"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1K"`, []string{`"id":"nope"`, `"id":"01JDZ4ZQ5Q4N3W7X9V8T6R2Y1\u004b"`}},
	}
	var out [][]byte
	for _, e := range edits {
		if !strings.Contains(e.base, e.old) {
			tb.Fatalf("%s is not in its message", e.old)
		}
		for _, v := range e.variants {
			out = append(out, []byte(strings.Replace(e.base, e.old, v, 1)))
		}
	}
	for _, base := range []string{state, telemetry, event} {
		for _, n := range []int{0, 1, 10, len(base) / 2, len(base) - 1} {
			out = append(out, []byte(base[:n]))
		}
	}
	return out
}

// decoders pairs each decoder with its reference and a subject it takes.
var decoders = []struct {
	name      string
	subject   string
	decode    func(*Service, string, []byte, *Message) error
	reference func(*Service, string, []byte, *Message) error
}{
	{"state", "hm.h1.statelog", (*Service).decodeState, (*Service).jsonDecodeState},
	{"telemetry", "hm.h1.telemetry.d", (*Service).decodeTelemetry, (*Service).jsonDecodeTelemetry},
	{"event", "hm.h1.event.x", (*Service).decodeEvent, (*Service).jsonDecodeEvent},
}

// exactTime compares times as the same instant in the same zone.
var exactTime = cmp.Comparer(func(a, b time.Time) bool {
	an, ao := a.Zone()
	bn, bo := b.Zone()
	return a.Equal(b) && an == bn && ao == bo && a.Location().String() == b.Location().String()
})

// FuzzDecodeMatchesJSON requires every decoder to do what it did with
// encoding/json alone: accept the same messages, with the same points,
// events and kinds noted, and reject the others with the same error. It
// also holds the reader to encoding/json where the checks after decoding
// could hide a difference: whatever it reads, json.Unmarshal reads the
// same; whatever it skips as valid, json.Valid calls valid.
func FuzzDecodeMatchesJSON(f *testing.F) {
	for _, m := range producedMessages(f) {
		f.Add(m.data)
	}
	for _, data := range mutatedMessages(f) {
		f.Add(data)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, d := range decoders {
			s, ref := testService(), testService()
			s.now = func() time.Time { return now }
			ref.now = s.now
			var got, want Message
			// The decoder reads a copy, overwritten once it is done: what
			// it decoded must not be part of the message.
			scribbled := bytes.Clone(data)
			err := d.decode(s, d.subject, scribbled, &got)
			for i := range scribbled {
				scribbled[i] = 'x'
			}
			wantErr := d.reference(ref, d.subject, data, &want)
			switch {
			case (err == nil) != (wantErr == nil):
				t.Fatalf("%s: error %v, encoding/json's %v", d.name, err, wantErr)
			case err != nil && (err.Error() != wantErr.Error() || rejectionReason(err) != rejectionReason(wantErr)):
				t.Fatalf("%s: error %q, encoding/json's %q", d.name, err, wantErr)
			}
			if diff := cmp.Diff(want, got, exactTime, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("%s: message differs from encoding/json's (-want +got):\n%s", d.name, diff)
			}
			if diff := cmp.Diff(ref.kinds, s.kinds); diff != "" {
				t.Fatalf("%s: kinds noted differ from encoding/json's (-want +got):\n%s", d.name, diff)
			}
		}
		readsAsJSON(t, data, (*jsonReader).stateChanges)
		readsAsJSON(t, data, (*jsonReader).telemetry)
		readsAsJSON(t, data, (*jsonReader).rawPayload)

		r := &jsonReader{data: data}
		r.skipValue(0)
		if valid := json.Valid(data); r.end() && !valid {
			t.Fatalf("skipped invalid JSON as valid")
		} else if !r.end() && valid && jsonDepth(data) < maxSkipDepth {
			t.Fatalf("gave up on valid JSON")
		}
		for i := 0; i < len(data); {
			got, want := plainRun(data, i), bytewisePlainRun(data, i)
			if got != want {
				t.Fatalf("plainRun(data, %d) = %d, want %d", i, got, want)
			}
			i = got + 1
		}
	})
}

// readsAsJSON fails t when the reader reads data other than json.Unmarshal.
func readsAsJSON[P any](t *testing.T, data []byte, readPayload func(*jsonReader, *P)) {
	t.Helper()
	var got envelope[P]
	if !readEnvelope(data, "h1", &got, readPayload) {
		return
	}
	var want envelope[P]
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatalf("read an envelope of %T that encoding/json rejects: %v", want.Payload, err)
	}
	if diff := cmp.Diff(want, got, exactTime); diff != "" {
		t.Fatalf("read an envelope of %T other than encoding/json (-want +got):\n%s", want.Payload, diff)
	}
}

// jsonDepth returns the deepest nesting of valid JSON data.
func jsonDepth(data []byte) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{' || c == '[':
			depth++
			deepest = max(deepest, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return deepest
}

// bytewisePlainRun is plainRun one byte at a time.
func bytewisePlainRun(d []byte, i int) int {
	for ; i < len(d); i++ {
		if c := d[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return len(d)
}

// TestReaderReadsProducedMessages holds the reader to reading producers'
// messages itself: leaving them to encoding/json would be correct, and
// slow.
func TestReaderReadsProducedMessages(t *testing.T) {
	for _, m := range producedMessages(t) {
		t.Run(m.name, func(t *testing.T) {
			var read bool
			switch m.kind {
			case "state":
				read = readEnvelope(m.data, "h1", &envelope[[]stateChangeWire]{}, (*jsonReader).stateChanges)
			case "telemetry":
				read = readEnvelope(m.data, "h1", &envelope[Telemetry]{}, (*jsonReader).telemetry)
			case "event":
				read = readEnvelope(m.data, "h1", &envelope[json.RawMessage]{}, (*jsonReader).rawPayload)
			}
			if !read {
				t.Errorf("left to encoding/json: %s", m.data)
			}
		})
	}
}
