package node

import (
	"context"
	"log/slog"
	"slices"
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

func TestCertHosts(t *testing.T) {
	machine := interfaceAddrs()
	for _, tt := range []struct {
		name, listen  string
		want, exclude []string
	}{
		{"LAN address", "192.0.2.10:8080", []string{"192.0.2.10", "hub.home.arpa", "10.1.2.3"}, []string{"0.0.0.0"}},
		{"host name", "Hub.Example:8080", []string{"hub.example", "hub.home.arpa"}, nil},
		{"every IPv4 interface", "0.0.0.0:8883", append([]string{"hub.home.arpa"}, machine...), []string{"0.0.0.0"}},
		{"every IPv6 interface", "[::]:8883", append([]string{"hub.home.arpa"}, machine...), []string{"::"}},
		{"every interface", ":8883", append([]string{"hub.home.arpa"}, machine...), []string{""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.Data, c.TLSHosts = t.TempDir(), "hub.home.arpa, 10.1.2.3"
			n, err := New(c, Options{}, hmtest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			got := n.certHosts(tt.listen)
			for _, h := range tt.want {
				if !slices.Contains(got, h) {
					t.Errorf("certHosts(%q) = %v, lacks %q", tt.listen, got, h)
				}
			}
			for _, h := range tt.exclude {
				if slices.Contains(got, h) {
					t.Errorf("certHosts(%q) = %v, holds %q", tt.listen, got, h)
				}
			}
		})
	}
}
