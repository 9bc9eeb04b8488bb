package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
)

// meshTopologySubject is the mesh border's topology verb (mesh/border's
// VerbTopology). The gateway forwards its answer as it comes, so it needs
// none of the border's types.
var meshTopologySubject = bus.ServiceSubject("border", "topology")

// meshTopology answers GET /api/v1/mesh/topology with the border's view
// of the mesh. Which mesh node is which device is device information: a
// caller whose scope is limited gets the mesh without device ids.
func (g *Gateway) meshTopology(w http.ResponseWriter, r *http.Request, c caller) {
	var raw natsbus.EncodedJSON
	req := struct {
		Home string `json:"home"`
	}{g.cfg.Home}
	if err := g.bus.Request(r.Context(), meshTopologySubject, req, &raw); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if c.claims.Scope.IsZero() {
		writeJSONBody(w, http.StatusOK, raw)
		return
	}
	var topo map[string]any
	if err := json.Unmarshal(raw, &topo); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if nodes, ok := topo["nodes"].([]any); ok {
		for _, n := range nodes {
			if m, ok := n.(map[string]any); ok {
				delete(m, "device_id")
			}
		}
	}
	writeJSON(w, http.StatusOK, topo)
}
