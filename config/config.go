// Package config is homemesh's one typed configuration tree. Every setting
// has a default, may be set in a YAML (or JSON) file, overridden by a
// HOMEMESH_* environment variable, and overridden again by a command-line
// flag: flags > environment > file > defaults. The field comments below are
// the reference documentation of every setting.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"go.yaml.in/yaml/v3"
)

// Config is the whole configuration of a homemesh process.
type Config struct {
	// Data is the directory holding the home's identity, keys, JetStream
	// files and the onboarding code. Created on first start (mode 0700).
	Data string `yaml:"data"`
	// Home is the ID of the home this process serves. The hub creates one
	// on first start and remembers it in DATA/home.json; split-mode
	// processes that do not share that directory must be told.
	Home string `yaml:"home"`
	// HTTP is the address of the API gateway (REST, WebSocket, web app).
	// A non-loopback address is served over HTTPS (TLS 1.3) unless
	// HTTPInsecure says otherwise; see HTTPTLS.
	HTTP string `yaml:"http"`
	// HTTPS serves the API over TLS on a loopback address too, where plain
	// HTTP is the default.
	HTTPS bool `yaml:"https"`
	// HTTPInsecure serves plain HTTP on a non-loopback address, for a hub
	// behind a TLS-terminating proxy. Passwords and tokens then cross that
	// network in the clear; the hub logs a warning at start.
	HTTPInsecure bool `yaml:"http_insecure"`
	// TLSCert and TLSKey are PEM files holding the user's own certificate
	// chain and its private key for HTTPS. The files are read again when
	// they change, so a renewed certificate needs no restart. Empty uses a
	// certificate from the home CA.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// TLSHosts lists extra names (DNS names or IP addresses, separated by
	// commas) that the home CA's HTTPS and MQTTS certificates carry, besides
	// the listen address, the machine's host name and localhost: the names
	// by which clients reach the hub, e.g. "hub.home.arpa,192.168.1.10".
	TLSHosts string `yaml:"tls_hosts"`
	// MQTT is the address of the plain MQTT listener; "" disables it.
	MQTT string `yaml:"mqtt"`
	// MQTTS is the address of the MQTT-over-TLS listener, whose certificate
	// the home CA issues; "" disables it.
	MQTTS string `yaml:"mqtts"`
	// Mesh is the UDP address of the hub's mesh node, through which mesh
	// agents (homemesh agent) reach the home's services; "" disables the
	// mesh border. The mesh is encrypted and admits only nodes certified
	// by the home CA, so it listens on every interface by default, as MQTT
	// does.
	Mesh string `yaml:"mesh"`
	// MeshPeers lists neighbour addresses (host:port) the hub links with
	// itself, for agents that cannot find it by multicast; comma-separated
	// in the flag and the environment.
	MeshPeers []string `yaml:"mesh_peers"`
	// MeshMulticast names the network interfaces on which the hub finds
	// neighbours by UDP multicast beacons (comma-separated); empty: none.
	MeshMulticast []string `yaml:"mesh_multicast"`
	// MeshAdvertise lists the addresses (host:port) agents reach the hub
	// on, which pairing hands them; empty: Mesh, or with an unspecified
	// host, every address of the machine's interfaces.
	MeshAdvertise []string `yaml:"mesh_advertise"`
	// NATS is the URL of an external NATS server or cluster
	// (nats://host:4222, comma-separated for several). Empty runs an
	// embedded server inside the process.
	NATS string `yaml:"nats"`
	// NATSListen makes the embedded NATS server accept other processes on
	// this address, so split-mode services can join the hub. Empty keeps it
	// in-process only.
	NATSListen string `yaml:"nats_listen"`
	// NATSToken is required from processes connecting to NATSListen. It is
	// a secret: prefer the environment variable over the file.
	NATSToken string `yaml:"nats_token"`
	// NATSCredential lists the bus credential files (comma-separated) of
	// the services this process hosts, made by `homemesh nats-credential
	// SERVICE`. Each service connects to NATS as itself and may use only
	// its own subjects. A process that hosts auth derives every
	// credential from the secret key and needs none.
	NATSCredential string `yaml:"nats_credential"`
	// NATSCA is a PEM file of the authorities that may certify the NATS
	// server (the home CA: DATA/ca.crt of the hub). When set, connections
	// to --nats use TLS and verify the server's certificate against it.
	NATSCA string `yaml:"nats_ca"`
	// NATSTLSCert and NATSTLSKey are PEM files of the certificate and key
	// the embedded server's --nats-listen serves. Empty: a certificate
	// from the home CA. Either way the listener accepts TLS only.
	NATSTLSCert string `yaml:"nats_tls_cert"`
	NATSTLSKey  string `yaml:"nats_tls_key"`
	// Ops is the address of /healthz, /readyz and /metrics for processes
	// that run no gateway. Empty disables it.
	Ops string `yaml:"ops"`
	// Demo starts a handful of simulated devices inside the hub.
	Demo bool `yaml:"demo"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// SecretKeyFile holds the 32-byte key that encrypts secrets at rest.
	// Empty uses DATA/secret.key, created on first start. Every auth
	// process of one home must use the same key.
	SecretKeyFile string `yaml:"secret_key_file"`
	// PreviousSecretKeyFile holds the key that sealed secrets before the
	// current one, while a rotation is under way: records sealed with
	// either key open, and everything written is sealed with the current
	// key. HOMEMESH_PREVIOUS_SECRET_KEY may carry the key itself instead.
	PreviousSecretKeyFile string `yaml:"previous_secret_key_file"`
	// AccessTokenTTL is how long an access token lives, as a Go duration
	// ("15m"), from 1s to 24h. Shorter limits what a stolen token is worth;
	// apps refresh it silently.
	AccessTokenTTL string `yaml:"access_token_ttl"`
	// WebAuthnRPID is the relying party ID passkeys are bound to: the domain
	// people reach the API by, without scheme or port. A passkey works only
	// on origins whose host is this domain or one of its subdomains, and
	// changing it orphans every passkey registered before.
	WebAuthnRPID string `yaml:"webauthn_rp_id"`
	// WebAuthnOrigins are the origins (scheme://host[:port]) from which
	// browsers may register and use passkeys; the flag and the environment
	// variable take them comma-separated. Empty derives them from HTTP's
	// port: https://<rp id>:<port>, and also http://<rp id>:<port> when the
	// RP ID is localhost, the only host browsers allow passkeys on without
	// TLS. An IP address is never an origin passkeys work on.
	WebAuthnOrigins []string `yaml:"webauthn_origins"`
	// MQTTRateMessages is how many messages per second each MQTT connection
	// may publish, with bursts of 20 seconds' worth; more are dropped, and a
	// connection that keeps flooding is dropped too. "0" disables the limit.
	MQTTRateMessages string `yaml:"mqtt_rate_messages"`
	// MQTTRateBytes is how many bytes (topic and payload) per second each
	// MQTT connection may publish, with bursts of 20 seconds' worth: a
	// number with an optional KiB or MiB suffix ("512KiB"). "0" disables it.
	MQTTRateBytes string `yaml:"mqtt_rate_bytes"`
	// MQTTRateConnects is how many MQTT connection attempts per second one
	// source address may make, with bursts of 20 seconds' worth; loopback
	// addresses are exempt. "0" disables the limit. Each device (credential
	// and client ID) may also reconnect at most 10 times in a row, then once
	// a second, whatever this says.
	MQTTRateConnects string `yaml:"mqtt_rate_connects"`
	// HistoryStore is where the history service keeps states, telemetry
	// and events. Empty: SQLite in DATA/history.db. "sqlite:PATH": SQLite
	// at PATH (one process writes a SQLite history at a time). A
	// postgres:// or postgresql:// URL: that PostgreSQL database, shared by
	// any number of history processes. A URL may carry a password: prefer
	// HOMEMESH_HISTORY_STORE to a file or a flag; homemesh never prints or
	// logs it.
	HistoryStore string `yaml:"history_store"`
	// HistoryShards spreads homes over several PostgreSQL databases, in
	// place of HistoryStore: entries name=DSN ("eu1=postgres://…"),
	// comma-separated in the flag and the environment (a DSN holding a
	// comma belongs in the file). A home stays in the shard that first
	// stored it; the first shard holds that directory, so it stays first,
	// and a shard added later only takes new homes.
	HistoryShards []string `yaml:"history_shards"`
	// HistoryRetention says how long history keeps each tier, entries
	// tier=duration or kind.tier=duration: tiers raw, 5m, 1h and events,
	// kinds the entity kinds, durations a whole number of s, m, h or d, or
	// "forever". Unnamed tiers keep their defaults: raw points 10 days,
	// 5-minute statistics and events 30 days, hourly statistics forever.
	// Example: "raw=7d,sensor.raw=30d,events=90d".
	HistoryRetention []string `yaml:"history_retention"`
}

// Default returns the defaults documented in DESIGN §9.
func Default() Config {
	return Config{
		Data:     "./homemesh-data",
		HTTP:     "127.0.0.1:8080",
		MQTT:     ":1883",
		MQTTS:    ":8883",
		Mesh:     ":4790",
		LogLevel: "info",

		AccessTokenTTL: "15m",
		WebAuthnRPID:   "localhost",

		MQTTRateMessages: "200",
		MQTTRateBytes:    "512KiB",
		MQTTRateConnects: "50",
	}
}

// Field describes one setting for the flag and environment layers.
type Field struct {
	Name  string // the flag name and the YAML key with '_' as '-'
	Env   string // HOMEMESH_<NAME>
	Usage string
	str   *string
	bool  *bool
	list  *[]string
}

// Fields lists every setting of c, bound to c's fields.
func (c *Config) Fields() []Field {
	f := func(name, usage string, p *string) Field {
		return Field{Name: name, Env: envName(name), Usage: usage, str: p}
	}
	return []Field{
		f("data", "data directory", &c.Data),
		f("home", "home ID (split mode)", &c.Home),
		f("http", "API gateway listen address (HTTPS unless loopback)", &c.HTTP),
		{Name: "https", Env: envName("https"), Usage: "serve HTTPS on a loopback --http address too", bool: &c.HTTPS},
		{Name: "http-insecure", Env: envName("http-insecure"), Usage: "serve plain HTTP on a non-loopback --http address", bool: &c.HTTPInsecure},
		f("tls-cert", "PEM certificate chain for HTTPS (default: issued by the home CA)", &c.TLSCert),
		f("tls-key", "PEM private key of --tls-cert", &c.TLSKey),
		f("tls-hosts", "extra comma-separated names for the home CA's server certificates", &c.TLSHosts),
		f("mqtt", "MQTT listen address (\"\" disables)", &c.MQTT),
		f("mqtts", "MQTTS listen address (\"\" disables)", &c.MQTTS),
		f("mesh", "UDP listen address of the hub's mesh node (\"\" disables the mesh border)", &c.Mesh),
		{Name: "mesh-peers", Env: envName("mesh-peers"), Usage: "comma-separated neighbour addresses (host:port) the hub's mesh node links with", list: &c.MeshPeers},
		{Name: "mesh-multicast", Env: envName("mesh-multicast"), Usage: "comma-separated interfaces on which the mesh node finds neighbours by multicast", list: &c.MeshMulticast},
		{Name: "mesh-advertise", Env: envName("mesh-advertise"), Usage: "comma-separated addresses (host:port) agents reach the hub's mesh node on (default: --mesh, or the interfaces' addresses)", list: &c.MeshAdvertise},
		f("nats", "external NATS URL (empty: embedded)", &c.NATS),
		f("nats-listen", "let other processes reach the embedded NATS on this address", &c.NATSListen),
		f("nats-token", "token required on --nats-listen and sent to --nats", &c.NATSToken),
		f("nats-credential", "bus credential files of the hosted services, comma-separated (homemesh nats-credential)", &c.NATSCredential),
		f("nats-ca", "CA certificate (PEM) that the NATS server's TLS certificate must chain to", &c.NATSCA),
		f("nats-tls-cert", "certificate (PEM) for --nats-listen (default: from the home CA)", &c.NATSTLSCert),
		f("nats-tls-key", "key (PEM) of --nats-tls-cert", &c.NATSTLSKey),
		f("ops", "health and metrics listen address for processes without a gateway", &c.Ops),
		{Name: "demo", Env: envName("demo"), Usage: "start simulated demo devices", bool: &c.Demo},
		f("log-level", "debug, info, warn or error", &c.LogLevel),
		f("secret-key-file", "key encrypting secrets at rest", &c.SecretKeyFile),
		f("previous-secret-key-file", "the key secrets were sealed with before --secret-key-file (during a rotation)", &c.PreviousSecretKeyFile),
		f("access-token-ttl", "access token lifetime (1s to 24h)", &c.AccessTokenTTL),
		f("webauthn-rp-id", "relying party ID (domain) passkeys are bound to", &c.WebAuthnRPID),
		{Name: "webauthn-origins", Env: envName("webauthn-origins"), Usage: "comma-separated origins passkeys may be used from (empty: derived from --http)", list: &c.WebAuthnOrigins},
		f("mqtt-rate-messages", "messages per second each MQTT connection may publish (0: unlimited)", &c.MQTTRateMessages),
		f("mqtt-rate-bytes", "bytes per second each MQTT connection may publish, e.g. 512KiB (0: unlimited)", &c.MQTTRateBytes),
		f("mqtt-rate-connects", "MQTT connection attempts per second per source address (0: unlimited)", &c.MQTTRateConnects),
		f("history-store", "history database: sqlite:PATH or a postgres:// URL (empty: SQLite in the data directory)", &c.HistoryStore),
		{Name: "history-shards", Env: envName("history-shards"), Usage: "PostgreSQL history databases by home, comma-separated name=URL, in place of --history-store", list: &c.HistoryShards},
		{Name: "history-retention", Env: envName("history-retention"), Usage: "history retention, comma-separated [kind.]tier=duration, e.g. raw=10d,sensor.raw=30d,events=90d", list: &c.HistoryRetention},
	}
}

func envName(flag string) string {
	return "HOMEMESH_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Set assigns a textual value to the field.
func (f Field) Set(v string) error {
	if f.bool != nil {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", f.Name, v)
		}
		*f.bool = b
		return nil
	}
	if f.list != nil {
		*f.list = splitList(v)
		return nil
	}
	*f.str = v
	return nil
}

// splitList splits a comma-separated setting, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Value is the field's current value as text, the form Set takes.
func (f Field) Value() string {
	switch {
	case f.bool != nil:
		return strconv.FormatBool(*f.bool)
	case f.list != nil:
		return strings.Join(*f.list, ",")
	}
	return *f.str
}

// StringPtr and BoolPtr expose the bound field to a flag library; both are
// nil for list fields, which a flag library binds as text through Value and
// Set.
func (f Field) StringPtr() *string { return f.str }

// BoolPtr exposes a boolean field; nil for string fields.
func (f Field) BoolPtr() *bool { return f.bool }

// LoadFile overlays the settings in the YAML or JSON file at path. Unknown
// keys are errors, so a typo never silently falls back to a default.
func (c *Config) LoadFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	return c.Decode(data, path)
}

// Decode overlays settings from YAML or JSON text; name labels errors.
func (c *Config) Decode(data []byte, name string) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return &homemesh.Error{Kind: homemesh.KindInvalid, Field: name, Message: strings.TrimPrefix(err.Error(), "yaml: "), Err: err}
	}
	return nil
}

// LoadEnv overlays HOMEMESH_* environment variables found by lookup
// (os.LookupEnv in production).
func (c *Config) LoadEnv(lookup func(string) (string, bool)) error {
	for _, f := range c.Fields() {
		if v, ok := lookup(f.Env); ok {
			if err := f.Set(v); err != nil {
				return homemesh.Invalid(f.Env, "%v", err)
			}
		}
	}
	return nil
}

// Validate checks every setting and names the first wrong one.
func (c *Config) Validate() error {
	if c.Data == "" {
		return homemesh.Invalid("data", "is required")
	}
	if c.Home != "" {
		if err := homemesh.CheckID("home", c.Home); err != nil {
			return err
		}
	}
	for _, a := range []struct{ name, addr string }{
		{"http", c.HTTP}, {"mqtt", c.MQTT}, {"mqtts", c.MQTTS}, {"nats-listen", c.NATSListen}, {"ops", c.Ops}, {"mesh", c.Mesh},
	} {
		if a.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			return homemesh.Invalid(a.name, "%q is not host:port: %v", a.addr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return homemesh.Invalid(a.name, "port %q is not a number from 0 to 65535", port)
		}
	}
	for _, l := range []struct {
		name  string
		addrs []string
	}{{"mesh-peers", c.MeshPeers}, {"mesh-advertise", c.MeshAdvertise}} {
		for i, a := range l.addrs {
			host, port, err := net.SplitHostPort(a)
			if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
				return homemesh.Invalid(l.name, "entry %d (%q) is not host:port with a port from 1 to 65535", i+1, a)
			}
		}
	}
	if c.NATS != "" && c.NATSListen != "" {
		return homemesh.Invalid("nats-listen", "only an embedded NATS server listens; drop it or --nats")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		if c.TLSCert == "" {
			return homemesh.Invalid("tls-cert", "is required with --tls-key")
		}
		return homemesh.Invalid("tls-key", "is required with --tls-cert")
	}
	if c.HTTPInsecure && (c.HTTPS || c.TLSCert != "") {
		return homemesh.Invalid("http-insecure", "contradicts --https and --tls-cert; drop one")
	}
	for _, h := range c.ExtraTLSHosts() {
		if !ValidHost(h) {
			return homemesh.Invalid("tls-hosts", "%q is neither an IP address nor a DNS name", h)
		}
	}
	if _, err := c.MQTTRates(); err != nil {
		return err
	}
	if _, err := c.TokenLifetime(); err != nil {
		return err
	}
	if c.NATSCredential != "" && c.NATSToken != "" {
		return homemesh.Invalid("nats-credential", "a bus credential and --nats-token exclude each other; drop the token")
	}
	if (c.NATSTLSCert == "") != (c.NATSTLSKey == "") {
		return homemesh.Invalid("nats-tls-key", "--nats-tls-cert and --nats-tls-key go together")
	}
	if c.NATSTLSCert != "" && c.NATSListen == "" {
		return homemesh.Invalid("nats-tls-cert", "only --nats-listen serves TLS; set it or drop the certificate")
	}
	if c.NATSListen != "" && c.NATSToken != "" {
		return homemesh.Invalid("nats-token", "--nats-listen admits each service by its bus credential; drop the token")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return homemesh.Invalid("log-level", "%q is not debug, info, warn or error", c.LogLevel)
	}
	if err := checkRPID(c.WebAuthnRPID); err != nil {
		return err
	}
	for i, o := range c.WebAuthnOrigins {
		if err := checkOrigin(c.WebAuthnRPID, o); err != nil {
			return homemesh.Invalid("webauthn-origins", "origin %d (%q): %v", i+1, o, err)
		}
	}
	if _, err := c.History(); err != nil {
		return err
	}
	if _, err := c.Retention(); err != nil {
		return err
	}
	return nil
}

// HTTPTLS reports whether the gateway serves HTTPS. It does on every
// address but loopback ones, where plain HTTP is the default (a browser on
// the hub itself), unless --https forces TLS or the user's own certificate
// is given; --http-insecure opts a non-loopback address out.
func (c *Config) HTTPTLS() bool {
	if c.HTTPInsecure {
		return false
	}
	if c.HTTPS || c.TLSCert != "" {
		return true
	}
	host, _, err := net.SplitHostPort(c.HTTP)
	return err != nil || !LoopbackHost(host)
}

// LoopbackHost reports whether host (an IP address or a name, as in a
// listen address) only ever means this machine: a loopback IP address,
// "localhost" or a name under ".localhost" (RFC 6761). The empty host and
// the unspecified addresses 0.0.0.0 and :: mean every interface, so they are
// not loopback.
func LoopbackHost(host string) bool {
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// ExtraTLSHosts returns the names listed in TLSHosts, trimmed, without
// empty entries.
func (c *Config) ExtraTLSHosts() []string {
	var hosts []string
	for _, h := range strings.Split(c.TLSHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// ValidHost reports whether h may name a server in a certificate: an IP
// address or a DNS name of letters, digits and hyphens.
func ValidHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	h = strings.ToLower(h)
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// TokenLifetime returns AccessTokenTTL as a duration; "" means the default.
func (c *Config) TokenLifetime() (time.Duration, error) {
	if c.AccessTokenTTL == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(c.AccessTokenTTL)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return 0, homemesh.Invalid("access-token-ttl", "%q is not a duration from 1s to 24h (e.g. 15m)", c.AccessTokenTTL)
	}
	return d, nil
}

// MQTTRates are the parsed per-connection MQTT limits, per second; zero
// means unlimited.
type MQTTRates struct {
	Messages, Bytes, Connects float64
}

// MQTTRates parses the MQTT rate settings. An empty setting is unlimited.
func (c *Config) MQTTRates() (MQTTRates, error) {
	var r MQTTRates
	var err error
	if r.Messages, err = ParseRate("mqtt-rate-messages", c.MQTTRateMessages, false); err != nil {
		return r, err
	}
	if r.Bytes, err = ParseRate("mqtt-rate-bytes", c.MQTTRateBytes, true); err != nil {
		return r, err
	}
	r.Connects, err = ParseRate("mqtt-rate-connects", c.MQTTRateConnects, false)
	return r, err
}

// maxRate bounds every rate: far beyond what one connection can carry,
// small enough that bursts stay exact in a float64.
const maxRate = 1 << 40

// ParseRate parses a non-negative per-second rate: a decimal number and,
// when sizes is set, an optional B, KiB or MiB suffix. "" is 0 (no limit).
// Errors are KindInvalid naming field.
func ParseRate(field, s string, sizes bool) (float64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, nil
	}
	unit := 1.0
	if sizes {
		for _, u := range []struct {
			suffix string
			mult   float64
		}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"B", 1}} {
			if strings.HasSuffix(t, u.suffix) {
				t, unit = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
				break
			}
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || strings.ContainsAny(t, "xXpPnN_") || v < 0 || v*unit > maxRate {
		want := "a number per second"
		if sizes {
			want = "a number of bytes per second, optionally with KiB or MiB (e.g. 512KiB)"
		}
		return 0, homemesh.Invalid(field, "%q is not %s", s, want)
	}
	return v * unit, nil
}

// checkRPID checks that id is a domain name a browser accepts as a WebAuthn
// relying party ID: lower-case labels of letters, digits and hyphens, and
// no IP address, scheme or port.
func checkRPID(id string) error {
	if id == "" || len(id) > 253 {
		return homemesh.Invalid("webauthn-rp-id", "must be a domain name of 1 to 253 characters")
	}
	if net.ParseIP(id) != nil {
		return homemesh.Invalid("webauthn-rp-id", "must be a domain name, not an IP address: browsers refuse passkeys for addresses")
	}
	for _, label := range strings.Split(id, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return homemesh.Invalid("webauthn-rp-id", "%q is not a domain name", id)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return homemesh.Invalid("webauthn-rp-id", "%q is not a lower-case domain name", id)
			}
		}
	}
	return nil
}

// checkOrigin checks that origin is one a browser would report for a page
// that may use passkeys of rpID: https (or http on localhost), a host that
// is rpID or its subdomain, and nothing after the port.
func checkOrigin(rpID, origin string) error {
	u, err := url.Parse(origin)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("the scheme must be https or http")
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return errors.New("an origin is scheme://host[:port] with nothing after it")
	}
	host := u.Hostname()
	if host != rpID && !strings.HasSuffix(host, "."+rpID) {
		return fmt.Errorf("the host must be the RP ID %q or a subdomain of it", rpID)
	}
	if u.Scheme == "http" && host != "localhost" && !strings.HasSuffix(host, ".localhost") {
		return errors.New("browsers allow passkeys over plain http only on localhost")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q is not a number from 1 to 65535", p)
		}
	}
	return nil
}

// WebAuthnOriginsFor returns the origins passkeys may be used from: the
// configured ones, or else those derived from the RP ID and the port of
// httpAddr, the gateway's bound address. It returns nil when httpAddr has
// no usable port.
func (c *Config) WebAuthnOriginsFor(httpAddr string) []string {
	if len(c.WebAuthnOrigins) > 0 {
		return c.WebAuthnOrigins
	}
	_, port, err := net.SplitHostPort(httpAddr)
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
		return nil
	}
	origin := func(scheme, defaultPort string) string {
		if port == defaultPort {
			return scheme + "://" + c.WebAuthnRPID
		}
		return scheme + "://" + net.JoinHostPort(c.WebAuthnRPID, port)
	}
	out := []string{origin("https", "443")}
	if c.WebAuthnRPID == "localhost" {
		out = append(out, origin("http", "80"))
	}
	return out
}
