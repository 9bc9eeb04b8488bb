package history

import (
	"context"
	"encoding/json"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
)

// Service verbs, requested on bus.ServiceSubject("history", verb) with the
// queue group "history".
const (
	verbHistory = "history"
	verbEvents  = "events"
)

// ServiceName is the history service's name on the bus.
const ServiceName = "history"

// Query limits: a page never exceeds MaxLimit rows, so that a reply stays
// well under the bus's 1 MiB message limit.
const (
	DefaultLimit = 1000
	MaxLimit     = 10000
)

// HistoryRequest asks for one entity's history. From and To bound the
// time [From, To); Cursor continues a previous reply's Next.
type HistoryRequest struct {
	Home       string     `json:"home"`
	EntityID   string     `json:"entity_id"`
	From       time.Time  `json:"from"`
	To         time.Time  `json:"to"`
	Resolution Resolution `json:"resolution,omitempty"` // empty means Auto
	Cursor     string     `json:"cursor,omitempty"`
	Limit      int        `json:"limit,omitempty"`
}

// HistoryReply is one page of history, oldest first.
type HistoryReply struct {
	EntityID   string        `json:"entity_id"`
	Resolution Resolution    `json:"resolution"` // the tier read (Auto resolved)
	Points     []PointRecord `json:"points"`
	Next       string        `json:"next,omitempty"` // cursor of the next page
}

// PointRecord is one point or statistics bucket as the API returns it.
// Raw points carry Value (a number or a string) and Attributes; buckets
// carry the statistics that apply to the entity.
type PointRecord struct {
	Time       time.Time       `json:"time"`
	Value      any             `json:"value,omitempty"`
	Attributes json.RawMessage `json:"attributes,omitempty"`
	Mean       *float64        `json:"mean,omitempty"`
	Min        *float64        `json:"min,omitempty"`
	Max        *float64        `json:"max,omitempty"`
	Last       *float64        `json:"last,omitempty"`
	Count      int64           `json:"count,omitempty"`
	OnSeconds  *float64        `json:"on_seconds,omitempty"`
}

// EventsRequest asks for stored events in [From, To), optionally of one
// kind and one device.
type EventsRequest struct {
	Home     string    `json:"home"`
	Kind     string    `json:"kind,omitempty"`
	DeviceID string    `json:"device_id,omitempty"`
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	Cursor   string    `json:"cursor,omitempty"`
	Limit    int       `json:"limit,omitempty"`
}

// EventsReply is one page of events, oldest first.
type EventsReply struct {
	Events []EventRecord `json:"events"`
	Next   string        `json:"next,omitempty"`
}

// EventRecord is one stored event as the API returns it.
type EventRecord struct {
	ID       string          `json:"id"`
	Time     time.Time       `json:"time"`
	Kind     string          `json:"kind"`
	DeviceID string          `json:"device_id,omitempty"`
	EntityID string          `json:"entity_id,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// Client queries the history service of one home over the bus.
type Client struct {
	conn *natsbus.Conn
	home string
}

// NewClient returns a client for home's history.
func NewClient(conn *natsbus.Conn, home string) *Client { return &Client{conn: conn, home: home} }

// History returns one page of an entity's history.
func (c *Client) History(ctx context.Context, req HistoryRequest) (HistoryReply, error) {
	req.Home = c.home
	var reply HistoryReply
	err := c.conn.Request(ctx, bus.ServiceSubject(ServiceName, verbHistory), req, &reply)
	return reply, err
}

// HistoryJSON returns one page of an entity's history as the JSON of a
// HistoryReply, undecoded, for a caller that only forwards it.
func (c *Client) HistoryJSON(ctx context.Context, req HistoryRequest) ([]byte, error) {
	req.Home = c.home
	var reply natsbus.EncodedJSON
	err := c.conn.Request(ctx, bus.ServiceSubject(ServiceName, verbHistory), req, &reply)
	return reply, err
}

// Events returns one page of stored events.
func (c *Client) Events(ctx context.Context, req EventsRequest) (EventsReply, error) {
	req.Home = c.home
	var reply EventsReply
	err := c.conn.Request(ctx, bus.ServiceSubject(ServiceName, verbEvents), req, &reply)
	return reply, err
}
