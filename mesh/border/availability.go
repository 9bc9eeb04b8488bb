package border

import (
	"context"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
)

// watchRoutes follows the routing table: an agent without a route for
// longer than Grace has its entities marked unavailable, and one whose
// route returns has them restored.
func (b *Border) watchRoutes(ctx context.Context) {
	t := time.NewTicker(b.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			b.checkRoutes(b.mesh.Topology(), now)
		}
	}
}

// checkRoutes applies one routing snapshot taken at now.
func (b *Border) checkRoutes(topo Topology, now time.Time) {
	routed := make(map[route.NodeID]bool, len(topo.Routes))
	for _, r := range topo.Routes {
		if id, err := route.ParseNodeID(r.Destination); err == nil && r.Feasible {
			routed[id] = true
		}
	}
	var lost, back []*agent
	b.mu.Lock()
	for id, a := range b.agents {
		switch {
		case routed[id]:
			a.routed = now
			if a.down {
				back = append(back, a)
			}
		case !a.down && a.rec.Announced && now.Sub(a.routed) > b.cfg.Grace:
			lost = append(lost, a)
		}
	}
	b.mu.Unlock()
	for _, a := range lost {
		b.markDown(a, now)
	}
	for _, a := range back {
		b.restore(a)
	}
}

// markDown reports every entity of a unavailable.
func (b *Border) markDown(a *agent, now time.Time) {
	b.mu.Lock()
	if a.down {
		b.mu.Unlock()
		return
	}
	a.down = true
	uids := make([]string, 0, len(a.rec.Entities))
	for uid := range a.rec.Entities {
		uids = append(uids, uid)
	}
	b.mu.Unlock()
	unavailable := false
	for _, uid := range uids {
		b.report(homemesh.StateUpdate{HomeID: b.cfg.Home, DeviceID: meshapp.DeviceID(a.id),
			EntityID: meshapp.EntityID(a.id, uid), Available: &unavailable, Time: now.UTC()})
	}
	b.log.Warn("mesh agent unreachable; its entities are unavailable", "peer", a.id.String(), "device_id", meshapp.DeviceID(a.id), "grace", b.cfg.Grace.String())
}

// restore gives a's entities back the availability the agent last
// reported, after it was marked down, and asks it to announce so that
// what changed meanwhile arrives.
func (b *Border) restore(a *agent) {
	now := time.Now().UTC()
	b.mu.Lock()
	if !a.down {
		b.mu.Unlock()
		return
	}
	a.down = false
	a.routed = now
	updates := make([]homemesh.StateUpdate, 0, len(a.available))
	for uid, avail := range a.available {
		if _, ok := a.rec.Entities[uid]; ok {
			updates = append(updates, homemesh.StateUpdate{HomeID: b.cfg.Home, DeviceID: meshapp.DeviceID(a.id),
				EntityID: meshapp.EntityID(a.id, uid), Available: &avail, Time: now})
		}
	}
	b.mu.Unlock()
	for _, u := range updates {
		b.report(u)
	}
	b.log.Info("mesh agent reachable again", "peer", a.id.String(), "device_id", meshapp.DeviceID(a.id))
	b.resync(a, now)
}

// online counts the announced agents not marked down.
func (b *Border) online() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, a := range b.agents {
		if a.rec.Announced && !a.down {
			n++
		}
	}
	return n
}
