package gateway

import "time"

// SetWebSocketLimits shortens g's WebSocket auth wait and send buffer. Call
// it before g serves.
func SetWebSocketLimits(g *Gateway, auth time.Duration, buffer int) {
	g.authWait, g.sendBuffer = auth, buffer
}
