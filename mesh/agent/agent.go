package agent

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/meshnode"
	"github.com/homemesh/homemesh/mesh/route"
)

// Entity is one entity of the device: a sensor, a switch, a lock. Its
// methods may be called from different goroutines (State from the agent's
// loop, Command from command goroutines), so an implementation guards its
// state.
type Entity interface {
	// Definition describes the entity; its State field is ignored. It is
	// read once, by New.
	Definition() meshapp.Entity
	// State returns the entity's current state. It must not block: the
	// agent polls it. A zero Time is filled with the time of the poll.
	State() meshapp.Reading
	// Command carries out cmd (its Name and Params; UniqueID is this
	// entity's). The error's text goes back to the person who sent the
	// command.
	Command(ctx context.Context, cmd *meshapp.Command) error
}

// Node is what an Agent needs of its mesh node; *meshnode.Node has it.
type Node interface {
	ID() route.NodeID
	Send(dst route.NodeID, payload []byte) error
	NearestHub() (route.NodeID, bool)
	// Revoke makes the node refuse the nodes ids from now on.
	Revoke(ids []route.NodeID)
	// Neighbours lists the node's links, sorted by id; cheap enough to
	// call at every poll.
	Neighbours() []meshnode.NeighbourInfo
	Run(ctx context.Context) error
}

// Config configures an Agent.
type Config struct {
	// Device names the device the agent speaks for.
	Device meshapp.DeviceInfo
	// Entities are the device's entities, with unique unique_ids.
	Entities []Entity
	// PollInterval is how often entities' states are compared with what
	// was last sent, and the nearest hub checked. Default 1 s.
	PollInterval time.Duration
	// TelemetryInterval is how often every state is sent even when
	// unchanged. Default 1 min.
	TelemetryInterval time.Duration
	// CommandTimeout bounds one command. Default 10 s.
	CommandTimeout time.Duration
	// StateDir is where the nodes the home revoked are kept (RevokedFile),
	// so that a restarted agent refuses them before any hub repeats it;
	// "" keeps them in memory only.
	StateDir string
	// Log receives the agent's log lines; nil discards them.
	Log *slog.Logger
}

// Limits of what hubs can make an agent do at once.
const (
	maxInbox            = 64 // messages waiting for the agent's loop
	maxCommandsInFlight = 8
)

// When the agent reports its links: at most once per linksMinInterval,
// since a flapping link must not flood the hub, and at least once per
// linksInterval, since the hub forgets a report after three minutes.
const (
	linksMinInterval = 5 * time.Second
	linksInterval    = time.Minute
)

// Agent speaks for one device on the mesh. Create it with New, hand
// Deliver to the node as its OnMessage, and run it with Run.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	entities map[string]Entity
	defs     []meshapp.Entity // in the configured order
	inbox    chan inbound
	changed  chan struct{}
	slots    chan struct{} // one per command in flight

	mu       sync.Mutex
	counters Counters
}

type inbound struct {
	from    link.Peer
	payload []byte
}

// Counters count what an Agent did and refused.
type Counters struct {
	Announces, States, Commands, Results uint64
	// Links counts the links messages sent.
	Links uint64
	// Revoked is how many nodes the agent knows the home revoked.
	Revoked uint64
	// Refused counts messages dropped, by reason: "not_hub" (a command,
	// resync or revoked from a peer whose role is not hub), "malformed",
	// "wrong_direction", "busy" (the inbox or the command slots were full),
	// "send" (the node refused a payload).
	Refused map[string]uint64
}

// New checks cfg and returns an Agent.
func New(cfg Config) (*Agent, error) {
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.TelemetryInterval == 0 {
		cfg.TelemetryInterval = time.Minute
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 10 * time.Second
	}
	if cfg.PollInterval < 10*time.Millisecond {
		return nil, homemesh.Invalid("poll_interval", "must be at least 10ms")
	}
	if cfg.TelemetryInterval < cfg.PollInterval {
		return nil, homemesh.Invalid("telemetry_interval", "must be at least the poll interval")
	}
	if cfg.CommandTimeout < 0 {
		return nil, homemesh.Invalid("command_timeout", "must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	a := &Agent{
		cfg: cfg, log: cfg.Log, entities: map[string]Entity{},
		inbox: make(chan inbound, maxInbox), changed: make(chan struct{}, 1),
		slots: make(chan struct{}, maxCommandsInFlight),
	}
	ann := &meshapp.Announce{Device: cfg.Device}
	for i, e := range cfg.Entities {
		if e == nil {
			return nil, homemesh.Invalid(fmt.Sprintf("entities[%d]", i), "is nil")
		}
		def := e.Definition()
		def.State = nil
		a.entities[def.UniqueID] = e
		a.defs = append(a.defs, def)
		ann.Entities = append(ann.Entities, def)
	}
	// The announcement without states must be valid and leave room for
	// them; meshapp checks names, kinds, duplicates and the entity limit.
	if _, err := meshapp.Encode(ann); err != nil {
		return nil, err
	}
	return a, nil
}

// Deliver hands the agent an end-to-end payload its node received: pass it
// as meshnode.Config.OnMessage. It never blocks; when the agent is too far
// behind the payload is dropped and counted.
func (a *Agent) Deliver(from link.Peer, payload []byte) {
	select {
	case a.inbox <- inbound{from: from, payload: payload}:
	default:
		a.refuse("busy")
	}
}

// Changed tells the agent that an entity's state may have changed, so it
// polls at once instead of at the next PollInterval. It never blocks.
func (a *Agent) Changed() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

// Counters returns a snapshot of the agent's counters.
func (a *Agent) Counters() Counters {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.counters
	c.Refused = maps.Clone(a.counters.Refused)
	return c
}

func (a *Agent) count(f func(c *Counters)) {
	a.mu.Lock()
	f(&a.counters)
	a.mu.Unlock()
}

func (a *Agent) refuse(reason string) {
	a.count(func(c *Counters) {
		if c.Refused == nil {
			c.Refused = map[string]uint64{}
		}
		c.Refused[reason]++
	})
}

// loop is the agent's state, owned by Run's goroutine.
type loop struct {
	*Agent
	node     Node
	hub      route.NodeID
	hasHub   bool
	lastSent map[string]meshapp.Reading // what the current hub was last told
	results  chan sendTo                // from command goroutines
	revoked  map[route.NodeID]bool      // what hubs said the home revoked
	// linksSent is each neighbour's cost as the last links message gave
	// it, linksAt when that message went out; linksDue says the hub must
	// hear of the links whether they changed or not (it was just
	// announced to).
	linksSent map[route.NodeID]uint16
	linksAt   time.Time
	linksDue  bool
}

// sendTo is a message for one hub, produced off the loop.
type sendTo struct {
	dst route.NodeID
	msg meshapp.Message
	// after, when set, is the unique_id whose state to check once the
	// message went out (a command's entity).
	after string
}

// Run runs node and the agent until ctx ends, then waits for commands in
// flight and returns nil, or the node's error if it stopped by itself.
// The nodes kept in StateDir as revoked are refused before node runs; a
// list that cannot be read stops Run with an error naming the file, since
// running without it would admit them.
func (a *Agent) Run(ctx context.Context, node Node) error {
	l := &loop{Agent: a, node: node, lastSent: map[string]meshapp.Reading{}, results: make(chan sendTo, maxCommandsInFlight),
		revoked: map[route.NodeID]bool{}}
	if a.cfg.StateDir != "" {
		ids, err := loadRevoked(a.cfg.StateDir)
		if err != nil {
			return fmt.Errorf("%w (remove it to start anyway: the hub sends the list again)", err)
		}
		for _, id := range ids {
			l.revoked[id] = true
		}
		if len(ids) > 0 {
			node.Revoke(ids)
			a.count(func(c *Counters) { c.Revoked = uint64(len(ids)) })
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodeErr := make(chan error, 1)
	go func() { nodeErr <- node.Run(ctx) }()

	var commands sync.WaitGroup
	defer commands.Wait()
	poll := time.NewTicker(a.cfg.PollInterval)
	defer poll.Stop()
	telemetry := time.NewTicker(a.cfg.TelemetryInterval)
	defer telemetry.Stop()
	a.log.Info("mesh agent running", "node", node.ID().String(), "entities", len(a.defs))
	l.checkHub()
	l.checkLinks(time.Now())
	for {
		select {
		case <-ctx.Done():
			<-nodeErr
			return nil
		case err := <-nodeErr:
			if err == nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("mesh node: %w", err)
		case in := <-a.inbox:
			l.handle(ctx, in, &commands)
		case r := <-l.results:
			l.send(r.dst, r.msg)
			if r.after != "" {
				l.pollOne(r.after, time.Now())
			}
		case <-a.changed:
			l.pollAll(false)
		case <-poll.C:
			l.checkHub()
			l.pollAll(false)
			l.checkLinks(time.Now())
		case <-telemetry.C:
			l.pollAll(true)
		}
	}
}

// checkHub announces to the nearest hub when it appeared or changed.
func (l *loop) checkHub() {
	hub, ok := l.node.NearestHub()
	if !ok {
		if l.hasHub {
			l.log.Info("no hub reachable", "hub", l.hub.String())
		}
		l.hasHub = false
		return
	}
	if l.hasHub && hub == l.hub {
		return
	}
	l.log.Info("nearest hub", "hub", hub.String())
	// Until the announcement goes out the hub is not taken as known, so
	// the next poll tries again.
	if states, ok := l.announce(hub); ok {
		l.hub, l.hasHub, l.lastSent = hub, true, states
		l.linksDue = true
	}
}

// announce sends the device, its entities and their states to hub and
// returns those states.
func (l *loop) announce(hub route.NodeID) (map[string]meshapp.Reading, bool) {
	now := time.Now()
	ann := &meshapp.Announce{Device: l.cfg.Device, Entities: make([]meshapp.Entity, len(l.defs))}
	states := make(map[string]meshapp.Reading, len(l.defs))
	for i, def := range l.defs {
		r := l.reading(def.UniqueID, now)
		states[def.UniqueID] = r
		def.State = &r
		ann.Entities[i] = def
	}
	if !l.send(hub, ann) {
		return nil, false
	}
	l.count(func(c *Counters) { c.Announces++ })
	return states, true
}

// checkLinks sends the node's live links to the hub when it was just
// announced to, when a neighbour came or went or a link's cost moved by
// more than a quarter since the last report, or when linksInterval
// passed; never twice within linksMinInterval.
func (l *loop) checkLinks(now time.Time) {
	if !l.hasHub {
		return
	}
	if !l.linksAt.IsZero() && now.Sub(l.linksAt) < linksMinInterval {
		return
	}
	nbs := liveNeighbours(l.node.Neighbours())
	if !l.linksDue && now.Sub(l.linksAt) < linksInterval && !linksChanged(l.linksSent, nbs) {
		return
	}
	// A failed send is tried again after linksMinInterval, not at every
	// poll.
	l.linksAt = now
	if !l.send(l.hub, &meshapp.Links{Neighbours: nbs}) {
		return
	}
	l.linksDue = false
	l.linksSent = make(map[route.NodeID]uint16, len(nbs))
	for _, nb := range nbs {
		l.linksSent[nb.ID] = nb.Cost
	}
	l.count(func(c *Counters) { c.Links++ })
}

// liveNeighbours returns the links a links message reports: those not
// declared dead, sorted by id, and past meshapp.MaxNeighbours only the
// cheapest.
func liveNeighbours(infos []meshnode.NeighbourInfo) []meshapp.Neighbour {
	nbs := make([]meshapp.Neighbour, 0, len(infos))
	for _, nb := range infos {
		if nb.Dead {
			continue
		}
		nbs = append(nbs, meshapp.Neighbour{ID: nb.ID, Role: nb.Role,
			Cost: nb.Cost, RxCost: nb.RxCost, TxCost: nb.TxCost, Quality: min(1, max(0, nb.Quality))})
	}
	if len(nbs) > meshapp.MaxNeighbours {
		slices.SortStableFunc(nbs, func(a, b meshapp.Neighbour) int { return cmp.Compare(a.Cost, b.Cost) })
		nbs = nbs[:meshapp.MaxNeighbours]
	}
	slices.SortFunc(nbs, func(a, b meshapp.Neighbour) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return nbs
}

// linksChanged reports whether nbs differ from what was last sent: a
// neighbour came or went, or a link's cost moved by more than a quarter.
// Smaller moves are the wobble of measured costs, not news.
func linksChanged(sent map[route.NodeID]uint16, nbs []meshapp.Neighbour) bool {
	if sent == nil || len(sent) != len(nbs) {
		return true
	}
	for _, nb := range nbs {
		old, ok := sent[nb.ID]
		if !ok {
			return true
		}
		if d := int(nb.Cost) - int(old); 4*max(d, -d) > int(old) {
			return true
		}
	}
	return false
}

// reading returns an entity's state, dated now when it has no time, and
// made valid: a value meshapp would refuse is sent as unavailable rather
// than stopping every message of the device.
func (l *loop) reading(uid string, now time.Time) meshapp.Reading {
	r := l.entities[uid].State()
	if r.Time.IsZero() {
		r.Time = now
	}
	if _, err := meshapp.Encode(&meshapp.State{UniqueID: uid, Reading: r}); err != nil {
		l.log.Warn("entity state not sendable", "entity_id", uid, "err", err)
		return meshapp.Reading{Available: false, Time: r.Time}
	}
	return r
}

// pollAll sends each entity's state that changed since the hub last heard
// it, or every state when all is set.
func (l *loop) pollAll(all bool) {
	if !l.hasHub {
		return
	}
	now := time.Now()
	for _, def := range l.defs {
		l.pollEntity(def.UniqueID, now, all)
	}
}

func (l *loop) pollOne(uid string, now time.Time) {
	if l.hasHub {
		l.pollEntity(uid, now, false)
	}
}

func (l *loop) pollEntity(uid string, now time.Time, always bool) {
	r := l.reading(uid, now)
	if last, ok := l.lastSent[uid]; ok && !always && sameReading(last, r) {
		return
	}
	if l.send(l.hub, &meshapp.State{UniqueID: uid, Reading: r}) {
		l.lastSent[uid] = r
		l.count(func(c *Counters) { c.States++ })
	}
}

// sameReading compares what a person would see: value, attributes and
// availability, not the time.
func sameReading(a, b meshapp.Reading) bool {
	return a.Available == b.Available && reflect.DeepEqual(a.Value, b.Value) &&
		(len(a.Attributes) == 0 && len(b.Attributes) == 0 || reflect.DeepEqual(a.Attributes, b.Attributes))
}

func (l *loop) send(dst route.NodeID, m meshapp.Message) bool {
	payload, err := meshapp.Encode(m)
	if err != nil {
		l.log.Warn("mesh message not encodable", "type", string(m.MessageType()), "err", err)
		l.refuse("send")
		return false
	}
	if err := l.node.Send(dst, payload); err != nil {
		l.log.Warn("mesh message not sent", "type", string(m.MessageType()), "peer", dst.String(), "err", err)
		l.refuse("send")
		return false
	}
	return true
}

// handle processes one message from a hub.
func (l *loop) handle(ctx context.Context, in inbound, commands *sync.WaitGroup) {
	msg, err := meshapp.Decode(in.payload)
	if err != nil {
		l.log.Warn("mesh message refused", "peer", in.from.ID.String(), "field", homemesh.ErrorField(err), "err", err)
		l.refuse("malformed")
		return
	}
	switch msg.(type) {
	case *meshapp.Command, *meshapp.Resync, *meshapp.Revoked:
		if in.from.Role != link.RoleHub {
			// Only hubs, the borders to the home's services, may command,
			// ask or revoke; the certificate's role says who is one.
			l.log.Warn("mesh message from a node that is not a hub refused", "peer", in.from.ID.String(),
				"role", in.from.Role.String(), "type", string(msg.MessageType()))
			l.refuse("not_hub")
			return
		}
	default:
		l.refuse("wrong_direction")
		return
	}
	switch m := msg.(type) {
	case *meshapp.Revoked:
		l.revoke(in.from.ID, m)
	case *meshapp.Resync:
		l.log.Info("hub asked for an announcement", "hub", in.from.ID.String())
		if states, ok := l.announce(in.from.ID); ok && l.hasHub && in.from.ID == l.hub {
			l.lastSent = states
			l.linksDue = true
			l.checkLinks(time.Now())
		}
	case *meshapp.Command:
		l.count(func(c *Counters) { c.Commands++ })
		e := l.entities[m.UniqueID]
		if e == nil {
			l.send(in.from.ID, &meshapp.Result{ID: m.ID, Error: fmt.Sprintf("no entity %q on this device", m.UniqueID)})
			return
		}
		select {
		case l.slots <- struct{}{}:
		default:
			l.refuse("busy")
			l.send(in.from.ID, &meshapp.Result{ID: m.ID, Error: "the device is busy; try again"})
			return
		}
		commands.Add(1)
		go func() {
			defer commands.Done()
			defer func() { <-l.slots }()
			cctx, cancel := context.WithTimeout(ctx, l.cfg.CommandTimeout)
			defer cancel()
			res := &meshapp.Result{ID: m.ID}
			if err := e.Command(cctx, m); err != nil {
				res.Error = resultError(err)
			}
			l.count(func(c *Counters) { c.Results++ })
			select {
			case l.results <- sendTo{dst: in.from.ID, msg: res, after: m.UniqueID}:
			case <-ctx.Done():
			}
		}()
	}
}

// resultError renders an entity's error for the person who commanded it,
// within the protocol's limit.
func resultError(err error) string {
	s := err.Error()
	if s == "" {
		s = "failed"
	}
	if len(s) > meshapp.MaxErrorLen {
		s = s[:meshapp.MaxErrorLen]
	}
	s = strings.ToValidUTF8(s, "")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}
