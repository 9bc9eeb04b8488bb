// Package gateway is the only public HTTP surface of homemesh: the REST API
// under /api/v1, the WebSocket event stream, the OpenAPI document and the
// operational endpoints (/healthz, /readyz, /metrics), all on one listener.
//
// The gateway holds no state that another instance needs; it talks to the
// auth, registry and history services and to devices only over the bus, so
// any number of gateways can serve one home.
//
// Guarantees:
//   - Deny by default: every /api/v1 route except onboard, auth/login,
//     auth/refresh and openapi.json requires a valid access token for the
//     gateway's home, checked before anything else happens.
//   - Request bodies are limited to MaxBody bytes and decoded strictly: an
//     unknown field, a wrong type or trailing data is a 400 naming the field.
//   - Every error is {"error":{"kind","message","field"}} with the status
//     that statusFor derives from its kind; that function holds the one
//     kind→status table of homemesh. Internal causes are logged, never sent.
//   - Secrets (Authorization headers, passwords, tokens) are never logged.
//   - openapi.json, embedded in the binary, documents every route; a test
//     keeps it and the routing table identical.
//   - Run drains in-flight requests and closes WebSockets with "going away"
//     before it returns.
package gateway
