package border_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/border"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go/jetstream"
)

// fakeRevocations is auth's list of revoked nodes and its event.
type fakeRevocations struct {
	mu        sync.Mutex
	ids       []route.NodeID
	followers []func(route.NodeID)
	fail      error // what Revoked returns, when set
}

func (r *fakeRevocations) Revoked(context.Context) ([]route.NodeID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return nil, r.fail
	}
	return append([]route.NodeID(nil), r.ids...), nil
}

func (r *fakeRevocations) Follow(ctx context.Context, f func(route.NodeID)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.followers = append(r.followers, func(id route.NodeID) {
		if ctx.Err() == nil {
			f(id)
		}
	})
	return nil
}

// revoke revokes id, and tells the followers unless quiet (the event was
// lost, or nobody was listening).
func (r *fakeRevocations) revoke(id route.NodeID, quiet bool) {
	r.mu.Lock()
	r.ids = append(r.ids, id)
	followers := r.followers
	r.mu.Unlock()
	if !quiet {
		for _, f := range followers {
			f(id)
		}
	}
}

// record returns id's record in the agents bucket; false when there is
// none.
func (f *fixture) record(id route.NodeID) ([]byte, bool) {
	f.t.Helper()
	js, err := jetstream.New(f.conn.NATS())
	if err != nil {
		f.t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), border.AgentsBucket(home))
	if err != nil {
		f.t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), id.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return e.Value(), true
}

// recordExists reports whether the agents bucket holds id's record.
func (f *fixture) recordExists(id route.NodeID) bool {
	f.t.Helper()
	_, ok := f.record(id)
	return ok
}

// nextRevoked returns the next revoked message the border sent, skipping
// any other.
func (f *fixture) nextRevoked() (route.NodeID, *meshapp.Revoked) {
	f.t.Helper()
	for {
		s := f.next()
		if r, ok := s.msg.(*meshapp.Revoked); ok {
			return s.dst, r
		}
	}
}

func TestRevokedAgentIsCutOff(t *testing.T) {
	f := setup(t, border.Config{ResyncInterval: time.Millisecond})
	// A second border process of the home, which serves commands too.
	second := &fixture{t: t, srv: f.srv, conn: f.conn, reg: f.reg, ca: f.ca, dir: t.TempDir(), revs: f.revs}
	second.start(border.Config{})
	stolen, kept := f.agent(30), f.agent(31)
	f.deliver(stolen, plug(21, "off"))
	f.deliver(kept, plug(19, "on"))
	relay := meshapp.EntityID(stolen.ID, "relay")
	f.waitState(relay, "announced", func(s homemesh.State) bool { return s.Available })
	f.waitState(meshapp.EntityID(kept.ID, "relay"), "announced", func(s homemesh.State) bool { return s.Available })
	hmtest.WaitFor(t, 10*time.Second, "the second border to learn the agents", func() bool {
		_, ok1 := second.mesh.cfg.KeyOf(stolen.ID)
		_, ok2 := second.mesh.cfg.KeyOf(kept.ID)
		return ok1 && ok2
	})

	f.revs.revoke(stolen.ID, false)
	hmtest.WaitFor(t, 10*time.Second, "the hub's node to refuse the stolen agent", func() bool { return f.mesh.isRevoked(stolen.ID) })
	f.waitState(relay, "unavailable", func(s homemesh.State) bool { return !s.Available })
	f.waitState(meshapp.EntityID(stolen.ID, "temperature"), "unavailable", func(s homemesh.State) bool { return !s.Available })
	// The agent that is still in the home learns of it; the stolen one is
	// told nothing.
	dst, r := f.nextRevoked()
	if dst != kept.ID || len(r.Nodes) != 1 || r.Nodes[0] != stolen.ID {
		t.Errorf("sent %v to %s, want [%s] to %s", r.Nodes, dst, stolen.ID, kept.ID)
	}
	hmtest.WaitFor(t, 10*time.Second, "the stolen agent's record deleted", func() bool { return !f.recordExists(stolen.ID) })
	if _, ok := f.mesh.cfg.KeyOf(stolen.ID); ok {
		t.Error("the hub still knows the stolen agent's key")
	}
	// The other border forgets it through the bucket.
	hmtest.WaitFor(t, 10*time.Second, "the second border to forget the stolen agent", func() bool {
		_, ok := second.mesh.cfg.KeyOf(stolen.ID)
		return !ok
	})
	if !f.recordExists(kept.ID) {
		t.Error("the other agent's record went too")
	}

	err := f.command(relay, "turn_on", nil)
	if homemesh.ErrorKind(err) != homemesh.KindPermission {
		t.Errorf("command to a revoked agent: %v, want a permission error", err)
	}
	// What was already on its way from the stolen agent is dropped: no
	// resync, no state, no record.
	f.deliver(stolen, &meshapp.State{UniqueID: "relay", Reading: meshapp.Reading{Value: "on", Available: true}})
	f.deliver(stolen, plug(22, "on"))
	f.deliver(kept, &meshapp.State{UniqueID: "relay", Reading: meshapp.Reading{Value: "off", Available: true}})
	f.waitState(meshapp.EntityID(kept.ID, "relay"), "reported after", func(s homemesh.State) bool { return s.Value == "off" })
	if e, _ := f.entity(relay); e.State.Available || e.State.Value != "off" {
		t.Errorf("the stolen agent's relay: %+v", e.State)
	}
	if f.recordExists(stolen.ID) {
		t.Error("the stolen agent's record is back")
	}
	select {
	case s := <-f.mesh.sent:
		t.Errorf("sent %T to %s", s.msg, s.dst)
	default:
	}
}

func TestAgentLearnsRevocationsWhenItAnnounces(t *testing.T) {
	f := setup(t, border.Config{})
	gone := f.agent(32)
	f.revs.revoke(gone.ID, false)
	hmtest.WaitFor(t, 10*time.Second, "the revocation applied", func() bool { return f.mesh.isRevoked(gone.ID) })
	late := f.agent(33)
	f.deliver(late, plug(20, "off"))
	dst, r := f.nextRevoked()
	if dst != late.ID || len(r.Nodes) != 1 || r.Nodes[0] != gone.ID {
		t.Errorf("sent %v to %s, want [%s] to %s", r.Nodes, dst, gone.ID, late.ID)
	}
}

// TestRestartedBorderAppliesRevocations revokes an agent while no border
// runs: the next one refuses it from its start and deletes its record.
func TestRestartedBorderAppliesRevocations(t *testing.T) {
	f := setup(t, border.Config{})
	a := f.agent(34)
	f.deliver(a, plug(21, "off"))
	relay := meshapp.EntityID(a.ID, "relay")
	f.waitState(relay, "announced", func(s homemesh.State) bool { return s.Available })
	// The record with the entities is stored after their states are
	// reported.
	hmtest.WaitFor(t, 10*time.Second, "the agent's entities stored", func() bool {
		rec, ok := f.record(a.ID)
		return ok && strings.Contains(string(rec), `"relay"`)
	})
	f.stop()
	f.border = nil

	f.revs.revoke(a.ID, true)
	f.start(border.Config{})
	if !f.mesh.cfg.Verifier.Revoked(a.ID) {
		t.Error("the hub's node started without the revocation")
	}
	if _, ok := f.mesh.cfg.KeyOf(a.ID); ok {
		t.Error("the restarted hub knows the revoked agent's key")
	}
	hmtest.WaitFor(t, 10*time.Second, "the revoked agent's record deleted", func() bool { return !f.recordExists(a.ID) })
	f.waitState(relay, "unavailable", func(s homemesh.State) bool { return !s.Available })
}

func TestBorderNeedsTheRevocations(t *testing.T) {
	f := setup(t, border.Config{})
	f.stop()
	f.border = nil
	f.revs.fail = homemesh.Errorf(homemesh.KindPermission, "not allowed")
	b, err := border.New(border.Config{Home: home, DataDir: f.dir, Listen: "127.0.0.1:0"}, border.Deps{
		Bus: f.conn, Registry: f.reg, HubCert: f.hubCert, Revocations: f.revs, Log: hmtest.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Run(ctx); homemesh.ErrorKind(err) != homemesh.KindPermission {
		t.Fatalf("Run without the revoked nodes: %v, want the error from auth", err)
	}
}
