package registry

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
)

// Client talks to the registry service of one home over the bus.
type Client struct {
	conn *natsbus.Conn
	home string

	mu        sync.Mutex
	pending   []homemesh.StateUpdate
	timer     *time.Timer
	reportErr error
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
	Room   *homemesh.Room   `json:"room,omitempty"`
	Update *DeviceUpdate    `json:"update,omitempty"`
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

// UpdateDevice applies a person's change to a device (its room, its name)
// and returns the device as stored. An unknown device is KindNotFound; a
// room that does not exist is KindInvalid naming "room_id".
func (c *Client) UpdateDevice(ctx context.Context, id string, up DeviceUpdate) (homemesh.Device, error) {
	var out homemesh.Device
	err := c.call(ctx, verbDevicesUpdate, request{ID: id, Update: &up}, &out)
	return out, err
}

// Rooms lists the home's rooms, sorted by ID.
func (c *Client) Rooms(ctx context.Context) ([]homemesh.Room, error) {
	out := []homemesh.Room{}
	err := c.call(ctx, verbRoomsList, request{}, &out)
	return out, err
}

// CreateRoom creates a room named name. Its ID is homemesh.Slug(name); a
// room with that ID already is KindConflict naming "name".
func (c *Client) CreateRoom(ctx context.Context, name string) (homemesh.Room, error) {
	var out homemesh.Room
	err := c.call(ctx, verbRoomsCreate, request{Room: &homemesh.Room{Name: name}}, &out)
	return out, err
}

// DeleteRoom deletes a room after taking its devices out of it.
func (c *Client) DeleteRoom(ctx context.Context, id string) error {
	return c.call(ctx, verbRoomsRemove, request{ID: id}, nil)
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

// Reports from one client are batched: up to maxBatch of them, or whatever
// arrived within batchWait, travel as one JetStream message. Per-message
// costs (storage, acknowledgement, delivery) dominate the inner path, and
// one connectivity process reports for thousands of devices.
const (
	maxBatch  = 256
	batchWait = time.Millisecond
)

// Report queues a state report for the durable REPORTS stream. It returns
// at once; Flush waits until everything reported so far is stored. The
// registry applies one client's reports in the order they were made. An
// error means an earlier batch could not be handed to the stream.
func (c *Client) Report(u homemesh.StateUpdate) error {
	if u.HomeID == "" {
		u.HomeID = c.home
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending = append(c.pending, u)
	switch {
	case len(c.pending) >= maxBatch:
		c.sendLocked()
	case len(c.pending) == 1:
		c.timer = time.AfterFunc(batchWait, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.sendLocked()
		})
	}
	err := c.reportErr
	c.reportErr = nil
	return err
}

// sendLocked publishes the pending reports as one message. c.mu is held.
func (c *Client) sendLocked() {
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if len(c.pending) == 0 {
		return
	}
	data, err := json.Marshal(c.pending)
	c.pending = c.pending[:0]
	if err == nil {
		msg := nats.NewMsg(reportBatchSubject(c.home))
		msg.Data = data
		_, err = c.conn.JetStream().PublishMsgAsync(msg)
	}
	if err != nil {
		c.reportErr = &homemesh.Error{Op: "registry.report", Kind: homemesh.KindUnavailable, Message: "state reports not accepted", Err: err}
	}
}

// Flush sends what is queued and waits until every report made so far is
// stored in the stream.
func (c *Client) Flush(ctx context.Context) error {
	c.mu.Lock()
	c.sendLocked()
	err := c.reportErr
	c.reportErr = nil
	c.mu.Unlock()
	if err != nil {
		return err
	}
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
	HomeID   string `json:"home_id"`
	DeviceID string `json:"device_id"`
	EntityID string `json:"entity_id"`
	// Kind is the entity's kind, so that consumers such as history can
	// treat the state by kind without asking the registry.
	Kind  homemesh.EntityKind `json:"kind,omitempty"`
	State homemesh.State      `json:"state"`
	Old   homemesh.State      `json:"old_state"`
}
