package discovery

import (
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/homemesh/homemesh"
)

// Home Assistant's defaults.
const (
	defaultMinMireds = 153
	defaultMaxMireds = 500
	defaultMinKelvin = 2000
	defaultMaxKelvin = 6535
)

var (
	defaultHVACModes  = []string{"auto", "off", "cool", "heat", "dry", "fan_only"}
	defaultFanModes   = []string{"auto", "low", "medium", "high"}
	defaultSwingModes = []string{"on", "off"}
	alarmFeatures     = []string{"arm_home", "arm_away", "arm_night", "arm_vacation", "arm_custom_bypass", "trigger"}
)

func ptr(f float64) *float64 { return &f }

func (c *Config) require(keys ...string) *ComponentError {
	for _, k := range keys {
		if !c.opts.has(k) {
			return c.fail(k, "is required for a %s", c.kind)
		}
	}
	return nil
}

func (c *Config) setupKind() *ComponentError {
	o := c.opts
	caps := &c.Entity.Capabilities
	switch c.kind {
	case homemesh.KindSensor:
		if err := c.require("state_topic"); err != nil {
			return err
		}
		if c.Entity.DeviceClass == "enum" {
			caps.Options = o.strs("options", nil)
		}
		c.subscribe("state_topic")
	case homemesh.KindBinarySensor:
		if err := c.require("state_topic"); err != nil {
			return err
		}
		c.subscribe("state_topic")
	case homemesh.KindSwitch:
		if err := c.require("command_topic"); err != nil {
			return err
		}
		c.subscribe("state_topic")
		caps.Commands = []string{"turn_on", "turn_off", "toggle"}
	case homemesh.KindLight:
		return c.setupLight()
	case homemesh.KindClimate:
		return c.setupClimate()
	case homemesh.KindLock:
		if err := c.require("command_topic"); err != nil {
			return err
		}
		c.subscribe("state_topic")
		caps.Open = o.has("payload_open")
		caps.CodeFormat = o.str("code_format")
		if _, err := regexp.Compile(caps.CodeFormat); err != nil {
			return c.fail("code_format", "is not a valid regular expression")
		}
		caps.Commands = []string{"lock", "unlock"}
		if caps.Open {
			caps.Commands = append(caps.Commands, "open")
		}
	case homemesh.KindCover:
		return c.setupCover()
	case homemesh.KindFan:
		return c.setupFan()
	case homemesh.KindAlarmControlPanel:
		if err := c.require("state_topic", "command_topic"); err != nil {
			return err
		}
		c.subscribe("state_topic")
		feats := o.strs("supported_features", alarmFeatures)
		for _, f := range feats {
			if !slices.Contains(alarmFeatures, f) {
				return c.fail("supported_features", "%q is not one of %s", f, strings.Join(alarmFeatures, ", "))
			}
		}
		caps.SupportedFeatures = feats
		if code := o.str("code"); code != "" {
			caps.CodeArmRequired = o.boolean("code_arm_required", true)
			caps.CodeDisarmRequired = o.boolean("code_disarm_required", true)
			caps.CodeFormat = "number"
			if code == "REMOTE_CODE_TEXT" || strings.IndexFunc(code, func(r rune) bool { return r < '0' || r > '9' }) >= 0 && code != "REMOTE_CODE" {
				caps.CodeFormat = "text"
			}
		}
		caps.Commands = []string{"alarm_disarm"}
		for _, f := range feats {
			caps.Commands = append(caps.Commands, "alarm_"+f)
		}
	case homemesh.KindButton:
		if err := c.require("command_topic"); err != nil {
			return err
		}
		caps.Commands = []string{"press"}
	case homemesh.KindNumber:
		if err := c.require("command_topic"); err != nil {
			return err
		}
		lo, hi, step := o.number("min", 1), o.number("max", 100), o.number("step", 1)
		if lo >= hi {
			return c.fail("max", "must be greater than min")
		}
		if step <= 0 {
			return c.fail("step", "must be positive")
		}
		caps.Min, caps.Max, caps.Step = ptr(lo), ptr(hi), step
		caps.Mode = o.strDefault("mode", "auto")
		c.subscribe("state_topic")
		caps.Commands = []string{"set_value"}
	case homemesh.KindSelect:
		if err := c.require("command_topic", "options"); err != nil {
			return err
		}
		caps.Options = o.strs("options", nil)
		if len(caps.Options) == 0 {
			return c.fail("options", "must list at least one option")
		}
		c.subscribe("state_topic")
		caps.Commands = []string{"select_option"}
	case homemesh.KindEvent:
		if err := c.require("state_topic", "event_types"); err != nil {
			return err
		}
		caps.EventTypes = o.strs("event_types", nil)
		if len(caps.EventTypes) == 0 {
			return c.fail("event_types", "must list at least one event type")
		}
		c.subscribe("state_topic")
	}
	return nil
}

func (c *Config) setupLight() *ComponentError {
	o := c.opts
	caps := &c.Entity.Capabilities
	c.schema = strings.ToLower(o.strDefault("schema", "default"))
	if c.schema == "basic" {
		c.schema = "default"
	}
	if err := c.require("command_topic"); err != nil {
		return err
	}
	var modes []string
	switch c.schema {
	case "default":
		for _, m := range []struct{ topic, mode string }{
			{"color_temp_command_topic", "color_temp"}, {"hs_command_topic", "hs"},
			{"rgb_command_topic", "rgb"}, {"rgbw_command_topic", "rgbw"},
			{"rgbww_command_topic", "rgbww"}, {"white_command_topic", "white"},
			{"xy_command_topic", "xy"},
		} {
			if o.has(m.topic) {
				modes = append(modes, m.mode)
			}
		}
		if len(modes) == 0 && o.has("brightness_command_topic") {
			modes = []string{"brightness"}
		}
		for _, t := range []string{"state_topic", "brightness_state_topic", "color_temp_state_topic",
			"rgb_state_topic", "hs_state_topic", "xy_state_topic", "effect_state_topic", "color_mode_state_topic"} {
			c.subscribe(t)
		}
	case "json":
		modes = o.strs("supported_color_modes", nil)
		if len(modes) == 0 {
			for _, m := range []string{"color_temp", "hs", "rgb", "xy"} {
				if o.boolean(m, false) {
					modes = append(modes, m)
				}
			}
			if len(modes) == 0 && o.boolean("brightness", false) {
				modes = []string{"brightness"}
			}
		}
		c.subscribe("state_topic")
	case "template":
		if err := c.require("command_on_template", "command_off_template"); err != nil {
			return err
		}
		if o.has("color_temp_template") {
			modes = append(modes, "color_temp")
		}
		if o.has("red_template") && o.has("green_template") && o.has("blue_template") {
			modes = append(modes, "hs")
		}
		if len(modes) == 0 && o.has("brightness_template") {
			modes = []string{"brightness"}
		}
		c.subscribe("state_topic")
	default:
		return c.fail("schema", "%q is not one of default, json, template", c.schema)
	}
	if len(modes) == 0 {
		modes = []string{"onoff"}
	}
	for _, m := range modes {
		switch m {
		case "onoff", "brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww", "white":
		default:
			return c.fail("supported_color_modes", "%q is not a color mode", m)
		}
	}
	caps.ColorModes = modes
	scale := o.number("brightness_scale", 255)
	if scale < 1 || scale > math.MaxInt32 {
		return c.fail("brightness_scale", "must be at least 1")
	}
	caps.BrightnessScale = int(scale)
	if slices.Contains(modes, "color_temp") {
		minK, maxK := c.kelvinRange()
		if minK <= 0 || minK >= maxK {
			return c.fail("min_kelvin", "the colour temperature range is empty")
		}
		caps.MinMireds = int(math.Round(1e6 / maxK))
		caps.MaxMireds = int(math.Round(1e6 / minK))
	}
	caps.Effects = o.strs("effect_list", nil)
	caps.Commands = []string{"turn_on", "turn_off", "toggle"}
	return nil
}

// kelvinRange returns the light's colour temperature range in kelvin.
func (c *Config) kelvinRange() (minK, maxK float64) {
	o := c.opts
	if o.boolean("color_temp_kelvin", false) || o.has("min_kelvin") || o.has("max_kelvin") {
		return o.number("min_kelvin", defaultMinKelvin), o.number("max_kelvin", defaultMaxKelvin)
	}
	minM, maxM := o.number("min_mireds", defaultMinMireds), o.number("max_mireds", defaultMaxMireds)
	if minM <= 0 || maxM <= 0 {
		return 0, 0
	}
	return 1e6 / maxM, 1e6 / minM
}

func (c *Config) setupClimate() *ComponentError {
	o := c.opts
	caps := &c.Entity.Capabilities
	caps.HVACModes = o.strs("modes", defaultHVACModes)
	for _, m := range caps.HVACModes {
		switch m {
		case "auto", "off", "cool", "heat", "dry", "fan_only", "heat_cool":
		default:
			return c.fail("modes", "%q is not an HVAC mode", m)
		}
	}
	if o.has("fan_mode_command_topic") || o.has("fan_mode_state_topic") {
		caps.FanModes = o.strs("fan_modes", defaultFanModes)
	}
	if o.has("swing_mode_command_topic") || o.has("swing_mode_state_topic") {
		caps.SwingModes = o.strs("swing_modes", defaultSwingModes)
	}
	caps.PresetModes = o.strs("preset_modes", nil)
	if slices.Contains(caps.PresetModes, "none") {
		return c.fail("preset_modes", `must not contain the reserved "none"`)
	}
	unit := strings.ToUpper(o.str("temperature_unit"))
	caps.TemperatureUnit = unit
	minDef, maxDef := 7.0, 35.0
	if unit == "F" {
		minDef, maxDef = 45, 95
	}
	lo, hi := o.number("min_temp", minDef), o.number("max_temp", maxDef)
	if lo >= hi {
		return c.fail("max_temp", "must be greater than min_temp")
	}
	caps.MinTemp, caps.MaxTemp = ptr(lo), ptr(hi)
	caps.TempStep = o.number("temp_step", 1)
	if caps.TempStep <= 0 {
		return c.fail("temp_step", "must be positive")
	}
	for _, t := range []string{"mode_state_topic", "temperature_state_topic", "temperature_low_state_topic",
		"temperature_high_state_topic", "current_temperature_topic", "current_humidity_topic",
		"target_humidity_state_topic", "fan_mode_state_topic", "swing_mode_state_topic",
		"preset_mode_state_topic", "action_topic"} {
		c.subscribe(t)
	}
	var cmds []string
	if o.has("power_command_topic") {
		cmds = append(cmds, "turn_on", "turn_off")
	}
	if o.has("mode_command_topic") {
		cmds = append(cmds, "set_hvac_mode")
	}
	if o.has("temperature_command_topic") || o.has("temperature_low_command_topic") || o.has("temperature_high_command_topic") {
		cmds = append(cmds, "set_temperature")
	}
	if o.has("target_humidity_command_topic") {
		cmds = append(cmds, "set_humidity")
	}
	if o.has("fan_mode_command_topic") {
		cmds = append(cmds, "set_fan_mode")
	}
	if o.has("swing_mode_command_topic") {
		cmds = append(cmds, "set_swing_mode")
	}
	if o.has("preset_mode_command_topic") && len(caps.PresetModes) > 0 {
		cmds = append(cmds, "set_preset_mode")
	}
	caps.Commands = cmds
	return nil
}

func (c *Config) setupCover() *ComponentError {
	o := c.opts
	caps := &c.Entity.Capabilities
	if o.number("position_open", 100) == o.number("position_closed", 0) {
		return c.fail("position_open", "must differ from position_closed")
	}
	if o.number("tilt_max", 100) == o.number("tilt_min", 0) {
		return c.fail("tilt_max", "must differ from tilt_min")
	}
	caps.Position = o.has("position_topic") || o.has("set_position_topic")
	caps.Tilt = o.has("tilt_command_topic") || o.has("tilt_status_topic")
	for _, t := range []string{"state_topic", "position_topic", "tilt_status_topic"} {
		c.subscribe(t)
	}
	var cmds []string
	if o.has("command_topic") {
		for _, p := range []struct{ cmd, key, def string }{
			{"open_cover", "payload_open", "OPEN"}, {"close_cover", "payload_close", "CLOSE"}, {"stop_cover", "payload_stop", "STOP"},
		} {
			if o.strDefault(p.key, p.def) != "" {
				cmds = append(cmds, p.cmd)
			}
		}
	}
	if o.has("set_position_topic") {
		cmds = append(cmds, "set_cover_position")
	}
	if o.has("tilt_command_topic") {
		cmds = append(cmds, "open_cover_tilt", "close_cover_tilt", "set_cover_tilt_position")
	}
	caps.Commands = cmds
	return nil
}

func (c *Config) setupFan() *ComponentError {
	o := c.opts
	caps := &c.Entity.Capabilities
	if err := c.require("command_topic"); err != nil {
		return err
	}
	lo, hi := o.number("speed_range_min", 1), o.number("speed_range_max", 100)
	if lo < 1 {
		return c.fail("speed_range_min", "must be at least 1")
	}
	if hi <= lo || hi > 1e6 {
		return c.fail("speed_range_max", "must be greater than speed_range_min")
	}
	caps.Commands = []string{"turn_on", "turn_off", "toggle"}
	if o.has("percentage_command_topic") {
		caps.Percentage = true
		caps.SpeedCount = int(hi - lo + 1)
		caps.Commands = append(caps.Commands, "set_percentage")
	}
	caps.PresetModes = o.strs("preset_modes", nil)
	if o.has("preset_mode_command_topic") && len(caps.PresetModes) > 0 {
		caps.Commands = append(caps.Commands, "set_preset_mode")
	}
	if o.has("oscillation_command_topic") {
		caps.Oscillation = true
		caps.Commands = append(caps.Commands, "oscillate")
	}
	if o.has("direction_command_topic") {
		caps.Direction = true
		caps.Commands = append(caps.Commands, "set_direction")
	}
	for _, t := range []string{"state_topic", "percentage_state_topic", "preset_mode_state_topic",
		"oscillation_state_topic", "direction_state_topic"} {
		c.subscribe(t)
	}
	return nil
}
