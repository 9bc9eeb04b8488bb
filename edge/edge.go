package edge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/edge/broker"
	"github.com/homemesh/homemesh/edge/discovery"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures the device side of the edge.
type Config struct {
	// Home is the ID of the home served.
	Home string
	// Prefix is the Home Assistant discovery prefix. Default "homeassistant".
	Prefix string
	// Workers is how many goroutines decode device messages; messages of
	// one topic always go to the same worker, so their order is kept.
	// Default: 2 × GOMAXPROCS.
	Workers int
}

// Registry is what the edge needs of the registry service.
type Registry interface {
	PutDevice(ctx context.Context, d homemesh.Device) (homemesh.Device, error)
	PutEntity(ctx context.Context, e homemesh.Entity) (homemesh.Entity, error)
	RemoveEntity(ctx context.Context, id string) error
	Report(u homemesh.StateUpdate) error
}

var _ Registry = (*registry.Client)(nil)

// Deps are the edge's collaborators.
type Deps struct {
	Bus      *natsbus.Conn
	Registry Registry
	Log      *slog.Logger
}

// Devices is the part of the edge that speaks Home Assistant discovery.
type Devices struct {
	cfg Config
	bus *natsbus.Conn
	reg Registry
	log *slog.Logger
	kv  jetstream.KeyValue

	mu       sync.RWMutex
	byTopic  map[string][]*binding // state-ish topic → entities that listen on it
	byEntity map[string]*binding
	byKey    map[string]*binding // discovery key → binding
	states   map[string]homemesh.State
	// devOwner is the credential that first announced each device; only
	// it may add to the device or change it.
	devOwner map[string]string

	ready chan struct{}

	timerMu  sync.Mutex
	expiry   map[string]*time.Timer // expire_after, per entity
	offDelay map[string]*time.Timer // off_delay, per entity
}

// binding ties one discovered entity to the IDs the registry accepted.
type binding struct {
	cfg      *discovery.Config
	entityID string
	deviceID string
	owner    string // the credential that announced it; "" when unknown
}

// record is what the discovery bucket stores per entity: the discovery
// message it came from, so every edge instance can rebuild the same config,
// and the entity ID the registry accepted.
type record struct {
	Topic    string `json:"topic"`
	Payload  []byte `json:"payload"`
	Key      string `json:"key"`
	EntityID string `json:"entity_id"`
	DeviceID string `json:"device_id"`
	// Owner is the credential (or certificate identity) that announced
	// the entity. Records from before owners were kept have none; the next
	// credential to announce the entity adopts it.
	Owner string `json:"owner,omitempty"`
}

// New returns the device pipeline of the edge.
func New(cfg Config, deps Deps) (*Devices, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, err
	}
	if cfg.Prefix == "" {
		cfg.Prefix = discovery.DefaultPrefix
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2 * runtime.GOMAXPROCS(0)
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Devices{
		cfg: cfg, bus: deps.Bus, reg: deps.Registry,
		log:      log.With("service", "edge", "home_id", cfg.Home),
		byTopic:  map[string][]*binding{},
		byEntity: map[string]*binding{},
		byKey:    map[string]*binding{},
		states:   map[string]homemesh.State{},
		devOwner: map[string]string{},
		ready:    make(chan struct{}),
		expiry:   map[string]*time.Timer{},
		offDelay: map[string]*time.Timer{},
	}, nil
}

// Run processes device traffic and commands until ctx ends.
func (d *Devices) Run(ctx context.Context) error {
	kv, err := d.bus.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: "hm_" + d.cfg.Home + "_discovery", History: 1, Storage: jetstream.FileStorage,
		Description: "Home Assistant discovery configs of home " + d.cfg.Home,
	})
	if err != nil {
		return err
	}
	d.kv = kv
	if err := registry.Streams(ctx, d.bus, d.cfg.Home); err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := d.watch(watchCtx); err != nil {
		return err
	}

	work := make([]chan *nats.Msg, d.cfg.Workers)
	var wg sync.WaitGroup
	for i := range work {
		work[i] = make(chan *nats.Msg, 1024)
		wg.Add(1)
		go func(in chan *nats.Msg) {
			defer wg.Done()
			for m := range in {
				d.handleMQTT(ctx, m)
			}
		}(work[i])
	}
	// dispatchMu guards the worker channels against being closed while a
	// late callback still sends: NATS may run one after Drain returns.
	var dispatchMu sync.RWMutex
	closed := false
	msgSub, err := d.bus.NATS().QueueSubscribe(bus.MQTTWildcard(d.cfg.Home), "edge-devices", func(m *nats.Msg) {
		h := fnv.New32a()
		h.Write([]byte(m.Subject))
		dispatchMu.RLock()
		defer dispatchMu.RUnlock()
		if !closed {
			work[h.Sum32()%uint32(len(work))] <- m
		}
	})
	if err != nil {
		return fmt.Errorf("edge: subscribe to device traffic: %w", err)
	}
	// Allow bursts from thousands of devices without the client dropping
	// messages as a slow consumer.
	_ = msgSub.SetPendingLimits(1<<20, 512<<20)
	cmdSub, err := d.bus.NATS().QueueSubscribe(bus.CommandWildcard(d.cfg.Home), "edge", d.onCommand)
	if err != nil {
		_ = msgSub.Unsubscribe()
		return fmt.Errorf("edge: serve commands: %w", err)
	}

	// The birth message: devices that follow the convention re-announce
	// their configs and states when they see it.
	if err := d.publishMQTT(d.cfg.Prefix+"/status", []byte("online"), 1, false); err != nil {
		d.log.Warn("birth message not sent", "err", err)
	}
	d.mu.RLock()
	entities := len(d.byEntity)
	d.mu.RUnlock()
	d.log.Info("edge devices ready", "entities", entities)
	close(d.ready)

	<-ctx.Done()
	_ = cmdSub.Drain()
	_ = msgSub.Drain()
	for deadline := time.Now().Add(10 * time.Second); msgSub.IsValid() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // Drain offers no completion signal
	}
	dispatchMu.Lock()
	closed = true
	for _, ch := range work {
		close(ch)
	}
	dispatchMu.Unlock()
	wg.Wait()
	d.timerMu.Lock()
	for _, timers := range []map[string]*time.Timer{d.expiry, d.offDelay} {
		for id, t := range timers {
			t.Stop()
			delete(timers, id)
		}
	}
	d.timerMu.Unlock()
	flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if f, ok := d.reg.(interface{ Flush(context.Context) error }); ok {
		_ = f.Flush(flushCtx)
	}
	return nil
}

// Ready is closed once the pipeline is subscribed to device traffic and
// commands. The broker should not accept devices before, or their first
// messages would find nobody listening.
func (d *Devices) Ready() <-chan struct{} { return d.ready }

// publishMQTT sends a message to every MQTT subscriber of topic through the
// bridge, from whichever edge instance holds the subscriber.
func (d *Devices) publishMQTT(topic string, payload []byte, qos byte, retain bool) error {
	subject, err := bus.MQTTSubject(d.cfg.Home, topic)
	if err != nil {
		return homemesh.Invalid("topic", "%v", err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = payload
	msg.Header.Set("Hm-Qos", strconv.Itoa(int(qos)))
	if retain {
		msg.Header.Set("Hm-Retain", "1")
	}
	return d.bus.NATS().PublishMsg(msg)
}

func (d *Devices) handleMQTT(ctx context.Context, m *nats.Msg) {
	topic, err := bus.MQTTTopic(d.cfg.Home, m.Subject)
	if err != nil {
		d.log.Debug("unmappable subject", "subject", m.Subject, "err", err)
		return
	}
	if discovery.IsDiscoveryTopic(d.cfg.Prefix, topic) {
		d.handleDiscovery(ctx, topic, m.Data, publisherOf(m))
		return
	}
	d.mu.RLock()
	targets := d.byTopic[topic]
	d.mu.RUnlock()
	now := time.Now().UTC()
	for _, b := range targets {
		d.deliver(b, topic, m.Data, now)
	}
}

// deliver decodes one message for one entity and reports what changed.
func (d *Devices) deliver(b *binding, topic string, payload []byte, now time.Time) {
	d.mu.RLock()
	prev := d.states[b.entityID]
	d.mu.RUnlock()
	u, err := b.cfg.Decode(topic, payload, prev)
	if err != nil {
		d.log.Warn("device message not understood", "entity_id", b.entityID, "topic", topic, "err", err)
		return
	}
	if !u.HasValue && u.Available == nil && len(u.Attributes) == 0 {
		return
	}
	d.report(b, u, now)
	d.arm(b, u)
}

// replayRetained hands a newly bound entity the retained messages of its
// topics. A device announces its config and then its (retained)
// availability and state on other topics, which may well arrive before the
// config is bound; like an MQTT subscription, binding delivers them.
func (d *Devices) replayRetained(ctx context.Context, b *binding) {
	for _, topic := range b.cfg.Topics() {
		if strings.ContainsAny(topic, "+#") {
			continue
		}
		payload, ok, err := broker.RetainedPayload(ctx, d.bus, d.cfg.Home, topic)
		if err != nil {
			d.log.Warn("retained message not read", "topic", topic, "err", err)
			continue
		}
		if ok {
			d.deliver(b, topic, payload, time.Now().UTC())
		}
	}
}

// report remembers u as the entity's latest state and hands it to the
// registry.
func (d *Devices) report(b *binding, u discovery.Update, now time.Time) {
	d.mu.Lock()
	st := d.states[b.entityID]
	if u.HasValue {
		st.Value = u.Value
	}
	if u.Available != nil {
		st.Available = *u.Available
	}
	d.states[b.entityID] = st
	d.mu.Unlock()
	if err := d.reg.Report(homemesh.StateUpdate{
		HomeID: d.cfg.Home, DeviceID: b.deviceID, EntityID: b.entityID,
		Value: u.Value, HasValue: u.HasValue, Attributes: u.Attributes, Available: u.Available, Time: now,
	}); err != nil {
		d.log.Warn("state report failed", "entity_id", b.entityID, "err", err)
	}
}

// arm (re)starts the entity's expire_after and off_delay timers after a
// state message: a sensor that stops reporting becomes unavailable, a
// motion sensor that only says "on" falls back to "off".
func (d *Devices) arm(b *binding, u discovery.Update) {
	if !u.HasValue {
		return
	}
	set := func(timers map[string]*time.Timer, after time.Duration, fire discovery.Update) {
		d.timerMu.Lock()
		defer d.timerMu.Unlock()
		if t := timers[b.entityID]; t != nil {
			t.Stop()
		}
		timers[b.entityID] = time.AfterFunc(after, func() {
			d.mu.RLock()
			current := d.byEntity[b.entityID] == b
			d.mu.RUnlock()
			if current {
				d.report(b, fire, time.Now().UTC())
			}
		})
	}
	if after := b.cfg.ExpireAfter(); after > 0 {
		unavailable := false
		set(d.expiry, after, discovery.Update{Available: &unavailable})
	}
	if after := b.cfg.OffDelay(); after > 0 && u.Value == "on" {
		set(d.offDelay, after, discovery.Update{Value: "off", HasValue: true})
	}
}

// publisher is the MQTT credential a discovery message came from and what
// it may use.
type publisher struct {
	username string
	allow    []string
}

// publisherOf returns the publisher the broker named on m, or nil for a
// message a service published on the bus, which bus permissions vouch for.
func publisherOf(m *nats.Msg) *publisher {
	user := m.Header.Get(broker.HeaderPublisher)
	if user == "" {
		return nil
	}
	return &publisher{username: user, allow: m.Header.Values(broker.HeaderAllow)}
}

func (p *publisher) name() string {
	if p == nil {
		return ""
	}
	return p.username
}

// mayChange reports why p may not change or remove the binding b, or ""
// when it may: an entity belongs to whoever announced it first.
func (p *publisher) mayChange(b *binding) string {
	if p == nil || b == nil || b.owner == "" || b.owner == p.username {
		return ""
	}
	return "the entity was announced by another credential"
}

// refusal says why the config c announced by p must not be bound, or "".
// No config may name a mesh device.
// A credential may not announce topics outside its own allow list (or it
// could have the hub read another device's state, or send commands to
// another device's topics), nor take over an entity or a device another
// credential announced.
func (d *Devices) refusal(p *publisher, c *discovery.Config) string {
	// Mesh device ids belong to the mesh border, which derives them from
	// the agents' certificates: an MQTT device must not take one over.
	if meshDevice(c.Device.ID) {
		return "the device id is one of a mesh device"
	}
	if p == nil {
		return ""
	}
	for _, t := range c.AllTopics() {
		if !broker.Permits(p.allow, t) {
			return fmt.Sprintf("topic %q is outside the announcing credential's allow list", t)
		}
	}
	d.mu.RLock()
	defer d.mu.RUnlock()
	if why := p.mayChange(d.byKey[c.Key.String()]); why != "" {
		return why
	}
	if owner := d.devOwner[c.Device.ID]; owner != "" && owner != p.username {
		return "the device was announced by another credential"
	}
	// The registry takes an entity with the same unique_id as an update,
	// whatever discovery key it came under.
	if b := d.byEntity[c.Entity.ID]; b != nil && b.cfg.Entity.UniqueID == c.Entity.UniqueID && b.owner != "" && b.owner != p.username {
		return "the unique_id belongs to another credential's entity"
	}
	return ""
}

func (d *Devices) handleDiscovery(ctx context.Context, topic string, payload []byte, pub *publisher) {
	ann, err := discovery.Parse(d.cfg.Prefix, topic, payload)
	if err != nil {
		d.log.Warn("discovery message rejected", "topic", topic, "err", err)
		return
	}
	for _, cerr := range ann.Errors {
		d.log.Warn("discovery component rejected", "topic", topic, "key", cerr.Key.String(), "field", cerr.Field, "err", cerr.Reason)
	}
	removeIfAllowed := func(key string) {
		d.mu.RLock()
		b := d.byKey[key]
		d.mu.RUnlock()
		if why := pub.mayChange(b); why != "" {
			d.log.Warn("discovery removal refused", "topic", topic, "key", key, "mqtt_username", pub.name(), "reason", why)
			return
		}
		d.remove(ctx, key)
	}
	for _, removed := range ann.Removed {
		for _, key := range d.boundKeys(func(k discovery.Key, _ *binding) bool { return removed.Covers(k) }) {
			removeIfAllowed(key)
		}
	}
	// A device message lists all its components: one it no longer lists
	// is gone, as in Home Assistant.
	if len(payload) > 0 && strings.HasPrefix(topic, d.cfg.Prefix+"/"+discovery.DeviceComponent+"/") {
		listed := map[string]bool{}
		for _, c := range ann.Configs {
			listed[c.Key.String()] = true
		}
		for _, key := range d.boundKeys(func(k discovery.Key, b *binding) bool { return b.cfg.Topic == topic && !listed[k.String()] }) {
			removeIfAllowed(key)
		}
	}
	for _, c := range ann.Configs {
		if why := d.refusal(pub, c); why != "" {
			d.log.Warn("discovery config refused", "topic", topic, "key", c.Key.String(), "mqtt_username", pub.name(), "reason", why)
			continue
		}
		// The registry may still be starting (or restarting in split
		// mode): retry for a while rather than lose the config.
		err := d.add(ctx, c, pub.name())
		for wait := 50 * time.Millisecond; homemesh.ErrorKind(err) == homemesh.KindUnavailable && wait < 10*time.Second && ctx.Err() == nil; wait *= 2 {
			time.Sleep(wait)
			err = d.add(ctx, c, pub.name())
		}
		if err != nil {
			d.log.Warn("discovered entity not registered", "topic", topic, "key", c.Key.String(), "err", err)
		}
	}
}

// boundKeys returns the discovery keys of the bindings match selects.
func (d *Devices) boundKeys(match func(discovery.Key, *binding) bool) []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	var out []string
	for key, b := range d.byKey {
		if match(b.cfg.Key, b) {
			out = append(out, key)
		}
	}
	return out
}

func kvKey(discoveryKey string) string {
	// KV keys allow [-/_=.a-zA-Z0-9]; discovery keys hold spaces and more,
	// so they are hex-escaped the same way topics are bridged.
	s, _ := bus.MQTTSubject("k", discoveryKey)
	return s[len(bus.MQTTPrefix("k")):]
}

// add registers the entity of c, announced by owner ("" when a service
// announced it), and binds it.
func (d *Devices) add(ctx context.Context, c *discovery.Config, owner string) error {
	key := c.Key.String()
	d.mu.RLock()
	old := d.byKey[key]
	d.mu.RUnlock()
	if old != nil && old.cfg.Topic == c.Topic && string(old.cfg.Payload) == string(c.Payload) && (owner == "" || old.owner == owner) {
		return nil // a re-announcement of the same config changes nothing
	}
	if owner == "" && old != nil {
		owner = old.owner // a service's re-announcement keeps the owner
	}
	dev := c.Device
	dev.HomeID = d.cfg.Home
	if _, err := d.reg.PutDevice(ctx, dev); err != nil {
		return err
	}
	ent := c.Entity
	ent.HomeID = d.cfg.Home
	ent.DeviceID = dev.ID
	ent.State = homemesh.State{Available: c.InitialAvailable()}
	if old != nil {
		ent.ID = old.entityID
	}
	// Bind before the registry lists the entity, so that nobody can see it
	// and have a command refused because this edge does not know it yet.
	b := &binding{cfg: c, entityID: ent.ID, deviceID: dev.ID, owner: owner}
	d.bind(key, b)
	// Two unique_ids can slug to the same ID; the registry refuses the
	// second, and a numbered ID is tried instead.
	base := ent.ID
	var err error
	for n := 2; n <= 20; n++ {
		if _, err = d.reg.PutEntity(ctx, ent); homemesh.ErrorKind(err) != homemesh.KindConflict {
			break
		}
		ent.ID = fmt.Sprintf("%s_%d", base, n)
		b = &binding{cfg: c, entityID: ent.ID, deviceID: dev.ID, owner: owner}
		d.bind(key, b)
	}
	if err != nil {
		d.unbind(key)
		if old != nil {
			d.bind(key, old)
		}
		return err
	}
	rec := record{Topic: c.Topic, Payload: c.Payload, Key: key, EntityID: ent.ID, DeviceID: dev.ID, Owner: owner}
	data, _ := json.Marshal(rec)
	if _, err := d.kv.Put(ctx, kvKey(key), data); err != nil {
		return fmt.Errorf("store discovery config: %w", err)
	}
	d.replayRetained(ctx, b)
	return nil
}

func (d *Devices) remove(ctx context.Context, key string) {
	d.mu.RLock()
	b := d.byKey[key]
	d.mu.RUnlock()
	if b == nil {
		return
	}
	if err := d.reg.RemoveEntity(ctx, b.entityID); err != nil && homemesh.ErrorKind(err) != homemesh.KindNotFound {
		d.log.Warn("entity not removed", "entity_id", b.entityID, "err", err)
		return
	}
	if err := d.kv.Delete(ctx, kvKey(key)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		d.log.Warn("discovery config not deleted", "key", key, "err", err)
	}
	d.unbind(key)
}

// bind indexes b, replacing whatever was bound to key.
func (d *Devices) bind(key string, b *binding) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unbindLocked(key)
	d.byKey[key] = b
	d.byEntity[b.entityID] = b
	if b.owner != "" && d.devOwner[b.deviceID] == "" {
		d.devOwner[b.deviceID] = b.owner
	}
	for _, t := range b.cfg.Topics() {
		d.byTopic[t] = append(d.byTopic[t], b)
	}
	if _, ok := d.states[b.entityID]; !ok {
		d.states[b.entityID] = homemesh.State{Available: b.cfg.InitialAvailable()}
	}
}

func (d *Devices) unbind(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.unbindLocked(key)
}

func (d *Devices) unbindLocked(key string) {
	old := d.byKey[key]
	if old == nil {
		return
	}
	delete(d.byKey, key)
	delete(d.byEntity, old.entityID)
	delete(d.states, old.entityID)
	for _, t := range old.cfg.Topics() {
		list := d.byTopic[t]
		out := list[:0]
		for _, x := range list {
			if x != old {
				out = append(out, x)
			}
		}
		if len(out) == 0 {
			delete(d.byTopic, t)
		} else {
			d.byTopic[t] = out
		}
	}
}

// watch loads the stored discovery configs and follows changes other edge
// instances make. It returns after the initial load.
func (d *Devices) watch(ctx context.Context) error {
	if err := natsbus.FollowKeyValue(ctx, d.kv, d.applyRecord); err != nil {
		return fmt.Errorf("edge: watch discovery configs: %w", err)
	}
	return nil
}

func (d *Devices) applyRecord(e jetstream.KeyValueEntry) {
	if e.Operation() != jetstream.KeyValuePut {
		d.mu.RLock()
		var key string
		for k := range d.byKey {
			if kvKey(k) == e.Key() {
				key = k
			}
		}
		d.mu.RUnlock()
		if key != "" {
			d.unbind(key)
		}
		return
	}
	var rec record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		d.log.Error("skipping unreadable discovery record", "key", e.Key(), "err", err)
		return
	}
	d.mu.RLock()
	cur := d.byKey[rec.Key]
	d.mu.RUnlock()
	if cur != nil && cur.entityID == rec.EntityID && cur.cfg.Topic == rec.Topic && string(cur.cfg.Payload) == string(rec.Payload) && cur.owner == rec.Owner {
		return
	}
	ann, err := discovery.Parse(d.cfg.Prefix, rec.Topic, rec.Payload)
	if err != nil {
		d.log.Error("stored discovery config no longer parses", "key", rec.Key, "err", err)
		return
	}
	for _, c := range ann.Configs {
		if c.Key.String() == rec.Key {
			d.bind(rec.Key, &binding{cfg: c, entityID: rec.EntityID, deviceID: rec.DeviceID, owner: rec.Owner})
		}
	}
}

// onCommand answers a command unless it is for a mesh device that no MQTT
// config announced: the mesh border answers those, and a "not found" from
// here would race its answer.
func (d *Devices) onCommand(m *nats.Msg) {
	if _, device, entity, ok := bus.SplitCommandSubject(m.Subject); ok {
		if meshDevice(device) {
			d.mu.RLock()
			b := d.byEntity[entity]
			d.mu.RUnlock()
			if b == nil || b.deviceID != device {
				return
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := d.handleCommand(ctx, m)
	if m.Reply == "" {
		if err != nil {
			d.log.Warn("command failed", "subject", m.Subject, "err", err)
		}
		return
	}
	d.bus.Reply(m, resp, err)
}

// meshDevice reports whether device has the form of a mesh device id
// (mesh/meshapp's DeviceID: "mesh-" and a node id's 16 lower-case hex
// digits). Services do not import one another, so the form is spelt here.
func meshDevice(device string) bool {
	hex, ok := strings.CutPrefix(device, "mesh-")
	if !ok || len(hex) != 16 {
		return false
	}
	for i := 0; i < len(hex); i++ {
		if c := hex[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (d *Devices) handleCommand(ctx context.Context, m *nats.Msg) (any, error) {
	var cmd homemesh.Command
	if err := json.Unmarshal(m.Data, &cmd); err != nil {
		return nil, homemesh.Invalid("body", "not a JSON command: %v", err)
	}
	_, device, entity, ok := bus.SplitCommandSubject(m.Subject)
	if !ok || cmd.EntityID != entity {
		return nil, homemesh.Invalid("entity_id", "does not match the subject")
	}
	d.mu.RLock()
	b := d.byEntity[entity]
	st := d.states[entity]
	d.mu.RUnlock()
	if b == nil || b.deviceID != device {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "entity %q is not an MQTT entity of this home", entity)
	}
	pubs, err := b.cfg.Command(cmd, st)
	if err != nil {
		return nil, err
	}
	for _, p := range pubs {
		if err := d.publishMQTT(p.Topic, p.Payload, p.QoS, p.Retain); err != nil {
			return nil, &homemesh.Error{Op: "edge.command", Kind: homemesh.KindUnavailable, Message: "command not sent", Err: err}
		}
	}
	if b.cfg.Optimistic() {
		// Without a state topic the device never confirms; like Home
		// Assistant, assume the command took effect.
		if u, ok := b.cfg.Assumed(cmd, st); ok {
			d.report(b, u, time.Now().UTC())
		}
	}
	d.log.Info("command sent", "entity_id", entity, "command", cmd.Name)
	return struct{}{}, nil
}
