package registry

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
)

// Client talks to the registry service of one home over the bus.
type Client struct {
	conn *natsbus.Conn
	home string
}

// NewClient returns a client for home's registry.
func NewClient(conn *natsbus.Conn, home string) *Client { return &Client{conn: conn, home: home} }

// EntityFilter narrows Entities. Zero fields match everything.
type EntityFilter struct {
	DeviceID string              `json:"device_id,omitempty"`
	Kind     homemesh.EntityKind `json:"kind,omitempty"`
}

type request struct {
	Home   string           `json:"home"`
	ID     string           `json:"id,omitempty"`
	After  string           `json:"after,omitempty"` // lists: start after this ID
	Limit  int              `json:"limit,omitempty"` // lists: at most this many (capped by pageSize)
	Filter EntityFilter     `json:"filter,omitzero"`
	Device *homemesh.Device `json:"device,omitempty"`
	Entity *homemesh.Entity `json:"entity,omitempty"`
}

func (c *Client) call(ctx context.Context, verb string, req request, resp any) error {
	req.Home = c.home
	return c.conn.Request(ctx, bus.ServiceSubject("registry", verb), req, resp)
}

// pageSize bounds one list reply, so that it stays well under the bus's
// maximum message size (1 MiB by default) whatever the home's size.
const pageSize = 500

// Devices lists the home's devices, sorted by ID.
func (c *Client) Devices(ctx context.Context) ([]homemesh.Device, error) {
	return listAll(func(after string) ([]homemesh.Device, error) {
		var page []homemesh.Device
		err := c.call(ctx, verbDevicesList, request{After: after, Limit: pageSize}, &page)
		return page, err
	}, func(d homemesh.Device) string { return d.ID })
}

// listAll fetches pages until a short one.
func listAll[T any](page func(after string) ([]T, error), id func(T) string) ([]T, error) {
	out := []T{}
	after := ""
	for {
		p, err := page(after)
		if err != nil {
			return nil, err
		}
		out = append(out, p...)
		if len(p) < pageSize {
			return out, nil
		}
		after = id(p[len(p)-1])
	}
}

// Device returns one device, or a KindNotFound error.
func (c *Client) Device(ctx context.Context, id string) (homemesh.Device, error) {
	var out homemesh.Device
	err := c.call(ctx, verbDevicesGet, request{ID: id}, &out)
	return out, err
}

// PutDevice creates or updates a device and returns it as stored.
func (c *Client) PutDevice(ctx context.Context, d homemesh.Device) (homemesh.Device, error) {
	var out homemesh.Device
	err := c.call(ctx, verbDevicesPut, request{Device: &d}, &out)
	return out, err
}

// Entities lists the home's entities matching f, sorted by ID.
func (c *Client) Entities(ctx context.Context, f EntityFilter) ([]homemesh.Entity, error) {
	return listAll(func(after string) ([]homemesh.Entity, error) {
		var page []homemesh.Entity
		err := c.call(ctx, verbEntitiesList, request{Filter: f, After: after, Limit: pageSize}, &page)
		return page, err
	}, func(e homemesh.Entity) string { return e.ID })
}

// Entity returns one entity with its current state, or KindNotFound.
func (c *Client) Entity(ctx context.Context, id string) (homemesh.Entity, error) {
	var out homemesh.Entity
	err := c.call(ctx, verbEntitiesGet, request{ID: id}, &out)
	return out, err
}

// PutEntity creates or updates an entity's definition; its state is kept.
// A new entity starts with e.State (typically only Available set). An ID
// already used by an entity with another unique_id is a KindConflict.
func (c *Client) PutEntity(ctx context.Context, e homemesh.Entity) (homemesh.Entity, error) {
	var out homemesh.Entity
	err := c.call(ctx, verbEntitiesPut, request{Entity: &e}, &out)
	return out, err
}

// RemoveEntity deletes an entity and its state. Its device goes too once no
// entity refers to it, as in Home Assistant.
func (c *Client) RemoveEntity(ctx context.Context, id string) error {
	return c.call(ctx, verbEntitiesRemove, request{ID: id}, nil)
}

// Report publishes a state report on the durable REPORTS stream without
// waiting for the acknowledgement; Flush waits for all outstanding ones.
// The registry applies reports in the order of the stream.
func (c *Client) Report(u homemesh.StateUpdate) error {
	if u.HomeID == "" {
		u.HomeID = c.home
	}
	data, err := json.Marshal(u)
	if err != nil {
		return fmt.Errorf("marshal state report: %w", err)
	}
	msg := nats.NewMsg(ReportSubject(u.HomeID, u.DeviceID, u.EntityID))
	msg.Data = data
	if _, err := c.conn.JetStream().PublishMsgAsync(msg); err != nil {
		return &homemesh.Error{Op: "registry.report", Kind: homemesh.KindUnavailable, Message: "state report not accepted", Err: err}
	}
	return nil
}

// Flush waits until every report published so far is stored in the stream.
func (c *Client) Flush(ctx context.Context) error {
	select {
	case <-c.conn.JetStream().PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// StateChange is the message published on bus.StateSubject after the
// registry stored a new state.
type StateChange struct {
	HomeID   string         `json:"home_id"`
	DeviceID string         `json:"device_id"`
	EntityID string         `json:"entity_id"`
	State    homemesh.State `json:"state"`
	Old      homemesh.State `json:"old_state"`
}
