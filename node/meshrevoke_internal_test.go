package node

import (
	"context"
	"testing"
	"time"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/mesh/route"
)

func TestParseMeshNodeRevoked(t *testing.T) {
	want := route.NodeID{0x3f, 0x2a, 0x91, 0x0c, 0x55, 0x17, 0xe8, 0x4d}
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"top level", `{"v":1,"type":"mesh_node_revoked","payload":{"node_id":"3f2a910c5517e84d"},"node_id":"3f2a910c5517e84d"}`, true},
		{"payload only", `{"v":1,"type":"mesh_node_revoked","payload":{"node_id":"3f2a910c5517e84d"}}`, true},
		{"no id", `{"v":1,"type":"mesh_node_revoked","payload":{}}`, false},
		{"bad id", `{"node_id":"3f2a910c"}`, false},
		{"not JSON", `node 3f2a910c5517e84d`, false},
		{"payload not an object", `{"payload":[1]}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := parseMeshNodeRevoked([]byte(tc.in))
			if tc.ok && (err != nil || id != want) {
				t.Fatalf("parsed %s, %v; want %s", id, err, want)
			}
			if !tc.ok && err == nil {
				t.Fatalf("parsed %s from %s", id, tc.in)
			}
		})
	}
}

// FuzzParseMeshNodeRevoked feeds events to their parser: it must not
// panic, and refuses with an error whatever it cannot read.
func FuzzParseMeshNodeRevoked(f *testing.F) {
	f.Add([]byte(`{"v":1,"payload":{"node_id":"3f2a910c5517e84d"},"node_id":"3f2a910c5517e84d"}`))
	f.Add([]byte(`{"payload":{"node_id":"3F2A910C5517E84D"}}`))
	f.Add([]byte(`{"node_id":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseMeshNodeRevoked(b); err == nil && len(b) < len(`{"node_id":"0000000000000000"}`) {
			t.Fatalf("an id from %q, too short to hold one", b)
		}
	})
}

// TestMeshRevocationsFollowAuthsEvent publishes auth's event on a real
// bus: the border is told the node id, and nothing of a malformed event.
func TestMeshRevocationsFollowAuthsEvent(t *testing.T) {
	srv := bustest.Server(t)
	conn, pub := bustest.Conn(t, srv), bustest.Conn(t, srv)
	r := meshRevocations{conn: conn, auth: auth.NewClient(conn), home: "h1", log: hmtest.Logger(t)}
	got := make(chan route.NodeID, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := r.Follow(ctx, func(id route.NodeID) { got <- id }); err != nil {
		t.Fatal(err)
	}
	publish := func(id string) {
		t.Helper()
		env, err := bus.NewEnvelope("h1", auth.ServiceName, auth.EventMeshNodeRevoked, map[string]string{"node_id": id})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(bus.EventSubject("h1", auth.EventMeshNodeRevoked), auth.MeshNodeRevokedEvent{Envelope: env, NodeID: id}); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	publish("not an id")
	publish("3f2a910c5517e84d")
	select {
	case id := <-got:
		if id.String() != "3f2a910c5517e84d" {
			t.Fatalf("told of %s", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not told of the revocation")
	}
	select {
	case id := <-got:
		t.Fatalf("told of %s, from an event without a node id", id)
	default:
	}
}
