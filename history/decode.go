package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/registry"
	"github.com/oklog/ulid/v2"
)

// Telemetry is the payload of an envelope of type "telemetry" published on
// bus.TelemetrySubject(home, device): many measurements of one device's
// entities in one message, so that a device or edge sampling fast does not
// pay for a message per point.
type Telemetry struct {
	Points []TelemetryPoint `json:"points"`
}

// TelemetryPoint is one measurement.
type TelemetryPoint struct {
	EntityID string    `json:"entity_id"`
	Time     time.Time `json:"time"`
	Value    float64   `json:"value"`
	// Kind is the entity's kind; telemetry is a sensor's unless told.
	Kind homemesh.EntityKind `json:"kind,omitempty"`
}

// Envelope types history reads.
const (
	TypeStateChanges = registry.TypeStateChanges
	TypeTelemetry    = "telemetry"
)

// MaxStateChanges bounds the changes of one state-log message.
const MaxStateChanges = 10000

// Reasons a message is rejected, as logged and counted.
const (
	reasonTooLarge   = "too_large"
	reasonMalformed  = "malformed"
	reasonWrongHome  = "wrong_home"
	reasonInvalidID  = "invalid_id"
	reasonBadTime    = "bad_time"
	reasonBadValue   = "bad_value"
	reasonTooMany    = "too_many_points"
	reasonWrongType  = "wrong_type"
	reasonBadSubject = "bad_subject"
	reasonRefused    = "refused_by_store"
)

// rejection is why a message cannot be stored. It never quotes the
// payload, not even an ID in it: a rejected message is logged, and
// payloads may hold anything.
type rejection struct {
	reason string
	msg    string
}

func (r *rejection) Error() string { return r.reason + ": " + r.msg }

func reject(reason, format string, args ...any) error {
	return &rejection{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// rejectionReason returns the reason of a decode error.
func rejectionReason(err error) string {
	var r *rejection
	if errors.As(err, &r) {
		return r.reason
	}
	return reasonMalformed
}

// envelope is bus.Envelope with the payload decoded as P in the same
// pass: a message is scanned once, not once for the envelope and again for
// its payload.
type envelope[P any] struct {
	V       int       `json:"v"`
	ID      string    `json:"id"`
	Home    string    `json:"home"`
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Payload P         `json:"payload"`
}

// openEnvelope parses data as an envelope carrying a P and checks what
// every stream's envelope must satisfy. typ, when set, is the type the
// stream carries. readPayload reads the payload for a jsonReader; a
// message the reader gives up on is decoded by encoding/json, which then
// tells what is wrong with it.
func openEnvelope[P any](s *Service, data []byte, typ string, env *envelope[P], readPayload func(*jsonReader, *P)) error {
	if len(data) > MaxMessageBytes {
		return reject(reasonTooLarge, "%d bytes, at most %d", len(data), MaxMessageBytes)
	}
	if readEnvelope(data, s.cfg.Home, env, readPayload) {
		return checkEnvelope(s, typ, env)
	}
	*env = envelope[P]{}
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
	return checkEnvelope(s, typ, env)
}

// checkEnvelope checks a decoded envelope's version, home and type.
func checkEnvelope[P any](s *Service, typ string, env *envelope[P]) error {
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

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at offset %d", syn.Offset)
	}
	var typ *json.UnmarshalTypeError
	if errors.As(err, &typ) {
		return fmt.Sprintf("%s has the wrong JSON type or is out of range for %s", typ.Field, typ.Type)
	}
	if errors.Is(err, errors.ErrUnsupported) {
		return "unsupported value"
	}
	var perr *time.ParseError
	if errors.As(err, &perr) {
		return "bad time"
	}
	return "invalid JSON"
}

// truncate bounds a string quoted in a log line or error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// checkTime rejects the zero time and times too far ahead of now.
func (s *Service) checkTime(field string, t, now time.Time) error {
	if t.IsZero() || t.Year() < 1970 {
		return reject(reasonBadTime, "%s missing or before 1970", field)
	}
	if t.After(now.Add(maxFuture)) {
		return reject(reasonBadTime, "%s more than %v in the future", field, maxFuture)
	}
	return nil
}

func checkID(field, id string) error {
	if !homemesh.ValidID(id) {
		return reject(reasonInvalidID, "%s is not a valid ID", field)
	}
	return nil
}

// subjectHome checks the home token of subject, which the consumer's filter
// already guarantees; a stream can be misconfigured.
func (s *Service) subjectTokens(subject, kind string) ([]string, error) {
	parts := strings.Split(subject, ".")
	if len(parts) < 4 || parts[0] != bus.Prefix || parts[2] != kind {
		return nil, reject(reasonBadSubject, "not a %s subject", kind)
	}
	if parts[1] != s.cfg.Home {
		return nil, reject(reasonWrongHome, "subject of another home")
	}
	return parts, nil
}

// stateChangeWire is registry.StateChange, decoded only as far as history
// needs: the value and attributes stay raw. The value may be part of the
// message, not a copy: it is read while the message is decoded, never
// kept.
type stateChangeWire struct {
	HomeID   string              `json:"home_id"`
	DeviceID string              `json:"device_id"`
	EntityID string              `json:"entity_id"`
	Kind     homemesh.EntityKind `json:"kind"`
	State    struct {
		Value      json.RawMessage `json:"value"`
		Attributes json.RawMessage `json:"attributes"`
		Available  bool            `json:"available"`
		ChangedAt  time.Time       `json:"changed_at"`
		UpdatedAt  time.Time       `json:"updated_at"`
	} `json:"state"`
}

// decodeState turns a message of the home's state log
// (bus.StateLogSubject), a batch of type state_changes, into points. A
// batch with one bad change is refused whole, like a telemetry message:
// it is the producer's error, not a partial truth.
func (s *Service) decodeState(subject string, data []byte, out *Message) error {
	if subject != bus.StateLogSubject(s.cfg.Home) {
		if home, rest, _ := strings.Cut(strings.TrimPrefix(subject, bus.Prefix+"."), "."); rest == "statelog" && home != s.cfg.Home {
			return reject(reasonWrongHome, "subject of another home")
		}
		return reject(reasonBadSubject, "not the state log's subject")
	}
	changes := stateChangeLists.get()
	env := envelope[[]stateChangeWire]{Payload: *changes}
	defer func() { stateChangeLists.put(changes, env.Payload) }()
	if err := openEnvelope(s, data, TypeStateChanges, &env, (*jsonReader).stateChanges); err != nil {
		return err
	}
	if len(env.Payload) > MaxStateChanges {
		return reject(reasonTooMany, "%d state changes, at most %d", len(env.Payload), MaxStateChanges)
	}
	out.Points = slices.Grow(out.Points, len(env.Payload))
	now, stored := s.now(), len(out.Points)
	for i := range env.Payload {
		if err := s.appendStatePoint(&env.Payload[i], env.Time, now, out); err != nil {
			out.Points = out.Points[:stored]
			return err
		}
	}
	return nil
}

// appendStatePoint checks one state change and appends its point to out.
func (s *Service) appendStatePoint(sc *stateChangeWire, sent, now time.Time, out *Message) error {
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
	} else if err := setValue(&p, sc.State.Value); err != nil {
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

// setValue stores a JSON state value in p: numbers, and strings that are
// finite numbers, as numeric; booleans as "on"/"off"; other strings as
// they are; null as "unknown"; anything else as its JSON text.
func setValue(p *Point, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		p.State = "unknown"
		return nil
	}
	switch raw[0] {
	case '"':
		str, ok := plainJSONString(raw)
		if !ok {
			if err := json.Unmarshal(raw, &str); err != nil {
				return reject(reasonMalformed, "value: %s", jsonProblem(err))
			}
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

// plainJSONString returns the string that raw, a JSON string, holds, when
// it holds its own bytes: no escapes, no control characters, valid UTF-8.
// json.Unmarshal decodes it the same, slower.
func plainJSONString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s, utf := raw[1:len(raw)-1], false
	for _, c := range s {
		if c == '"' || c == '\\' || c < 0x20 {
			return "", false
		}
		utf = utf || c >= utf8.RuneSelf
	}
	if utf && !utf8.Valid(s) {
		return "", false
	}
	return string(s), true
}

// decodeTelemetry turns an envelope of type telemetry carrying Telemetry
// into its points.
func (s *Service) decodeTelemetry(subject string, data []byte, out *Message) error {
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
	points := telemetryPointLists.get()
	env := envelope[Telemetry]{Payload: Telemetry{Points: *points}}
	defer func() { telemetryPointLists.put(points, env.Payload.Points) }()
	if err := openEnvelope(s, data, TypeTelemetry, &env, (*jsonReader).telemetry); err != nil {
		return err
	}
	tm := &env.Payload
	if len(tm.Points) > MaxTelemetryPoints {
		return reject(reasonTooMany, "%d points, at most %d", len(tm.Points), MaxTelemetryPoints)
	}
	out.Points = slices.Grow(out.Points, len(tm.Points))
	now := s.now()
	start := len(out.Points)
	for i, tp := range tm.Points {
		// A field is named only once it is wrong: naming every point's
		// cost more than checking it.
		if !homemesh.ValidID(tp.EntityID) {
			out.Points = out.Points[:start]
			return checkID(fmt.Sprintf("points[%d].entity_id", i), tp.EntityID)
		}
		if s.checkTime("time", tp.Time, now) != nil {
			out.Points = out.Points[:start]
			return s.checkTime(fmt.Sprintf("points[%d].time", i), tp.Time, now)
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

// listPool keeps the lists messages are decoded into, which are done
// with once the message's points are made: a state-log message's list is
// tens of kilobytes.
type listPool[T any] struct{ pool sync.Pool }

// maxPooledList bounds the length of a list kept for reuse.
const maxPooledList = MaxStateChanges

var (
	stateChangeLists    listPool[stateChangeWire]
	telemetryPointLists listPool[TelemetryPoint]
)

// get returns an empty list, to be given back with put.
func (p *listPool[T]) get() *[]T {
	if l, ok := p.pool.Get().(*[]T); ok {
		return l
	}
	return new([]T)
}

// put gives l back, with used, what the list became: emptied, so that it
// holds on to nothing of the message.
func (p *listPool[T]) put(l *[]T, used []T) {
	if cap(used) == 0 || cap(used) > maxPooledList {
		return
	}
	clear(used[:cap(used)])
	*l = used[:0]
	p.pool.Put(l)
}

// eventRefs are the fields of an event payload that tie it to a device or
// an entity.
type eventRefs struct {
	DeviceID *string `json:"device_id"`
	EntityID *string `json:"entity_id"`
}

// decodeEvent turns any envelope on an event subject into an event.
func (s *Service) decodeEvent(subject string, data []byte, out *Message) error {
	parts, err := s.subjectTokens(subject, "event")
	if err != nil {
		return err
	}
	kind := parts[len(parts)-1]
	if err := checkID("kind", kind); err != nil {
		return err
	}
	var env envelope[json.RawMessage]
	if err := openEnvelope(s, data, "", &env, (*jsonReader).rawPayload); err != nil {
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
