package config

import (
	"net/url"
	"strings"
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
		{"rp id with a port", "webauthn_rp_id: localhost:8080\n", "webauthn-rp-id"},
		{"rp id an address", "webauthn_rp_id: 127.0.0.1\n", "webauthn-rp-id"},
		{"rp id upper case", "webauthn_rp_id: Hub.Local\n", "webauthn-rp-id"},
		{"origin of another host", "webauthn_origins: [https://evil.example]\n", "webauthn-origins"},
		{"origin an address", "webauthn_origins: [http://127.0.0.1:8080]\n", "webauthn-origins"},
		{"origin with a path", "webauthn_origins: [https://localhost/app]\n", "webauthn-origins"},
		{"plain http off localhost", "webauthn_rp_id: hub.local\nwebauthn_origins: [http://hub.local:8080]\n", "webauthn-origins"},
		{"origin scheme", "webauthn_origins: [ftp://localhost]\n", "webauthn-origins"},
		{"origin port", "webauthn_origins: [https://localhost:99999]\n", "webauthn-origins"},
		{"negative message rate", "mqtt_rate_messages: \"-1\"\n", "mqtt-rate-messages"},
		{"byte rate unit", "mqtt_rate_bytes: 5GB\n", "mqtt-rate-bytes"},
		{"connect rate text", "mqtt_rate_connects: lots\n", "mqtt-rate-connects"},
		{"credential and token", "nats: nats://x:4222\nnats_credential: edge.cred\nnats_token: t\n", "nats-credential"},
		{"nats cert without key", "nats_listen: 127.0.0.1:4222\nnats_tls_cert: n.pem\n", "nats-tls-key"},
		{"nats cert without listener", "nats_tls_cert: n.pem\nnats_tls_key: k.pem\n", "nats-tls-cert"},
		{"listener and token", "nats_listen: 127.0.0.1:4222\nnats_token: t\n", "nats-token"},
		{"history store scheme", "history_store: mysql://h/db\n", "history-store"},
		{"history sqlite without path", "history_store: \"sqlite:\"\n", "history-store"},
		{"history store and shards", "history_store: postgres://h/db\nhistory_shards: [a=postgres://h/a]\n", "history-shards"},
		{"history shard without name", "history_shards: [postgres://h/a]\n", "history-shards[0]"},
		{"history shard named twice", "history_shards: [a=postgres://h/a, a=postgres://h/b]\n", "history-shards[1].name"},
		{"history retention tier", "history_retention: [raw=10d, hot=1d]\n", "history-retention"},
		{"history retention duration", "history_retention: [sensor.raw=soon]\n", "history-retention"},
		{"mesh address", "mesh: 4790\n", "mesh"},
		{"mesh peer without port", "mesh_peers: [10.0.0.2]\n", "mesh-peers"},
		{"mesh peer port 0", "mesh_peers: [\"10.0.0.2:0\"]\n", "mesh-peers"},
		{"mesh advertised without host", "mesh_advertise: [\":4790\"]\n", "mesh-advertise"},
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

func TestWebAuthnSettings(t *testing.T) {
	c := Default()
	if err := c.Decode([]byte("webauthn_rp_id: hub.local\nwebauthn_origins: [https://hub.local, https://app.hub.local:8443]\n"), "hub.yaml"); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"https://hub.local", "https://app.hub.local:8443"}, c.WebAuthnOriginsFor("127.0.0.1:8080")); diff != "" {
		t.Errorf("configured origins (-want +got):\n%s", diff)
	}
	env := map[string]string{"HOMEMESH_WEBAUTHN_ORIGINS": " https://hub.local:9443 ,, https://x.hub.local "}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"https://hub.local:9443", "https://x.hub.local"}, c.WebAuthnOrigins); diff != "" {
		t.Errorf("origins from the environment (-want +got):\n%s", diff)
	}
	for _, f := range c.Fields() {
		if f.Name == "webauthn-origins" && f.Value() != "https://hub.local:9443,https://x.hub.local" {
			t.Errorf("Value = %q", f.Value())
		}
	}

	derived := []struct {
		rpID, http string
		want       []string
	}{
		{"localhost", "127.0.0.1:8080", []string{"https://localhost:8080", "http://localhost:8080"}},
		{"localhost", "[::1]:443", []string{"https://localhost", "http://localhost:443"}},
		{"hub.local", "0.0.0.0:8443", []string{"https://hub.local:8443"}},
		{"localhost", "127.0.0.1:0", nil},
		{"localhost", "nonsense", nil},
	}
	for _, tt := range derived {
		c := Default()
		c.WebAuthnRPID = tt.rpID
		if diff := cmp.Diff(tt.want, c.WebAuthnOriginsFor(tt.http)); diff != "" {
			t.Errorf("%s on %s (-want +got):\n%s", tt.rpID, tt.http, diff)
		}
		for _, o := range c.WebAuthnOriginsFor(tt.http) {
			if err := checkOrigin(tt.rpID, o); err != nil {
				t.Errorf("derived origin %q is invalid: %v", o, err)
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("http: 127.0.0.1:8080\n"))
	f.Add([]byte(`{"mqtt": ":1883", "demo": true}`))
	f.Add([]byte("webauthn_rp_id: hub.local\nwebauthn_origins: [https://hub.local:8443]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := c.Decode(data, "fuzz"); err != nil {
			return
		}
		_ = c.Validate()
	})
}

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in    string
		sizes bool
		want  float64
	}{
		{"", false, 0}, {"0", false, 0}, {"200", false, 200}, {" 2.5 ", false, 2.5},
		{"512KiB", true, 512 << 10}, {"1 MiB", true, 1 << 20}, {"100B", true, 100}, {"100", true, 100},
	} {
		got, err := ParseRate("r", tt.in, tt.sizes)
		if err != nil || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"-1", "NaN", "Inf", "0x10", "1e99", "5KiB", "KiB", "1_000"} {
		if _, err := ParseRate("r", in, false); err == nil {
			t.Errorf("ParseRate(%q) accepted", in)
		}
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"200", "512KiB", "1 MiB", "0", "", "-1", "NaN", "1e308", "0x1p3", "3B"} {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, sizes bool) {
		v, err := ParseRate("r", s, sizes)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "r" {
				t.Fatalf("error %v does not name the field", err)
			}
			return
		}
		if v < 0 || v > maxRate || v != v {
			t.Fatalf("ParseRate(%q) = %v", s, v)
		}
	})
}

// FuzzWebAuthnSettings feeds arbitrary relying party IDs and origin lists
// through the flag layer: whatever Validate accepts is an origin a browser
// could use a passkey of that RP ID from.
func FuzzWebAuthnSettings(f *testing.F) {
	f.Add("localhost", "http://localhost:8080,https://localhost:8443")
	f.Add("hub.local", "https://hub.local, https://a.hub.local:1")
	f.Add("hub.local", "http://hub.local")
	f.Add("127.0.0.1", "https://127.0.0.1")
	f.Add("x", "https://evilx,https://x/")
	f.Fuzz(func(t *testing.T, rpID, origins string) {
		c := Default()
		for _, fl := range c.Fields() {
			switch fl.Name {
			case "webauthn-rp-id":
				_ = fl.Set(rpID)
			case "webauthn-origins":
				_ = fl.Set(origins)
			}
		}
		if err := c.Validate(); err != nil {
			if homemesh.ErrorField(err) != "webauthn-rp-id" && homemesh.ErrorField(err) != "webauthn-origins" {
				t.Fatalf("error names %q: %v", homemesh.ErrorField(err), err)
			}
			return
		}
		for _, o := range c.WebAuthnOrigins {
			u, err := url.Parse(o)
			if err != nil {
				t.Fatalf("accepted %q: %v", o, err)
			}
			host := u.Hostname()
			if host != c.WebAuthnRPID && !strings.HasSuffix(host, "."+c.WebAuthnRPID) {
				t.Fatalf("accepted %q for RP ID %q", o, c.WebAuthnRPID)
			}
			if u.Scheme != "https" && !(u.Scheme == "http" && (host == "localhost" || strings.HasSuffix(host, ".localhost"))) {
				t.Fatalf("accepted %q", o)
			}
		}
	})
}
