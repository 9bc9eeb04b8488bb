package config

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
)

func TestLayers(t *testing.T) {
	c := Default()
	if err := c.Decode([]byte("http: 127.0.0.1:9000\nmqtt: 127.0.0.1:1990\ndemo: true\n"), "hub.yaml"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOMEMESH_MQTT": "127.0.0.1:1991", "HOMEMESH_LOG_LEVEL": "debug"}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.HTTP != "127.0.0.1:9000" || c.MQTT != "127.0.0.1:1991" || !c.Demo || c.LogLevel != "debug" || c.MQTTS != ":8883" {
		t.Fatalf("layers not applied in order: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, file, field string
	}{
		{"unknown key", "htttp: x\n", "hub.yaml"},
		{"bad address", "http: nonsense\n", "http"},
		{"bad port", "mqtt: 127.0.0.1:99999\n", "mqtt"},
		{"bad home", "home: Not A Home\n", "home"},
		{"bad level", "log_level: loud\n", "log-level"},
		{"token lifetime not a duration", "access_token_ttl: soon\n", "access-token-ttl"},
		{"token lifetime too long", "access_token_ttl: 48h\n", "access-token-ttl"},
		{"both nats", "nats: nats://x:4222\nnats_listen: 127.0.0.1:4223\n", "nats-listen"},
		{"wrong type", "demo: [1]\n", "hub.yaml"},
		{"cert without key", "tls_cert: hub.crt\n", "tls-key"},
		{"key without cert", "tls_key: hub.key\n", "tls-cert"},
		{"insecure and https", "https: true\nhttp_insecure: true\n", "http-insecure"},
		{"insecure and own cert", "tls_cert: a\ntls_key: b\nhttp_insecure: true\n", "http-insecure"},
		{"bad tls host", "tls_hosts: hub.local, bad_name\n", "tls-hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.Decode([]byte(tt.file), "hub.yaml")
			if err == nil {
				err = c.Validate()
			}
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Fatalf("got %v (field %q), want invalid %q", err, homemesh.ErrorField(err), tt.field)
			}
		})
	}
}

// The gateway serves HTTPS everywhere but on loopback addresses, unless
// told otherwise.
func TestHTTPTLS(t *testing.T) {
	tests := []struct {
		name, listen    string
		https, insecure bool
		cert            string
		want            bool
	}{
		{"IPv4 loopback", "127.0.0.1:8080", false, false, "", false},
		{"other IPv4 loopback", "127.0.0.53:8080", false, false, "", false},
		{"IPv6 loopback", "[::1]:8080", false, false, "", false},
		{"localhost", "localhost:8080", false, false, "", false},
		{"localhost upper case", "LOCALHOST:8080", false, false, "", false},
		{"name under localhost", "hub.localhost:8080", false, false, "", false},
		{"all IPv4 interfaces", "0.0.0.0:8080", false, false, "", true},
		{"all IPv6 interfaces", "[::]:8080", false, false, "", true},
		{"every interface", ":8080", false, false, "", true},
		{"LAN IPv4", "192.168.1.10:8080", false, false, "", true},
		{"LAN IPv6", "[fd00::10]:8080", false, false, "", true},
		{"host name", "hub.home.arpa:8080", false, false, "", true},
		{"name ending in localhost", "notlocalhost:8080", false, false, "", true},
		{"loopback forced", "127.0.0.1:0", true, false, "", true},
		{"loopback with own certificate", "127.0.0.1:0", false, false, "hub.crt", true},
		{"LAN opted out", "192.168.1.10:8080", false, true, "", false},
		{"all interfaces opted out", ":8080", false, true, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.HTTP, c.HTTPS, c.HTTPInsecure, c.TLSCert = tt.listen, tt.https, tt.insecure, tt.cert
			if tt.cert != "" {
				c.TLSKey = "hub.key"
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			if got := c.HTTPTLS(); got != tt.want {
				t.Fatalf("HTTPTLS() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestExtraTLSHosts(t *testing.T) {
	c := Default()
	c.TLSHosts = " hub.home.arpa,,192.168.1.10 , fd00::1"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []string{"hub.home.arpa", "192.168.1.10", "fd00::1"}
	if diff := cmp.Diff(want, c.ExtraTLSHosts()); diff != "" {
		t.Fatalf("ExtraTLSHosts (-want +got):\n%s", diff)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("http: 127.0.0.1:8080\n"))
	f.Add([]byte(`{"mqtt": ":1883", "demo": true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := c.Decode(data, "fuzz"); err != nil {
			return
		}
		_ = c.Validate()
	})
}
