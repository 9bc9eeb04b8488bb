package discovery

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/edge/hatemplate"
)

// payloadNone is the payload Home Assistant reads as "unknown".
const payloadNone = "None"

// Topics returns every topic (or topic filter) whose messages Decode wants,
// without duplicates.
func (c *Config) Topics() []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range c.subs {
		if !seen[s.filter] {
			seen[s.filter] = true
			out = append(out, s.filter)
		}
	}
	return out
}

// AllTopics returns every topic (or filter) the config names: those
// Decode reads and those commands are published to, without duplicates,
// so that all of them can be checked against the announcer's allow list.
func (c *Config) AllTopics() []string {
	out := c.Topics()
	seen := map[string]bool{}
	for _, t := range out {
		seen[t] = true
	}
	keys := make([]string, 0, len(c.opts))
	for k := range c.opts {
		if k == "topic" || strings.HasSuffix(k, "_topic") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if t := c.opts.str(k); t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// Update is how one message changes an entity's state. Value applies only
// when HasValue is set (a nil Value then means "unknown"); Attributes are
// merged into the current ones (a nil attribute value means "unknown");
// Available is nil when the message says nothing about availability.
type Update struct {
	Value      any
	HasValue   bool
	Attributes map[string]any
	Available  *bool
}

func (u *Update) set(v any) { u.Value, u.HasValue = v, true }

func (u *Update) attr(k string, v any) {
	if u.Attributes == nil {
		u.Attributes = map[string]any{}
	}
	u.Attributes[k] = v
}

func decodeErr(field, format string, args ...any) error {
	e := homemesh.Invalid(field, format, args...)
	e.Op = "discovery.decode"
	return e
}

// Decode interprets a message on one of Topics and returns how the entity's
// state changes. prev is the entity's current state, which some kinds need
// (a cover reporting "stopped"). A topic can serve several purposes (state
// and attributes, say); all of them apply. On error the Update still holds
// what could be decoded; errors are KindInvalid homemesh.Errors naming the
// option whose template or payload convention the message broke.
func (c *Config) Decode(topic string, payload []byte, prev homemesh.State) (Update, error) {
	var u Update
	var first error
	matched := false
	for _, s := range c.subs {
		if !topicMatch(s.filter, topic) {
			continue
		}
		matched = true
		var err error
		if s.role == "availability" {
			err = c.decodeAvailability(s.index, payload, &u)
		} else {
			err = c.decodeRole(s.role, payload, prev, &u)
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if !matched {
		return u, decodeErr("topic", "%q is not one of the entity's topics", topic)
	}
	return u, first
}

// render renders the template in option key for payload, or returns the
// payload itself when there is none.
func (c *Config) render(key string, payload []byte) (string, error) {
	t := c.tpls[key]
	if t == nil {
		return string(payload), nil
	}
	out, err := t.RenderValue(payload, nil)
	if err != nil {
		return "", decodeErr(key, "%s", homemesh.ErrorMessage(err))
	}
	return out, nil
}

func (c *Config) decodeAvailability(i int, payload []byte, u *Update) error {
	a := c.avail[i]
	v := string(payload)
	if a.tpl != nil {
		out, err := a.tpl.RenderValue(payload, nil)
		if err != nil {
			return decodeErr("availability", "%s", homemesh.ErrorMessage(err))
		}
		v = out
	}
	var state int8
	switch v {
	case a.on:
		state = 1
	case a.off:
		state = 0
	default:
		return nil // neither: Home Assistant ignores it
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.astate[i] = state
	var avail bool
	switch c.amode {
	case "latest":
		avail = state == 1
	case "any":
		avail = slices.Contains(c.astate, 1)
	case "all":
		avail = !slices.ContainsFunc(c.astate, func(s int8) bool { return s != 1 })
	}
	u.Available = &avail
	return nil
}

func (c *Config) decodeRole(role string, payload []byte, prev homemesh.State, u *Update) error {
	o := c.opts
	if role == "json_attributes_topic" {
		v, err := c.render("json_attributes_template", payload)
		if err != nil {
			return err
		}
		m, ok := hatemplate.DecodeJSON([]byte(v))
		obj, isObj := m.(map[string]any)
		if !ok || !isObj {
			return decodeErr("json_attributes_topic", "payload is not a JSON object")
		}
		for k, v := range obj {
			u.attr(k, v)
		}
		return nil
	}
	switch c.kind {
	case homemesh.KindSensor:
		return c.decodeSensor(payload, u)
	case homemesh.KindBinarySensor:
		v, err := c.render("value_template", payload)
		if err != nil {
			return err
		}
		return onOff(u, v, o.strDefault("payload_on", "ON"), o.strDefault("payload_off", "OFF"), "state_topic")
	case homemesh.KindSwitch:
		v, err := c.render("value_template", payload)
		if err != nil {
			return err
		}
		on := o.strDefault("state_on", o.strDefault("payload_on", "ON"))
		off := o.strDefault("state_off", o.strDefault("payload_off", "OFF"))
		return onOff(u, v, on, off, "state_topic")
	case homemesh.KindLight:
		switch c.schema {
		case "json":
			return c.decodeLightJSON(payload, u)
		case "template":
			return c.decodeLightTemplate(payload, u)
		}
		return c.decodeLightDefault(role, payload, u)
	case homemesh.KindClimate:
		return c.decodeClimate(role, payload, u)
	case homemesh.KindLock:
		return c.decodeLock(payload, u)
	case homemesh.KindCover:
		return c.decodeCover(role, payload, prev, u)
	case homemesh.KindFan:
		return c.decodeFan(role, payload, u)
	case homemesh.KindAlarmControlPanel:
		v, err := c.render("value_template", payload)
		if err != nil {
			return err
		}
		return c.decodeChoice(u, v, alarmStates, "state_topic")
	case homemesh.KindNumber:
		v, err := c.render("value_template", payload)
		if err != nil {
			return err
		}
		v = strings.TrimSpace(v)
		if v == "" {
			return nil
		}
		if v == o.strDefault("payload_reset", payloadNone) {
			u.set(nil)
			return nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return decodeErr("state_topic", "payload %q is not a number", clip(v))
		}
		caps := c.Entity.Capabilities
		if f < *caps.Min || f > *caps.Max {
			return decodeErr("state_topic", "%v is outside %v..%v", f, *caps.Min, *caps.Max)
		}
		u.set(f)
	case homemesh.KindSelect:
		v, err := c.render("value_template", payload)
		if err != nil {
			return err
		}
		return c.decodeChoice(u, v, c.Entity.Capabilities.Options, "state_topic")
	case homemesh.KindEvent:
		return c.decodeEvent(payload, u)
	}
	return nil
}

var alarmStates = []string{"disarmed", "armed_home", "armed_away", "armed_night", "armed_vacation",
	"armed_custom_bypass", "pending", "arming", "disarming", "triggered"}

// decodeChoice sets a value that must be one of choices; "None" clears it
// and an empty payload is ignored.
func (c *Config) decodeChoice(u *Update, v string, choices []string, field string) error {
	switch {
	case v == "":
		return nil
	case v == payloadNone:
		u.set(nil)
	case slices.Contains(choices, v):
		u.set(v)
	default:
		return decodeErr(field, "%q is not one of %s", clip(v), strings.Join(choices, ", "))
	}
	return nil
}

func onOff(u *Update, v, on, off, field string) error {
	switch {
	case v == on:
		u.set("on")
	case v == off:
		u.set("off")
	case v == payloadNone:
		u.set(nil)
	case v == "":
	default:
		return decodeErr(field, "payload %q matches neither %q nor %q", clip(v), on, off)
	}
	return nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func (c *Config) decodeSensor(payload []byte, u *Update) error {
	v, err := c.render("value_template", payload)
	if err != nil {
		return err
	}
	if strings.TrimSpace(v) == "" {
		return nil // Home Assistant ignores empty states
	}
	if v == payloadNone {
		u.set(nil)
		return nil
	}
	switch c.Entity.DeviceClass {
	case "enum":
		if opts := c.Entity.Capabilities.Options; len(opts) > 0 && !slices.Contains(opts, v) {
			return decodeErr("state_topic", "%q is not one of the options %s", clip(v), strings.Join(opts, ", "))
		}
		u.set(v)
		return nil
	case "timestamp", "date":
		u.set(v)
		return nil
	}
	if f, ok := parseNumber(v); ok {
		u.set(f)
		return nil
	}
	u.set(v)
	return nil
}

// parseNumber parses a finite decimal number.
func parseNumber(s string) (float64, bool) {
	s = strings.TrimSpace(s)
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.ContainsAny(s, "xXpP_") {
		return 0, false
	}
	return f, true
}

// numberAttr renders key and stores the number in attribute attr. Empty
// and "None" clear nothing and set nothing respectively.
func (c *Config) numberAttr(u *Update, key, attr, field string, payload []byte) error {
	v, err := c.render(key, payload)
	if err != nil {
		return err
	}
	v = strings.TrimSpace(v)
	if v == "" {
		return nil
	}
	if v == payloadNone {
		u.attr(attr, nil)
		return nil
	}
	f, ok := parseNumber(v)
	if !ok {
		return decodeErr(field, "payload %q is not a number", clip(v))
	}
	u.attr(attr, f)
	return nil
}

func (c *Config) brightnessTo255(v float64) int {
	scale := float64(c.Entity.Capabilities.BrightnessScale)
	return int(math.Min(math.Max(math.Round(v/scale*255), 0), 255))
}

func (c *Config) setColorTemp(u *Update, v float64) {
	if v <= 0 {
		return
	}
	if c.opts.boolean("color_temp_kelvin", false) {
		u.attr("color_temp_kelvin", int(math.Round(v)))
		u.attr("color_temp", int(math.Round(1e6/v)))
		return
	}
	u.attr("color_temp", int(math.Round(v)))
	u.attr("color_temp_kelvin", int(math.Round(1e6/v)))
}

func splitNumbers(s string, n int) ([]float64, bool) {
	parts := strings.Split(strings.TrimSpace(s), ",")
	if len(parts) != n {
		return nil, false
	}
	out := make([]float64, n)
	for i, p := range parts {
		f, ok := parseNumber(p)
		if !ok {
			return nil, false
		}
		out[i] = f
	}
	return out, true
}

// decodeOnOffState renders the state template and maps payload_on and
// payload_off to "on" and "off", as lights and fans share it.
func (c *Config) decodeOnOffState(role string, payload []byte, u *Update) error {
	v, err := c.render("state_value_template", payload)
	if err != nil {
		return err
	}
	return onOff(u, v, c.opts.strDefault("payload_on", "ON"), c.opts.strDefault("payload_off", "OFF"), role)
}

func (c *Config) decodeLightDefault(role string, payload []byte, u *Update) error {
	switch role {
	case "state_topic":
		return c.decodeOnOffState(role, payload, u)
	case "brightness_state_topic":
		v, err := c.render("brightness_value_template", payload)
		if err != nil || strings.TrimSpace(v) == "" {
			return err
		}
		f, ok := parseNumber(v)
		if !ok {
			return decodeErr(role, "payload %q is not a number", clip(v))
		}
		u.attr("brightness", c.brightnessTo255(f))
	case "color_temp_state_topic":
		v, err := c.render("color_temp_value_template", payload)
		if err != nil || strings.TrimSpace(v) == "" {
			return err
		}
		f, ok := parseNumber(v)
		if !ok {
			return decodeErr(role, "payload %q is not a number", clip(v))
		}
		c.setColorTemp(u, f)
	case "rgb_state_topic", "hs_state_topic", "xy_state_topic":
		name := strings.TrimSuffix(role, "_state_topic")
		v, err := c.render(name+"_value_template", payload)
		if err != nil || strings.TrimSpace(v) == "" {
			return err
		}
		n := 2
		if name == "rgb" {
			n = 3
		}
		nums, ok := splitNumbers(v, n)
		if !ok {
			return decodeErr(role, "payload %q is not %d comma-separated numbers", clip(v), n)
		}
		if name == "rgb" {
			u.attr("rgb_color", []int{clampInt(nums[0]), clampInt(nums[1]), clampInt(nums[2])})
		} else {
			u.attr(name+"_color", nums)
		}
	case "effect_state_topic":
		v, err := c.render("effect_value_template", payload)
		if err != nil || v == "" {
			return err
		}
		u.attr("effect", v)
	case "color_mode_state_topic":
		v, err := c.render("color_mode_value_template", payload)
		if err != nil || v == "" {
			return err
		}
		u.attr("color_mode", v)
	}
	return nil
}

func clampInt(f float64) int { return int(math.Min(math.Max(math.Round(f), 0), 255)) }

func (c *Config) decodeLightJSON(payload []byte, u *Update) error {
	v, ok := hatemplate.DecodeJSON(payload)
	m, isObj := v.(map[string]any)
	if !ok || !isObj {
		return decodeErr("state_topic", "payload is not a JSON object")
	}
	if s, present := m["state"]; present {
		switch s {
		case "ON":
			u.set("on")
		case "OFF":
			u.set("off")
		case nil, payloadNone:
			u.set(nil)
		default:
			return decodeErr("state_topic", "state %v is neither ON nor OFF", s)
		}
	}
	if b, ok := asFloat(toFloat64(m["brightness"])); ok {
		u.attr("brightness", c.brightnessTo255(b))
	}
	if cm, ok := m["color_mode"].(string); ok {
		u.attr("color_mode", cm)
	}
	if ct, ok := asFloat(toFloat64(m["color_temp"])); ok {
		c.setColorTemp(u, ct)
	}
	if col, ok := m["color"].(map[string]any); ok {
		get := func(k string) (float64, bool) { return asFloat(toFloat64(col[k])) }
		if r, ok1 := get("r"); ok1 {
			g, _ := get("g")
			b, _ := get("b")
			u.attr("rgb_color", []int{clampInt(r), clampInt(g), clampInt(b)})
		}
		if h, ok1 := get("h"); ok1 {
			s, _ := get("s")
			u.attr("hs_color", []float64{h, s})
		}
		if x, ok1 := get("x"); ok1 {
			y, _ := get("y")
			u.attr("xy_color", []float64{x, y})
		}
	}
	if e, ok := m["effect"].(string); ok {
		u.attr("effect", e)
	}
	return nil
}

// toFloat64 converts the ints DecodeJSON produces.
func toFloat64(v any) any {
	if i, ok := v.(int); ok {
		return float64(i)
	}
	return v
}

func (c *Config) decodeLightTemplate(payload []byte, u *Update) error {
	v, err := c.render("state_template", payload)
	if err != nil {
		return err
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on":
		u.set("on")
	case "off":
		u.set("off")
	case "none":
		u.set(nil)
	case "":
	default:
		return decodeErr("state_template", "rendered %q, want on or off", clip(v))
	}
	// The other templates are optional readings: a reading that does not
	// render to a number is skipped, as Home Assistant does.
	num := func(key string) (float64, bool) {
		if c.tpls[key] == nil {
			return 0, false
		}
		s, err := c.render(key, payload)
		if err != nil {
			return 0, false
		}
		return parseNumber(s)
	}
	if b, ok := num("brightness_template"); ok {
		u.attr("brightness", clampInt(b))
	}
	if ct, ok := num("color_temp_template"); ok {
		c.setColorTemp(u, ct)
	}
	r, okR := num("red_template")
	g, okG := num("green_template")
	b, okB := num("blue_template")
	if okR && okG && okB {
		u.attr("rgb_color", []int{clampInt(r), clampInt(g), clampInt(b)})
	}
	if c.tpls["effect_template"] != nil {
		if e, err := c.render("effect_template", payload); err == nil && e != "" {
			u.attr("effect", e)
		}
	}
	return nil
}

var hvacActions = []string{"off", "heating", "cooling", "drying", "idle", "fan", "preheating", "defrosting"}

func (c *Config) decodeClimate(role string, payload []byte, u *Update) error {
	caps := c.Entity.Capabilities
	str := func(key string) (string, error) {
		v, err := c.render(key, payload)
		return strings.TrimSpace(v), err
	}
	switch role {
	case "mode_state_topic":
		v, err := str("mode_state_template")
		if err != nil {
			return err
		}
		return c.decodeChoice(u, v, caps.HVACModes, role)
	case "temperature_state_topic":
		return c.numberAttr(u, "temperature_state_template", "temperature", role, payload)
	case "temperature_low_state_topic":
		return c.numberAttr(u, "temperature_low_state_template", "target_temp_low", role, payload)
	case "temperature_high_state_topic":
		return c.numberAttr(u, "temperature_high_state_template", "target_temp_high", role, payload)
	case "current_temperature_topic":
		return c.numberAttr(u, "current_temperature_template", "current_temperature", role, payload)
	case "current_humidity_topic":
		return c.numberAttr(u, "current_humidity_template", "current_humidity", role, payload)
	case "target_humidity_state_topic":
		return c.numberAttr(u, "target_humidity_state_template", "humidity", role, payload)
	case "fan_mode_state_topic", "swing_mode_state_topic", "preset_mode_state_topic":
		name := strings.TrimSuffix(role, "_state_topic")
		tpl := name + "_state_template"
		if name == "preset_mode" {
			tpl = "preset_mode_value_template"
		}
		v, err := str(tpl)
		if err != nil || v == "" {
			return err
		}
		choices := map[string][]string{"fan_mode": caps.FanModes, "swing_mode": caps.SwingModes, "preset_mode": caps.PresetModes}[name]
		switch {
		case v == payloadNone || (name == "preset_mode" && v == "none"):
			u.attr(name, nil)
		case slices.Contains(choices, v):
			u.attr(name, v)
		default:
			return decodeErr(role, "%q is not one of %s", clip(v), strings.Join(choices, ", "))
		}
	case "action_topic":
		v, err := str("action_template")
		if err != nil || v == "" {
			return err
		}
		switch {
		case v == payloadNone:
			u.attr("hvac_action", nil)
		case slices.Contains(hvacActions, v):
			u.attr("hvac_action", v)
		default:
			return decodeErr(role, "%q is not an HVAC action", clip(v))
		}
	}
	return nil
}

func (c *Config) decodeLock(payload []byte, u *Update) error {
	v, err := c.render("value_template", payload)
	if err != nil {
		return err
	}
	if state, ok := c.opts.matchState(v, lockStates); ok {
		u.set(state)
		return nil
	}
	return noStateOrUnknown(u, v, "state_topic", "lock")
}

// stateOption maps the payload configured under key (default def) to a
// Home Assistant state.
type stateOption struct{ key, def, state string }

var (
	lockStates = []stateOption{
		{"state_locked", "LOCKED", "locked"}, {"state_unlocked", "UNLOCKED", "unlocked"},
		{"state_locking", "LOCKING", "locking"}, {"state_unlocking", "UNLOCKING", "unlocking"},
		{"state_jammed", "JAMMED", "jammed"}, {"state_open", "OPEN", "open"}, {"state_opening", "OPENING", "opening"},
	}
	coverStates = []stateOption{
		{"state_open", "open", "open"}, {"state_opening", "opening", "opening"},
		{"state_closed", "closed", "closed"}, {"state_closing", "closing", "closing"},
		{"state_stopped", "stopped", "stopped"},
	}
)

// matchState returns the state whose configured payload is v.
func (o options) matchState(v string, table []stateOption) (string, bool) {
	for _, s := range table {
		if p := o.strDefault(s.key, s.def); p != "" && v == p {
			return s.state, true
		}
	}
	return "", false
}

// noStateOrUnknown handles a payload that matched no state: "None" clears
// the state, an empty payload is ignored, anything else is an error.
func noStateOrUnknown(u *Update, v, role, kind string) error {
	switch v {
	case payloadNone:
		u.set(nil)
	case "":
	default:
		return decodeErr(role, "payload %q is not a %s state", clip(v), kind)
	}
	return nil
}

// toPercent maps v from the device's range [closed, open] onto 0..100.
func toPercent(v, closed, open float64) int {
	p := (v - closed) / (open - closed) * 100
	return int(math.Min(math.Max(math.Round(p), 0), 100))
}

func (c *Config) decodeCover(role string, payload []byte, prev homemesh.State, u *Update) error {
	o := c.opts
	switch role {
	case "state_topic":
		v, err := c.render("value_template", payload)
		if err != nil {
			return err
		}
		if state, ok := o.matchState(v, coverStates); ok {
			if state == "stopped" {
				u.set(stoppedState(prev))
			} else {
				u.set(state)
			}
			return nil
		}
		return noStateOrUnknown(u, v, role, "cover")
	case "position_topic":
		v, err := c.render("position_template", payload)
		if err != nil || strings.TrimSpace(v) == "" {
			return err
		}
		f, ok := parseNumber(v)
		if !ok {
			return decodeErr(role, "payload %q is not a number", clip(v))
		}
		pct := toPercent(f, o.number("position_closed", 0), o.number("position_open", 100))
		u.attr("current_position", pct)
		if !o.has("state_topic") {
			if pct == 0 {
				u.set("closed")
			} else {
				u.set("open")
			}
		}
	case "tilt_status_topic":
		v, err := c.render("tilt_status_template", payload)
		if err != nil || strings.TrimSpace(v) == "" {
			return err
		}
		f, ok := parseNumber(v)
		if !ok {
			return decodeErr(role, "payload %q is not a number", clip(v))
		}
		u.attr("current_tilt_position", toPercent(f, o.number("tilt_min", 0), o.number("tilt_max", 100)))
	}
	return nil
}

// stoppedState is what "stopped" means: closed at position 0, open
// elsewhere, or the end of the last movement.
func stoppedState(prev homemesh.State) string {
	if p, ok := asFloat(toFloat64(prev.Attributes["current_position"])); ok {
		if p == 0 {
			return "closed"
		}
		return "open"
	}
	switch prev.Value {
	case "closing", "closed":
		return "closed"
	}
	return "open"
}

func (c *Config) decodeFan(role string, payload []byte, u *Update) error {
	o := c.opts
	caps := c.Entity.Capabilities
	switch role {
	case "state_topic":
		return c.decodeOnOffState(role, payload, u)
	case "percentage_state_topic":
		v, err := c.render("percentage_value_template", payload)
		if err != nil {
			return err
		}
		v = strings.TrimSpace(v)
		switch {
		case v == "":
			return nil
		case v == o.strDefault("payload_reset_percentage", payloadNone):
			u.attr("percentage", nil)
			return nil
		}
		f, ok := parseNumber(v)
		if !ok {
			return decodeErr(role, "payload %q is not a number", clip(v))
		}
		lo, hi := o.number("speed_range_min", 1), o.number("speed_range_max", 100)
		if f == 0 {
			u.attr("percentage", 0)
			return nil
		}
		if f < lo || f > hi {
			return decodeErr(role, "%v is outside the speed range %v..%v", f, lo, hi)
		}
		u.attr("percentage", rangedToPercent(lo, hi, f))
	case "preset_mode_state_topic":
		v, err := c.render("preset_mode_value_template", payload)
		if err != nil {
			return err
		}
		v = strings.TrimSpace(v)
		switch {
		case v == "":
		case v == o.strDefault("payload_reset_preset_mode", payloadNone):
			u.attr("preset_mode", nil)
		case slices.Contains(caps.PresetModes, v):
			u.attr("preset_mode", v)
		default:
			return decodeErr(role, "%q is not one of %s", clip(v), strings.Join(caps.PresetModes, ", "))
		}
	case "oscillation_state_topic":
		v, err := c.render("oscillation_value_template", payload)
		if err != nil {
			return err
		}
		switch v {
		case o.strDefault("payload_oscillation_on", "oscillate_on"):
			u.attr("oscillating", true)
		case o.strDefault("payload_oscillation_off", "oscillate_off"):
			u.attr("oscillating", false)
		case "", payloadNone:
		default:
			return decodeErr(role, "payload %q is not an oscillation state", clip(v))
		}
	case "direction_state_topic":
		v, err := c.render("direction_value_template", payload)
		if err != nil {
			return err
		}
		switch v {
		case "forward", "reverse":
			u.attr("direction", v)
		case "", payloadNone:
		default:
			return decodeErr(role, "payload %q is neither forward nor reverse", clip(v))
		}
	}
	return nil
}

// rangedToPercent mirrors Home Assistant's ranged_value_to_percentage.
func rangedToPercent(lo, hi, v float64) int {
	states := hi - lo + 1
	return int(math.Floor((v - (lo - 1)) * 100 / states))
}

func (c *Config) decodeEvent(payload []byte, u *Update) error {
	v, err := c.render("value_template", payload)
	if err != nil {
		return err
	}
	if strings.TrimSpace(v) == "" {
		return nil
	}
	m, ok := hatemplate.DecodeJSON([]byte(v))
	obj, isObj := m.(map[string]any)
	if !ok || !isObj {
		return decodeErr("state_topic", "event payload is not a JSON object")
	}
	et, _ := obj["event_type"].(string)
	if et == "" {
		return decodeErr("state_topic", "event payload lacks event_type")
	}
	if !slices.Contains(c.Entity.Capabilities.EventTypes, et) {
		return decodeErr("state_topic", "event_type %q is not one of %s", clip(et), strings.Join(c.Entity.Capabilities.EventTypes, ", "))
	}
	u.set(et)
	for k, val := range obj {
		if k != "event_type" {
			u.attr(k, val)
		}
	}
	return nil
}

var _ = json.Valid
var _ = fmt.Sprint
