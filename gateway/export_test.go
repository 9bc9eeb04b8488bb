package gateway

import (
	"net/http"
	"time"
)

// SetWebSocketLimits shortens g's WebSocket auth wait and send buffer. Call
// it before g serves.
func SetWebSocketLimits(g *Gateway, auth time.Duration, buffer int) {
	g.authWait, g.sendBuffer = auth, buffer
}

// Routes returns every route pattern g registered, so tests can demand a
// row for each.
func Routes(g *Gateway) []string { return append([]string(nil), g.routes...) }

// SetReverifyEvery shortens how often WebSocket sessions re-check their
// token. Call it before sessions start.
func SetReverifyEvery(d time.Duration) { reverifyEvery = d }

// ListEntitiesWithoutAuth serves GET /api/v1/entities without token
// verification, policy or scope: the baseline the authorization layer's
// cost is measured against.
func ListEntitiesWithoutAuth(g *Gateway) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { g.listEntities(w, r, caller{}) })
}
