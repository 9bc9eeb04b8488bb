package gateway

import (
	"net/http"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
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

// listMeshNodes answers GET /api/v1/mesh/nodes with the paired mesh nodes,
// revoked ones included, in node id order.
func (g *Gateway) listMeshNodes(w http.ResponseWriter, r *http.Request, c caller) {
	nodes, err := g.auth.MeshNodes(r.Context(), c.token)
	g.reply(w, r, nodes, err)
}

// revokeMeshNode answers DELETE /api/v1/mesh/nodes/{id}: the node is cut
// off at once and its key may never pair again.
func (g *Gateway) revokeMeshNode(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := auth.ParseMeshNodeID("id", r.PathValue("id"))
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.auth.RevokeMeshNode(r.Context(), c.token, id.String()); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("mesh node revoked", "node", id.String(), "user", c.claims.Username)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
