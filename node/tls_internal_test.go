package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/internal/hmtest"
)

// The gateway's choice for addresses tests cannot listen on: only the
// configuration is consulted, nothing is bound.
func TestGatewayTLSOnNonLoopbackAddresses(t *testing.T) {
	for _, tt := range []struct {
		name     string
		listen   string
		insecure bool
		wantWarn bool
	}{
		{"LAN address opted out", "192.0.2.10:8080", true, true},
		{"every interface opted out", ":8080", true, true},
		{"loopback", "127.0.0.1:8080", false, false},
		{"loopback with the flag", "[::1]:8080", true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			logs := &hmtest.LogBuffer{}
			c := config.Default()
			c.Data, c.HTTP, c.HTTPInsecure = t.TempDir(), tt.listen, tt.insecure
			n, err := New(c, Options{}, slog.New(slog.NewJSONHandler(logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := n.gatewayTLS(context.Background(), nil)
			if err != nil || cfg != nil {
				t.Fatalf("gatewayTLS = %v, %v; want plain HTTP", cfg, err)
			}
			warned := strings.Contains(logs.String(), `"level":"WARN"`) && strings.Contains(logs.String(), "plain HTTP")
			if warned != tt.wantWarn {
				t.Fatalf("warned %v, want %v; logs: %s", warned, tt.wantWarn, logs.String())
			}
		})
	}
}
