package sim

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/internal/hmtest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testFleet returns one unconnected device per kind, as Run would build
// them with cfg.
func testFleet(t testing.TB, cfg Config) []*device {
	t.Helper()
	cfg.Broker = "127.0.0.1:1"
	cfg.Devices = len(homemesh.EntityKinds)
	cfg, err := cfg.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	var out []*device
	for n := 1; n <= cfg.Devices; n++ {
		out = append(out, newDevice(&cfg, n, hmtest.Logger(t)))
	}
	return out
}

// TestDiscoveryGolden pins every kind's discovery configs, availability and
// initial state, the wire format other software depends on. Run with
// -update after a deliberate change.
func TestDiscoveryGolden(t *testing.T) {
	for _, d := range testFleet(t, Config{Seed: 1}) {
		t.Run(string(d.kind), func(t *testing.T) {
			var b bytes.Buffer
			write := func(section string, msgs []message) {
				for _, m := range msgs {
					b.WriteString("# " + section + " " + m.topic)
					if m.retained {
						b.WriteString(" (retained)")
					}
					b.WriteString("\n")
					if json.Valid(m.payload) && len(m.payload) > 0 && (m.payload[0] == '{' || m.payload[0] == '[') {
						_ = json.Indent(&b, m.payload, "", "  ")
					} else {
						b.Write(m.payload)
					}
					b.WriteString("\n")
				}
			}
			write("discovery", d.m.discovery())
			topic, online, offline := d.m.availability()
			write("availability", []message{textMsg(topic, online+" / "+offline, true)})
			for _, c := range d.m.commands() {
				write("command", []message{textMsg(c, "", false)})
			}
			write("state", d.m.state())

			path := filepath.Join("testdata", "discovery", string(d.kind)+".txt")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), b.String()); diff != "" {
				t.Errorf("%s differs (-want +got):\n%s", path, diff)
			}
		})
	}
}

// FuzzCommand feeds arbitrary payloads to every command topic of every kind:
// firmware must never crash, and whatever it publishes in response stays
// within its own topics.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{"ON", "OFF", "TOGGLE", "LOCK", "OPEN", "STOP", "42", "-1e309", "NaN", "",
		`{"state":"ON","brightness":1e400}`, `{"color":{"r":-5,"g":300,"b":"x"}}`, `{"action":"ARM_AWAY","code":"1234"}`,
		`{"state":null,"color_temp":-7}`, "boost", "sleep", "heat"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		for _, d := range testFleet(t, Config{Interval: 1}) {
			allow := Topics(d.cfg.Prefix, d.id)
			for _, c := range d.m.commands() {
				out := d.m.command(c, []byte(payload))
				if s, ok := d.m.(stepper); ok {
					for i := 0; i < 20 && s.pending() > 0; i++ {
						out = append(out, s.step()...)
					}
				}
				out = append(out, d.m.tick()...)
				for _, m := range out {
					if !matchesAny(allow, m.topic) {
						t.Fatalf("%s published on %s, outside its allow list", d.id, m.topic)
					}
				}
			}
		}
	})
}

func matchesAny(filters []string, topic string) bool {
	for _, f := range filters {
		if topicMatch(f, topic) {
			return true
		}
	}
	return false
}

// topicMatch reports whether MQTT filter f matches topic t.
func topicMatch(f, t string) bool {
	fl, tl := splitTopic(f), splitTopic(t)
	for i, p := range fl {
		if p == "#" {
			return true
		}
		if i >= len(tl) || (p != "+" && p != tl[i]) {
			return false
		}
	}
	return len(fl) == len(tl)
}

func splitTopic(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestRandomWalkStaysPlausible ticks every model for a simulated day and
// checks the sensors' values stay in range and energy never decreases.
func TestRandomWalkStaysPlausible(t *testing.T) {
	for _, d := range testFleet(t, Config{Interval: 30 * time.Second, Seed: 42}) {
		t.Run(string(d.kind), func(t *testing.T) {
			lastEnergy := -1.0
			for range 2880 {
				for _, m := range d.m.tick() {
					if !matchesAny(Topics(d.cfg.Prefix, d.id), m.topic) {
						t.Fatalf("tick published on %s, outside the allow list", m.topic)
					}
				}
				if s, ok := d.m.(*multisensor); ok {
					if s.temp < 10 || s.temp > 35 || s.hum < 20 || s.hum > 90 || s.power < 0 {
						t.Fatalf("implausible reading: %+v", *s)
					}
					if s.energy < lastEnergy {
						t.Fatalf("energy fell from %v to %v", lastEnergy, s.energy)
					}
					lastEnergy = s.energy
				}
				if th, ok := d.m.(*thermostat); ok && (th.local < 5 || th.local > 35) {
					t.Fatalf("implausible room temperature %v", th.local)
				}
			}
		})
	}
}
