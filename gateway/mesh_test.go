package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
)

// testTopology is what a mesh border answers: a hub and one agent two hops
// away, whose link with the relay between them the relay reported.
const testTopology = `{"hub":"00000000000000aa","address":"127.0.0.1:4790",
"nodes":[{"id":"00000000000000aa","role":"hub","reachable":true},
 {"id":"00000000000000bb","role":"router","reachable":true},
 {"id":"00000000000000cc","role":"router","device_id":"mesh-00000000000000cc","reachable":true}],
"links":[{"from":"00000000000000aa","to":"00000000000000bb","address":"127.0.0.1:4791","cost":256,"rx_cost":256,"tx_cost":256,"quality":1,"reported_by":"hub"},
 {"from":"00000000000000bb","to":"00000000000000cc","cost":320,"rx_cost":300,"tx_cost":340,"quality":0.8,"reported_by":"agent","reported_at":"2026-11-29T20:15:00Z"}],
"routes":[{"destination":"00000000000000bb","next_hop":"00000000000000bb","metric":256,"seqno":3,"feasible":true},
 {"destination":"00000000000000cc","next_hop":"00000000000000bb","metric":512,"seqno":9,"feasible":true}],
"counters":{"packets_in":10,"packets_out":12,"bytes_in":900,"bytes_out":1000,"dropped":{},"rejected":{"replayed":1},"e2e_handshakes":2}}`

// serveTopology answers the border's topology verb with topo, for the
// home of the gateway under test only.
func serveTopology(t testing.TB, conn *natsbus.Conn, topo string) *nats.Subscription {
	t.Helper()
	sub, err := conn.Handle(bus.ServiceSubject("border", "topology"), "border", func(_ context.Context, m *nats.Msg) (any, error) {
		var req struct {
			Home string `json:"home"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil || req.Home != testHome {
			t.Errorf("topology request %s", m.Data)
		}
		return natsbus.EncodedJSON(topo), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

type topologyBody struct {
	Hub   string `json:"hub"`
	Nodes []struct {
		ID       string `json:"id"`
		DeviceID string `json:"device_id"`
	} `json:"nodes"`
	Links  []map[string]any `json:"links"`
	Routes []struct {
		Destination, NextHop string
		Metric               int
	} `json:"routes"`
}

func TestMeshTopology(t *testing.T) {
	h := newHome(t)
	got := decode[topologyBody](t, h.do(t, "GET", "/api/v1/mesh/topology", h.tokens[pOwner], nil), http.StatusOK)
	if got.Hub != "00000000000000aa" || len(got.Nodes) != 3 || got.Nodes[2].DeviceID != "mesh-00000000000000cc" || len(got.Links) != 2 || len(got.Routes) != 2 {
		t.Errorf("owner's topology = %+v", got)
	}
	// Every node is a device: a user limited to some devices is refused.
	h.do(t, "GET", "/api/v1/mesh/topology", h.tokens[pScopedGst], nil).wantError(t, http.StatusForbidden, "permission", "")
}

func TestMeshTopologyWithoutBorder(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t)
	e.do(t, "GET", "/api/v1/mesh/topology", tok.AccessToken, nil).wantError(t, http.StatusServiceUnavailable, "unavailable", "")
}
