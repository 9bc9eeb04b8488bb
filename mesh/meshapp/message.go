package meshapp

import (
	"encoding/json"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// Limits of the protocol. Decode and Encode refuse anything past them.
const (
	// MaxMessageSize is the bytes of one message: what one end-to-end
	// payload holds, just under 64 KiB, less the byte with which the mesh
	// node marks a payload as an application message
	// (meshnode.MaxPayload; a test of the agent holds them equal).
	MaxMessageSize  = link.MaxE2EPayload - 1
	MaxEntities     = 256  // entities per device
	MaxIDLen        = 64   // characters of unique_id, command, device_class, state_class
	MaxTextLen      = 128  // bytes of a name, manufacturer, model, sw_version
	MaxUnitLen      = 32   // bytes of unit_of_measurement
	MaxValueLen     = 255  // bytes of a string state value (Home Assistant's limit)
	MaxAttributes   = 64   // attributes per state, parameters per command
	MaxAttributeKey = 64   // bytes of an attribute or parameter name
	MaxErrorLen     = 1024 // bytes of a result's error
	// MaxRevoked is the node ids one revoked message names: 3000 of
	// them take 57 KB, within MaxMessageSize. A hub with more to tell
	// sends several messages.
	MaxRevoked = 3000
	// MaxNeighbours is the neighbours one links message lists: 256 of
	// them at their longest take 33 KB, within MaxMessageSize, and a
	// mesh node holds 64 links by default.
	MaxNeighbours = 256
)

// Type names a message's kind: the value of its "type" field.
type Type string

// The message types.
const (
	TypeAnnounce Type = "announce"
	TypeState    Type = "state"
	TypeCommand  Type = "command"
	TypeResult   Type = "result"
	TypeResync   Type = "resync"
	TypeRevoked  Type = "revoked"
	TypeLinks    Type = "links"
)

// Message is one of *Announce, *State, *Command, *Result, *Resync,
// *Revoked and *Links.
type Message interface {
	// MessageType returns the value of the message's "type" field.
	MessageType() Type
	validate() error
}

var (
	_ Message = (*Announce)(nil)
	_ Message = (*State)(nil)
	_ Message = (*Command)(nil)
	_ Message = (*Result)(nil)
	_ Message = (*Resync)(nil)
	_ Message = (*Revoked)(nil)
	_ Message = (*Links)(nil)
)

// Announce describes the agent's device and all its entities, with their
// current states. It replaces whatever the hub knew about the device.
type Announce struct {
	Device   DeviceInfo `json:"device"`
	Entities []Entity   `json:"entities"`
}

// DeviceInfo is what an agent says about its device. Its id is not here:
// the hub derives it from the authenticated source node (DeviceID).
type DeviceInfo struct {
	Name         string `json:"name"`
	Manufacturer string `json:"manufacturer,omitempty"`
	Model        string `json:"model,omitempty"`
	SWVersion    string `json:"sw_version,omitempty"`
}

// Entity defines one entity of the device, as homemesh.Entity names its
// fields, and carries its current state.
type Entity struct {
	UniqueID    string                `json:"unique_id"`
	Kind        homemesh.EntityKind   `json:"kind"`
	Name        string                `json:"name,omitempty"`
	DeviceClass string                `json:"device_class,omitempty"`
	Unit        string                `json:"unit_of_measurement,omitempty"`
	StateClass  string                `json:"state_class,omitempty"`
	Caps        homemesh.Capabilities `json:"capabilities,omitzero"`
	State       *Reading              `json:"state,omitempty"`
}

// Reading is an entity's state as the agent observed it.
type Reading struct {
	// Value is nil, a bool, a float64 (JSON numbers decode as float64) or
	// a string of at most MaxValueLen bytes.
	Value      any            `json:"value"`
	Attributes map[string]any `json:"attributes,omitempty"`
	Available  bool           `json:"available"`
	// Time is when the agent observed the value; zero when the agent has
	// no clock, and the hub then uses the time of arrival.
	Time time.Time `json:"time,omitzero"`
}

// State reports one entity's new state (a change, or periodic telemetry).
type State struct {
	UniqueID string `json:"unique_id"`
	Reading
}

// Command asks the agent to run a command on one of its entities.
type Command struct {
	ID       uint64         `json:"id"` // echoed in the Result
	UniqueID string         `json:"unique_id"`
	Name     string         `json:"command"`
	Params   map[string]any `json:"params,omitempty"`
}

// Result answers the Command with the same ID. Error is empty when the
// command was carried out, else a message for the user.
type Result struct {
	ID    uint64 `json:"id"`
	Error string `json:"error,omitempty"`
}

// Resync tells an agent that the hub does not know it: it must announce.
type Resync struct{}

// Revoked names nodes the home revoked: the agent refuses them from then
// on, and keeps refusing them after a restart. Revocations are never
// lifted, so a message adds to what the agent knew and never replaces it;
// a hub sends every revoked node, in as many messages as MaxRevoked
// requires. Nodes travel as the 16 lower-case hex digits of their ids.
type Revoked struct {
	Nodes []route.NodeID `json:"nodes"`
}

// Links lists the sender's live neighbours, with the costs and quality
// of each link as the sender measures them (meshnode.NeighbourInfo), so
// that a hub can show links it is not part of. It replaces what the
// sender reported before; an empty list says it has no live link.
type Links struct {
	Neighbours []Neighbour `json:"neighbours"`
}

// Neighbour is one link of the sender. Its JSON names are node_id, role,
// cost, rx_cost, tx_cost and quality; the node id travels as its 16
// lower-case hex digits, the role as hub, router or leaf.
type Neighbour struct {
	ID   route.NodeID
	Role link.Role
	// Cost is the link's ETX cost (route.HopCost for a perfect link);
	// RxCost is measured by the sender from the neighbour's Hellos,
	// TxCost by the neighbour from the sender's.
	Cost, RxCost, TxCost uint16
	// Quality is route.HopCost / Cost, 0 to 1.
	Quality float64
}

// neighbourJSON is Neighbour on the wire.
type neighbourJSON struct {
	NodeID  string  `json:"node_id"`
	Role    string  `json:"role"`
	Cost    uint16  `json:"cost"`
	RxCost  uint16  `json:"rx_cost"`
	TxCost  uint16  `json:"tx_cost"`
	Quality float64 `json:"quality"`
}

// MessageType returns TypeAnnounce.
func (*Announce) MessageType() Type { return TypeAnnounce }

// MessageType returns TypeState.
func (*State) MessageType() Type { return TypeState }

// MessageType returns TypeCommand.
func (*Command) MessageType() Type { return TypeCommand }

// MessageType returns TypeResult.
func (*Result) MessageType() Type { return TypeResult }

// MessageType returns TypeResync.
func (*Resync) MessageType() Type { return TypeResync }

// MessageType returns TypeRevoked.
func (*Revoked) MessageType() Type { return TypeRevoked }

// MessageType returns TypeLinks.
func (*Links) MessageType() Type { return TypeLinks }

// Encode validates m as Decode would and returns its JSON encoding with
// the "type" field first.
func Encode(m Message) ([]byte, error) {
	if m == nil {
		return nil, homemesh.Invalid("type", "no message")
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	var body []byte
	var err error
	switch m := m.(type) {
	case *Announce:
		type plain Announce
		body, err = json.Marshal(struct {
			Type Type `json:"type"`
			*plain
		}{m.MessageType(), (*plain)(m)})
	case *State:
		type plain State
		body, err = json.Marshal(struct {
			Type Type `json:"type"`
			*plain
		}{m.MessageType(), (*plain)(m)})
	case *Command:
		type plain Command
		body, err = json.Marshal(struct {
			Type Type `json:"type"`
			*plain
		}{m.MessageType(), (*plain)(m)})
	case *Result:
		type plain Result
		body, err = json.Marshal(struct {
			Type Type `json:"type"`
			*plain
		}{m.MessageType(), (*plain)(m)})
	case *Resync:
		body, err = json.Marshal(struct {
			Type Type `json:"type"`
		}{m.MessageType()})
	case *Revoked:
		nodes := make([]string, len(m.Nodes))
		for i, id := range m.Nodes {
			nodes[i] = id.String()
		}
		body, err = json.Marshal(struct {
			Type  Type     `json:"type"`
			Nodes []string `json:"nodes"`
		}{m.MessageType(), nodes})
	case *Links:
		nbs := make([]neighbourJSON, len(m.Neighbours))
		for i, nb := range m.Neighbours {
			nbs[i] = neighbourJSON{NodeID: nb.ID.String(), Role: nb.Role.String(),
				Cost: nb.Cost, RxCost: nb.RxCost, TxCost: nb.TxCost, Quality: nb.Quality}
		}
		body, err = json.Marshal(struct {
			Type       Type            `json:"type"`
			Neighbours []neighbourJSON `json:"neighbours"`
		}{m.MessageType(), nbs})
	default:
		return nil, homemesh.Invalid("type", "unknown message %T", m)
	}
	if err != nil {
		// Validation admits only JSON-representable values, so this is a
		// value validate does not know how to check (e.g. a NaN param).
		return nil, homemesh.Invalid(string(m.MessageType()), "cannot be encoded: %v", err)
	}
	if len(body) > MaxMessageSize {
		return nil, homemesh.Invalid("message", "is %d bytes, over the limit of %d", len(body), MaxMessageSize)
	}
	return body, nil
}
