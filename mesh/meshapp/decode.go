package meshapp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// Decode parses one message strictly (see the package comment) and returns
// it as *Announce, *State, *Command, *Result, *Resync, *Revoked or
// *Links. Its errors are *homemesh.Error of kind invalid naming the
// offending field.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, homemesh.Invalid("message", "is %d bytes, over the limit of %d", len(b), MaxMessageSize)
	}
	o, err := parseObject("", b)
	if err != nil {
		return nil, err
	}
	var typ string
	if err := o.str("type", &typ, true); err != nil {
		return nil, err
	}
	var m Message
	switch Type(typ) {
	case TypeAnnounce:
		m, err = decodeAnnounce(o)
	case TypeState:
		m, err = decodeState(o)
	case TypeCommand:
		m, err = decodeCommand(o)
	case TypeResult:
		m, err = decodeResult(o)
	case TypeResync:
		m, err = &Resync{}, o.done()
	case TypeRevoked:
		m, err = decodeRevoked(o)
	case TypeLinks:
		m, err = decodeLinks(o)
	default:
		return nil, homemesh.Invalid("type", "unknown message type %q", truncate(typ))
	}
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeAnnounce(o *object) (*Announce, error) {
	a := &Announce{}
	dev, err := o.object("device", true)
	if err != nil {
		return nil, err
	}
	if err := dev.str("name", &a.Device.Name, true); err != nil {
		return nil, err
	}
	if err := dev.str("manufacturer", &a.Device.Manufacturer, false); err != nil {
		return nil, err
	}
	if err := dev.str("model", &a.Device.Model, false); err != nil {
		return nil, err
	}
	if err := dev.str("sw_version", &a.Device.SWVersion, false); err != nil {
		return nil, err
	}
	if err := dev.done(); err != nil {
		return nil, err
	}
	raws, err := o.array("entities", true)
	if err != nil {
		return nil, err
	}
	if len(raws) > MaxEntities {
		return nil, homemesh.Invalid("entities", "has %d entities, over the limit of %d", len(raws), MaxEntities)
	}
	a.Entities = make([]Entity, len(raws))
	for i, raw := range raws {
		eo, err := parseObject(fmt.Sprintf("entities[%d]", i), raw)
		if err != nil {
			return nil, err
		}
		if err := decodeEntity(eo, &a.Entities[i]); err != nil {
			return nil, err
		}
	}
	return a, o.done()
}

func decodeEntity(o *object, e *Entity) error {
	var kind string
	for _, f := range []struct {
		name     string
		dst      *string
		required bool
	}{
		{"unique_id", &e.UniqueID, true},
		{"kind", &kind, true},
		{"name", &e.Name, false},
		{"device_class", &e.DeviceClass, false},
		{"unit_of_measurement", &e.Unit, false},
		{"state_class", &e.StateClass, false},
	} {
		if err := o.str(f.name, f.dst, f.required); err != nil {
			return err
		}
	}
	e.Kind = homemesh.EntityKind(kind)
	if raw, ok := o.take("capabilities"); ok {
		if err := decodeCapabilities(o.child("capabilities"), raw, &e.Caps); err != nil {
			return err
		}
	}
	st, err := o.object("state", false)
	if err != nil {
		return err
	}
	if st != nil {
		e.State = &Reading{}
		if err := decodeReading(st, e.State); err != nil {
			return err
		}
		if err := st.done(); err != nil {
			return err
		}
	}
	return o.done()
}

func decodeReading(o *object, r *Reading) error {
	raw, ok := o.take("value")
	if !ok {
		return homemesh.Invalid(o.child("value"), "is required")
	}
	if err := json.Unmarshal(raw, &r.Value); err != nil {
		return homemesh.Invalid(o.child("value"), "must be JSON")
	}
	switch r.Value.(type) {
	case map[string]any, []any:
		return homemesh.Invalid(o.child("value"), "must be null, a boolean, a number or a string")
	}
	if err := o.anyMap("attributes", &r.Attributes); err != nil {
		return err
	}
	if err := o.boolean("available", &r.Available, true); err != nil {
		return err
	}
	return o.time("time", &r.Time)
}

func decodeState(o *object) (*State, error) {
	s := &State{}
	if err := o.str("unique_id", &s.UniqueID, true); err != nil {
		return nil, err
	}
	if err := decodeReading(o, &s.Reading); err != nil {
		return nil, err
	}
	return s, o.done()
}

func decodeCommand(o *object) (*Command, error) {
	c := &Command{}
	if err := o.uint("id", &c.ID); err != nil {
		return nil, err
	}
	if err := o.str("unique_id", &c.UniqueID, true); err != nil {
		return nil, err
	}
	if err := o.str("command", &c.Name, true); err != nil {
		return nil, err
	}
	if err := o.anyMap("params", &c.Params); err != nil {
		return nil, err
	}
	return c, o.done()
}

func decodeResult(o *object) (*Result, error) {
	r := &Result{}
	if err := o.uint("id", &r.ID); err != nil {
		return nil, err
	}
	if err := o.str("error", &r.Error, false); err != nil {
		return nil, err
	}
	return r, o.done()
}

func decodeRevoked(o *object) (*Revoked, error) {
	raws, err := o.array("nodes", true)
	if err != nil {
		return nil, err
	}
	if len(raws) > MaxRevoked {
		return nil, homemesh.Invalid("nodes", "names %d nodes, over the limit of %d", len(raws), MaxRevoked)
	}
	r := &Revoked{Nodes: make([]route.NodeID, len(raws))}
	for i, raw := range raws {
		field := fmt.Sprintf("nodes[%d]", i)
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return nil, homemesh.Invalid(field, "must be a string")
		}
		id, err := parseNodeID(field, s)
		if err != nil {
			return nil, err
		}
		r.Nodes[i] = id
	}
	return r, o.done()
}

// parseNodeID admits only the lower-case form of a node id, so that one
// id has one spelling.
func parseNodeID(field, s string) (route.NodeID, error) {
	id, err := route.ParseNodeID(s)
	if err != nil || id.String() != s {
		return route.NodeID{}, homemesh.Invalid(field, "must be a node id of 16 lower-case hex digits, not %q", truncate(s))
	}
	return id, nil
}

func decodeLinks(o *object) (*Links, error) {
	raws, err := o.array("neighbours", true)
	if err != nil {
		return nil, err
	}
	if len(raws) > MaxNeighbours {
		return nil, homemesh.Invalid("neighbours", "lists %d neighbours, over the limit of %d", len(raws), MaxNeighbours)
	}
	l := &Links{Neighbours: make([]Neighbour, len(raws))}
	for i, raw := range raws {
		no, err := parseObject(fmt.Sprintf("neighbours[%d]", i), raw)
		if err != nil {
			return nil, err
		}
		if err := decodeNeighbour(no, &l.Neighbours[i]); err != nil {
			return nil, err
		}
	}
	return l, o.done()
}

func decodeNeighbour(o *object, nb *Neighbour) error {
	var id, role string
	if err := o.str("node_id", &id, true); err != nil {
		return err
	}
	var err error
	if nb.ID, err = parseNodeID(o.child("node_id"), id); err != nil {
		return err
	}
	if err := o.str("role", &role, true); err != nil {
		return err
	}
	if nb.Role, err = link.ParseRole(role); err != nil {
		return homemesh.Invalid(o.child("role"), "must be hub, router or leaf, not %q", truncate(role))
	}
	for _, f := range []struct {
		name string
		dst  *uint16
	}{{"cost", &nb.Cost}, {"rx_cost", &nb.RxCost}, {"tx_cost", &nb.TxCost}} {
		if err := o.uint16(f.name, f.dst); err != nil {
			return err
		}
	}
	if err := o.number("quality", &nb.Quality); err != nil {
		return err
	}
	return o.done()
}

// capabilityFields lists the JSON names of homemesh.Capabilities, so that
// capabilities are matched exactly rather than case-insensitively.
var capabilityFields = sync.OnceValue(func() map[string]bool {
	names := map[string]bool{}
	t := reflect.TypeFor[homemesh.Capabilities]()
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
})

func decodeCapabilities(path string, raw json.RawMessage, c *homemesh.Capabilities) error {
	o, err := parseObject(path, raw)
	if err != nil {
		return err
	}
	allowed := capabilityFields()
	for _, k := range o.keys() {
		if !allowed[k] {
			return homemesh.Invalid(o.child(k), "unknown field")
		}
	}
	if err := json.Unmarshal(raw, c); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return homemesh.Invalid(path+"."+te.Field, "must be a JSON %s", jsonKind(te.Type))
		}
		return homemesh.Invalid(path, "is malformed")
	}
	return nil
}

func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Slice:
		return "array"
	case reflect.Int, reflect.Int64, reflect.Float64, reflect.Pointer:
		return "number"
	}
	return t.String()
}

// object is a JSON object being decoded: each field is taken once, and
// done reports the first field nobody took.
type object struct {
	path   string
	fields map[string]json.RawMessage
}

func parseObject(path string, b []byte) (*object, error) {
	name := path
	if name == "" {
		name = "message"
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, homemesh.Invalid(name, "is not JSON: %v", se)
		}
		return nil, homemesh.Invalid(name, "must be a JSON object")
	}
	if fields == nil {
		return nil, homemesh.Invalid(name, "must be a JSON object")
	}
	return &object{path: path, fields: fields}, nil
}

func (o *object) child(name string) string {
	if o.path == "" {
		return name
	}
	return o.path + "." + name
}

func (o *object) keys() []string {
	keys := make([]string, 0, len(o.fields))
	for k := range o.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (o *object) take(name string) (json.RawMessage, bool) {
	raw, ok := o.fields[name]
	delete(o.fields, name)
	return raw, ok
}

func (o *object) done() error {
	if keys := o.keys(); len(keys) > 0 {
		return homemesh.Invalid(o.child(truncate(keys[0])), "unknown field")
	}
	return nil
}

func (o *object) str(name string, dst *string, required bool) error {
	raw, ok := o.take(name)
	if !ok {
		if required {
			return homemesh.Invalid(o.child(name), "is required")
		}
		return nil
	}
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, dst) != nil {
		return homemesh.Invalid(o.child(name), "must be a string")
	}
	if required && *dst == "" {
		return homemesh.Invalid(o.child(name), "is required")
	}
	return nil
}

func (o *object) boolean(name string, dst *bool, required bool) error {
	raw, ok := o.take(name)
	if !ok {
		if required {
			return homemesh.Invalid(o.child(name), "is required")
		}
		return nil
	}
	switch string(raw) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		return homemesh.Invalid(o.child(name), "must be true or false")
	}
	return nil
}

func (o *object) uint(name string, dst *uint64) error {
	raw, ok := o.take(name)
	if !ok {
		return homemesh.Invalid(o.child(name), "is required")
	}
	// encoding/json would accept 1e3 only into a float; ids are plain
	// digits, so anything else is refused rather than rounded.
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' || json.Unmarshal(raw, dst) != nil {
		return homemesh.Invalid(o.child(name), "must be an integer from 0 to 2^64-1")
	}
	return nil
}

// uint16 decodes a required integer of 0 to 65535, written in plain
// digits as Encode writes it.
func (o *object) uint16(name string, dst *uint16) error {
	raw, ok := o.take(name)
	if !ok {
		return homemesh.Invalid(o.child(name), "is required")
	}
	if len(raw) == 0 || raw[0] < '0' || raw[0] > '9' || json.Unmarshal(raw, dst) != nil {
		return homemesh.Invalid(o.child(name), "must be an integer from 0 to 65535")
	}
	return nil
}

// number decodes a required JSON number.
func (o *object) number(name string, dst *float64) error {
	raw, ok := o.take(name)
	if !ok {
		return homemesh.Invalid(o.child(name), "is required")
	}
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) || json.Unmarshal(raw, dst) != nil {
		return homemesh.Invalid(o.child(name), "must be a number")
	}
	return nil
}

func (o *object) time(name string, dst *time.Time) error {
	raw, ok := o.take(name)
	if !ok {
		return nil
	}
	var s string
	if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return homemesh.Invalid(o.child(name), "must be an RFC 3339 time string")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return homemesh.Invalid(o.child(name), "must be an RFC 3339 time")
	}
	*dst = t
	return nil
}

func (o *object) object(name string, required bool) (*object, error) {
	raw, ok := o.take(name)
	if !ok {
		if required {
			return nil, homemesh.Invalid(o.child(name), "is required")
		}
		return nil, nil
	}
	return parseObject(o.child(name), raw)
}

func (o *object) array(name string, required bool) ([]json.RawMessage, error) {
	raw, ok := o.take(name)
	if !ok {
		if required {
			return nil, homemesh.Invalid(o.child(name), "is required")
		}
		return nil, nil
	}
	var items []json.RawMessage
	if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("[")) || json.Unmarshal(raw, &items) != nil {
		return nil, homemesh.Invalid(o.child(name), "must be an array")
	}
	return items, nil
}

// anyMap decodes an optional object of arbitrary JSON values (attributes,
// params); an empty object decodes as nil, as Encode leaves it out.
func (o *object) anyMap(name string, dst *map[string]any) error {
	raw, ok := o.take(name)
	if !ok {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return homemesh.Invalid(o.child(name), "must be a JSON object")
	}
	if len(m) > 0 {
		*dst = m
	}
	return nil
}

// truncate keeps attacker-chosen text in error messages short.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return strings.ToValidUTF8(s[:max], "") + "…"
}
