package discovery

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
)

var update = flag.Bool("update", false, "rewrite the golden files")

type fixture struct {
	Source  string          `json:"source"`
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
}

// message returns the MQTT payload: a JSON string fixture is the payload
// text itself, anything else is the JSON document.
func (f fixture) message() []byte {
	var s string
	if json.Unmarshal(f.Payload, &s) == nil {
		return []byte(s)
	}
	return f.Payload
}

func (f fixture) prefix() string {
	if strings.HasPrefix(f.Topic, "my_home/") {
		return "my_home/homeassistant/register"
	}
	return DefaultPrefix
}

func loadFixture(t testing.TB, name string) fixture {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var f fixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return f
}

func fixtureNames(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "fixtures", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".json"))
	}
	return names
}

// parseFixture parses a fixture that must yield exactly one config.
func parseFixture(t testing.TB, name string) *Config {
	t.Helper()
	f := loadFixture(t, name)
	a, err := Parse(f.prefix(), f.Topic, f.message())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if len(a.Errors) > 0 {
		t.Fatalf("%s: %v", name, a.Errors)
	}
	if len(a.Configs) != 1 {
		t.Fatalf("%s: %d configs, want 1", name, len(a.Configs))
	}
	return a.Configs[0]
}

type goldenConfig struct {
	Key              Key             `json:"key"`
	Topics           []string        `json:"topics"`
	InitialAvailable bool            `json:"initial_available"`
	Device           homemesh.Device `json:"device"`
	Entity           homemesh.Entity `json:"entity"`
}

type goldenError struct {
	Key    Key    `json:"key"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

type golden struct {
	Configs []goldenConfig `json:"configs,omitempty"`
	Removed []Key          `json:"removed,omitempty"`
	Errors  []goldenError  `json:"errors,omitempty"`
	Migrate bool           `json:"migrate,omitempty"`
}

func TestGolden(t *testing.T) {
	names := fixtureNames(t)
	if len(names) < 25 {
		t.Fatalf("only %d fixtures", len(names))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, name)
			if f.Source == "" {
				t.Error("fixture lacks its source")
			}
			a, err := Parse(f.prefix(), f.Topic, f.message())
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var g golden
			for _, c := range a.Configs {
				g.Configs = append(g.Configs, goldenConfig{c.Key, c.Topics(), c.InitialAvailable(), c.Device, c.Entity})
				checkRoundTrip(t, f.prefix(), c)
			}
			g.Removed = a.Removed
			for _, e := range a.Errors {
				g.Errors = append(g.Errors, goldenError{e.Key, e.Field, e.Reason})
			}
			g.Migrate = a.Migrate
			got, err := json.MarshalIndent(g, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", "golden", name+".json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("golden mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// checkRoundTrip re-parses a config's stored message and expects the same
// key, device and entity back.
func checkRoundTrip(t testing.TB, prefix string, c *Config) {
	t.Helper()
	a, err := Parse(prefix, c.Topic, c.Payload)
	if err != nil {
		t.Fatalf("re-parse %s: %v", c.Key, err)
	}
	for _, c2 := range a.Configs {
		if c2.Key == c.Key {
			if diff := cmp.Diff(c.Entity, c2.Entity); diff != "" {
				t.Errorf("re-parsed entity differs:\n%s", diff)
			}
			if diff := cmp.Diff(c.Device, c2.Device); diff != "" {
				t.Errorf("re-parsed device differs:\n%s", diff)
			}
			return
		}
	}
	t.Errorf("re-parsing %s does not yield it again", c.Key)
}

func TestIsDiscoveryTopic(t *testing.T) {
	tests := []struct {
		prefix, topic string
		want          bool
	}{
		{"homeassistant", "homeassistant/sensor/abc/config", true},
		{"homeassistant", "homeassistant/sensor/node-1/abc_2/config", true},
		{"homeassistant", "homeassistant/device/0AFFD2/config", true},
		{"homeassistant", "homeassistant/sensor/abc/state", false},
		{"homeassistant", "homeassistant/sensor/a/b/c/config", false},
		{"homeassistant", "homeassistant/sensor/a b/config", false},
		{"homeassistant", "homeassistant/status", false},
		{"homeassistant", "homeassistantx/sensor/abc/config", false},
		{"my_home/homeassistant/register", "my_home/homeassistant/register/binary_sensor/node1/object1/config", true},
		{"", "sensor/abc/config", false},
	}
	for _, tt := range tests {
		t.Run(tt.topic, func(t *testing.T) {
			if got := IsDiscoveryTopic(tt.prefix, tt.topic); got != tt.want {
				t.Errorf("IsDiscoveryTopic(%q, %q) = %v, want %v", tt.prefix, tt.topic, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, topic, payload, field string
		top                         bool // whole message rejected
	}{
		{"not discovery", "homeassistant/sensor/x/state", `{}`, "topic", true},
		{"not json", "homeassistant/sensor/x/config", `{`, "payload", true},
		{"not object", "homeassistant/sensor/x/config", `[1]`, "payload", true},
		{"trailing", "homeassistant/sensor/x/config", `{} {}`, "payload", true},
		{"device without cmps", "homeassistant/device/x/config", `{"dev":{"ids":"a"},"o":{"name":"x"}}`, "components", true},
		{"device without dev", "homeassistant/device/x/config", `{"o":{"name":"x"},"cmps":{"a":{"p":"sensor","stat_t":"t","uniq_id":"u"}}}`, "device", true},
		{"unsupported component", "homeassistant/vacuum/x/config", `{"cmd_t":"a"}`, "component", false},
		{"missing state topic", "homeassistant/sensor/x/config", `{"name":"a"}`, "state_topic", false},
		{"wildcard command", "homeassistant/switch/x/config", `{"cmd_t":"a/+/set"}`, "command_topic", false},
		{"bad filter", "homeassistant/sensor/x/config", `{"stat_t":"a/#/b"}`, "state_topic", false},
		{"bad template", "homeassistant/sensor/x/config", `{"stat_t":"a","val_tpl":"{{ value_json. }}"}`, "value_template", false},
		{"bad qos", "homeassistant/sensor/x/config", `{"stat_t":"a","qos":3}`, "qos", false},
		{"topic not string", "homeassistant/sensor/x/config", `{"stat_t":5}`, "state_topic", false},
		{"select without options", "homeassistant/select/x/config", `{"cmd_t":"a"}`, "options", false},
		{"number range", "homeassistant/number/x/config", `{"cmd_t":"a","min":5,"max":1}`, "max", false},
		{"device component without unique id", "homeassistant/device/x/config", `{"dev":{"ids":"a"},"o":{"name":"x"},"cmps":{"a":{"p":"sensor","stat_t":"t"}}}`, "unique_id", false},
		{"device component without platform", "homeassistant/device/x/config", `{"dev":{"ids":"a"},"o":{"name":"x"},"cmps":{"a":{"stat_t":"t"}}}`, "platform", false},
		{"availability mode", "homeassistant/sensor/x/config", `{"stat_t":"a","avty_t":"b","avty_mode":"most"}`, "availability_mode", false},
		{"light schema", "homeassistant/light/x/config", `{"cmd_t":"a","schema":"fancy"}`, "schema", false},
		{"preset none", "homeassistant/climate/x/config", `{"preset_modes":["none"]}`, "preset_modes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse(DefaultPrefix, tt.topic, []byte(tt.payload))
			if tt.top {
				if err == nil {
					t.Fatalf("no error, want one on %s", tt.field)
				}
				if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
					t.Errorf("error %v: kind %s field %q, want invalid %q", err, homemesh.ErrorKind(err), homemesh.ErrorField(err), tt.field)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(a.Errors) != 1 || len(a.Configs) != 0 {
				t.Fatalf("got %d configs and errors %v, want one error", len(a.Configs), a.Errors)
			}
			if a.Errors[0].Field != tt.field {
				t.Errorf("error %v: field %q, want %q", a.Errors[0], a.Errors[0].Field, tt.field)
			}
		})
	}
}

func TestAbbreviatedWins(t *testing.T) {
	a, err := Parse(DefaultPrefix, "homeassistant/sensor/x/config",
		[]byte(`{"state_topic":"full","stat_t":"short","dev":{"name":"long","identifiers":["a"],"ids":["b"]}}`))
	if err != nil || len(a.Configs) != 1 {
		t.Fatalf("Parse: %v %v", err, a.Errors)
	}
	c := a.Configs[0]
	if diff := cmp.Diff([]string{"short"}, c.Topics()); diff != "" {
		t.Errorf("topics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b"}, c.Device.Identifiers); diff != "" {
		t.Errorf("identifiers (-want +got):\n%s", diff)
	}
}

func TestKeyCovers(t *testing.T) {
	dev := Key{Component: DeviceComponent, ID: "0AFFD2"}
	if !dev.Covers(Key{Component: "sensor", ID: "0AFFD2 temp"}) {
		t.Error("device key does not cover its component")
	}
	if dev.Covers(Key{Component: "sensor", ID: "0AFFD23 temp"}) {
		t.Error("device key covers another device's component")
	}
	if got := (Key{Component: "sensor", ID: "node obj"}).String(); got != "sensor/node obj" {
		t.Errorf("String = %q", got)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range fixtureNames(f) {
		fx := loadFixture(f, name)
		f.Add(fx.Topic, fx.message())
	}
	f.Add("homeassistant/light/x/config", []byte(`{"~":"~","cmd_t":"~/~","schema":"json","sup_clrm":["color_temp"],"min_mirs":0}`))
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		a, err := Parse(DefaultPrefix, topic, payload)
		if err != nil {
			return
		}
		for _, c := range a.Configs {
			if !homemesh.ValidID(c.Entity.ID) || !homemesh.ValidID(c.Device.ID) {
				t.Fatalf("invalid IDs %q %q", c.Entity.ID, c.Device.ID)
			}
			a2, err := Parse(DefaultPrefix, c.Topic, c.Payload)
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			found := false
			for _, c2 := range a2.Configs {
				if c2.Key == c.Key {
					found = true
				}
			}
			if !found {
				t.Fatalf("re-parse lost %s", c.Key)
			}
			for _, topic := range c.Topics() {
				_, _ = c.Decode(topic, payload, homemesh.State{})
			}
		}
	})
}

var _ = bytes.Equal
