package border

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go/jetstream"
)

// record is what AgentsBucket keeps of one agent.
type record struct {
	Node string `json:"node_id"`
	// Key is the agent's static X25519 public key, from its verified
	// certificate: what the hub needs to reach it end to end.
	Key  []byte `json:"key"`
	Role string `json:"role"`
	// Entities are the agent's entities by unique_id, as it last
	// announced them; nil until it announced.
	Entities map[string]entityRecord `json:"entities,omitempty"`
	// Announced says the entities above are in the registry, as the
	// announcement whose definitions hash to Digest described them.
	Announced bool      `json:"announced"`
	Digest    string    `json:"digest,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// entityRecord is what the border needs of an entity to check commands.
type entityRecord struct {
	Kind     homemesh.EntityKind `json:"kind"`
	Commands []string            `json:"commands,omitempty"`
}

// agent is the border's view of one agent.
type agent struct {
	id  route.NodeID
	rec record
	// routed is when the hub last had a route to the agent (or heard from
	// it); down says its entities were marked unavailable for lack of one.
	routed time.Time
	down   bool
	// available is each entity's availability as the agent last said.
	available  map[string]bool
	lastResync time.Time
	// links is the agent's last report of its links, kept in memory only
	// (the agent reports again within a minute); nil before the first.
	links *linksReport
}

// linksReport is what one links message said, and when it arrived.
type linksReport struct {
	at         time.Time
	neighbours []meshapp.Neighbour
}

// watchAgents loads the agents earlier runs and the home's other border
// processes learned, so that their keys are known before they speak, and
// follows what those processes learn later. It returns after the load.
func (b *Border) watchAgents(ctx context.Context) error {
	err := natsbus.FollowKeyValue(ctx, b.kv, func(e jetstream.KeyValueEntry) {
		switch e.Operation() {
		case jetstream.KeyValuePut:
			b.applyRecord(e.Key(), e.Value())
		case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
			b.forgetRecord(e.Key())
		}
	})
	if err != nil {
		return fmt.Errorf("border: watch agents: %w", err)
	}
	return nil
}

// applyRecord takes in a stored record that is newer than what this
// process knows of the agent; its own writes come back as equal, and are
// ignored.
func (b *Border) applyRecord(key string, data []byte) {
	rec, id, err := parseRecord(key, data)
	if err != nil {
		b.log.Error("skipping unreadable agent record", "peer", key, "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.revoked[id] {
		return // a border that has not heard of the revocation yet wrote it
	}
	a := b.agents[id]
	if a == nil {
		a = &agent{id: id, routed: time.Now(), available: map[string]bool{}}
		b.agents[id] = a
	} else if !rec.UpdatedAt.After(a.rec.UpdatedAt) {
		return
	}
	a.rec = rec
	for uid := range rec.Entities {
		if _, ok := a.available[uid]; !ok {
			a.available[uid] = true
		}
	}
	b.keys.Store(id, rec.Key)
}

// forgetRecord forgets an agent whose record was deleted: a border does
// that when the agent's node is revoked.
func (b *Border) forgetRecord(key string) {
	id, err := route.ParseNodeID(key)
	if err != nil {
		return
	}
	b.mu.Lock()
	delete(b.agents, id)
	b.mu.Unlock()
	b.keys.Delete(id)
}

// parseRecord decodes the record stored under key, checking that it is
// the record of the node the key names and that its static key is that
// node's.
func parseRecord(key string, data []byte) (record, route.NodeID, error) {
	var rec record
	id, err := route.ParseNodeID(key)
	if err != nil || id.String() != key {
		return rec, id, fmt.Errorf("key: %q is not a node id in lower-case hex", key)
	}
	if err := json.Unmarshal(data, &rec); err != nil {
		return rec, id, err
	}
	switch {
	case rec.Node != key:
		return rec, id, fmt.Errorf("node_id %q is stored under %q", rec.Node, key)
	case len(rec.Key) != 32 || route.IDFromKey(rec.Key) != id:
		return rec, id, errors.New("key: not the static key of the node")
	}
	for uid := range rec.Entities {
		if !meshapp.ValidID(uid) {
			return rec, id, fmt.Errorf("entities: %q is not a unique_id", uid)
		}
	}
	return rec, id, nil
}

// stamp marks a's record as changed now and returns a copy to save.
// b.mu is held.
func (a *agent) stamp() record {
	a.rec.UpdatedAt = time.Now().UTC()
	return a.rec
}

// save writes an agent's record to the bucket. b.mu is not held: the
// record is a copy.
func (b *Border) save(ctx context.Context, rec record) {
	data, err := json.Marshal(rec)
	if err == nil {
		_, err = b.kv.Put(ctx, rec.Node, data)
	}
	if err != nil {
		b.log.Warn("agent record not stored", "peer", rec.Node, "err", err)
	}
}

// learn records the verified identity of a message's source, returning
// its agent, and whether its record changed (a new agent, or a new key);
// nil for a revoked node.
func (b *Border) learn(from link.Peer, at time.Time) (*agent, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.revoked[from.ID] {
		return nil, false
	}
	a := b.agents[from.ID]
	changed := false
	if a == nil {
		a = &agent{id: from.ID, rec: record{Node: from.ID.String()}, available: map[string]bool{}}
		b.agents[from.ID] = a
		changed = true
	}
	if !bytes.Equal(a.rec.Key, from.Key) || a.rec.Role != from.Role.String() {
		a.rec.Key = bytes.Clone(from.Key)
		a.rec.Role = from.Role.String()
		b.keys.Store(from.ID, a.rec.Key)
		changed = true
	}
	a.routed = at
	return a, changed
}

// handle processes one end-to-end payload from an agent.
func (b *Border) handle(ctx context.Context, in inbound) {
	if in.from.Home != b.cfg.Home {
		// The link layer admits only this home's nodes; a message from
		// elsewhere means a misconfigured verifier, never to be trusted.
		b.met.dropped.WithLabelValues("foreign_home").Inc()
		return
	}
	msg, err := meshapp.Decode(in.payload)
	if err != nil {
		b.met.dropped.WithLabelValues("malformed").Inc()
		b.log.Warn("mesh message refused", "peer", in.from.ID.String(), "field", homemesh.ErrorField(err), "err", err)
		return
	}
	if in.from.Role == link.RoleHub {
		// Hubs exchange no application messages with each other.
		b.met.dropped.WithLabelValues("from_hub").Inc()
		return
	}
	a, changed := b.learn(in.from, in.at)
	if a == nil {
		// Delivered before the node learned of the revocation.
		b.met.dropped.WithLabelValues("revoked").Inc()
		return
	}
	if changed {
		b.mu.Lock()
		rec := a.stamp()
		b.mu.Unlock()
		b.save(ctx, rec)
	}
	b.restore(a)
	switch m := msg.(type) {
	case *meshapp.Announce:
		b.announce(ctx, a, m, in.at)
		// An agent that was away when a node was revoked learns it now.
		b.sendRevoked(a.id)
	case *meshapp.State:
		b.state(a, m, in.at)
	case *meshapp.Result:
		b.result(a.id, m)
	case *meshapp.Links:
		b.links(a, m, in.at)
	default:
		// command and resync travel from hubs to agents only.
		b.met.dropped.WithLabelValues("wrong_direction").Inc()
		b.log.Warn("mesh message of the wrong direction refused", "peer", a.id.String(), "type", string(msg.MessageType()))
	}
}

// announce puts the agent's device and entities into the registry,
// removes the entities it no longer has, and reports their states.
func (b *Border) announce(ctx context.Context, a *agent, m *meshapp.Announce, at time.Time) {
	home := b.cfg.Home
	digest := definitions(m)
	b.mu.Lock()
	same := a.rec.Announced && a.rec.Digest == digest
	if same {
		// Agents announce again at every hub change and resync; when
		// nothing but the states changed, only the states are news.
		a.down = false
		for _, e := range m.Entities {
			a.available[e.UniqueID] = e.State != nil && e.State.Available
		}
	}
	b.mu.Unlock()
	if same {
		for _, u := range m.StateUpdates(home, a.id, at) {
			b.report(u)
		}
		return
	}
	dev := m.HomemeshDevice(home, a.id)
	if err := retry(ctx, func() error { _, err := b.deps.Registry.PutDevice(ctx, dev); return err }); err != nil {
		b.log.Warn("mesh device not registered", "peer", a.id.String(), "device_id", dev.ID, "err", err)
		return
	}
	entities := make(map[string]entityRecord, len(m.Entities))
	failed := map[string]bool{}
	for _, e := range m.HomemeshEntities(home, a.id, at) {
		if err := retry(ctx, func() error { _, err := b.deps.Registry.PutEntity(ctx, e); return err }); err != nil {
			b.log.Warn("mesh entity not registered", "peer", a.id.String(), "entity_id", e.ID, "err", err)
			failed[e.UniqueID] = true
			continue
		}
		entities[e.UniqueID] = entityRecord{Kind: e.Kind, Commands: slices.Clone(e.Capabilities.Commands)}
	}
	b.mu.Lock()
	old := a.rec.Entities
	for uid := range failed {
		if e, ok := old[uid]; ok {
			entities[uid] = e // the registry still holds it as it was
		}
	}
	a.rec.Entities = entities
	a.rec.Announced = true
	a.rec.Digest = ""
	if len(failed) == 0 {
		a.rec.Digest = digest // all registered: the next identical announce is only states
	}
	a.down = false
	a.available = map[string]bool{}
	for _, e := range m.Entities {
		if _, ok := entities[e.UniqueID]; ok {
			a.available[e.UniqueID] = e.State != nil && e.State.Available
		}
	}
	rec := a.stamp()
	b.mu.Unlock()
	for uid := range old {
		// An entity still announced whose update failed stays as it was;
		// the digest left unset makes the next announce try again.
		if _, ok := entities[uid]; ok {
			continue
		}
		id := meshapp.EntityID(a.id, uid)
		if err := b.deps.Registry.RemoveEntity(ctx, id); err != nil && homemesh.ErrorKind(err) != homemesh.KindNotFound {
			b.log.Warn("mesh entity not removed", "peer", a.id.String(), "entity_id", id, "err", err)
		}
	}
	for _, u := range m.StateUpdates(home, a.id, at) {
		if _, ok := entities[uidOf(a.id, u.EntityID)]; ok {
			b.report(u)
		}
	}
	b.save(ctx, rec)
	b.log.Info("mesh agent announced", "peer", a.id.String(), "device_id", dev.ID, "entities", len(entities))
}

// definitions hashes what an announcement defines: the device and its
// entities without their states.
func definitions(m *meshapp.Announce) string {
	defs := meshapp.Announce{Device: m.Device, Entities: make([]meshapp.Entity, len(m.Entities))}
	for i, e := range m.Entities {
		e.State = nil
		defs.Entities[i] = e
	}
	data, _ := json.Marshal(defs)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// uidOf returns the unique_id of an entity id of agent id.
func uidOf(id route.NodeID, entityID string) string {
	return entityID[len(meshapp.EntityID(id, "")):]
}

// state reports one entity's state, or asks an agent the border does not
// know (or whose entity it does not know) to announce again.
func (b *Border) state(a *agent, m *meshapp.State, at time.Time) {
	b.mu.Lock()
	_, known := a.rec.Entities[m.UniqueID]
	known = known && a.rec.Announced
	if known {
		a.available[m.UniqueID] = m.Available
	}
	b.mu.Unlock()
	if !known {
		b.resync(a, at)
		return
	}
	b.report(m.Update(b.cfg.Home, a.id, at))
}

// links keeps an agent's report of its links for the topology. As with a
// state, an agent the border does not know is asked to announce instead:
// only the links of paired agents that announced themselves are shown.
// The report replaces the agent's last one; the sender is the node the
// link layer authenticated, so an agent reports only its own links.
func (b *Border) links(a *agent, m *meshapp.Links, at time.Time) {
	b.mu.Lock()
	known := a.rec.Announced
	if known {
		a.links = &linksReport{at: at, neighbours: m.Neighbours}
	}
	b.mu.Unlock()
	if !known {
		b.met.dropped.WithLabelValues("unknown_agent").Inc()
		b.resync(a, at)
	}
}

func (b *Border) report(u homemesh.StateUpdate) {
	if err := b.deps.Registry.Report(u); err != nil {
		b.log.Warn("state report failed", "entity_id", u.EntityID, "err", err)
	}
}

// resync asks agent a to announce itself, at most once per ResyncInterval.
func (b *Border) resync(a *agent, now time.Time) {
	b.mu.Lock()
	due := a.lastResync.IsZero() || now.Sub(a.lastResync) >= b.cfg.ResyncInterval
	if due {
		a.lastResync = now
	}
	b.mu.Unlock()
	if !due {
		return
	}
	payload, err := meshapp.Encode(&meshapp.Resync{})
	if err == nil {
		err = b.mesh.Send(a.id, payload)
	}
	if err != nil {
		b.log.Warn("resync not sent", "peer", a.id.String(), "err", err)
		return
	}
	b.met.resyncs.Inc()
	b.log.Info("asked a mesh agent to announce again", "peer", a.id.String())
}

// retry calls f until it succeeds or fails for a reason other than the
// registry being unavailable (it may be starting, or restarting in split
// mode), for at most about ten seconds.
func retry(ctx context.Context, f func() error) error {
	err := f()
	for wait := 50 * time.Millisecond; homemesh.ErrorKind(err) == homemesh.KindUnavailable && wait < 10*time.Second && ctx.Err() == nil; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		err = f()
	}
	return err
}
