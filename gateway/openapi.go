package gateway

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3.1 document of the gateway: the single source of
// truth for its documentation. A test fails when it and the routing table
// disagree.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPI)
}
