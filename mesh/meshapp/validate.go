package meshapp

import (
	"encoding/json"
	"fmt"
	"math"
	"unicode"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// validate checks the limits of the package comment; the decoder has
// already checked the JSON structure.
func (a *Announce) validate() error {
	if err := checkText("device.name", a.Device.Name, MaxTextLen, true); err != nil {
		return err
	}
	if err := checkText("device.manufacturer", a.Device.Manufacturer, MaxTextLen, false); err != nil {
		return err
	}
	if err := checkText("device.model", a.Device.Model, MaxTextLen, false); err != nil {
		return err
	}
	if err := checkText("device.sw_version", a.Device.SWVersion, MaxTextLen, false); err != nil {
		return err
	}
	if len(a.Entities) > MaxEntities {
		return homemesh.Invalid("entities", "has %d entities, over the limit of %d", len(a.Entities), MaxEntities)
	}
	seen := make(map[string]int, len(a.Entities))
	for i := range a.Entities {
		path := fmt.Sprintf("entities[%d]", i)
		e := &a.Entities[i]
		if err := e.validate(path); err != nil {
			return err
		}
		if j, dup := seen[e.UniqueID]; dup {
			return homemesh.Invalid(path+".unique_id", "%q is also the unique_id of entities[%d]", e.UniqueID, j)
		}
		seen[e.UniqueID] = i
	}
	return nil
}

func (e *Entity) validate(path string) error {
	if err := checkID(path+".unique_id", e.UniqueID, true); err != nil {
		return err
	}
	if e.Kind == "" {
		return homemesh.Invalid(path+".kind", "is required")
	}
	if !e.Kind.Valid() {
		return homemesh.Invalid(path+".kind", "unknown kind %q", e.Kind)
	}
	if err := checkText(path+".name", e.Name, MaxTextLen, false); err != nil {
		return err
	}
	if err := checkID(path+".device_class", e.DeviceClass, false); err != nil {
		return err
	}
	if err := checkText(path+".unit_of_measurement", e.Unit, MaxUnitLen, false); err != nil {
		return err
	}
	if err := checkID(path+".state_class", e.StateClass, false); err != nil {
		return err
	}
	for i, c := range e.Caps.Commands {
		if err := checkID(fmt.Sprintf("%s.capabilities.commands[%d]", path, i), c, true); err != nil {
			return err
		}
	}
	if e.State != nil {
		return e.State.validate(path + ".state")
	}
	return nil
}

func (r *Reading) validate(path string) error {
	if err := checkScalar(path+".value", r.Value); err != nil {
		return err
	}
	return checkMap(path+".attributes", r.Attributes)
}

func (s *State) validate() error {
	if err := checkID("unique_id", s.UniqueID, true); err != nil {
		return err
	}
	if err := checkScalar("value", s.Value); err != nil {
		return err
	}
	return checkMap("attributes", s.Attributes)
}

func (c *Command) validate() error {
	if err := checkID("unique_id", c.UniqueID, true); err != nil {
		return err
	}
	if err := checkID("command", c.Name, true); err != nil {
		return err
	}
	return checkMap("params", c.Params)
}

func (r *Result) validate() error {
	return checkText("error", r.Error, MaxErrorLen, false)
}

func (*Resync) validate() error { return nil }

func (r *Revoked) validate() error {
	switch {
	case len(r.Nodes) == 0:
		return homemesh.Invalid("nodes", "must name at least one node")
	case len(r.Nodes) > MaxRevoked:
		return homemesh.Invalid("nodes", "names %d nodes, over the limit of %d", len(r.Nodes), MaxRevoked)
	}
	seen := make(map[route.NodeID]int, len(r.Nodes))
	for i, id := range r.Nodes {
		if j, dup := seen[id]; dup {
			return homemesh.Invalid(fmt.Sprintf("nodes[%d]", i), "%s is also nodes[%d]", id, j)
		}
		seen[id] = i
	}
	return nil
}

func (l *Links) validate() error {
	if len(l.Neighbours) > MaxNeighbours {
		return homemesh.Invalid("neighbours", "lists %d neighbours, over the limit of %d", len(l.Neighbours), MaxNeighbours)
	}
	seen := make(map[route.NodeID]int, len(l.Neighbours))
	for i, nb := range l.Neighbours {
		path := fmt.Sprintf("neighbours[%d]", i)
		if j, dup := seen[nb.ID]; dup {
			return homemesh.Invalid(path+".node_id", "%s is also neighbours[%d]", nb.ID, j)
		}
		seen[nb.ID] = i
		switch nb.Role {
		case link.RoleHub, link.RoleRouter, link.RoleLeaf:
		default:
			return homemesh.Invalid(path+".role", "must be hub, router or leaf")
		}
		if math.IsNaN(nb.Quality) || nb.Quality < 0 || nb.Quality > 1 {
			return homemesh.Invalid(path+".quality", "must be a number from 0 to 1")
		}
	}
	return nil
}

// ValidID reports whether s can be a unique_id or command name: 1 to
// MaxIDLen characters of [a-z0-9_-].
func ValidID(s string) bool {
	return len(s) <= MaxIDLen && homemesh.ValidID(s)
}

func checkID(field, s string, required bool) error {
	if s == "" {
		if required {
			return homemesh.Invalid(field, "is required")
		}
		return nil
	}
	if !ValidID(s) {
		return homemesh.Invalid(field, "must be 1 to %d characters of a-z, 0-9, _ and -", MaxIDLen)
	}
	return nil
}

// checkText admits printable UTF-8 of at most max bytes: names end up in
// logs and user interfaces, where control characters do harm.
func checkText(field, s string, max int, required bool) error {
	if s == "" {
		if required {
			return homemesh.Invalid(field, "is required")
		}
		return nil
	}
	if len(s) > max {
		return homemesh.Invalid(field, "is %d bytes, over the limit of %d", len(s), max)
	}
	if !utf8.ValidString(s) {
		return homemesh.Invalid(field, "must be UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return homemesh.Invalid(field, "must not contain control characters")
		}
	}
	return nil
}

// checkScalar admits what a Home Assistant state can be: null, a boolean,
// a finite number or a short string.
func checkScalar(field string, v any) error {
	switch v := v.(type) {
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return nil
	case float64:
		return checkFinite(field, v)
	case float32:
		return checkFinite(field, float64(v))
	case json.Number:
		if _, err := v.Float64(); err != nil {
			return homemesh.Invalid(field, "must be a number")
		}
		return nil
	case string:
		if len(v) > MaxValueLen {
			return homemesh.Invalid(field, "is %d bytes, over the limit of %d", len(v), MaxValueLen)
		}
		if !utf8.ValidString(v) {
			return homemesh.Invalid(field, "must be UTF-8")
		}
		return nil
	default:
		return homemesh.Invalid(field, "must be null, a boolean, a number or a string")
	}
}

func checkFinite(field string, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return homemesh.Invalid(field, "must be a finite number")
	}
	return nil
}

// checkMap bounds attributes and params: how many and how long their
// names are. Their values are bounded by MaxMessageSize.
func checkMap(field string, m map[string]any) error {
	if len(m) > MaxAttributes {
		return homemesh.Invalid(field, "has %d entries, over the limit of %d", len(m), MaxAttributes)
	}
	for k := range m {
		if k == "" || len(k) > MaxAttributeKey || !utf8.ValidString(k) {
			return homemesh.Invalid(field, "names must be 1 to %d bytes of UTF-8", MaxAttributeKey)
		}
	}
	return nil
}
