package border

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go/jetstream"
)

// Revocations is where the border learns which mesh nodes the home
// revoked: auth in a real home (the verb mesh_revoked and the event
// mesh_node_revoked).
type Revocations interface {
	// Revoked returns every node the home revoked.
	Revoked(ctx context.Context) ([]route.NodeID, error)
	// Follow calls revoked with the id of each node revoked from now on,
	// until ctx ends; it returns once it follows. revoked must not block.
	Follow(ctx context.Context, revoked func(id route.NodeID)) error
}

// maxRevokeBacklog bounds the revocation events waiting for the border to
// fetch the list; beyond it they are dropped, since each fetch brings them
// all.
const maxRevokeBacklog = 64

// startRevocations follows the revocations and returns the current list,
// retrying while auth is starting, and the channel of the events that
// arrive from then on. Following starts first, so that a revocation
// between the two is not missed.
func (b *Border) startRevocations(ctx context.Context) ([]route.NodeID, <-chan route.NodeID, error) {
	events := make(chan route.NodeID, maxRevokeBacklog)
	src := b.deps.Revocations
	if src == nil {
		return nil, events, nil
	}
	err := src.Follow(ctx, func(id route.NodeID) {
		select {
		case events <- id:
		default:
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("border: follow revoked mesh nodes: %w", err)
	}
	ids, err := src.Revoked(ctx)
	for wait := 50 * time.Millisecond; homemesh.ErrorKind(err) == homemesh.KindUnavailable && ctx.Err() == nil && wait < 20*time.Second; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		ids, err = src.Revoked(ctx)
	}
	if err != nil {
		// Running without the list would let revoked nodes in.
		return nil, nil, fmt.Errorf("border: revoked mesh nodes from auth: %w", err)
	}
	return ids, events, nil
}

// watchRevocations applies each revocation event with the list as auth
// has it then: one fetch also covers events that were dropped or missed.
func (b *Border) watchRevocations(ctx context.Context, events <-chan route.NodeID) {
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-events:
			ids := []route.NodeID{id}
			if all, err := b.deps.Revocations.Revoked(ctx); err != nil {
				b.log.Warn("revoked mesh nodes not fetched; applying the event alone", "err", err)
			} else {
				ids = append(ids, all...)
			}
			b.revoke(ctx, ids, true)
		}
	}
}

// isRevoked reports whether the border knows id to be revoked.
func (b *Border) isRevoked(id route.NodeID) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.revoked[id]
}

// revoke cuts the nodes ids off: the hub's node refuses them, their
// agents' records are deleted from AgentsBucket and their entities marked
// unavailable, and, when notify is set and any was new, every known agent
// is sent the whole list.
func (b *Border) revoke(ctx context.Context, ids []route.NodeID, notify bool) {
	var added []route.NodeID
	var gone []*agent
	b.mu.Lock()
	for _, id := range ids {
		if b.revoked[id] {
			continue
		}
		b.revoked[id] = true
		added = append(added, id)
		if a := b.agents[id]; a != nil {
			delete(b.agents, id)
			gone = append(gone, a)
		}
		b.keys.Delete(id)
	}
	b.mu.Unlock()
	if len(added) == 0 {
		return
	}
	b.mesh.Revoke(added)
	for _, id := range added {
		b.log.Warn("mesh node revoked: refused from now on", "peer", id.String(), "device_id", meshapp.DeviceID(id))
		// Delete, not purge: the other borders' watches see the deletion
		// and forget the agent too.
		if err := b.kv.Delete(ctx, id.String()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			b.log.Warn("revoked agent's record not deleted", "peer", id.String(), "err", err)
		}
	}
	now := time.Now().UTC()
	unavailable := false
	for _, a := range gone {
		for uid := range a.rec.Entities {
			b.report(homemesh.StateUpdate{HomeID: b.cfg.Home, DeviceID: meshapp.DeviceID(a.id),
				EntityID: meshapp.EntityID(a.id, uid), Available: &unavailable, Time: now})
		}
	}
	if !notify {
		return
	}
	b.mu.Lock()
	agents := make([]route.NodeID, 0, len(b.agents))
	for id := range b.agents {
		agents = append(agents, id)
	}
	b.mu.Unlock()
	slices.SortFunc(agents, func(x, y route.NodeID) int { return bytes.Compare(x[:], y[:]) })
	for _, id := range agents {
		b.sendRevoked(id)
	}
}

// revokedList returns every node the border knows to be revoked, sorted.
func (b *Border) revokedList() []route.NodeID {
	b.mu.Lock()
	ids := make([]route.NodeID, 0, len(b.revoked))
	for id := range b.revoked {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	slices.SortFunc(ids, func(x, y route.NodeID) int { return bytes.Compare(x[:], y[:]) })
	return ids
}

// sendRevoked tells agent id every node the home revoked, in as many
// messages as it takes; nothing when none is.
func (b *Border) sendRevoked(id route.NodeID) {
	ids := b.revokedList()
	for chunk := range slices.Chunk(ids, meshapp.MaxRevoked) {
		payload, err := meshapp.Encode(&meshapp.Revoked{Nodes: chunk})
		if err == nil {
			err = b.mesh.Send(id, payload)
		}
		if err != nil {
			b.log.Warn("revoked nodes not sent to an agent", "peer", id.String(), "err", err)
			return
		}
	}
}

// dropRevokedAgents deletes the records of agents that were revoked while
// no border of the home ran, which applyRecord kept out of the agents.
func (b *Border) dropRevokedAgents(ctx context.Context) {
	b.mu.Lock()
	none := len(b.revoked) == 0
	b.mu.Unlock()
	if none {
		return
	}
	keys, err := b.kv.ListKeys(ctx)
	if err != nil {
		b.log.Warn("agent records not listed", "err", err)
		return
	}
	var stale []*agent
	for key := range keys.Keys() {
		id, err := route.ParseNodeID(key)
		if err != nil || !b.isRevoked(id) {
			continue
		}
		rec := record{}
		if e, err := b.kv.Get(ctx, key); err == nil {
			rec, _, _ = parseRecord(key, e.Value())
		}
		stale = append(stale, &agent{id: id, rec: rec})
	}
	now := time.Now().UTC()
	unavailable := false
	for _, a := range stale {
		if err := b.kv.Delete(ctx, a.id.String()); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			b.log.Warn("revoked agent's record not deleted", "peer", a.id.String(), "err", err)
			continue
		}
		for uid := range a.rec.Entities {
			b.report(homemesh.StateUpdate{HomeID: b.cfg.Home, DeviceID: meshapp.DeviceID(a.id),
				EntityID: meshapp.EntityID(a.id, uid), Available: &unavailable, Time: now})
		}
		b.log.Warn("record of a revoked mesh agent deleted", "peer", a.id.String(), "device_id", meshapp.DeviceID(a.id))
	}
}
