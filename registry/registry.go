package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config configures the registry of one home.
type Config struct {
	// Home is the ID of the home this registry serves.
	Home string
	// BatchSize bounds how many reports are merged before their states are
	// stored and the reports acknowledged. Default 1000.
	BatchSize int
	// BatchWait bounds how long a report waits for its batch to fill.
	// Default 2ms: small enough to keep latency low, large enough to
	// coalesce bursts into one storage round.
	BatchWait time.Duration
}

// Deps are the registry's collaborators.
type Deps struct {
	Bus *natsbus.Conn
	Log *slog.Logger
}

// Service is the registry service.
type Service struct {
	cfg                             Config
	bus                             *natsbus.Conn
	js                              jetstream.JetStream
	log                             *slog.Logger
	kvDevices, kvEntities, kvStates jetstream.KeyValue
	kvRooms                         jetstream.KeyValue

	// writeMu serialises definition writes so that read-modify-write of an
	// entity or device is atomic within this process.
	writeMu sync.Mutex

	mu       sync.RWMutex
	rooms    map[string]homemesh.Room
	devices  map[string]homemesh.Device
	entities map[string]homemesh.Entity // definitions; State is kept in states
	states   map[string]*stateRecord
	// revs holds the newest KV revision this process has seen or written
	// per definition key, so a late watch echo of an older write never
	// resurrects what was since changed or deleted.
	revs map[string]uint64

	stored chan storeJob // batches waiting for their states to be stored
	ready  chan struct{}
}

// stateRecord is the cached state of one entity. rev is the KV revision it
// corresponds to and pending counts this process's writes not yet
// acknowledged: while any is in flight, watch updates (which may be echoes
// of older writes) are ignored so the cache never moves backwards.
type stateRecord struct {
	state   homemesh.State
	raw     []byte // state as JSON when known, so each state is marshalled once
	rev     uint64
	pending int
}

// New checks cfg and returns a service ready to Run.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, err
	}
	if deps.Bus == nil {
		return nil, errors.New("registry: no bus connection")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 2 * time.Millisecond
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{
		cfg: cfg, bus: deps.Bus, js: deps.Bus.JetStream(),
		log:      log.With("service", "registry", "home_id", cfg.Home),
		rooms:    map[string]homemesh.Room{},
		devices:  map[string]homemesh.Device{},
		entities: map[string]homemesh.Entity{},
		states:   map[string]*stateRecord{},
		revs:     map[string]uint64{},
		ready:    make(chan struct{}),
	}, nil
}

// Streams declares the JetStream stream of home the registry relies on,
// REPORTS_<home>. It is idempotent, so every process that publishes or
// consumes reports calls it. (The state log the registry publishes is kept
// by history's stream, history.StatesStream: only history consumes it.)
func Streams(ctx context.Context, conn *natsbus.Conn, home string) error {
	_, err := conn.Stream(ctx, jetstream.StreamConfig{
		Name:        ReportsStream(home),
		Description: "state reports waiting for the registry of home " + home,
		Subjects:    []string{reportWildcard(home)},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		MaxBytes:    256 << 20,
		Discard:     jetstream.DiscardOld,
	})
	return err
}

func (s *Service) bucket(kind string) string { return "hm_" + s.cfg.Home + "_" + kind }

func (s *Service) open(ctx context.Context) error {
	if err := Streams(ctx, s.bus, s.cfg.Home); err != nil {
		return err
	}
	var err error
	for _, b := range []struct {
		kv   *jetstream.KeyValue
		name string
	}{{&s.kvRooms, "rooms"}, {&s.kvDevices, "devices"}, {&s.kvEntities, "entities"}, {&s.kvStates, "states"}} {
		*b.kv, err = s.bus.KeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: s.bucket(b.name), History: 1, Storage: jetstream.FileStorage,
			Description: "registry " + b.name + " of home " + s.cfg.Home,
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Ready is closed once the registry has loaded its state and answers
// requests.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves the registry until ctx ends. It loads every definition and
// state, keeps them fresh through KV watches, answers requests and consumes
// reports.
func (s *Service) Run(ctx context.Context) error {
	if err := s.open(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop all the same
		}
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := s.watch(watchCtx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}

	handlers := map[string]natsbus.Handler{
		verbDevicesList: s.handleDevicesList, verbDevicesGet: s.handleDevicesGet, verbDevicesPut: s.handleDevicesPut,
		verbEntitiesList: s.handleEntitiesList, verbEntitiesGet: s.handleEntitiesGet,
		verbEntitiesPut: s.handleEntitiesPut, verbEntitiesRemove: s.handleEntitiesRemove,
		verbDevicesUpdate: s.handleDevicesUpdate,
		verbRoomsList:     s.handleRoomsList, verbRoomsCreate: s.handleRoomsCreate, verbRoomsRemove: s.handleRoomsRemove,
	}
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Drain()
		}
	}()
	for verb, h := range handlers {
		sub, err := s.bus.Handle(bus.ServiceSubject("registry", verb), queueGroup, s.forHome(h))
		if err != nil {
			return fmt.Errorf("registry: serve %s: %w", verb, err)
		}
		subs = append(subs, sub)
	}

	cons, err := s.js.CreateOrUpdateConsumer(ctx, ReportsStream(s.cfg.Home), jetstream.ConsumerConfig{
		Durable:       "registry_" + s.cfg.Home,
		FilterSubject: reportWildcard(s.cfg.Home),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 20000,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: a clean stop all the same
		}
		return &homemesh.Error{Op: "registry.consumer", Kind: homemesh.KindUnavailable, Message: "report consumer unavailable", Err: err}
	}
	s.mu.RLock()
	devices, entities := len(s.devices), len(s.entities)
	s.mu.RUnlock()
	s.log.Info("registry ready", "devices", devices, "entities", entities)
	close(s.ready)
	err = s.consume(ctx, cons)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// forHome rejects requests addressed to another home: one registry process
// serves one home, and answering for another would leak its data.
func (s *Service) forHome(h natsbus.Handler) natsbus.Handler {
	return func(ctx context.Context, msg *nats.Msg) (any, error) {
		var req request
		if err := json.Unmarshal(msg.Data, &req); err != nil {
			return nil, homemesh.Invalid("body", "not a JSON request: %v", err)
		}
		if req.Home != s.cfg.Home {
			return nil, homemesh.Errorf(homemesh.KindNotFound, "home %q is not served here", req.Home)
		}
		return h(ctx, msg)
	}
}

func decode(msg *nats.Msg) request {
	var req request
	_ = json.Unmarshal(msg.Data, &req) // forHome already checked it parses
	return req
}

func (s *Service) handleDevicesList(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	s.mu.RLock()
	out := make([]homemesh.Device, 0, len(s.devices))
	for _, d := range s.devices {
		if d.ID > req.After {
			out = append(out, d)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b homemesh.Device) int { return strings.Compare(a.ID, b.ID) })
	return page(out, req.Limit), nil
}

// page cuts a sorted list to one reply's worth.
func page[T any](list []T, limit int) []T {
	if limit <= 0 || limit > pageSize {
		limit = pageSize
	}
	if len(list) > limit {
		list = list[:limit]
	}
	return list
}

func (s *Service) handleDevicesGet(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	s.mu.RLock()
	d, ok := s.devices[req.ID]
	s.mu.RUnlock()
	if !ok {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no device %q", req.ID)
	}
	return d, nil
}

func (s *Service) handleEntitiesList(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]homemesh.Entity, 0, len(s.entities))
	for id := range s.entities {
		if id <= req.After {
			continue
		}
		e, _ := s.entity(id)
		if req.Filter.DeviceID != "" && e.DeviceID != req.Filter.DeviceID {
			continue
		}
		if req.Filter.Kind != "" && e.Kind != req.Filter.Kind {
			continue
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b homemesh.Entity) int { return strings.Compare(a.ID, b.ID) })
	return page(out, req.Limit), nil
}

func (s *Service) handleEntitiesGet(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	s.mu.RLock()
	e, ok := s.entity(req.ID)
	s.mu.RUnlock()
	if !ok {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no entity %q", req.ID)
	}
	return e, nil
}

// entity returns the definition of id with its current state. s.mu must be
// held.
func (s *Service) entity(id string) (homemesh.Entity, bool) {
	e, ok := s.entities[id]
	if !ok {
		return e, false
	}
	if rec := s.states[id]; rec != nil {
		e.State = rec.state
	}
	return e, true
}

func (s *Service) handleDevicesPut(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	if req.Device == nil {
		return nil, homemesh.Invalid("device", "is required")
	}
	return s.putDevice(ctx, *req.Device)
}

func (s *Service) putDevice(ctx context.Context, d homemesh.Device) (homemesh.Device, error) {
	if err := homemesh.CheckID("device.id", d.ID); err != nil {
		return d, err
	}
	d.HomeID = s.cfg.Home
	now := time.Now().UTC()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	old, exists := s.devices[d.ID]
	s.mu.RUnlock()
	if exists {
		d.CreatedAt = old.CreatedAt
		if d.RoomID == "" {
			d.RoomID = old.RoomID // the room is the user's choice, not the device's
		}
		if old.NameByUser != "" {
			d.Name, d.NameByUser = old.NameByUser, old.NameByUser // so is a name given by a person
		}
		cmpD, cmpOld := d, old
		cmpD.UpdatedAt, cmpOld.UpdatedAt = time.Time{}, time.Time{}
		if reflect.DeepEqual(cmpD, cmpOld) {
			return old, nil // an identical re-announcement changes nothing
		}
	} else {
		d.CreatedAt = now
	}
	return s.storeDevice(ctx, d, exists)
}

func (s *Service) handleEntitiesPut(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	if req.Entity == nil {
		return nil, homemesh.Invalid("entity", "is required")
	}
	e := *req.Entity
	if err := homemesh.CheckID("entity.id", e.ID); err != nil {
		return nil, err
	}
	if err := homemesh.CheckID("entity.device_id", e.DeviceID); err != nil {
		return nil, err
	}
	if !e.Kind.Valid() {
		return nil, homemesh.Invalid("entity.kind", "unknown kind %q", e.Kind)
	}
	e.HomeID = s.cfg.Home
	now := time.Now().UTC()

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	_, deviceKnown := s.devices[e.DeviceID]
	old, exists := s.entity(e.ID)
	s.mu.RUnlock()
	if !deviceKnown {
		return nil, homemesh.Invalid("entity.device_id", "no device %q; put the device first", e.DeviceID)
	}
	if exists && old.UniqueID != e.UniqueID {
		return nil, &homemesh.Error{Kind: homemesh.KindConflict, Field: "entity.id",
			Message: fmt.Sprintf("entity %q already belongs to unique_id %q", e.ID, old.UniqueID)}
	}
	if exists {
		e.CreatedAt = old.CreatedAt
		e.State = old.State // a definition update never resets the state
		cmpE, cmpOld := e, old
		cmpE.UpdatedAt, cmpOld.UpdatedAt = time.Time{}, time.Time{}
		if reflect.DeepEqual(cmpE, cmpOld) {
			return old, nil
		}
	} else {
		e.CreatedAt = now
		e.State.Value = nil
		e.State.ChangedAt, e.State.UpdatedAt = now, now
	}
	e.UpdatedAt = now
	def := e
	def.State = homemesh.State{}
	if err := s.store(ctx, s.kvEntities, e.ID, def); err != nil {
		return nil, err
	}
	if !exists {
		if err := s.store(ctx, s.kvStates, e.ID, e.State); err != nil {
			return nil, err
		}
	}
	s.mu.Lock()
	s.entities[e.ID] = def
	if !exists {
		s.states[e.ID] = &stateRecord{state: e.State}
	}
	s.mu.Unlock()
	kind := EventEntityAdded
	if exists {
		kind = EventEntityUpdated
	}
	s.event(kind, e)
	return e, nil
}

func (s *Service) handleEntitiesRemove(ctx context.Context, msg *nats.Msg) (any, error) {
	req := decode(msg)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.RLock()
	e, ok := s.entity(req.ID)
	s.mu.RUnlock()
	if !ok {
		return nil, homemesh.Errorf(homemesh.KindNotFound, "no entity %q", req.ID)
	}
	// Memory first, so no reader ever sees the entity gone but its orphaned
	// device still there; the KV deletes follow.
	s.mu.Lock()
	delete(s.entities, e.ID)
	delete(s.states, e.ID)
	orphan := true
	for _, other := range s.entities {
		if other.DeviceID == e.DeviceID {
			orphan = false
			break
		}
	}
	dev, devOK := s.devices[e.DeviceID]
	if orphan && devOK {
		delete(s.devices, e.DeviceID)
	}
	s.mu.Unlock()
	for _, kv := range []jetstream.KeyValue{s.kvEntities, s.kvStates} {
		if err := kv.Delete(ctx, e.ID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, &homemesh.Error{Op: "registry.remove", Kind: homemesh.KindUnavailable, Message: "storage unavailable", Err: err}
		}
	}
	s.event(EventEntityRemoved, e)
	if orphan && devOK {
		if err := s.kvDevices.Delete(ctx, dev.ID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			s.log.Warn("device not deleted", "device_id", dev.ID, "err", err)
		}
		s.event(EventDeviceRemoved, dev)
	}
	return struct{}{}, nil
}

func (s *Service) store(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", key, err)
	}
	rev, err := kv.Put(ctx, key, data)
	if err != nil {
		return &homemesh.Error{Op: "registry.store", Kind: homemesh.KindUnavailable, Message: "storage unavailable", Err: err}
	}
	s.mu.Lock()
	s.noteRev(kv, key, rev)
	s.mu.Unlock()
	return nil
}

// noteRev records rev for key and reports whether it is newer than any
// revision seen before. s.mu must be held.
func (s *Service) noteRev(kv jetstream.KeyValue, key string, rev uint64) bool {
	k := kv.Bucket() + "/" + key
	if rev <= s.revs[k] {
		return false
	}
	s.revs[k] = rev
	return true
}

func (s *Service) event(kind string, data any) {
	env, err := bus.EncodeEnvelope(s.cfg.Home, "registry", kind, data)
	if err == nil {
		err = s.bus.NATS().Publish(bus.EventSubject(s.cfg.Home, kind), env)
	}
	if err != nil {
		s.log.Warn("event not published", "event", kind, "err", err)
	}
}
