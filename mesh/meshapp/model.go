package meshapp

import (
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// Source is the homemesh.Device and homemesh.Entity Source of everything
// the mesh reports.
const Source = "mesh"

// deviceIDPrefix starts every mesh device id.
const deviceIDPrefix = "mesh-"

// DeviceID returns the homemesh device id of the agent whose node id is
// id: "mesh-" and the id's 16 hex digits. The hub derives it from the
// authenticated source of a message, never from the message itself.
func DeviceID(id route.NodeID) string { return deviceIDPrefix + id.String() }

// ParseDeviceID returns the node id DeviceID made deviceID from; ok is
// false when deviceID is not a mesh device id.
func ParseDeviceID(deviceID string) (id route.NodeID, ok bool) {
	hex, found := strings.CutPrefix(deviceID, deviceIDPrefix)
	if !found {
		return id, false
	}
	id, err := route.ParseNodeID(hex)
	if err != nil || id.String() != hex { // refuse upper-case spellings: ids are canonical
		return route.NodeID{}, false
	}
	return id, true
}

// EntityID returns the homemesh entity id of the entity uniqueID of the
// agent id: DeviceID, "-", uniqueID. The device id has a fixed length, so
// the split is unambiguous; at most 5+16+1+MaxIDLen characters, within
// homemesh.MaxIDLen.
func EntityID(id route.NodeID, uniqueID string) string {
	return DeviceID(id) + "-" + uniqueID
}

// ParseEntityID splits an EntityID into the agent's node id and the
// entity's unique_id; ok is false when entityID is not a mesh entity id.
func ParseEntityID(entityID string) (id route.NodeID, uniqueID string, ok bool) {
	n := len(deviceIDPrefix) + 2*len(id)
	if len(entityID) < n+2 || entityID[n] != '-' {
		return id, "", false
	}
	id, ok = ParseDeviceID(entityID[:n])
	uniqueID = entityID[n+1:]
	if !ok || !ValidID(uniqueID) {
		return route.NodeID{}, "", false
	}
	return id, uniqueID, true
}

// HomemeshDevice returns the homemesh.Device an announcement from node id
// describes, for home.
func (a *Announce) HomemeshDevice(home string, id route.NodeID) homemesh.Device {
	return homemesh.Device{
		ID:           DeviceID(id),
		HomeID:       home,
		Name:         a.Device.Name,
		Manufacturer: a.Device.Manufacturer,
		Model:        a.Device.Model,
		SWVersion:    a.Device.SWVersion,
		Identifiers:  []string{DeviceID(id)},
		Source:       Source,
	}
}

// HomemeshEntities returns the homemesh.Entity definitions an announcement from
// node id describes, for home, in the announced order, each with the
// announced state (unavailable when the announcement has none). A
// registry stores definitions and states separately: StateUpdates gives
// the same states as reports.
func (a *Announce) HomemeshEntities(home string, id route.NodeID, now time.Time) []homemesh.Entity {
	out := make([]homemesh.Entity, len(a.Entities))
	for i, e := range a.Entities {
		name := e.Name
		if name == "" {
			name = e.UniqueID
		}
		out[i] = homemesh.Entity{
			ID:           EntityID(id, e.UniqueID),
			HomeID:       home,
			DeviceID:     DeviceID(id),
			UniqueID:     e.UniqueID,
			Kind:         e.Kind,
			Name:         name,
			DeviceClass:  e.DeviceClass,
			Unit:         e.Unit,
			StateClass:   e.StateClass,
			Capabilities: e.Caps,
			Source:       Source,
		}
		if e.State != nil {
			t := e.State.time(now)
			out[i].State = homemesh.State{
				Value:      e.State.Value,
				Attributes: e.State.Attributes,
				Available:  e.State.Available,
				ChangedAt:  t,
				UpdatedAt:  t,
			}
		}
	}
	return out
}

// StateUpdates returns the announced states as reports for the registry,
// one per entity that carries a state.
func (a *Announce) StateUpdates(home string, id route.NodeID, now time.Time) []homemesh.StateUpdate {
	var out []homemesh.StateUpdate
	for _, e := range a.Entities {
		if e.State != nil {
			out = append(out, e.State.update(home, id, e.UniqueID, now))
		}
	}
	return out
}

// Update returns the state report as the registry takes it, from node id
// in home, received at now.
func (s *State) Update(home string, id route.NodeID, now time.Time) homemesh.StateUpdate {
	return s.Reading.update(home, id, s.UniqueID, now)
}

func (r *Reading) update(home string, id route.NodeID, uniqueID string, now time.Time) homemesh.StateUpdate {
	available := r.Available
	return homemesh.StateUpdate{
		HomeID:     home,
		DeviceID:   DeviceID(id),
		EntityID:   EntityID(id, uniqueID),
		Value:      r.Value,
		HasValue:   true,
		Attributes: r.Attributes,
		Available:  &available,
		Time:       r.time(now),
	}
}

// time is when the reading was taken as the hub records it: the agent's
// time, but never later than now, so that an agent with a wrong clock
// cannot write into the future; now when the agent sent none.
func (r *Reading) time(now time.Time) time.Time {
	if r.Time.IsZero() || r.Time.After(now) {
		return now
	}
	return r.Time
}

// NewCommand returns the message that carries c, which targets an entity
// of a mesh device (ParseEntityID), to the agent, with id to match its
// Result. ok is false when c does not target a mesh entity.
func NewCommand(id uint64, c homemesh.Command) (cmd *Command, node route.NodeID, ok bool) {
	node, uniqueID, ok := ParseEntityID(c.EntityID)
	if !ok {
		return nil, node, false
	}
	return &Command{ID: id, UniqueID: uniqueID, Name: c.Name, Params: c.Params}, node, true
}

// Domain returns the command as homemesh.Command for the entity of node
// id in home.
func (c *Command) Domain(home string, id route.NodeID) homemesh.Command {
	return homemesh.Command{
		HomeID:   home,
		EntityID: EntityID(id, c.UniqueID),
		Name:     c.Name,
		Params:   c.Params,
	}
}
