package sim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/sim"
	"github.com/homemesh/homemesh/sim/simtest"
)

const waitTime = 15 * time.Second

// startSim runs the simulator until the test ends and returns a function
// that stops it and waits for Run to return.
func startSim(t *testing.T, cfg sim.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sim.Run(ctx, cfg, hmtest.Logger(t)) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitTime):
				t.Error("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// recorder is an MQTT client that remembers every message it sees.
type recorder struct {
	c    mqtt.Client
	mu   sync.Mutex
	last map[string]mqtt.Message
	n    map[string]int
}

func newRecorder(t *testing.T, broker, user, filter string) *recorder {
	t.Helper()
	r := &recorder{last: map[string]mqtt.Message{}, n: map[string]int{}}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(fmt.Sprintf("rec-%d", time.Now().UnixNano())).SetUsername(user)
	r.c = mqtt.NewClient(o)
	if tok := r.c.Connect(); !tok.WaitTimeout(waitTime) || tok.Error() != nil {
		t.Fatalf("recorder connect: %v", tok.Error())
	}
	t.Cleanup(func() { r.c.Disconnect(0) })
	tok := r.c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		r.mu.Lock()
		r.last[m.Topic()] = m
		r.n[m.Topic()]++
		r.mu.Unlock()
	})
	if !tok.WaitTimeout(waitTime) || tok.Error() != nil {
		t.Fatalf("recorder subscribe: %v", tok.Error())
	}
	return r
}

func (r *recorder) get(topic string) (payload string, retained, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.last[topic]
	if !ok {
		return "", false, false
	}
	return string(m.Payload()), m.Retained(), true
}

func (r *recorder) count(topic string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[topic]
}

func (r *recorder) publish(t *testing.T, topic, payload string, retained bool) {
	t.Helper()
	if tok := r.c.Publish(topic, 1, retained, payload); !tok.WaitTimeout(waitTime) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// discoveryTopics maps each kind to its device's discovery topic and the
// keys its config must carry, for a fleet of one device per kind in
// EntityKinds order.
var discoveryTopics = []struct {
	kind  homemesh.EntityKind
	topic string
	keys  []string
}{
	{homemesh.KindLight, "homeassistant/light/sim-1/light/config", []string{"schema", "unique_id", "state_topic", "command_topic", "brightness", "supported_color_modes", "availability", "device"}},
	{homemesh.KindSwitch, "homeassistant/switch/sim-2/relay_1/config", []string{"~", "cmd_t", "stat_t", "val_tpl", "avty_t", "pl_avail", "uniq_id", "dev"}},
	{homemesh.KindSensor, "homeassistant/device/sim-3/config", []string{"dev", "o", "cmps", "stat_t", "avty_t"}},
	{homemesh.KindBinarySensor, "homeassistant/binary_sensor/sim-4/front_door/config", []string{"dev_cla", "stat_t", "avty_t", "uniq_id", "dev"}},
	{homemesh.KindClimate, "homeassistant/climate/sim-5/climate/config", []string{"modes", "mode_command_topic", "mode_state_template", "temperature_command_topic", "current_temperature_topic", "current_temperature_template", "unique_id", "device"}},
	{homemesh.KindLock, "homeassistant/lock/sim-6/lock/config", []string{"cmd_t", "stat_t", "pl_lock", "pl_unlk", "uniq_id", "dev"}},
	{homemesh.KindCover, "homeassistant/cover/sim-7/blind/config", []string{"~", "cmd_t", "stat_t", "pos_t", "set_pos_t", "uniq_id", "dev"}},
	{homemesh.KindFan, "homeassistant/fan/sim-8/fan/config", []string{"command_topic", "state_topic", "percentage_command_topic", "preset_mode_command_topic", "preset_modes", "unique_id", "device"}},
	{homemesh.KindAlarmControlPanel, "homeassistant/alarm_control_panel/sim-9/alarm/config", []string{"state_topic", "command_topic", "code", "command_template", "unique_id", "device"}},
	{homemesh.KindButton, "homeassistant/button/sim-10/identify/config", []string{"cmd_t", "pl_prs", "uniq_id", "dev"}},
	{homemesh.KindNumber, "homeassistant/number/sim-11/target_humidity/config", []string{"cmd_t", "stat_t", "min", "max", "step", "uniq_id", "dev"}},
	{homemesh.KindSelect, "homeassistant/select/sim-12/mode/config", []string{"cmd_t", "stat_t", "options", "uniq_id", "dev"}},
	{homemesh.KindEvent, "homeassistant/event/sim-13/button/config", []string{"stat_t", "event_types", "uniq_id", "dev"}},
}

func TestDiscovery(t *testing.T) {
	if len(discoveryTopics) != len(homemesh.EntityKinds) {
		t.Fatalf("test covers %d kinds, homemesh has %d", len(discoveryTopics), len(homemesh.EntityKinds))
	}
	broker := simtest.Broker(t)
	live := newRecorder(t, broker, "", "#")
	stop := startSim(t, sim.Config{Broker: broker, Devices: len(homemesh.EntityKinds), QoS: 1})
	hmtest.WaitFor(t, waitTime, "every discovery config", func() bool {
		for _, d := range discoveryTopics {
			if _, _, ok := live.get(d.topic); !ok {
				return false
			}
		}
		return true
	})

	// A subscriber arriving later gets every config from the retained store.
	late := newRecorder(t, broker, "", "homeassistant/#")
	for _, d := range discoveryTopics {
		t.Run(string(d.kind), func(t *testing.T) {
			var payload string
			var retained bool
			hmtest.WaitFor(t, waitTime, "retained config on "+d.topic, func() bool {
				var ok bool
				payload, retained, ok = late.get(d.topic)
				return ok && retained
			})
			var cfg map[string]any
			if err := json.Unmarshal([]byte(payload), &cfg); err != nil {
				t.Fatalf("config is not JSON: %v: %s", err, payload)
			}
			var missing []string
			for _, k := range d.keys {
				if _, ok := cfg[k]; !ok {
					missing = append(missing, k)
				}
			}
			if diff := cmp.Diff([]string(nil), missing); diff != "" {
				t.Errorf("config lacks keys (-want +got):\n%s\nconfig: %s", diff, payload)
			}
		})
	}

	t.Run("device-based discovery components", func(t *testing.T) {
		payload, _, _ := late.get("homeassistant/device/sim-3/config")
		var cfg struct {
			Cmps map[string]map[string]any `json:"cmps"`
		}
		if err := json.Unmarshal([]byte(payload), &cfg); err != nil {
			t.Fatal(err)
		}
		var names []string
		for name, c := range cfg.Cmps {
			names = append(names, name)
			p, _ := c["p"].(string)
			if p == "" {
				p, _ = c["platform"].(string)
			}
			if p != "sensor" {
				t.Errorf("component %s has platform %q, want sensor", name, p)
			}
		}
		slices.Sort(names)
		if diff := cmp.Diff([]string{"energy", "humidity", "power", "temperature"}, names); diff != "" {
			t.Errorf("components (-want +got):\n%s", diff)
		}
	})

	t.Run("availability online, then offline at stop", func(t *testing.T) {
		status := newRecorder(t, broker, "", "hmsim/sim-6/status")
		hmtest.WaitFor(t, waitTime, "sim-6 online, retained", func() bool {
			p, retained, _ := status.get("hmsim/sim-6/status")
			return p == "online" && retained
		})
		hmtest.WaitFor(t, waitTime, "sim-2 Online", func() bool {
			p, _, _ := live.get("hmsim/sim-2/tele/LWT")
			return p == "Online"
		})
		stop()
		hmtest.WaitFor(t, waitTime, "sim-1 offline", func() bool {
			p, _, _ := live.get("hmsim/sim-1/availability")
			return p == `{"state":"offline"}`
		})
		hmtest.WaitFor(t, waitTime, "sim-2 Offline", func() bool {
			p, _, _ := live.get("hmsim/sim-2/tele/LWT")
			return p == "Offline"
		})
	})
}

func TestCommands(t *testing.T) {
	broker := simtest.Broker(t)
	rec := newRecorder(t, broker, "", "hmsim/#")
	kinds := []homemesh.EntityKind{
		homemesh.KindLight, homemesh.KindSwitch, homemesh.KindLock, homemesh.KindCover, homemesh.KindAlarmControlPanel,
		homemesh.KindClimate, homemesh.KindFan, homemesh.KindNumber, homemesh.KindSelect,
	}
	startSim(t, sim.Config{Broker: broker, Devices: len(kinds), Kinds: kinds, QoS: 1, Seed: 7})
	hmtest.WaitFor(t, waitTime, "devices online", func() bool {
		p, _, _ := rec.get("hmsim/sim-9/status")
		return p == "online"
	})

	// Steps run in order; each waits for the state it expects.
	steps := []struct {
		name, topic, payload string
		stateTopic           string
		want                 func(string) bool
	}{
		{"light brightness", "hmsim/sim-1/set", `{"state":"ON","brightness":77}`, "hmsim/sim-1/state", jsonHas(map[string]any{"state": "ON", "brightness": 77.0})},
		{"light color temp", "hmsim/sim-1/set", `{"state":"ON","color_temp":300}`, "hmsim/sim-1/state", jsonHas(map[string]any{"color_mode": "color_temp", "color_temp": 300.0})},
		{"light rgb", "hmsim/sim-1/set", `{"state":"ON","color":{"r":255,"g":0,"b":10}}`, "hmsim/sim-1/state", jsonHas(map[string]any{"color_mode": "rgb", "color": map[string]any{"r": 255.0, "g": 0.0, "b": 10.0}})},
		{"light off", "hmsim/sim-1/set", `{"state":"OFF"}`, "hmsim/sim-1/state", jsonHas(map[string]any{"state": "OFF"})},
		{"switch on", "hmsim/sim-2/cmnd/POWER", "ON", "hmsim/sim-2/stat/RESULT", equals(`{"POWER":"ON"}`)},
		{"switch toggle", "hmsim/sim-2/cmnd/POWER", "TOGGLE", "hmsim/sim-2/stat/POWER", equals("OFF")},
		{"unlock", "hmsim/sim-3/lock/set", "UNLOCK", "hmsim/sim-3/lock/state", equals("UNLOCKED")},
		{"lock", "hmsim/sim-3/lock/set", "LOCK", "hmsim/sim-3/lock/state", equals("LOCKED")},
		{"cover position", "hmsim/sim-4/cover/set_position", "30", "hmsim/sim-4/cover/position", equals("30")},
		{"cover settles open", "", "", "hmsim/sim-4/cover/state", equals("open")},
		{"cover close", "hmsim/sim-4/cover/set", "CLOSE", "hmsim/sim-4/cover/state", equals("closed")},
		{"alarm wrong code", "hmsim/sim-5/alarm/set", `{"action":"ARM_AWAY","code":"0000"}`, "hmsim/sim-5/alarm/state", equals("disarmed")},
		{"alarm arm away", "hmsim/sim-5/alarm/set", `{"action":"ARM_AWAY","code":"1234"}`, "hmsim/sim-5/alarm/state", equals("armed_away")},
		{"alarm disarm", "hmsim/sim-5/alarm/set", `{"action":"DISARM","code":"1234"}`, "hmsim/sim-5/alarm/state", equals("disarmed")},
		{"climate setpoint", "hmsim/sim-6/set/occupied_heating_setpoint", "23.5", "hmsim/sim-6/state", jsonHas(map[string]any{"occupied_heating_setpoint": 23.5})},
		{"climate mode", "hmsim/sim-6/set/system_mode", "off", "hmsim/sim-6/state", jsonHas(map[string]any{"system_mode": "off", "running_state": "off"})},
		{"fan percentage", "hmsim/sim-7/fan/percentage/set", "30", "hmsim/sim-7/fan/percentage", equals("30")},
		{"fan preset", "hmsim/sim-7/fan/preset/set", "sleep", "hmsim/sim-7/fan/preset", equals("sleep")},
		{"number rounds to step", "hmsim/sim-8/target_humidity/set", "62", "hmsim/sim-8/target_humidity", equals("60")},
		{"select", "hmsim/sim-9/mode/set", "boost", "hmsim/sim-9/mode", equals("boost")},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.topic != "" {
				rec.publish(t, s.topic, s.payload, false)
			}
			hmtest.WaitFor(t, waitTime, s.stateTopic+" to report the command", func() bool {
				p, _, ok := rec.get(s.stateTopic)
				return ok && s.want(p)
			})
		})
	}
}

func equals(want string) func(string) bool { return func(got string) bool { return got == want } }

// jsonHas reports whether a JSON object payload has every key of want with
// an equal value.
func jsonHas(want map[string]any) func(string) bool {
	return func(payload string) bool {
		var got map[string]any
		if json.Unmarshal([]byte(payload), &got) != nil {
			return false
		}
		for k, v := range want {
			if !cmp.Equal(v, got[k]) {
				return false
			}
		}
		return true
	}
}

func TestReannounceOnBirth(t *testing.T) {
	broker := simtest.Broker(t)
	rec := newRecorder(t, broker, "", "#")
	// A retained "online" is already there, as Home Assistant leaves it; it
	// must not cause a second announcement by itself.
	rec.publish(t, "homeassistant/status", "online", true)
	startSim(t, sim.Config{Broker: broker, Devices: 2, Kinds: []homemesh.EntityKind{homemesh.KindLock, homemesh.KindSensor}, QoS: 1})
	topics := []string{"homeassistant/lock/sim-1/lock/config", "homeassistant/device/sim-2/config", "hmsim/sim-1/status", "hmsim/sim-1/lock/state", "hmsim/sim-2/state"}
	hmtest.WaitFor(t, waitTime, "first announcement", func() bool {
		for _, tp := range topics {
			if rec.count(tp) < 1 {
				return false
			}
		}
		return true
	})
	before := map[string]int{}
	for _, tp := range topics {
		before[tp] = rec.count(tp)
	}

	rec.publish(t, "homeassistant/status", "online", false)
	hmtest.WaitFor(t, waitTime, "configs, availability and states again", func() bool {
		for _, tp := range topics {
			if rec.count(tp) <= before[tp] {
				return false
			}
		}
		return true
	})
}

// aclHook authenticates by username and allows each user only the topic
// filters recorded for it, noting every attempt outside them.
type aclHook struct {
	mochi.HookBase
	mu         sync.Mutex
	allow      map[string][]string // username → filters; "admin" may do anything
	violations []string
	checked    int
}

func (h *aclHook) ID() string { return "test-acl" }
func (h *aclHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *aclHook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := string(cl.Properties.Username)
	_, ok := h.allow[u]
	return ok || u == "admin"
}

func (h *aclHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := string(cl.Properties.Username)
	if u == "admin" {
		return true
	}
	h.checked++
	for _, f := range h.allow[u] {
		if covers(f, topic) {
			return true
		}
	}
	h.violations = append(h.violations, fmt.Sprintf("%s write=%v %s", u, write, topic))
	return false
}

// covers reports whether allowed filter f admits topic or filter t: every
// topic t may name is matched by f.
func covers(f, t string) bool {
	fl, tl := strings.Split(f, "/"), strings.Split(t, "/")
	for i, p := range fl {
		if p == "#" {
			return true
		}
		if i >= len(tl) {
			return false
		}
		if tl[i] == "#" || (tl[i] == "+" && p != "+") {
			return false
		}
		if p != "+" && p != tl[i] {
			return false
		}
	}
	return len(fl) == len(tl)
}

func TestCredentialsAllowEverythingTheDeviceDoes(t *testing.T) {
	hook := &aclHook{allow: map[string][]string{}}
	broker := simtest.Broker(t, hook)
	var mu sync.Mutex
	got := map[string][]string{}
	cred := func(_ context.Context, id string, allow []string) (string, string, error) {
		mu.Lock()
		got[id] = allow
		mu.Unlock()
		hook.mu.Lock()
		hook.allow["u-"+id] = allow
		hook.mu.Unlock()
		return "u-" + id, "secret-" + id, nil
	}
	admin := newRecorder(t, broker, "admin", "#")
	n := len(homemesh.EntityKinds)
	startSim(t, sim.Config{Broker: broker, Devices: n, Credential: cred, Interval: 20 * time.Millisecond, QoS: 1, Seed: 3})
	hmtest.WaitFor(t, waitTime, "every device online and announced", func() bool {
		for _, d := range discoveryTopics {
			if _, _, ok := admin.get(d.topic); !ok {
				return false
			}
		}
		return true
	})
	// Exercise commands, steps and the birth message under the ACL.
	admin.publish(t, "hmsim/sim-7/cover/set", "OPEN", false)
	admin.publish(t, "hmsim/sim-9/alarm/set", `{"action":"ARM_HOME","code":"1234"}`, false)
	admin.publish(t, "hmsim/sim-1/set", `{"state":"ON"}`, false)
	admin.publish(t, "homeassistant/status", "online", false)
	hmtest.WaitFor(t, waitTime, "the alarm to arm and telemetry to flow", func() bool {
		p, _, _ := admin.get("hmsim/sim-9/alarm/state")
		return p == "armed_home" && admin.count("hmsim/sim-13/event") >= 3
	})

	for i := 1; i <= n; i++ {
		id := sim.DeviceID("sim", i)
		mu.Lock()
		allow := got[id]
		mu.Unlock()
		if diff := cmp.Diff(sim.Topics("homeassistant", id), allow); diff != "" {
			t.Errorf("Credential for %s got allow list (-want +got):\n%s", id, diff)
		}
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	if len(hook.violations) > 0 {
		t.Errorf("devices stepped outside their allow lists:\n%s", strings.Join(hook.violations, "\n"))
	}
	if hook.checked == 0 {
		t.Error("the broker checked no device topic")
	}
}

func TestTopicsAreTight(t *testing.T) {
	tests := []struct {
		name    string
		topic   string
		allowed bool
	}{
		{"own state", "hmsim/sim-1/state", true},
		{"own discovery", "homeassistant/light/sim-1/light/config", true},
		{"own device discovery", "homeassistant/device/sim-1/config", true},
		{"status", "homeassistant/status", true},
		{"another device's state", "hmsim/sim-2/state", false},
		{"a prefix-sharing device", "hmsim/sim-10/set", false},
		{"another device's discovery", "homeassistant/light/sim-2/light/config", false},
		{"everything", "#", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok := slices.ContainsFunc(sim.Topics("homeassistant", "sim-1"), func(f string) bool { return covers(f, tt.topic) })
			if ok != tt.allowed {
				t.Errorf("%s allowed = %v, want %v", tt.topic, ok, tt.allowed)
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  sim.Config
	}{
		{"no broker", sim.Config{Devices: 1}},
		{"negative devices", sim.Config{Broker: "127.0.0.1:1", Devices: -1}},
		{"too many devices", sim.Config{Broker: "127.0.0.1:1", Devices: sim.MaxDevices + 1}},
		{"unknown kind", sim.Config{Broker: "127.0.0.1:1", Devices: 1, Kinds: []homemesh.EntityKind{"toaster"}}},
		{"bad name prefix", sim.Config{Broker: "127.0.0.1:1", Devices: 1, NamePrefix: "Living Room"}},
		{"wildcard prefix", sim.Config{Broker: "127.0.0.1:1", Devices: 1, Prefix: "ha/#"}},
		{"qos 3", sim.Config{Broker: "127.0.0.1:1", Devices: 1, QoS: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := sim.Run(context.Background(), tt.cfg, hmtest.Logger(t)); err == nil {
				t.Error("Run succeeded, want an error")
			}
		})
	}
}

func TestReconnectReannounces(t *testing.T) {
	addr, stopFirst := simtest.BrokerAt(t, "127.0.0.1:0")
	first := newRecorder(t, addr, "", "hmsim/#")
	startSim(t, sim.Config{Broker: addr, Devices: 1, Kinds: []homemesh.EntityKind{homemesh.KindLock}, QoS: 1})
	hmtest.WaitFor(t, waitTime, "the lock online", func() bool {
		p, _, _ := first.get("hmsim/sim-1/status")
		return p == "online"
	})

	// The broker restarts empty: the device must reconnect and announce
	// itself again, as firmware does after a broker outage.
	stopFirst()
	simtest.BrokerAt(t, addr)
	second := newRecorder(t, addr, "", "#")
	// The lock's state is not retained: if the device reconnected and
	// announced itself before the recorder subscribed, only a new
	// announcement shows it. Home Assistant's birth message asks for one,
	// as it does when Home Assistant itself restarts.
	second.publish(t, "homeassistant/status", "online", false)
	hmtest.WaitFor(t, 3*waitTime, "config, availability and state on the new broker", func() bool {
		_, _, cfg := second.get("homeassistant/lock/sim-1/lock/config")
		av, _, _ := second.get("hmsim/sim-1/status")
		st, _, _ := second.get("hmsim/sim-1/lock/state")
		return cfg && av == "online" && st == "LOCKED"
	})
}

func TestRunStopsCleanlyWhileConnecting(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// The broker address does not matter: the run has ended before any
	// device connects.
	if err := sim.Run(ctx, sim.Config{Broker: simtest.Broker(t), Devices: 3}, hmtest.Logger(t)); err != nil {
		t.Errorf("Run with an ended context = %v, want nil", err)
	}
}
