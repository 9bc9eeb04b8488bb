package discovery

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/homemesh/homemesh"
)

// Publish is one MQTT message a command turns into.
type Publish struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
}

func cmdErr(field, format string, args ...any) error {
	e := homemesh.Invalid(field, format, args...)
	e.Op = "discovery.command"
	return e
}

// params reads a command's parameters with the types JSON gives them.
type params struct {
	m    map[string]any
	used map[string]bool
}

func (p *params) get(name string) (any, bool) {
	p.used[name] = true
	v, ok := p.m[name]
	return v, ok && v != nil
}

func (p *params) number(name string) (float64, bool, error) {
	v, ok := p.get(name)
	if !ok {
		return 0, false, nil
	}
	var f float64
	switch x := v.(type) {
	case float64:
		f = x
	case float32:
		f = float64(x)
	case int:
		f = float64(x)
	case int64:
		f = float64(x)
	case json.Number:
		var err error
		if f, err = x.Float64(); err != nil {
			return 0, true, cmdErr("params."+name, "must be a number")
		}
	default:
		return 0, true, cmdErr("params."+name, "must be a number")
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, true, cmdErr("params."+name, "must be a finite number")
	}
	return f, true, nil
}

// numberIn reads a number that must lie in lo..hi.
func (p *params) numberIn(name string, lo, hi float64) (float64, bool, error) {
	f, ok, err := p.number(name)
	if err != nil || !ok {
		return f, ok, err
	}
	if f < lo || f > hi {
		return 0, true, cmdErr("params."+name, "must be between %s and %s", formatNumber(lo), formatNumber(hi))
	}
	return f, true, nil
}

func (p *params) str(name string) (string, bool, error) {
	v, ok := p.get(name)
	if !ok {
		return "", false, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", true, cmdErr("params."+name, "must be a string")
	}
	return s, true, nil
}

func (p *params) boolean(name string) (bool, bool, error) {
	v, ok := p.get(name)
	if !ok {
		return false, false, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, true, cmdErr("params."+name, "must be true or false")
	}
	return b, true, nil
}

// numbers reads a list of n numbers, each in lo[i]..hi[i].
func (p *params) numbers(name string, lo, hi []float64) ([]float64, bool, error) {
	v, ok := p.get(name)
	if !ok {
		return nil, false, nil
	}
	var list []any
	switch x := v.(type) {
	case []any:
		list = x
	case []float64:
		for _, f := range x {
			list = append(list, f)
		}
	case []int:
		for _, i := range x {
			list = append(list, float64(i))
		}
	default:
		return nil, true, cmdErr("params."+name, "must be a list of %d numbers", len(lo))
	}
	if len(list) != len(lo) {
		return nil, true, cmdErr("params."+name, "must be a list of %d numbers", len(lo))
	}
	out := make([]float64, len(list))
	for i, it := range list {
		f, ok := asFloat(toFloat64(it))
		if _, isStr := it.(string); !ok || isStr {
			return nil, true, cmdErr("params."+name, "must be a list of %d numbers", len(lo))
		}
		if f < lo[i] || f > hi[i] {
			return nil, true, cmdErr(fmt.Sprintf("params.%s[%d]", name, i), "must be between %s and %s", formatNumber(lo[i]), formatNumber(hi[i]))
		}
		out[i] = f
	}
	return out, true, nil
}

// unknown reports the first parameter the command did not read.
func (p *params) unknown() error {
	var names []string
	for k := range p.m {
		if !p.used[k] {
			names = append(names, k)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return cmdErr("params."+names[0], "is not a parameter of this command")
}

// pythonString formats a value the way Home Assistant publishes it: floats
// keep a decimal point ("21.0"), integers do not.
func pythonString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		s := strconv.FormatFloat(x, 'f', -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return s
	case int:
		return strconv.Itoa(x)
	case bool:
		if x {
			return "True"
		}
		return "False"
	}
	return fmt.Sprint(v)
}

// render renders the command template in option key with value and extra
// variables, or formats value when there is no template.
func (c *Config) renderCommand(key string, value any, extra map[string]any) (string, error) {
	t := c.tpls[key]
	if t == nil {
		return pythonString(value), nil
	}
	vars := map[string]any{"value": value}
	for k, v := range extra {
		vars[k] = v
	}
	out, err := t.Render(vars)
	if err != nil {
		return "", &homemesh.Error{Op: "discovery.command", Kind: homemesh.KindInvalid, Field: key,
			Message: "the device's command template failed: " + homemesh.ErrorMessage(err), Err: err}
	}
	return out, nil
}

func (c *Config) publish(topicKey, payload string) Publish {
	return Publish{Topic: c.opts.str(topicKey), Payload: []byte(payload), QoS: c.qos, Retain: c.retain}
}

// publishValue renders value through the template in tplKey and publishes
// it on the topic in topicKey.
func (c *Config) publishValue(topicKey, tplKey string, value any, extra map[string]any) (Publish, error) {
	s, err := c.renderCommand(tplKey, value, extra)
	if err != nil {
		return Publish{}, err
	}
	return c.publish(topicKey, s), nil
}

// Command validates cmd against the entity's capabilities and renders
// exactly what the device expects: payloads scaled to its own ranges,
// rendered through its command templates. Errors are KindInvalid
// homemesh.Errors; Field is "command" for an unsupported command and
// "params.<name>" for a bad parameter.
func (c *Config) Command(cmd homemesh.Command, current homemesh.State) ([]Publish, error) {
	if !slices.Contains(c.Entity.Capabilities.Commands, cmd.Name) {
		supported := strings.Join(c.Entity.Capabilities.Commands, ", ")
		if supported == "" {
			supported = "none"
		}
		return nil, cmdErr("command", "%q is not supported by this %s (supported: %s)", cmd.Name, c.kind, supported)
	}
	p := &params{m: cmd.Params, used: map[string]bool{}}
	var out []Publish
	var err error
	switch c.kind {
	case homemesh.KindSwitch:
		out, err = c.commandSwitch(cmd.Name, current)
	case homemesh.KindLight:
		out, err = c.commandLight(cmd.Name, p, current)
	case homemesh.KindClimate:
		out, err = c.commandClimate(cmd.Name, p)
	case homemesh.KindLock:
		out, err = c.commandLock(cmd.Name, p)
	case homemesh.KindCover:
		out, err = c.commandCover(cmd.Name, p)
	case homemesh.KindFan:
		out, err = c.commandFan(cmd.Name, p, current)
	case homemesh.KindAlarmControlPanel:
		out, err = c.commandAlarm(cmd.Name, p)
	case homemesh.KindButton:
		var pub Publish
		pub, err = c.publishValue("command_topic", "command_template", c.opts.strDefault("payload_press", "PRESS"), nil)
		out = []Publish{pub}
	case homemesh.KindNumber:
		out, err = c.commandNumber(p)
	case homemesh.KindSelect:
		var opt string
		var ok bool
		if opt, ok, err = p.str("option"); err == nil {
			switch {
			case !ok:
				err = cmdErr("params.option", "is required")
			case !slices.Contains(c.Entity.Capabilities.Options, opt):
				err = cmdErr("params.option", "%q is not one of %s", opt, strings.Join(c.Entity.Capabilities.Options, ", "))
			default:
				var pub Publish
				pub, err = c.publishValue("command_topic", "command_template", opt, nil)
				out = []Publish{pub}
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if err := p.unknown(); err != nil {
		return nil, err
	}
	return out, nil
}

func (c *Config) commandSwitch(name string, current homemesh.State) ([]Publish, error) {
	if name == "toggle" {
		name = "turn_on"
		if current.Value == "on" {
			name = "turn_off"
		}
	}
	payload := c.opts.strDefault("payload_on", "ON")
	if name == "turn_off" {
		payload = c.opts.strDefault("payload_off", "OFF")
	}
	pub, err := c.publishValue("command_topic", "command_template", payload, nil)
	return []Publish{pub}, err
}

func (c *Config) commandNumber(p *params) ([]Publish, error) {
	caps := c.Entity.Capabilities
	v, ok, err := p.numberIn("value", *caps.Min, *caps.Max)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, cmdErr("params.value", "is required")
	}
	var value any = v
	if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
		value = int(v)
	}
	pub, err := c.publishValue("command_topic", "command_template", value, nil)
	return []Publish{pub}, err
}

func (c *Config) commandLock(name string, p *params) ([]Publish, error) {
	code, hasCode, err := p.str("code")
	if err != nil {
		return nil, err
	}
	if f := c.opts.str("code_format"); f != "" {
		re, err := regexp.Compile("^(?:" + f + ")")
		if err == nil {
			if !hasCode {
				return nil, cmdErr("params.code", "is required")
			}
			if !re.MatchString(code) {
				return nil, cmdErr("params.code", "does not match the lock's code format")
			}
		}
	}
	key, def := "payload_lock", "LOCK"
	switch name {
	case "unlock":
		key, def = "payload_unlock", "UNLOCK"
	case "open":
		key, def = "payload_open", "OPEN"
	}
	var codeVar any
	if hasCode {
		codeVar = code
	}
	pub, err := c.publishValue("command_topic", "command_template", c.opts.strDefault(key, def), map[string]any{"code": codeVar})
	return []Publish{pub}, err
}

func (c *Config) commandAlarm(name string, p *params) ([]Publish, error) {
	o := c.opts
	code, hasCode, err := p.str("code")
	if err != nil {
		return nil, err
	}
	action := strings.TrimPrefix(name, "alarm_")
	key, def, required := "payload_"+action, strings.ToUpper(action), "code_arm_required"
	switch action {
	case "disarm":
		required = "code_disarm_required"
	case "trigger":
		required = "code_trigger_required"
	}
	if cfgCode := o.str("code"); cfgCode != "" && o.boolean(required, true) {
		switch {
		case !hasCode || code == "":
			return nil, cmdErr("params.code", "is required")
		case cfgCode != "REMOTE_CODE" && cfgCode != "REMOTE_CODE_TEXT" && code != cfgCode:
			return nil, cmdErr("params.code", "is wrong")
		}
	}
	payload := o.strDefault(key, def)
	t := c.tpls["command_template"]
	if t == nil {
		return []Publish{c.publish("command_topic", payload)}, nil
	}
	var codeVar any
	if hasCode {
		codeVar = code
	}
	s, err := t.Render(map[string]any{"action": payload, "code": codeVar})
	if err != nil {
		return nil, &homemesh.Error{Op: "discovery.command", Kind: homemesh.KindInvalid, Field: "command_template",
			Message: "the device's command template failed: " + homemesh.ErrorMessage(err), Err: err}
	}
	return []Publish{c.publish("command_topic", s)}, nil
}

// fromPercent maps pct (0..100) onto the device's range [closed, open], as
// Home Assistant's find_in_range_from_percent does.
func fromPercent(pct, closed, open float64) int {
	lo, hi := math.Min(closed, open), math.Max(closed, open)
	pos := math.Round((hi-lo)*pct/100) + lo
	if closed > open {
		pos = hi - pos + lo
	}
	return int(pos)
}

func (c *Config) commandCover(name string, p *params) ([]Publish, error) {
	o := c.opts
	switch name {
	case "open_cover":
		return []Publish{c.publish("command_topic", o.strDefault("payload_open", "OPEN"))}, nil
	case "close_cover":
		return []Publish{c.publish("command_topic", o.strDefault("payload_close", "CLOSE"))}, nil
	case "stop_cover":
		return []Publish{c.publish("command_topic", o.strDefault("payload_stop", "STOP"))}, nil
	case "set_cover_position":
		pct, ok, err := p.numberIn("position", 0, 100)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.position", "is required")
		}
		closed, open := o.number("position_closed", 0), o.number("position_open", 100)
		pos := fromPercent(pct, closed, open)
		pub, err := c.publishValue("set_position_topic", "set_position_template", pos, map[string]any{
			"position": pos, "position_open": open, "position_closed": closed,
			"tilt_min": o.number("tilt_min", 0), "tilt_max": o.number("tilt_max", 100)})
		return []Publish{pub}, err
	}
	lo, hi := o.number("tilt_min", 0), o.number("tilt_max", 100)
	closed, open := lo, hi
	if o.boolean("tilt_invert_state", false) {
		closed, open = hi, lo
	}
	var tilt any
	switch name {
	case "open_cover_tilt":
		tilt = o.number("tilt_opened_value", 100)
	case "close_cover_tilt":
		tilt = o.number("tilt_closed_value", 0)
	case "set_cover_tilt_position":
		pct, ok, err := p.numberIn("tilt_position", 0, 100)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.tilt_position", "is required")
		}
		tilt = fromPercent(pct, closed, open)
	}
	if f, isFloat := tilt.(float64); isFloat && f == math.Trunc(f) {
		tilt = int(f)
	}
	pub, err := c.publishValue("tilt_command_topic", "tilt_command_template", tilt, map[string]any{
		"tilt_position": tilt, "tilt_min": lo, "tilt_max": hi,
		"position_open": o.number("position_open", 100), "position_closed": o.number("position_closed", 0)})
	return []Publish{pub}, err
}

// percentToRanged mirrors Home Assistant's percentage_to_ranged_value.
func percentToRanged(lo, hi, pct float64) float64 {
	return (hi-lo+1)*pct/100 + (lo - 1)
}

func (c *Config) commandFan(name string, p *params, current homemesh.State) ([]Publish, error) {
	o := c.opts
	caps := c.Entity.Capabilities
	if name == "toggle" {
		name = "turn_on"
		if current.Value == "on" {
			name = "turn_off"
		}
	}
	var out []Publish
	addPct := func(pct float64) error {
		lo, hi := o.number("speed_range_min", 1), o.number("speed_range_max", 100)
		v := int(math.Ceil(percentToRanged(lo, hi, pct)))
		pub, err := c.publishValue("percentage_command_topic", "percentage_command_template", v, nil)
		out = append(out, pub)
		return err
	}
	addPreset := func(mode string) error {
		if !slices.Contains(caps.PresetModes, mode) {
			return cmdErr("params.preset_mode", "%q is not one of %s", mode, strings.Join(caps.PresetModes, ", "))
		}
		pub, err := c.publishValue("preset_mode_command_topic", "preset_mode_command_template", mode, nil)
		out = append(out, pub)
		return err
	}
	switch name {
	case "turn_off":
		pub, err := c.publishValue("command_topic", "command_template", o.strDefault("payload_off", "OFF"), nil)
		return []Publish{pub}, err
	case "turn_on":
		pct, hasPct, err := p.numberIn("percentage", 0, 100)
		if err != nil {
			return nil, err
		}
		mode, hasMode, err := p.str("preset_mode")
		if err != nil {
			return nil, err
		}
		if hasPct && !caps.Percentage {
			return nil, cmdErr("params.percentage", "this fan has no speed control")
		}
		if hasMode && !slices.Contains(caps.Commands, "set_preset_mode") {
			return nil, cmdErr("params.preset_mode", "this fan has no preset modes")
		}
		pub, err := c.publishValue("command_topic", "command_template", o.strDefault("payload_on", "ON"), nil)
		if err != nil {
			return nil, err
		}
		out = append(out, pub)
		if hasPct && pct > 0 {
			if err := addPct(pct); err != nil {
				return nil, err
			}
		}
		if hasMode {
			if err := addPreset(mode); err != nil {
				return nil, err
			}
		}
		return out, nil
	case "set_percentage":
		pct, ok, err := p.numberIn("percentage", 0, 100)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.percentage", "is required")
		}
		if pct == 0 {
			pub, err := c.publishValue("command_topic", "command_template", o.strDefault("payload_off", "OFF"), nil)
			return []Publish{pub}, err
		}
		return out, addPct(pct)
	case "set_preset_mode":
		mode, ok, err := p.str("preset_mode")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.preset_mode", "is required")
		}
		return out, addPreset(mode)
	case "oscillate":
		osc, ok, err := p.boolean("oscillating")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.oscillating", "is required")
		}
		payload := o.strDefault("payload_oscillation_on", "oscillate_on")
		if !osc {
			payload = o.strDefault("payload_oscillation_off", "oscillate_off")
		}
		pub, err := c.publishValue("oscillation_command_topic", "oscillation_command_template", payload, nil)
		return []Publish{pub}, err
	case "set_direction":
		dir, ok, err := p.str("direction")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.direction", "is required")
		}
		if dir != "forward" && dir != "reverse" {
			return nil, cmdErr("params.direction", "must be forward or reverse")
		}
		pub, err := c.publishValue("direction_command_topic", "direction_command_template", dir, nil)
		return []Publish{pub}, err
	}
	return nil, cmdErr("command", "%q is not supported", name)
}

func (c *Config) commandClimate(name string, p *params) ([]Publish, error) {
	o := c.opts
	caps := c.Entity.Capabilities
	choice := func(param string, choices []string, extra ...string) (string, error) {
		v, ok, err := p.str(param)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", cmdErr("params."+param, "is required")
		}
		if !slices.Contains(choices, v) && !slices.Contains(extra, v) {
			return "", cmdErr("params."+param, "%q is not one of %s", v, strings.Join(choices, ", "))
		}
		return v, nil
	}
	one := func(param, topicKey, tplKey string, choices []string, extra ...string) ([]Publish, error) {
		v, err := choice(param, choices, extra...)
		if err != nil {
			return nil, err
		}
		pub, err := c.publishValue(topicKey, tplKey, v, nil)
		return []Publish{pub}, err
	}
	switch name {
	case "turn_on", "turn_off":
		payload := o.strDefault("payload_on", "ON")
		if name == "turn_off" {
			payload = o.strDefault("payload_off", "OFF")
		}
		pub, err := c.publishValue("power_command_topic", "power_command_template", payload, nil)
		return []Publish{pub}, err
	case "set_hvac_mode":
		return one("hvac_mode", "mode_command_topic", "mode_command_template", caps.HVACModes)
	case "set_fan_mode":
		return one("fan_mode", "fan_mode_command_topic", "fan_mode_command_template", caps.FanModes)
	case "set_swing_mode":
		return one("swing_mode", "swing_mode_command_topic", "swing_mode_command_template", caps.SwingModes)
	case "set_preset_mode":
		return one("preset_mode", "preset_mode_command_topic", "preset_mode_command_template", caps.PresetModes, "none")
	case "set_humidity":
		h, ok, err := p.numberIn("humidity", o.number("min_humidity", 30), o.number("max_humidity", 99))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, cmdErr("params.humidity", "is required")
		}
		pub, err := c.publishValue("target_humidity_command_topic", "target_humidity_command_template", h, nil)
		return []Publish{pub}, err
	case "set_temperature":
		var out []Publish
		if _, ok := p.m["hvac_mode"]; ok {
			if !o.has("mode_command_topic") {
				return nil, cmdErr("params.hvac_mode", "this climate device cannot change its mode")
			}
			pubs, err := one("hvac_mode", "mode_command_topic", "mode_command_template", caps.HVACModes)
			if err != nil {
				return nil, err
			}
			out = append(out, pubs...)
		}
		any := false
		for _, t := range []struct{ param, topic, tpl string }{
			{"temperature", "temperature_command_topic", "temperature_command_template"},
			{"target_temp_low", "temperature_low_command_topic", "temperature_low_command_template"},
			{"target_temp_high", "temperature_high_command_topic", "temperature_high_command_template"},
		} {
			v, ok, err := p.numberIn(t.param, *caps.MinTemp, *caps.MaxTemp)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			if !o.has(t.topic) {
				return nil, cmdErr("params."+t.param, "this climate device does not accept it")
			}
			any = true
			pub, err := c.publishValue(t.topic, t.tpl, v, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, pub)
		}
		if !any {
			return nil, cmdErr("params.temperature", "is required (or target_temp_low and target_temp_high)")
		}
		return out, nil
	}
	return nil, cmdErr("command", "%q is not supported", name)
}

var _ = bytes.Equal
