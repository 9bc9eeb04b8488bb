package discovery

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
)

func pub(topic, payload string) Publish { return Publish{Topic: topic, Payload: []byte(payload)} }

func TestCommand(t *testing.T) {
	type P = map[string]any
	tests := []struct {
		name, fixture, inline string
		cmd                   string
		params                P
		current               homemesh.State
		want                  []Publish
		wantErr               string // field
	}{
		// light, json schema
		{name: "z2m json light brightness default scale", inline: `{"component":"light","schema":"json","cmd_t":"zigbee2mqtt/kitchen/set","stat_t":"zigbee2mqtt/kitchen","brightness":true,"sup_clrm":["brightness"]}`,
			cmd: "turn_on", params: P{"brightness": 128.0}, want: []Publish{pub("zigbee2mqtt/kitchen/set", `{"state":"ON","brightness":128}`)}},
		{name: "z2m json light brightness scale 254", fixture: "z2m_light_json_brightness",
			cmd: "turn_on", params: P{"brightness": 128.0}, want: []Publish{pub("zigbee2mqtt/bulb_enddevice/set", `{"state":"ON","brightness":127}`)}},
		{name: "z2m json light brightness_pct", fixture: "z2m_light_json_brightness",
			cmd: "turn_on", params: P{"brightness_pct": 100.0}, want: []Publish{pub("zigbee2mqtt/bulb_enddevice/set", `{"state":"ON","brightness":254}`)}},
		{name: "z2m json light color temp", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"color_temp": 300.0, "transition": 2.0}, want: []Publish{pub("zigbee2mqtt/bulb/set", `{"state":"ON","transition":2,"color_temp":300}`)}},
		{name: "z2m json light kelvin", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"color_temp_kelvin": 2500.0}, want: []Publish{pub("zigbee2mqtt/bulb/set", `{"state":"ON","color_temp":400}`)}},
		{name: "z2m json light color temp out of range", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"color_temp": 153.0}, wantErr: "params.color_temp"},
		{name: "z2m json light effect", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"effect": "breathe"}, want: []Publish{pub("zigbee2mqtt/bulb/set", `{"state":"ON","effect":"breathe"}`)}},
		{name: "z2m json light unknown effect", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"effect": "disco"}, wantErr: "params.effect"},
		{name: "z2m json light no colour", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"rgb_color": []any{255.0, 0.0, 0.0}}, wantErr: "params.rgb_color"},
		{name: "z2m json light rgb to xy", fixture: "z2m_light_json_group",
			cmd: "turn_on", params: P{"rgb_color": []any{255.0, 0.0, 0.0}}, want: []Publish{pub("zigbee2mqtt/ha_discovery_group/set", `{"state":"ON","color":{"x":0.701,"y":0.299}}`)}},
		{name: "esphome json light rgb", fixture: "esphome_light_rgb",
			cmd: "turn_on", params: P{"rgb_color": []any{255.0, 10.0, 0.0}, "brightness": 255.0}, want: []Publish{pub("livingroom/light/rgb_strip/command", `{"state":"ON","color":{"r":255,"g":10,"b":0},"brightness":255}`)}},
		{name: "esphome json light hs to rgb", fixture: "esphome_light_rgb",
			cmd: "turn_on", params: P{"hs_color": []any{120.0, 100.0}}, want: []Publish{pub("livingroom/light/rgb_strip/command", `{"state":"ON","color":{"r":0,"g":255,"b":0}}`)}},
		{name: "json light brightness too high", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"brightness": 300.0}, wantErr: "params.brightness"},
		{name: "json light brightness wrong type", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"brightness": "high"}, wantErr: "params.brightness"},
		{name: "json light unknown param", fixture: "z2m_light_json_bulb",
			cmd: "turn_on", params: P{"flash": "long"}, wantErr: "params.flash"},
		{name: "json light off", fixture: "z2m_light_json_bulb",
			cmd: "turn_off", params: P{"transition": 1.5}, want: []Publish{pub("zigbee2mqtt/bulb/set", `{"state":"OFF","transition":1.5}`)}},
		{name: "json light toggle when on", fixture: "z2m_light_json_bulb", current: homemesh.State{Value: "on"},
			cmd: "toggle", want: []Publish{pub("zigbee2mqtt/bulb/set", `{"state":"OFF"}`)}},
		{name: "onoff light cannot dim", fixture: "ha_docs_light_json_tilde", inline: "",
			cmd: "turn_on", params: P{"brightness": 10.0}, want: []Publish{pub("homeassistant/light/kitchen/set", `{"state":"ON","brightness":10}`)}},
		// light, default schema
		{name: "default light on last", fixture: "ha_docs_light_default_rgb",
			cmd: "turn_on", params: P{"brightness": 255.0}, want: []Publish{
				pub("office/rgb1/light/switch", "ON"), pub("office/rgb1/brightness/set", "100")}},
		{name: "default light rgb and kelvin", inline: `{"component":"light","cmd_t":"l/set","rgb_cmd_t":"l/rgb","clr_temp_cmd_t":"l/ct","bri_cmd_t":"l/bri"}`,
			cmd: "turn_on", params: P{"rgb_color": []any{1.0, 2.0, 3.0}, "brightness": 1.0}, want: []Publish{
				pub("l/rgb", "1,2,3"), pub("l/bri", "1"), pub("l/set", "ON")}},
		{name: "default light mireds", inline: `{"component":"light","cmd_t":"l/set","clr_temp_cmd_t":"l/ct"}`,
			cmd: "turn_on", params: P{"color_temp_kelvin": 4000.0}, want: []Publish{pub("l/ct", "250"), pub("l/set", "ON")}},
		{name: "default light brightness on type", inline: `{"component":"light","cmd_t":"l/set","bri_cmd_t":"l/bri","on_cmd_type":"brightness","bri_cmd_tpl":"{{ value }}%"}`,
			cmd: "turn_on", want: []Publish{pub("l/bri", "255%")}},
		{name: "default light off", fixture: "ha_docs_light_default_rgb",
			cmd: "turn_off", want: []Publish{pub("office/rgb1/light/switch", "OFF")}},
		// light, template schema
		{name: "template light on", fixture: "ha_docs_light_template",
			cmd: "turn_on", params: P{"brightness": 100.0, "rgb_color": []any{255.0, 0.0, 0.0}}, want: []Publish{pub("home/rgbw1/set", "on,100,255-0-0,-")}},
		{name: "template light off", fixture: "ha_docs_light_template",
			cmd: "turn_off", want: []Publish{pub("home/rgbw1/set", "off")}},
		// switch
		{name: "tasmota switch on", fixture: "tasmota_switch_tilde", cmd: "turn_on", want: []Publish{pub("kitchen_left_lighting/cmnd/POWER", "ON")}},
		{name: "tasmota switch off", fixture: "tasmota_switch_tilde", cmd: "turn_off", want: []Publish{pub("kitchen_left_lighting/cmnd/POWER", "OFF")}},
		{name: "switch toggle when off", fixture: "z2m_switch_left", current: homemesh.State{Value: "off"},
			cmd: "toggle", want: []Publish{pub("zigbee2mqtt/wall_switch_double/left/set", "ON")}},
		{name: "switch unknown command", fixture: "z2m_switch_left", cmd: "open_cover", wantErr: "command"},
		{name: "switch expansion", fixture: "ha_test_expansion_tilde_both_ends", cmd: "turn_on", want: []Publish{pub("some/base/topic/test_topic", "ON")}},
		// climate
		{name: "climate set temperature", fixture: "z2m_climate_ts0601", cmd: "set_temperature", params: P{"temperature": 21.5},
			want: []Publish{pub("zigbee2mqtt/TS0601_thermostat/set/current_heating_setpoint", "21.5")}},
		{name: "climate set temperature whole", fixture: "z2m_climate_ts0601", cmd: "set_temperature", params: P{"temperature": 21.0, "hvac_mode": "heat"},
			want: []Publish{pub("zigbee2mqtt/TS0601_thermostat/set/system_mode", "heat"), pub("zigbee2mqtt/TS0601_thermostat/set/current_heating_setpoint", "21.0")}},
		{name: "climate temperature range", fixture: "z2m_climate_ts0601", cmd: "set_temperature", params: P{"temperature": 40.0}, wantErr: "params.temperature"},
		{name: "climate temperature missing", fixture: "z2m_climate_ts0601", cmd: "set_temperature", params: P{}, wantErr: "params.temperature"},
		{name: "climate low without topic", fixture: "z2m_climate_ts0601", cmd: "set_temperature", params: P{"target_temp_low": 20.0}, wantErr: "params.target_temp_low"},
		{name: "climate hvac mode", fixture: "z2m_climate_ts0601", cmd: "set_hvac_mode", params: P{"hvac_mode": "auto"},
			want: []Publish{pub("zigbee2mqtt/TS0601_thermostat/set/system_mode", "auto")}},
		{name: "climate hvac mode unsupported", fixture: "z2m_climate_ts0601", cmd: "set_hvac_mode", params: P{"hvac_mode": "cool"}, wantErr: "params.hvac_mode"},
		{name: "climate mode template", fixture: "z2m_climate_bosch_mode_templates", cmd: "set_hvac_mode", params: P{"hvac_mode": "heat"},
			want: []Publish{pub("zigbee2mqtt/bosch_radiator/set", `{"operating_mode": "manual"}`)}},
		{name: "climate preset", fixture: "z2m_climate_ts0601", cmd: "set_preset_mode", params: P{"preset_mode": "eco"},
			want: []Publish{pub("zigbee2mqtt/TS0601_thermostat/set/preset", "eco")}},
		{name: "climate fan mode", fixture: "ha_docs_climate_full", cmd: "set_fan_mode", params: P{"fan_mode": "low"},
			want: []Publish{pub("study/ac/fan/set", "low")}},
		{name: "climate fan mode bad", fixture: "ha_docs_climate_full", cmd: "set_fan_mode", params: P{"fan_mode": "auto"}, wantErr: "params.fan_mode"},
		{name: "climate power", fixture: "ha_docs_climate_full", cmd: "turn_off", want: []Publish{pub("study/ac/power/set", "OFF")}},
		{name: "climate docs mode template", fixture: "ha_docs_climate_full", cmd: "set_hvac_mode", params: P{"hvac_mode": "cool"},
			want: []Publish{pub("study/ac/mode/set", "on")}},
		// lock
		{name: "z2m lock", fixture: "z2m_lock", cmd: "lock", want: []Publish{pub("zigbee2mqtt/front_door/set", "LOCK")}},
		{name: "z2m unlock", fixture: "z2m_lock", cmd: "unlock", want: []Publish{pub("zigbee2mqtt/front_door/set", "UNLOCK")}},
		{name: "z2m lock cannot open", fixture: "z2m_lock", cmd: "open", wantErr: "command"},
		{name: "lock with code", fixture: "ha_docs_lock_open_code", cmd: "open", params: P{"code": "1234"},
			want: []Publish{{Topic: "home-assistant/frontdoor/set", Payload: []byte(`{ "action": "OPEN", "code":"1234" }`), QoS: 1, Retain: true}}},
		{name: "lock code format", fixture: "ha_docs_lock_open_code", cmd: "unlock", params: P{"code": "12"}, wantErr: "params.code"},
		{name: "lock code missing", fixture: "ha_docs_lock_open_code", cmd: "unlock", wantErr: "params.code"},
		// cover
		{name: "cover open", fixture: "z2m_cover_smart_vent", cmd: "open_cover", want: []Publish{pub("zigbee2mqtt/smart vent/set", "OPEN")}},
		{name: "cover stop", fixture: "z2m_cover_smart_vent", cmd: "stop_cover", want: []Publish{pub("zigbee2mqtt/smart vent/set", "STOP")}},
		{name: "z2m cover position", fixture: "z2m_cover_smart_vent", cmd: "set_cover_position", params: P{"position": 40.0},
			want: []Publish{pub("zigbee2mqtt/smart vent/set", `{ "position": 40 }`)}},
		{name: "cover position scaled", fixture: "ha_docs_cover_position_range", cmd: "set_cover_position", params: P{"position": 50.0},
			want: []Publish{{Topic: "living-room-cover/position/set", Payload: []byte("128"), Retain: true}}},
		{name: "cover position inverted", inline: `{"cmd_t":"c/set","set_pos_t":"c/pos/set","pos_open":0,"pos_clsd":100}`,
			cmd: "set_cover_position", params: P{"position": 30.0}, want: []Publish{pub("c/pos/set", "70")}},
		{name: "cover position range", fixture: "z2m_cover_smart_vent", cmd: "set_cover_position", params: P{"position": 101.0}, wantErr: "params.position"},
		{name: "cover tilt scaled", fixture: "ha_docs_cover_position_range", cmd: "set_cover_tilt_position", params: P{"tilt_position": 50.0},
			want: []Publish{{Topic: "living-room-cover/tilt", Payload: []byte("90"), Retain: true}}},
		{name: "cover tilt open", fixture: "ha_docs_cover_position_range", cmd: "open_cover_tilt",
			want: []Publish{{Topic: "living-room-cover/tilt", Payload: []byte("180"), Retain: true}}},
		{name: "cover without tilt", fixture: "z2m_cover_smart_vent", cmd: "set_cover_tilt_position", params: P{"tilt_position": 1.0}, wantErr: "command"},
		// fan
		{name: "z2m fan percentage", fixture: "z2m_fan", cmd: "set_percentage", params: P{"percentage": 50.0},
			want: []Publish{pub("zigbee2mqtt/fan/set/fan_mode", "medium")}},
		{name: "z2m fan percentage rounds up", fixture: "z2m_fan", cmd: "set_percentage", params: P{"percentage": 10.0},
			want: []Publish{pub("zigbee2mqtt/fan/set/fan_mode", "low")}},
		{name: "fan percentage zero turns off", fixture: "z2m_fan", cmd: "set_percentage", params: P{"percentage": 0.0},
			want: []Publish{pub("zigbee2mqtt/fan/set/fan_state", "OFF")}},
		{name: "fan preset", fixture: "z2m_fan", cmd: "set_preset_mode", params: P{"preset_mode": "smart"},
			want: []Publish{pub("zigbee2mqtt/fan/set/fan_mode", "smart")}},
		{name: "fan preset bad", fixture: "z2m_fan", cmd: "set_preset_mode", params: P{"preset_mode": "turbo"}, wantErr: "params.preset_mode"},
		{name: "fan turn on with percentage", fixture: "ha_docs_fan_full", cmd: "turn_on", params: P{"percentage": 35.0},
			want: []Publish{pub("home-assistant/fan/set", "true"), pub("home-assistant/fan/speed/percentage", "4")}},
		{name: "fan oscillate", fixture: "ha_docs_fan_full", cmd: "oscillate", params: P{"oscillating": false},
			want: []Publish{pub("home-assistant/fan/oscillation/set", "false")}},
		{name: "fan direction", fixture: "ha_docs_fan_full", cmd: "set_direction", params: P{"direction": "reverse"},
			want: []Publish{pub("home-assistant/fan/direction/set", "reverse")}},
		{name: "fan direction bad", fixture: "ha_docs_fan_full", cmd: "set_direction", params: P{"direction": "up"}, wantErr: "params.direction"},
		{name: "fan oscillate type", fixture: "ha_docs_fan_full", cmd: "oscillate", params: P{"oscillating": "yes"}, wantErr: "params.oscillating"},
		// alarm
		{name: "alarm arm away", fixture: "ha_docs_alarm_remote_code", cmd: "alarm_arm_away", params: P{"code": "1234"},
			want: []Publish{pub("home/alarm/set", `{ "action": "ARM_AWAY", "code": "1234" }`)}},
		{name: "alarm disarm without code", fixture: "ha_docs_alarm_remote_code", cmd: "alarm_disarm", wantErr: "params.code"},
		{name: "alarm unsupported feature", fixture: "ha_docs_alarm_remote_code", cmd: "alarm_arm_night", params: P{"code": "1"}, wantErr: "command"},
		{name: "alarm fixed code", inline: `{"component":"alarm_control_panel","stat_t":"a","cmd_t":"a/set","code":"4321"}`,
			cmd: "alarm_disarm", params: P{"code": "0000"}, wantErr: "params.code"},
		{name: "alarm fixed code ok", inline: `{"component":"alarm_control_panel","stat_t":"a","cmd_t":"a/set","code":"4321","cod_arm_req":false}`,
			cmd: "alarm_arm_home", want: []Publish{pub("a/set", "ARM_HOME")}},
		{name: "alarm trigger", inline: `{"component":"alarm_control_panel","stat_t":"a","cmd_t":"a/set"}`,
			cmd: "alarm_trigger", want: []Publish{pub("a/set", "TRIGGER")}},
		// button, number, select
		{name: "omg button", fixture: "omg_button_restart", cmd: "press", want: []Publish{pub("home/OpenMQTTGateway/commands/MQTTtoSYS/config", `{"cmd":"restart"}`)}},
		{name: "number template", fixture: "ha_docs_number", cmd: "set_value", params: P{"value": 1.5}, want: []Publish{pub("thermostat/offset/set", `{"offset": 1.5}`)}},
		{name: "number integer", fixture: "z2m_number_pi_heating_demand", cmd: "set_value", params: P{"value": 40.0}, want: []Publish{pub("zigbee2mqtt/bosch_radiator/set/pi_heating_demand", "40")}},
		{name: "number range", fixture: "ha_docs_number", cmd: "set_value", params: P{"value": 6.0}, wantErr: "params.value"},
		{name: "number missing", fixture: "ha_docs_number", cmd: "set_value", wantErr: "params.value"},
		{name: "select", fixture: "shelly_script_select", cmd: "select_option", params: P{"option": "manual"},
			want: []Publish{pub("shellyplus1pm-a8032ab1c2d3/mode/set", `{"mode": "manual"}`)}},
		{name: "select bad option", fixture: "shelly_script_select", cmd: "select_option", params: P{"option": "turbo"}, wantErr: "params.option"},
		{name: "sensor has no commands", fixture: "z2m_sensor_temperature", cmd: "turn_on", wantErr: "command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Config
			if tt.inline != "" {
				c = parseInline(t, tt.inline)
			} else {
				c = parseFixture(t, tt.fixture)
			}
			got, err := c.Command(homemesh.Command{Name: tt.cmd, Params: tt.params}, tt.current)
			if tt.wantErr != "" {
				if err == nil || homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.wantErr {
					t.Fatalf("error %v (field %q), want one on %q", err, homemesh.ErrorField(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Command: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Command (-want +got):\n%s", diff)
			}
		})
	}
}
