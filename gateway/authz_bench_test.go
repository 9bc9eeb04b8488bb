package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/homemesh/homemesh/gateway"
)

// BenchmarkListEntities measures authorised GET /api/v1/entities requests
// on the seeded home: without the authorization layer (no token, no
// policy, no scope), as the owner (token and policy), and as a scoped guest
// (token, policy and scope filtering, which reads the devices' rooms too).
func BenchmarkListEntities(b *testing.B) {
	h := newHome(b)
	baseline := httptest.NewServer(gateway.ListEntitiesWithoutAuth(h.gw))
	b.Cleanup(baseline.Close)
	cases := []struct {
		name, url, token string
	}{
		{"without auth", baseline.URL + "/api/v1/entities", ""},
		{"owner", h.srv.URL + "/api/v1/entities", h.tokens[pOwner]},
		{"scoped guest", h.srv.URL + "/api/v1/entities", h.tokens[pScopedGst]},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			client := h.srv.Client()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				req, _ := http.NewRequest("GET", c.url, nil)
				if c.token != "" {
					req.Header.Set("Authorization", "Bearer "+c.token)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
}
