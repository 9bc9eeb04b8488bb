package discovery

import (
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
)

func boolp(b bool) *bool { return &b }

func TestDecode(t *testing.T) {
	tests := []struct {
		name, fixture, inline, topic, payload string
		prev                                  homemesh.State
		want                                  Update
		wantErr                               string // the error's field, when one is expected
	}{
		{name: "z2m sensor temperature", fixture: "z2m_sensor_temperature", topic: "zigbee2mqtt/weather_sensor",
			payload: `{"temperature":21.5,"humidity":40,"linkquality":120}`, want: Update{Value: 21.5, HasValue: true}},
		{name: "z2m sensor missing key", fixture: "z2m_sensor_temperature", topic: "zigbee2mqtt/weather_sensor",
			payload: `{"humidity":40}`, want: Update{}},
		{name: "z2m bridge online", fixture: "z2m_sensor_temperature", topic: "zigbee2mqtt/bridge/state",
			payload: `{"state":"online"}`, want: Update{Available: boolp(true)}},
		{name: "z2m bridge offline", fixture: "z2m_sensor_temperature", topic: "zigbee2mqtt/bridge/state",
			payload: `{"state":"offline"}`, want: Update{Available: boolp(false)}},
		{name: "tasmota energy power", fixture: "tasmota_sensor_energy_power", topic: "tele/tasmota_DC4F22/SENSOR",
			payload: `{"Time":"2024-01-01T00:00:00","ENERGY":{"Total":1.5,"Power":42}}`, want: Update{Value: 42.0, HasValue: true}},
		{name: "tasmota lwt", fixture: "tasmota_sensor_energy_power", topic: "tele/tasmota_DC4F22/LWT",
			payload: `Online`, want: Update{Available: boolp(true)}},
		{name: "tasmota lwt other", fixture: "tasmota_sensor_energy_power", topic: "tele/tasmota_DC4F22/LWT",
			payload: `Rebooting`, want: Update{}},
		{name: "sensor non numeric", fixture: "ha_docs_sensor_full_device", topic: "homeassistant/sensor/sensorBedroom/state",
			payload: `{"temperature":"n/a"}`, want: Update{Value: "n/a", HasValue: true}},
		{name: "sensor None", fixture: "ha_docs_sensor_full_device", topic: "homeassistant/sensor/sensorBedroom/state",
			payload: `{"temperature":"None"}`, want: Update{Value: nil, HasValue: true}},
		{name: "enum sensor with attributes", fixture: "ha_docs_sensor_enum_json_attributes", topic: "washer/state",
			payload: `{"state":"washing","info":{"program":"eco","left":12}}`,
			want:    Update{Value: "washing", HasValue: true, Attributes: map[string]any{"program": "eco", "left": 12}}},
		{name: "enum sensor bad option", fixture: "ha_docs_sensor_enum_json_attributes", topic: "washer/state",
			payload: `{"state":"spinning","info":{}}`, wantErr: "state_topic"},
		{name: "binary sensor on", fixture: "ha_docs_binary_sensor_motion", topic: "homeassistant/binary_sensor/garden/state",
			payload: `ON`, want: Update{Value: "on", HasValue: true}},
		{name: "binary sensor off", fixture: "esphome_binary_sensor", topic: "livingroom/binary_sensor/window_contact/state",
			payload: `OFF`, want: Update{Value: "off", HasValue: true}},
		{name: "binary sensor garbage", fixture: "esphome_binary_sensor", topic: "livingroom/binary_sensor/window_contact/state",
			payload: `MAYBE`, wantErr: "state_topic"},
		{name: "availability all, one up", fixture: "ha_test_availability_all", topic: "avail1",
			payload: `online`, want: Update{Available: boolp(false)}},
		{name: "availability template", fixture: "ha_test_availability_all", topic: "avail2",
			payload: `{"state":"up"}`, want: Update{Available: boolp(false)}},
		{name: "z2m switch left", fixture: "z2m_switch_left", topic: "zigbee2mqtt/wall_switch_double",
			payload: `{"state_left":"ON","state_right":"OFF"}`, want: Update{Value: "on", HasValue: true}},
		{name: "tasmota switch", fixture: "tasmota_switch_tilde", topic: "kitchen_left_lighting/tele/STATE",
			payload: `{"Time":"2024-01-01T00:00:00","POWER":"OFF"}`, want: Update{Value: "off", HasValue: true}},
		{name: "z2m json light", fixture: "z2m_light_json_bulb", topic: "zigbee2mqtt/bulb",
			payload: `{"state":"ON","brightness":254,"color_temp":370,"color_mode":"color_temp","linkquality":90}`,
			want: Update{Value: "on", HasValue: true, Attributes: map[string]any{
				"brightness": 255, "color_temp": 370, "color_temp_kelvin": 2703, "color_mode": "color_temp"}}},
		{name: "z2m json light xy", fixture: "z2m_light_json_group", topic: "zigbee2mqtt/ha_discovery_group",
			payload: `{"state":"OFF","brightness":127,"color":{"x":0.3,"y":0.4}}`,
			want:    Update{Value: "off", HasValue: true, Attributes: map[string]any{"brightness": 128, "xy_color": []float64{0.3, 0.4}}}},
		{name: "esphome json light rgb", fixture: "esphome_light_rgb", topic: "livingroom/light/rgb_strip/state",
			payload: `{"state":"ON","color_mode":"rgb","brightness":255,"color":{"r":255,"g":0,"b":10},"effect":"Rainbow"}`,
			want: Update{Value: "on", HasValue: true, Attributes: map[string]any{
				"brightness": 255, "color_mode": "rgb", "rgb_color": []int{255, 0, 10}, "effect": "Rainbow"}}},
		{name: "json light not json", fixture: "esphome_light_rgb", topic: "livingroom/light/rgb_strip/state",
			payload: `ON`, wantErr: "state_topic"},
		{name: "default light state", fixture: "ha_docs_light_default_rgb", topic: "office/rgb1/light/status",
			payload: `{"state":"ON"}`, want: Update{Value: "on", HasValue: true}},
		{name: "default light brightness scale 100", fixture: "ha_docs_light_default_rgb", topic: "office/rgb1/brightness/status",
			payload: `{"brightness":50}`, want: Update{Attributes: map[string]any{"brightness": 128}}},
		{name: "default light kelvin", fixture: "ha_docs_light_default_rgb", topic: "office/rgb1/ct/status",
			payload: `4000`, want: Update{Attributes: map[string]any{"color_temp_kelvin": 4000, "color_temp": 250}}},
		{name: "default light rgb", fixture: "ha_docs_light_default_rgb", topic: "office/rgb1/rgb/status",
			payload: `{"rgb":[1,2,3]}`, want: Update{Attributes: map[string]any{"rgb_color": []int{1, 2, 3}}}},
		{name: "template light", fixture: "ha_docs_light_template", topic: "home/rgbw1/status",
			payload: `on,128,255-10-0,rainbow`,
			want:    Update{Value: "on", HasValue: true, Attributes: map[string]any{"brightness": 128, "rgb_color": []int{255, 10, 0}, "effect": "rainbow"}}},
		{name: "climate mode", fixture: "z2m_climate_ts0601", topic: "zigbee2mqtt/TS0601_thermostat",
			payload: `{"system_mode":"heat","current_heating_setpoint":21.5,"local_temperature":19.2,"preset":"manual","running_state":"heat"}`,
			want: Update{Value: "heat", HasValue: true, Attributes: map[string]any{
				"temperature": 21.5, "current_temperature": 19.2, "preset_mode": "manual", "hvac_action": "heating"}}},
		{name: "climate mode template", fixture: "z2m_climate_bosch_mode_templates", topic: "zigbee2mqtt/bosch_radiator",
			payload: `{"operating_mode":"schedule","occupied_heating_setpoint":20,"local_temperature":18,"running_state":"idle"}`,
			want: Update{Value: "auto", HasValue: true, Attributes: map[string]any{
				"temperature": 20.0, "current_temperature": 18.0, "hvac_action": "idle"}}},
		{name: "climate bad mode", fixture: "z2m_climate_ts0601", topic: "zigbee2mqtt/TS0601_thermostat",
			payload: `{"system_mode":"cool"}`, wantErr: "mode_state_topic"},
		{name: "climate current temperature", fixture: "ha_docs_climate_full", topic: "study/ac/temperature",
			payload: `23.5`, want: Update{Attributes: map[string]any{"current_temperature": 23.5}}},
		{name: "z2m lock", fixture: "z2m_lock", topic: "zigbee2mqtt/front_door",
			payload: `{"state":"LOCK","battery":90}`, want: Update{Value: "locked", HasValue: true}},
		{name: "z2m unlock", fixture: "z2m_lock", topic: "zigbee2mqtt/front_door",
			payload: `{"state":"UNLOCK"}`, want: Update{Value: "unlocked", HasValue: true}},
		{name: "lock jammed", inline: `{"cmd_t":"l/set","stat_t":"l/state","stat_jam":"MOTOR_JAMMED","pl_open":"OPEN"}`, topic: "l/state",
			payload: `MOTOR_JAMMED`, want: Update{Value: "jammed", HasValue: true}},
		{name: "lock opening", inline: `{"cmd_t":"l/set","stat_t":"l/state","stat_jam":"MOTOR_JAMMED","pl_open":"OPEN"}`, topic: "l/state",
			payload: `OPENING`, want: Update{Value: "opening", HasValue: true}},
		{name: "lock unknown", inline: `{"cmd_t":"l/set","stat_t":"l/state"}`, topic: "l/state",
			payload: `WAT`, wantErr: "state_topic"},
		{name: "lock docs template on plain payload", fixture: "ha_docs_lock_open_code", topic: "home-assistant/frontdoor/state",
			payload: `LOCK`, want: Update{}},
		{name: "z2m cover", fixture: "z2m_cover_smart_vent", topic: "zigbee2mqtt/smart vent",
			payload: `{"state":"OPEN","position":40}`,
			want:    Update{Value: "open", HasValue: true, Attributes: map[string]any{"current_position": 40, "state": "OPEN", "position": 40}}},
		{name: "cover stopped at 0", fixture: "z2m_cover_smart_vent", topic: "zigbee2mqtt/smart vent",
			payload: `{"state":"STOP","position":0}`, prev: homemesh.State{Attributes: map[string]any{"current_position": 0}},
			want: Update{Value: "closed", HasValue: true, Attributes: map[string]any{"current_position": 0, "state": "STOP", "position": 0}}},
		{name: "cover position range", inline: `{"cmd_t":"c/set","pos_t":"c/pos","pos_open":255,"pos_clsd":0}`, topic: "c/pos",
			payload: `128`, want: Update{Value: "open", HasValue: true, Attributes: map[string]any{"current_position": 50}}},
		{name: "cover inverted range", inline: `{"cmd_t":"c/set","pos_t":"c/pos","pos_open":0,"pos_clsd":100}`, topic: "c/pos",
			payload: `100`, want: Update{Value: "closed", HasValue: true, Attributes: map[string]any{"current_position": 0}}},
		{name: "cover closing", inline: `{"cmd_t":"c/set","stat_t":"c/state"}`, topic: "c/state",
			payload: `closing`, want: Update{Value: "closing", HasValue: true}},
		{name: "cover stopped after closing", inline: `{"cmd_t":"c/set","stat_t":"c/state"}`, topic: "c/state",
			payload: `stopped`, prev: homemesh.State{Value: "closing"}, want: Update{Value: "closed", HasValue: true}},
		{name: "cover tilt", fixture: "ha_docs_cover_position_range", topic: "living-room-cover/tilt-state",
			payload: `{"PWM":{"PWM1":90}}`, want: Update{Attributes: map[string]any{"current_tilt_position": 50}}},
		{name: "z2m fan", fixture: "z2m_fan", topic: "zigbee2mqtt/fan",
			payload: `{"fan_state":"ON","fan_mode":"medium"}`,
			want:    Update{Value: "on", HasValue: true, Attributes: map[string]any{"percentage": 50, "preset_mode": nil}}},
		{name: "z2m fan smart", fixture: "z2m_fan", topic: "zigbee2mqtt/fan",
			payload: `{"fan_state":"ON","fan_mode":"smart"}`,
			want:    Update{Value: "on", HasValue: true, Attributes: map[string]any{"percentage": nil, "preset_mode": "smart"}}},
		{name: "fan oscillation", fixture: "ha_docs_fan_full", topic: "home-assistant/fan/oscillation/state",
			payload: `true`, want: Update{Attributes: map[string]any{"oscillating": true}}},
		{name: "fan percentage", fixture: "ha_docs_fan_full", topic: "home-assistant/fan/speed/percentage_state",
			payload: `3`, want: Update{Attributes: map[string]any{"percentage": 30}}},
		{name: "fan direction", fixture: "ha_docs_fan_full", topic: "home-assistant/fan/direction/state",
			payload: `reverse`, want: Update{Attributes: map[string]any{"direction": "reverse"}}},
		{name: "alarm", fixture: "ha_docs_alarm_remote_code", topic: "home/alarm",
			payload: `armed_away`, want: Update{Value: "armed_away", HasValue: true}},
		{name: "alarm bad", fixture: "ha_docs_alarm_remote_code", topic: "home/alarm",
			payload: `ARMED`, wantErr: "state_topic"},
		{name: "number", fixture: "ha_docs_number", topic: "thermostat/offset",
			payload: `-1.5`, want: Update{Value: -1.5, HasValue: true}},
		{name: "number out of range", fixture: "ha_docs_number", topic: "thermostat/offset",
			payload: `9`, wantErr: "state_topic"},
		{name: "select", fixture: "shelly_script_select", topic: "shellyplus1pm-a8032ab1c2d3/mode",
			payload: `manual`, want: Update{Value: "manual", HasValue: true}},
		{name: "select unknown", fixture: "shelly_script_select", topic: "shellyplus1pm-a8032ab1c2d3/mode",
			payload: `turbo`, wantErr: "state_topic"},
		{name: "device based humidity", fixture: "ha_docs_device_partial_removal", topic: "sensorBedroom/state",
			payload: `{"temperature":23.2,"humidity":43.7}`, want: Update{Value: 43.7, HasValue: true}},
		{name: "unknown topic", fixture: "z2m_switch_left", topic: "zigbee2mqtt/other", payload: `{}`, wantErr: "topic"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Config
			if tt.inline != "" {
				c = parseInline(t, tt.inline)
			} else {
				c = parseFixture(t, tt.fixture)
			}
			got, err := c.Decode(tt.topic, []byte(tt.payload), tt.prev)
			if tt.wantErr != "" {
				if err == nil || homemesh.ErrorField(err) != tt.wantErr || homemesh.ErrorKind(err) != homemesh.KindInvalid {
					t.Fatalf("error %v (field %q), want one on %q", err, homemesh.ErrorField(err), tt.wantErr)
				}
				if tt.want.Attributes == nil && !tt.want.HasValue {
					return
				}
			} else if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

// parseInline parses a config for the component its options imply.
func parseInline(t testing.TB, payload string) *Config {
	t.Helper()
	component := "lock"
	switch {
	case strings.Contains(payload, "pos_t") || strings.Contains(payload, `"c/`):
		component = "cover"
	case strings.Contains(payload, `"component":`):
		component = strings.Split(strings.Split(payload, `"component":"`)[1], `"`)[0]
	}
	a, err := Parse(DefaultPrefix, "homeassistant/"+component+"/inline/config", []byte(payload))
	if err != nil || len(a.Configs) != 1 {
		t.Fatalf("Parse: %v %v", err, a.Errors)
	}
	return a.Configs[0]
}

func TestDecodeEvent(t *testing.T) {
	c := parseFixture(t, "z2m_event_action")
	tests := []struct {
		payload string
		want    Update
	}{
		{`{"action":"double","battery":100}`, Update{Value: "double", HasValue: true}},
		{`{"action":"hold"}`, Update{Value: "hold", HasValue: true}},
	}
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			got, err := c.Decode("zigbee2mqtt/button", []byte(tt.payload), homemesh.State{})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// An action outside event_types is an error, not a silent event.
	if _, err := c.Decode("zigbee2mqtt/button", []byte(`{"action":"left_press"}`), homemesh.State{}); homemesh.ErrorField(err) != "state_topic" {
		t.Errorf("left_press: %v", err)
	}
}

func TestDecodeSimpleEvent(t *testing.T) {
	a, err := Parse(DefaultPrefix, "homeassistant/event/doorbell/config",
		[]byte(`{"name":"Doorbell","stat_t":"doorbell/event","evt_typ":["press","hold"],"uniq_id":"bell1"}`))
	if err != nil || len(a.Configs) != 1 {
		t.Fatalf("Parse: %v %v", err, a.Errors)
	}
	got, err := a.Configs[0].Decode("doorbell/event", []byte(`{"event_type":"hold","duration":2.5}`), homemesh.State{})
	if err != nil {
		t.Fatal(err)
	}
	want := Update{Value: "hold", HasValue: true, Attributes: map[string]any{"duration": 2.5}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := a.Configs[0].Decode("doorbell/event", []byte(`{"event_type":"ring"}`), homemesh.State{}); homemesh.ErrorField(err) != "state_topic" {
		t.Errorf("unknown event type: %v", err)
	}
}

func TestAvailabilityModes(t *testing.T) {
	mk := func(mode string) *Config {
		a, err := Parse(DefaultPrefix, "homeassistant/sensor/x/config",
			[]byte(`{"stat_t":"s","avty":[{"t":"a"},{"t":"b"}],"avty_mode":"`+mode+`"}`))
		if err != nil || len(a.Configs) != 1 {
			t.Fatalf("Parse: %v %v", err, a.Errors)
		}
		return a.Configs[0]
	}
	steps := []struct{ topic, payload string }{{"a", "online"}, {"b", "offline"}, {"b", "online"}, {"a", "offline"}}
	want := map[string][]bool{
		"latest": {true, false, true, false},
		"any":    {true, true, true, true},
		"all":    {false, false, true, false},
	}
	for mode, expect := range want {
		t.Run(mode, func(t *testing.T) {
			c := mk(mode)
			if c.InitialAvailable() {
				t.Error("InitialAvailable with availability configured")
			}
			for i, s := range steps {
				u, err := c.Decode(s.topic, []byte(s.payload), homemesh.State{})
				if err != nil || u.Available == nil {
					t.Fatalf("step %d: %v %+v", i, err, u)
				}
				if *u.Available != expect[i] {
					t.Errorf("step %d (%s=%s): available %v, want %v", i, s.topic, s.payload, *u.Available, expect[i])
				}
			}
		})
	}
}

func TestDecodeConcurrent(t *testing.T) {
	c := parseFixture(t, "z2m_light_json_bulb")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if _, err := c.Decode("zigbee2mqtt/bulb", []byte(`{"state":"ON","brightness":10}`), homemesh.State{}); err != nil {
					t.Error(err)
					return
				}
				if _, err := c.Decode("zigbee2mqtt/bridge/state", []byte(`{"state":"online"}`), homemesh.State{}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzDecode(f *testing.F) {
	for _, name := range []string{"z2m_light_json_bulb", "z2m_climate_ts0601", "z2m_cover_smart_vent", "z2m_fan",
		"ha_docs_light_default_rgb", "ha_docs_light_template", "ha_test_availability_all", "ha_docs_sensor_enum_json_attributes"} {
		f.Add(name, []byte(`{"state":"ON","brightness":1e308,"color":{"r":-1},"position":"x","fan_mode":"low"}`))
		f.Add(name, []byte(`on,,a-b,`))
	}
	configs := map[string]*Config{}
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		c, ok := configs[name]
		if !ok {
			if len(configs) > 0 {
				for _, any := range configs {
					c = any
					break
				}
			} else {
				c = parseFixture(t, "z2m_light_json_bulb")
				configs[name] = c
			}
		}
		for _, topic := range c.Topics() {
			_, _ = c.Decode(topic, payload, homemesh.State{Value: "closing", Attributes: map[string]any{"current_position": "x"}})
		}
	})
}
