package gateway

import (
	"net/http"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
)

// meshTopologySubject is the mesh border's topology verb (mesh/border's
// VerbTopology). The gateway forwards its answer as it comes, so it needs
// none of the border's types.
var meshTopologySubject = bus.ServiceSubject("border", "topology")

// meshTopology answers GET /api/v1/mesh/topology with the border's view
// of the mesh. Every mesh node is a device (its id names it), so the
// topology is for callers who may see every device: one whose scope is
// limited to some rooms or kinds is refused.
func (g *Gateway) meshTopology(w http.ResponseWriter, r *http.Request, c caller) {
	if !c.claims.Scope.IsZero() {
		writeError(w, r, g.log, homemesh.Errorf(homemesh.KindPermission, "the mesh topology shows every device; your access is limited to some of them"))
		return
	}
	var raw natsbus.EncodedJSON
	req := struct {
		Home string `json:"home"`
	}{g.cfg.Home}
	if err := g.bus.Request(r.Context(), meshTopologySubject, req, &raw); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSONBody(w, http.StatusOK, raw)
}
