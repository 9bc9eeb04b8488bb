package history

import (
	"encoding/json"
	"time"

	"github.com/homemesh/homemesh"
)

// Point is one stored state of one entity.
type Point struct {
	Entity string              // entity ID
	Device string              // device ID
	Kind   homemesh.EntityKind // chooses the retention; may be empty
	// Time is when the state was reached. Stores keep microseconds; a
	// second point of an entity at the same microsecond is a duplicate and
	// the first one stays.
	Time time.Time
	// Numeric points carry Value; the others carry State, the value as
	// text ("on", "locked", "heat").
	Numeric bool
	Value   float64
	State   string
	// Attrs is the state's attributes as a JSON object, nil when none.
	Attrs json.RawMessage
}

// Event is one stored event.
type Event struct {
	ID     string // the envelope's ULID: unique within a home
	Time   time.Time
	Kind   string
	Device string // "" when the event concerns no single device
	Entity string // "" when the event concerns no single entity
	Data   json.RawMessage
}

// Message is what one bus message contributed to a batch. Its stream and
// sequence are the message's identity: a store that has committed it once
// skips it when it comes again.
type Message struct {
	Seq    uint64
	Points []Point
	Events []Event
}

// Batch is a set of messages from one stream, stored in one transaction.
type Batch struct {
	Home     string
	Stream   string // the JetStream stream the messages came from
	Messages []Message
}

// WriteResult says what a Write stored.
type WriteResult struct {
	Points     int // raw points stored
	Events     int // events stored
	Duplicates int // messages skipped: an earlier write had stored them
}

// Resolution is the tier a history query reads.
type Resolution string

// Resolutions. Auto picks one from the span of the query.
const (
	Raw         Resolution = "raw"
	FiveMinutes Resolution = "5m"
	Hourly      Resolution = "1h"
	Auto        Resolution = "auto"
)

// Bucket is the length of one statistics bucket of r; 0 for Raw.
func (r Resolution) Bucket() time.Duration {
	switch r {
	case FiveMinutes:
		return 5 * time.Minute
	case Hourly:
		return time.Hour
	}
	return 0
}

// StatTiers are the statistics tiers, finest first.
var StatTiers = []Resolution{FiveMinutes, Hourly}

// HistoryQuery asks for one entity's points or statistics in [From, To).
type HistoryQuery struct {
	Home       string
	Entity     string
	From, To   time.Time
	Resolution Resolution // Raw, FiveMinutes or Hourly
	// After continues a previous page: only rows strictly after it.
	After time.Time
	Limit int
}

// HistoryPage is one page of a history query, oldest first. Raw queries
// fill Points, statistics queries fill Stats.
type HistoryPage struct {
	Points []Point
	Stats  []Stat
	More   bool // rows remain after the last one returned
}

// EventQuery asks for events in [From, To), optionally of one kind and one
// device.
type EventQuery struct {
	Home     string
	Kind     string
	Device   string
	From, To time.Time
	// AfterTime and AfterID continue a previous page: events are ordered by
	// (Time, ID).
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// EventPage is one page of events, oldest first.
type EventPage struct {
	Events []Event
	More   bool
}

// Retention says how long each tier is kept; 0 keeps it forever.
type Retention struct {
	Raw         time.Duration
	FiveMinutes time.Duration
	Hourly      time.Duration
}

// RetentionPolicy is the retention of every tier, per entity kind.
type RetentionPolicy struct {
	Default Retention
	Kinds   map[homemesh.EntityKind]Retention
	Events  time.Duration // 0 keeps events forever
}

// For returns the retention of entities of kind k.
func (p RetentionPolicy) For(k homemesh.EntityKind) Retention {
	if r, ok := p.Kinds[k]; ok {
		return r
	}
	return p.Default
}

// DefaultRetention keeps raw points 10 days, 5-minute statistics and
// events 30 days, and hourly statistics forever.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{
		Default: Retention{Raw: 10 * 24 * time.Hour, FiveMinutes: 30 * 24 * time.Hour},
		Events:  30 * 24 * time.Hour,
	}
}

// PurgeResult says what one Purge call removed.
type PurgeResult struct {
	Points, Stats, Events, Ledger int64
	// More is set when a bound was reached and rows remain to purge.
	More bool
}
