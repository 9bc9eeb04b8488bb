package sim

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
)

// swVersion is the firmware version simulated devices report.
const swVersion = "1.4.2"

func newModel(d *device) model {
	switch d.kind {
	case homemesh.KindLight:
		return newLight(d)
	case homemesh.KindSwitch:
		return &tasmotaSwitch{d: d, on: d.rng.IntN(2) == 1, rssi: -50 - d.rng.IntN(30)}
	case homemesh.KindSensor:
		return &multisensor{d: d, temp: 19 + 4*d.rng.Float64(), hum: 40 + 15*d.rng.Float64(), power: 20 + 80*d.rng.Float64(), energy: 100 * d.rng.Float64()}
	case homemesh.KindBinarySensor:
		return &doorContact{d: d, open: d.rng.IntN(4) == 0}
	case homemesh.KindClimate:
		return &thermostat{d: d, local: 17 + 4*d.rng.Float64(), setpoint: 21, mode: "heat", lq: 80 + d.rng.IntN(150)}
	case homemesh.KindLock:
		return &lock{d: d, cur: "LOCKED"}
	case homemesh.KindCover:
		pos := 10 * d.rng.IntN(11)
		return &cover{d: d, pos: pos, target: pos}
	case homemesh.KindFan:
		return &fan{d: d, pct: 50, preset: "None"}
	case homemesh.KindAlarmControlPanel:
		return &alarm{d: d, cur: "disarmed"}
	case homemesh.KindButton:
		return &button{d: d}
	case homemesh.KindNumber:
		return &number{d: d, value: 50}
	case homemesh.KindSelect:
		return &selector{d: d, option: "comfort"}
	case homemesh.KindEvent:
		return &eventButton{d: d}
	}
	panic("sim: no model for kind " + string(d.kind)) // Config validation admits only EntityKinds
}

// Helpers shared by the models.

func (d *device) displayName(what string) string { return what + " " + d.id }

// mac returns a stable, locally administered MAC address for the device.
func (d *device) mac(sep string) string {
	b := []byte{0x02, 0x00, byte(d.n >> 24), byte(d.n >> 16), byte(d.n >> 8), byte(d.n)}
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02x", x)
	}
	return strings.Join(parts, sep)
}

// deviceFull is a device block with full keys, as Zigbee2MQTT writes it.
func (d *device) deviceFull(model, manufacturer string) map[string]any {
	return map[string]any{
		"identifiers":  []string{"hmsim_" + d.id},
		"name":         d.displayName(model),
		"manufacturer": manufacturer,
		"model":        model,
		"sw_version":   swVersion,
	}
}

// deviceAbbr is a device block with abbreviated keys.
func (d *device) deviceAbbr(model, manufacturer string) map[string]any {
	return map[string]any{
		"ids":  []string{"hmsim_" + d.id},
		"name": d.displayName(model),
		"mf":   manufacturer,
		"mdl":  model,
		"sw":   swVersion,
		"cns":  [][]string{{"mac", d.mac(":")}},
	}
}

func origin() map[string]any { return map[string]any{"name": "homemesh sim", "sw": swVersion} }

// status is the plain availability topic most models use.
func (d *device) status() string { return d.base() + "/status" }

// jsonAvailability is Zigbee2MQTT's availability: a JSON payload read
// through a value template.
func (d *device) jsonAvailability() (topic, online, offline string) {
	return d.base() + "/availability", `{"state":"online"}`, `{"state":"offline"}`
}

func (d *device) jsonAvailabilityConfig() []map[string]any {
	topic, _, _ := d.jsonAvailability()
	return []map[string]any{{"topic": topic, "value_template": "{{ value_json.state }}"}}
}

// walk moves v by a random step of at most step, kept within [lo, hi].
func (d *device) walk(v, step, lo, hi float64) float64 {
	v += (2*d.rng.Float64() - 1) * step
	return math.Max(lo, math.Min(hi, v))
}

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

// parseNumber parses a numeric command payload, refusing NaN and
// infinities, which no firmware would accept.
func parseNumber(s string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}

func onOff(on bool) string {
	if on {
		return "ON"
	}
	return "OFF"
}

// light is a Zigbee2MQTT bulb: JSON schema, brightness 0–254, color
// temperature in mireds and RGB, plus Zigbee2MQTT's link quality sensor.
type light struct {
	d        *device
	on       bool
	bri      int
	mode     string
	mireds   int
	r, g, b  int
	lq       int
	lastEff  string
	briScale int
}

func newLight(d *device) *light {
	return &light{d: d, on: d.rng.IntN(2) == 1, bri: 1 + d.rng.IntN(254), mode: "color_temp", mireds: 250 + d.rng.IntN(150), r: 255, g: 180, b: 100, lq: 60 + d.rng.IntN(190), briScale: 254}
}

func (l *light) topic() string { return l.d.base() + "/state" }

func (l *light) discovery() []message {
	d := l.d
	return []message{
		jsonMsg(d.configTopic("light", "light"), map[string]any{
			"schema":                "json",
			"name":                  nil,
			"unique_id":             d.id + "_light",
			"state_topic":           l.topic(),
			"command_topic":         d.base() + "/set",
			"brightness":            true,
			"brightness_scale":      l.briScale,
			"supported_color_modes": []string{"color_temp", "rgb"},
			"min_mireds":            153,
			"max_mireds":            500,
			"effect":                true,
			"effect_list":           []string{"blink", "breathe", "okay", "stop_effect"},
			"availability":          d.jsonAvailabilityConfig(),
			"device":                d.deviceFull("Color bulb", "homemesh"),
			"origin":                origin(),
		}, true),
		jsonMsg(d.configTopic("sensor", "linkquality"), map[string]any{
			"name":                "Linkquality",
			"unique_id":           d.id + "_linkquality",
			"state_topic":         l.topic(),
			"value_template":      "{{ value_json.linkquality }}",
			"unit_of_measurement": "lqi",
			"state_class":         "measurement",
			"entity_category":     "diagnostic",
			"enabled_by_default":  false,
			"icon":                "mdi:signal",
			"availability":        d.jsonAvailabilityConfig(),
			"device":              map[string]any{"identifiers": []string{"hmsim_" + d.id}},
			"origin":              origin(),
		}, true),
	}
}

func (l *light) availability() (string, string, string) { return l.d.jsonAvailability() }
func (l *light) commands() []string                     { return []string{l.d.base() + "/set"} }

func (l *light) state() []message {
	st := map[string]any{"state": onOff(l.on), "brightness": l.bri, "color_mode": l.mode, "linkquality": l.lq,
		"color": map[string]int{"r": l.r, "g": l.g, "b": l.b}}
	if l.mode == "color_temp" {
		st["color_temp"] = l.mireds
	}
	return []message{jsonMsg(l.topic(), st, false)}
}

func (l *light) command(_ string, payload []byte) []message {
	var c struct {
		State      string   `json:"state"`
		Brightness *float64 `json:"brightness"`
		ColorTemp  *float64 `json:"color_temp"`
		Color      *struct {
			R, G, B *float64
		} `json:"color"`
		Effect string `json:"effect"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		l.d.log.Warn("ignoring malformed light command", "err", err)
		return nil
	}
	switch strings.ToUpper(c.State) {
	case "ON":
		l.on = true
	case "OFF":
		l.on = false
	case "TOGGLE":
		l.on = !l.on
	}
	if c.Brightness != nil {
		b := int(math.Round(math.Max(0, math.Min(float64(l.briScale), *c.Brightness))))
		if b == 0 {
			l.on = false // as Zigbee2MQTT: brightness 0 switches off
		} else {
			l.bri, l.on = b, true
		}
	}
	if c.ColorTemp != nil {
		l.mireds = int(math.Round(math.Max(153, math.Min(500, *c.ColorTemp))))
		l.mode = "color_temp"
	}
	if c.Color != nil && c.Color.R != nil && c.Color.G != nil && c.Color.B != nil {
		clamp := func(v float64) int { return int(math.Round(math.Max(0, math.Min(255, v)))) }
		l.r, l.g, l.b = clamp(*c.Color.R), clamp(*c.Color.G), clamp(*c.Color.B)
		l.mode = "rgb"
	}
	if c.Effect != "" {
		l.lastEff = c.Effect
		l.d.log.Info("light effect", "effect", c.Effect)
	}
	return l.state()
}

func (l *light) tick() []message {
	l.lq = int(l.d.walk(float64(l.lq), 8, 0, 255))
	return l.state()
}

// tasmotaSwitch is a Tasmota relay: abbreviated keys, a "~" base ending in
// "/", results on stat/RESULT read through a template, and Tasmota's
// capitalised availability payloads.
type tasmotaSwitch struct {
	d      *device
	on     bool
	uptime time.Duration
	rssi   int
}

func (s *tasmotaSwitch) tilde() string { return s.d.base() + "/" }

func (s *tasmotaSwitch) discovery() []message {
	d := s.d
	dev := d.deviceAbbr("Sonoff Basic R2", "Tasmota")
	dev["sw"] = "14.4.1(tasmota)"
	return []message{jsonMsg(d.configTopic("switch", "relay_1"), map[string]any{
		"name":         nil,
		"~":            s.tilde(),
		"cmd_t":        "~cmnd/POWER",
		"stat_t":       "~stat/RESULT",
		"val_tpl":      "{{ value_json.POWER }}",
		"pl_off":       "OFF",
		"pl_on":        "ON",
		"avty_t":       "~tele/LWT",
		"pl_avail":     "Online",
		"pl_not_avail": "Offline",
		"uniq_id":      d.id + "_RL_1",
		"dev":          dev,
		"o":            origin(),
	}, true)}
}

func (s *tasmotaSwitch) availability() (string, string, string) {
	return s.tilde() + "tele/LWT", "Online", "Offline"
}

func (s *tasmotaSwitch) commands() []string { return []string{s.tilde() + "cmnd/POWER"} }

func (s *tasmotaSwitch) state() []message {
	return []message{
		jsonMsg(s.tilde()+"stat/RESULT", map[string]string{"POWER": onOff(s.on)}, false),
		textMsg(s.tilde()+"stat/POWER", onOff(s.on), false),
	}
}

func (s *tasmotaSwitch) command(_ string, payload []byte) []message {
	switch strings.ToUpper(strings.TrimSpace(string(payload))) {
	case "ON", "1", "TRUE":
		s.on = true
	case "OFF", "0", "FALSE":
		s.on = false
	case "TOGGLE", "2":
		s.on = !s.on
	case "":
		// An empty POWER command asks for the state.
	default:
		s.d.log.Warn("ignoring unknown POWER command", "payload", string(payload))
		return nil
	}
	return s.state()
}

// tick publishes Tasmota's periodic telemetry, tele/STATE.
func (s *tasmotaSwitch) tick() []message {
	s.uptime += s.d.cfg.Interval
	s.rssi = int(s.d.walk(float64(s.rssi), 2, -90, -30))
	return []message{jsonMsg(s.tilde()+"tele/STATE", map[string]any{
		"Time":      time.Now().UTC().Format("2006-01-02T15:04:05"),
		"UptimeSec": int(s.uptime.Seconds()),
		"POWER":     onOff(s.on),
		"Wifi":      map[string]any{"RSSI": 2 * (s.rssi + 100), "Signal": s.rssi},
	}, false)}
}

// multisensor reports temperature, humidity, power and energy in one JSON
// state, announced by device-based discovery: one config whose "cmps" holds
// every entity, sharing the root's state and availability topics.
type multisensor struct {
	d                        *device
	temp, hum, power, energy float64
}

func (s *multisensor) discovery() []message {
	d := s.d
	sensor := func(key, name, class, unit, stateClass string) map[string]any {
		return map[string]any{
			"p": "sensor", "name": name, "uniq_id": d.id + "_" + key, "dev_cla": class,
			"unit_of_meas": unit, "stat_cla": stateClass, "val_tpl": "{{ value_json." + key + " }}",
		}
	}
	// One component in full keys: real payloads mix both.
	power := map[string]any{
		"platform": "sensor", "name": "Power", "unique_id": d.id + "_power", "device_class": "power",
		"unit_of_measurement": "W", "state_class": "measurement", "value_template": "{{ value_json.power }}",
		"suggested_display_precision": 1,
	}
	return []message{jsonMsg(d.cfg.Prefix+"/device/"+d.id+"/config", map[string]any{
		"dev":    d.deviceAbbr("Multisensor", "homemesh"),
		"o":      origin(),
		"stat_t": d.base() + "/state",
		"avty_t": d.status(),
		"qos":    1,
		"cmps": map[string]any{
			"temperature": sensor("temperature", "Temperature", "temperature", "°C", "measurement"),
			"humidity":    sensor("humidity", "Humidity", "humidity", "%", "measurement"),
			"power":       power,
			"energy":      sensor("energy", "Energy", "energy", "kWh", "total_increasing"),
		},
	}, true)}
}

func (s *multisensor) availability() (string, string, string) {
	return s.d.status(), "online", "offline"
}
func (s *multisensor) commands() []string { return nil }

func (s *multisensor) state() []message {
	return []message{jsonMsg(s.d.base()+"/state", map[string]float64{
		"temperature": round(s.temp, 2), "humidity": round(s.hum, 1),
		"power": round(s.power, 1), "energy": round(s.energy, 3),
	}, false)}
}

func (s *multisensor) command(string, []byte) []message { return nil }

func (s *multisensor) tick() []message {
	s.temp = s.d.walk(s.temp, 0.15, 10, 35)
	s.hum = s.d.walk(s.hum, 0.8, 20, 90)
	s.power = s.d.walk(s.power, 5, 0, 2500)
	s.energy += s.power * s.d.cfg.Interval.Hours() / 1000
	return s.state()
}

// doorContact is an ESPHome door sensor: abbreviated keys, identifiers as a
// bare string, retained ON/OFF states.
type doorContact struct {
	d    *device
	open bool
}

func (c *doorContact) stateTopic() string { return c.d.base() + "/binary_sensor/front_door/state" }

func (c *doorContact) discovery() []message {
	d := c.d
	return []message{jsonMsg(d.configTopic("binary_sensor", "front_door"), map[string]any{
		"dev_cla": "door",
		"name":    "Front Door",
		"stat_t":  c.stateTopic(),
		"avty_t":  d.status(),
		"uniq_id": d.mac("") + "binary_sensorfront_door",
		"dev": map[string]any{
			"ids":  d.mac(""),
			"name": d.id,
			"sw":   "esphome v2024.6.0",
			"mdl":  "esp32dev",
			"mf":   "espressif",
			"cns":  [][]string{{"mac", d.mac(":")}},
		},
		"o": origin(),
	}, true)}
}

func (c *doorContact) availability() (string, string, string) {
	return c.d.status(), "online", "offline"
}
func (c *doorContact) commands() []string { return nil }
func (c *doorContact) state() []message {
	return []message{textMsg(c.stateTopic(), onOff(c.open), true)}
}
func (c *doorContact) command(string, []byte) []message { return nil }

func (c *doorContact) tick() []message {
	if c.d.rng.Float64() < 0.15 {
		c.open = !c.open
	}
	return c.state()
}

// thermostat is a Zigbee2MQTT radiator valve: one JSON state read through a
// template per climate topic, one command topic per attribute.
type thermostat struct {
	d               *device
	local, setpoint float64
	mode            string
	heating         bool
	lq              int
}

var thermostatModes = []string{"off", "heat", "auto"}

func (t *thermostat) discovery() []message {
	d := t.d
	st := d.base() + "/state"
	return []message{jsonMsg(d.configTopic("climate", "climate"), map[string]any{
		"name":                         nil,
		"unique_id":                    d.id + "_climate",
		"modes":                        thermostatModes,
		"mode_command_topic":           d.base() + "/set/system_mode",
		"mode_state_topic":             st,
		"mode_state_template":          "{{ value_json.system_mode }}",
		"temperature_command_topic":    d.base() + "/set/occupied_heating_setpoint",
		"temperature_state_topic":      st,
		"temperature_state_template":   "{{ value_json.occupied_heating_setpoint }}",
		"current_temperature_topic":    st,
		"current_temperature_template": "{{ value_json.local_temperature }}",
		"action_topic":                 st,
		"action_template":              "{{ value_json.running_state }}",
		"min_temp":                     5,
		"max_temp":                     30,
		"temp_step":                    0.5,
		"precision":                    0.1,
		"temperature_unit":             "C",
		"availability":                 d.jsonAvailabilityConfig(),
		"device":                       d.deviceFull("Radiator valve", "homemesh"),
		"origin":                       origin(),
	}, true)}
}

func (t *thermostat) availability() (string, string, string) { return t.d.jsonAvailability() }
func (t *thermostat) commands() []string {
	return []string{t.d.base() + "/set/system_mode", t.d.base() + "/set/occupied_heating_setpoint"}
}

func (t *thermostat) state() []message {
	t.heating = t.mode != "off" && t.local < t.setpoint-0.2
	action := "idle"
	if t.mode == "off" {
		action = "off"
	} else if t.heating {
		action = "heating"
	}
	return []message{jsonMsg(t.d.base()+"/state", map[string]any{
		"local_temperature":         round(t.local, 1),
		"occupied_heating_setpoint": t.setpoint,
		"system_mode":               t.mode,
		"running_state":             action,
		"linkquality":               t.lq,
	}, false)}
}

func (t *thermostat) command(topic string, payload []byte) []message {
	p := strings.TrimSpace(string(payload))
	switch {
	case strings.HasSuffix(topic, "/system_mode"):
		for _, m := range thermostatModes {
			if p == m {
				t.mode = m
				return t.state()
			}
		}
		t.d.log.Warn("ignoring unknown system mode", "payload", p)
	default:
		v, ok := parseNumber(p)
		if !ok {
			t.d.log.Warn("ignoring malformed setpoint", "payload", p)
			return nil
		}
		t.setpoint = math.Max(5, math.Min(30, math.Round(v*2)/2))
		return t.state()
	}
	return nil
}

func (t *thermostat) tick() []message {
	if t.heating {
		t.local += 0.1 + 0.1*t.d.rng.Float64()
	} else {
		t.local -= 0.05 * t.d.rng.Float64() // the room cools slowly
	}
	t.local = t.d.walk(t.local, 0.05, 5, 35)
	t.lq = int(t.d.walk(float64(t.lq), 8, 0, 255))
	return t.state()
}

// lock is a smart lock with abbreviated keys and an OPEN (unlatch) command.
type lock struct {
	d   *device
	cur string
}

func (l *lock) discovery() []message {
	d := l.d
	return []message{jsonMsg(d.configTopic("lock", "lock"), map[string]any{
		"name":          "Front door lock",
		"uniq_id":       d.id + "_lock",
		"cmd_t":         d.base() + "/lock/set",
		"stat_t":        d.base() + "/lock/state",
		"pl_lock":       "LOCK",
		"pl_unlk":       "UNLOCK",
		"pl_open":       "OPEN",
		"stat_locked":   "LOCKED",
		"stat_unlocked": "UNLOCKED",
		"avty_t":        d.status(),
		"dev":           d.deviceAbbr("Smart lock", "homemesh"),
		"o":             origin(),
	}, true)}
}

func (l *lock) availability() (string, string, string) { return l.d.status(), "online", "offline" }
func (l *lock) commands() []string                     { return []string{l.d.base() + "/lock/set"} }
func (l *lock) state() []message {
	return []message{textMsg(l.d.base()+"/lock/state", l.cur, false)}
}

func (l *lock) command(_ string, payload []byte) []message {
	switch strings.ToUpper(strings.TrimSpace(string(payload))) {
	case "LOCK":
		l.cur = "LOCKED"
	case "UNLOCK":
		l.cur = "UNLOCKED"
	case "OPEN":
		l.cur = "OPEN"
	default:
		l.d.log.Warn("ignoring unknown lock command", "payload", string(payload))
		return nil
	}
	return l.state()
}

func (l *lock) tick() []message { return l.state() }

// coverStep is how often a travelling cover reports, and coverSpeed how far
// it moves per step (percent).
const (
	coverStep  = 200 * time.Millisecond
	coverSpeed = 10
)

// cover is a roller blind with a position, using a "~" base at the start of
// its topics. It travels in steps, reporting opening/closing on the way.
type cover struct {
	d           *device
	pos, target int
	stopped     bool
}

func (c *cover) tilde() string { return c.d.base() + "/cover" }

func (c *cover) discovery() []message {
	d := c.d
	return []message{jsonMsg(d.configTopic("cover", "blind"), map[string]any{
		"name":      "Blind",
		"uniq_id":   d.id + "_blind",
		"~":         c.tilde(),
		"cmd_t":     "~/set",
		"stat_t":    "~/state",
		"pos_t":     "~/position",
		"set_pos_t": "~/set_position",
		"pos_open":  100,
		"pos_clsd":  0,
		"dev_cla":   "blind",
		"avty_t":    d.status(),
		"dev":       d.deviceAbbr("Roller blind", "homemesh"),
		"o":         origin(),
	}, true)}
}

func (c *cover) availability() (string, string, string) { return c.d.status(), "online", "offline" }
func (c *cover) commands() []string                     { return []string{c.tilde() + "/set", c.tilde() + "/set_position"} }

func (c *cover) state() []message {
	var st string
	switch {
	case c.target > c.pos:
		st = "opening"
	case c.target < c.pos:
		st = "closing"
	case c.stopped:
		st = "stopped"
	case c.pos == 0:
		st = "closed"
	default:
		st = "open"
	}
	return []message{textMsg(c.tilde()+"/state", st, false), textMsg(c.tilde()+"/position", strconv.Itoa(c.pos), false)}
}

func (c *cover) command(topic string, payload []byte) []message {
	p := strings.TrimSpace(string(payload))
	c.stopped = false
	if strings.HasSuffix(topic, "/set_position") {
		v, ok := parseNumber(p)
		if !ok {
			c.d.log.Warn("ignoring malformed position", "payload", p)
			return nil
		}
		c.target = int(math.Max(0, math.Min(100, math.Round(v))))
		return c.state()
	}
	switch strings.ToUpper(p) {
	case "OPEN":
		c.target = 100
	case "CLOSE":
		c.target = 0
	case "STOP":
		c.target, c.stopped = c.pos, c.pos != 0 && c.pos != 100
	default:
		c.d.log.Warn("ignoring unknown cover command", "payload", p)
		return nil
	}
	return c.state()
}

func (c *cover) pending() time.Duration {
	if c.pos != c.target {
		return coverStep
	}
	return 0
}

func (c *cover) step() []message {
	switch {
	case c.target > c.pos:
		c.pos = min(c.target, c.pos+coverSpeed)
	case c.target < c.pos:
		c.pos = max(c.target, c.pos-coverSpeed)
	}
	return c.state()
}

func (c *cover) tick() []message { return c.state() }

// fan is a ceiling fan with a percentage and preset modes, in full keys.
type fan struct {
	d      *device
	on     bool
	pct    int
	preset string
}

var fanPresets = []string{"auto", "sleep", "nature"}

func (f *fan) discovery() []message {
	d := f.d
	b := d.base() + "/fan"
	return []message{jsonMsg(d.configTopic("fan", "fan"), map[string]any{
		"name":                      nil,
		"unique_id":                 d.id + "_fan",
		"command_topic":             b + "/set",
		"state_topic":               b + "/state",
		"percentage_command_topic":  b + "/percentage/set",
		"percentage_state_topic":    b + "/percentage",
		"preset_mode_command_topic": b + "/preset/set",
		"preset_mode_state_topic":   b + "/preset",
		"preset_modes":              fanPresets,
		"speed_range_min":           1,
		"speed_range_max":           100,
		"availability_topic":        d.status(),
		"device":                    d.deviceFull("Ceiling fan", "homemesh"),
		"origin":                    origin(),
	}, true)}
}

func (f *fan) availability() (string, string, string) { return f.d.status(), "online", "offline" }
func (f *fan) commands() []string {
	b := f.d.base() + "/fan"
	return []string{b + "/set", b + "/percentage/set", b + "/preset/set"}
}

func (f *fan) state() []message {
	b := f.d.base() + "/fan"
	pct := 0
	if f.on {
		pct = f.pct
	}
	return []message{textMsg(b+"/state", onOff(f.on), false), textMsg(b+"/percentage", strconv.Itoa(pct), false), textMsg(b+"/preset", f.preset, false)}
}

func (f *fan) command(topic string, payload []byte) []message {
	p := strings.TrimSpace(string(payload))
	switch {
	case strings.HasSuffix(topic, "/percentage/set"):
		v, ok := parseNumber(p)
		if !ok {
			f.d.log.Warn("ignoring malformed percentage", "payload", p)
			return nil
		}
		pct := int(math.Max(0, math.Min(100, math.Round(v))))
		f.on = pct > 0
		if f.on {
			f.pct = pct
		}
		f.preset = "None"
	case strings.HasSuffix(topic, "/preset/set"):
		for _, m := range fanPresets {
			if p == m {
				f.preset, f.on = m, true
				return f.state()
			}
		}
		f.d.log.Warn("ignoring unknown preset", "payload", p)
		return nil
	default:
		switch strings.ToUpper(p) {
		case "ON":
			f.on = true
		case "OFF":
			f.on = false
		default:
			f.d.log.Warn("ignoring unknown fan command", "payload", p)
			return nil
		}
	}
	return f.state()
}

func (f *fan) tick() []message { return f.state() }

// alarmExitDelay is how long an alarm panel reports "arming".
const alarmExitDelay = 500 * time.Millisecond

// alarm is an alarm panel that checks its own code: Home Assistant sends
// the code in the command, rendered by command_template, because the config
// says code "REMOTE_CODE".
type alarm struct {
	d      *device
	cur    string
	target string // the armed state being entered, while arming
}

var alarmActions = map[string]string{
	"DISARM":            "disarmed",
	"ARM_HOME":          "armed_home",
	"ARM_AWAY":          "armed_away",
	"ARM_NIGHT":         "armed_night",
	"ARM_VACATION":      "armed_vacation",
	"ARM_CUSTOM_BYPASS": "armed_custom_bypass",
	"TRIGGER":           "triggered",
}

func (a *alarm) discovery() []message {
	d := a.d
	return []message{jsonMsg(d.configTopic("alarm_control_panel", "alarm"), map[string]any{
		"name":                  nil,
		"unique_id":             d.id + "_alarm",
		"state_topic":           d.base() + "/alarm/state",
		"command_topic":         d.base() + "/alarm/set",
		"code":                  "REMOTE_CODE",
		"code_arm_required":     true,
		"code_disarm_required":  true,
		"code_trigger_required": false,
		"command_template":      `{"action": "{{ action }}", "code": "{{ code }}"}`,
		"supported_features":    []string{"arm_home", "arm_away", "arm_night", "arm_vacation", "trigger"},
		"availability_topic":    d.status(),
		"device":                d.deviceFull("Alarm panel", "homemesh"),
		"origin":                origin(),
	}, true)}
}

func (a *alarm) availability() (string, string, string) { return a.d.status(), "online", "offline" }
func (a *alarm) commands() []string                     { return []string{a.d.base() + "/alarm/set"} }
func (a *alarm) state() []message {
	return []message{textMsg(a.d.base()+"/alarm/state", a.cur, false)}
}

func (a *alarm) command(_ string, payload []byte) []message {
	var c struct {
		Action string `json:"action"`
		Code   string `json:"code"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		c.Action = strings.TrimSpace(string(payload)) // a bare action, without code
	}
	next, ok := alarmActions[strings.ToUpper(c.Action)]
	if !ok {
		a.d.log.Warn("ignoring unknown alarm action", "action", c.Action)
		return nil
	}
	if next != "triggered" && c.Code != a.d.cfg.AlarmCode {
		a.d.log.Warn("alarm command refused: wrong code", "action", c.Action)
		return a.state() // firmware reports its unchanged state
	}
	a.target = ""
	switch {
	case strings.HasPrefix(next, "armed_"):
		a.cur, a.target = "arming", next
	default:
		a.cur = next
	}
	return a.state()
}

func (a *alarm) pending() time.Duration {
	if a.target != "" {
		return alarmExitDelay
	}
	return 0
}

func (a *alarm) step() []message {
	if a.target == "" {
		return nil
	}
	a.cur, a.target = a.target, ""
	return a.state()
}

func (a *alarm) tick() []message { return a.state() }

// button is an identify button: it is pressed, it keeps no state.
type button struct{ d *device }

func (b *button) discovery() []message {
	d := b.d
	return []message{jsonMsg(d.configTopic("button", "identify"), map[string]any{
		"name":    "Identify",
		"uniq_id": d.id + "_identify",
		"cmd_t":   d.base() + "/identify",
		"pl_prs":  "PRESS",
		"dev_cla": "identify",
		"ent_cat": "config",
		"avty_t":  d.status(),
		"dev":     d.deviceAbbr("Smart plug", "homemesh"),
		"o":       origin(),
	}, true)}
}

func (b *button) availability() (string, string, string) { return b.d.status(), "online", "offline" }
func (b *button) commands() []string                     { return []string{b.d.base() + "/identify"} }
func (b *button) state() []message                       { return nil }
func (b *button) command(_ string, payload []byte) []message {
	if string(payload) == "PRESS" {
		b.d.log.Info("identify pressed: blinking")
	}
	return nil
}
func (b *button) tick() []message { return nil }

// number is a humidifier's target humidity setting.
type number struct {
	d     *device
	value float64
}

func (n *number) discovery() []message {
	d := n.d
	return []message{jsonMsg(d.configTopic("number", "target_humidity"), map[string]any{
		"name":         "Target humidity",
		"uniq_id":      d.id + "_target_humidity",
		"cmd_t":        d.base() + "/target_humidity/set",
		"stat_t":       d.base() + "/target_humidity",
		"min":          30,
		"max":          80,
		"step":         5,
		"mode":         "slider",
		"unit_of_meas": "%",
		"avty_t":       d.status(),
		"dev":          d.deviceAbbr("Humidifier", "homemesh"),
		"o":            origin(),
	}, true)}
}

func (n *number) availability() (string, string, string) { return n.d.status(), "online", "offline" }
func (n *number) commands() []string                     { return []string{n.d.base() + "/target_humidity/set"} }
func (n *number) state() []message {
	return []message{textMsg(n.d.base()+"/target_humidity", strconv.FormatFloat(n.value, 'f', -1, 64), false)}
}

func (n *number) command(_ string, payload []byte) []message {
	v, ok := parseNumber(string(payload))
	if !ok {
		n.d.log.Warn("ignoring malformed number", "payload", string(payload))
		return nil
	}
	n.value = math.Max(30, math.Min(80, math.Round(v/5)*5))
	return n.state()
}

func (n *number) tick() []message { return n.state() }

// selector is a heater's operating mode.
type selector struct {
	d      *device
	option string
}

var selectOptions = []string{"eco", "comfort", "boost"}

func (s *selector) discovery() []message {
	d := s.d
	return []message{jsonMsg(d.configTopic("select", "mode"), map[string]any{
		"name":    "Mode",
		"uniq_id": d.id + "_mode",
		"cmd_t":   d.base() + "/mode/set",
		"stat_t":  d.base() + "/mode",
		"options": selectOptions,
		"avty_t":  d.status(),
		"dev":     d.deviceAbbr("Heater", "homemesh"),
		"o":       origin(),
	}, true)}
}

func (s *selector) availability() (string, string, string) { return s.d.status(), "online", "offline" }
func (s *selector) commands() []string                     { return []string{s.d.base() + "/mode/set"} }
func (s *selector) state() []message {
	return []message{textMsg(s.d.base()+"/mode", s.option, false)}
}

func (s *selector) command(_ string, payload []byte) []message {
	p := strings.TrimSpace(string(payload))
	for _, o := range selectOptions {
		if p == o {
			s.option = o
			return s.state()
		}
	}
	s.d.log.Warn("ignoring unknown option", "payload", p)
	return nil
}

func (s *selector) tick() []message { return s.state() }

// eventButton is a wireless remote: it has no state, only events.
type eventButton struct{ d *device }

var eventTypes = []string{"press", "double_press", "hold"}

func (e *eventButton) discovery() []message {
	d := e.d
	return []message{jsonMsg(d.configTopic("event", "button"), map[string]any{
		"name":        "Button",
		"uniq_id":     d.id + "_button",
		"stat_t":      d.base() + "/event",
		"event_types": eventTypes,
		"dev_cla":     "button",
		"avty_t":      d.status(),
		"dev":         d.deviceAbbr("Wireless remote", "homemesh"),
		"o":           origin(),
	}, true)}
}

func (e *eventButton) availability() (string, string, string) {
	return e.d.status(), "online", "offline"
}
func (e *eventButton) commands() []string               { return nil }
func (e *eventButton) state() []message                 { return nil }
func (e *eventButton) command(string, []byte) []message { return nil }

func (e *eventButton) tick() []message {
	return []message{jsonMsg(e.d.base()+"/event", map[string]string{"event_type": eventTypes[e.d.rng.IntN(len(eventTypes))]}, false)}
}
