package discovery

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/homemesh/homemesh"
)

// lightRequest is a validated turn_on.
type lightRequest struct {
	brightness *int // 0..255
	mireds     *int // colour temperature
	kelvin     *int
	rgb        []int     // 0..255 each
	hs         []float64 // hue 0..360, saturation 0..100
	xy         []float64 // 0..1 each
	effect     *string
	transition *float64
}

func (c *Config) supports(modes ...string) bool {
	for _, m := range modes {
		if slices.Contains(c.Entity.Capabilities.ColorModes, m) {
			return true
		}
	}
	return false
}

func (c *Config) parseTurnOn(p *params) (*lightRequest, error) {
	r := &lightRequest{}
	caps := c.Entity.Capabilities
	b, hasB, err := p.numberIn("brightness", 0, 255)
	if err != nil {
		return nil, err
	}
	pct, hasPct, err := p.numberIn("brightness_pct", 0, 100)
	if err != nil {
		return nil, err
	}
	if hasPct {
		if hasB {
			return nil, cmdErr("params.brightness_pct", "give brightness or brightness_pct, not both")
		}
		b, hasB = math.Round(pct*255/100), true
	}
	if hasB {
		if !c.supports("brightness", "color_temp", "hs", "xy", "rgb", "rgbw", "rgbww", "white") {
			field := "params.brightness"
			if hasPct {
				field = "params.brightness_pct"
			}
			return nil, cmdErr(field, "this light cannot dim")
		}
		v := int(math.Round(b))
		r.brightness = &v
	}
	colorParams := 0
	if m, ok, err := p.numberIn("color_temp", 1, 1e6); err != nil {
		return nil, err
	} else if ok {
		colorParams++
		if !c.supports("color_temp") {
			return nil, cmdErr("params.color_temp", "this light has no colour temperature")
		}
		if m < float64(caps.MinMireds) || m > float64(caps.MaxMireds) {
			return nil, cmdErr("params.color_temp", "must be between %d and %d mireds", caps.MinMireds, caps.MaxMireds)
		}
		mi, k := int(math.Round(m)), int(math.Round(1e6/m))
		r.mireds, r.kelvin = &mi, &k
	}
	if k, ok, err := p.numberIn("color_temp_kelvin", 1, 1e6); err != nil {
		return nil, err
	} else if ok {
		colorParams++
		if !c.supports("color_temp") {
			return nil, cmdErr("params.color_temp_kelvin", "this light has no colour temperature")
		}
		minK, maxK := c.kelvinRange()
		if k < math.Floor(minK) || k > math.Ceil(maxK) {
			return nil, cmdErr("params.color_temp_kelvin", "must be between %d and %d kelvin", int(math.Floor(minK)), int(math.Ceil(maxK)))
		}
		ki, mi := int(math.Round(k)), int(math.Round(1e6/k))
		r.mireds, r.kelvin = &mi, &ki
	}
	colorModes := []string{"hs", "xy", "rgb", "rgbw", "rgbww"}
	if rgb, ok, err := p.numbers("rgb_color", []float64{0, 0, 0}, []float64{255, 255, 255}); err != nil {
		return nil, err
	} else if ok {
		colorParams++
		if !c.supports(colorModes...) {
			return nil, cmdErr("params.rgb_color", "this light has no colour")
		}
		r.rgb = []int{int(math.Round(rgb[0])), int(math.Round(rgb[1])), int(math.Round(rgb[2]))}
	}
	if hs, ok, err := p.numbers("hs_color", []float64{0, 0}, []float64{360, 100}); err != nil {
		return nil, err
	} else if ok {
		colorParams++
		if !c.supports(colorModes...) {
			return nil, cmdErr("params.hs_color", "this light has no colour")
		}
		r.hs = hs
	}
	if xy, ok, err := p.numbers("xy_color", []float64{0, 0}, []float64{1, 1}); err != nil {
		return nil, err
	} else if ok {
		colorParams++
		if !c.supports(colorModes...) {
			return nil, cmdErr("params.xy_color", "this light has no colour")
		}
		r.xy = xy
	}
	if colorParams > 1 {
		return nil, cmdErr("params", "give one of color_temp, color_temp_kelvin, rgb_color, hs_color and xy_color")
	}
	if e, ok, err := p.str("effect"); err != nil {
		return nil, err
	} else if ok {
		if !slices.Contains(caps.Effects, e) {
			return nil, cmdErr("params.effect", "%q is not one of the light's effects", e)
		}
		r.effect = &e
	}
	if t, ok, err := p.numberIn("transition", 0, 6553); err != nil {
		return nil, err
	} else if ok {
		r.transition = &t
	}
	// Home Assistant converts colours into a mode the light supports.
	switch {
	case r.rgb != nil:
		h, s := rgbToHS(r.rgb)
		r.hs = []float64{h, s}
		r.xy = rgbToXY(r.rgb)
	case r.hs != nil:
		r.rgb = hsToRGB(r.hs[0], r.hs[1])
		r.xy = rgbToXY(r.rgb)
	case r.xy != nil:
		r.rgb = xyToRGB(r.xy[0], r.xy[1])
		h, s := rgbToHS(r.rgb)
		r.hs = []float64{h, s}
	}
	return r, nil
}

func (c *Config) commandLight(name string, p *params, current homemesh.State) ([]Publish, error) {
	if name == "toggle" {
		name = "turn_on"
		if current.Value == "on" {
			name = "turn_off"
		}
	}
	if name == "turn_off" {
		t, hasT, err := p.numberIn("transition", 0, 6553)
		if err != nil {
			return nil, err
		}
		switch c.schema {
		case "json":
			msg := orderedJSON{{"state", "OFF"}}
			if hasT {
				msg = append(msg, kv{"transition", jsonNumber(t)})
			}
			return []Publish{c.publish("command_topic", msg.String())}, nil
		case "template":
			vars := map[string]any{"state": "off"}
			if hasT {
				vars["transition"] = jsonNumber(t)
			}
			s, err := c.renderLightTemplate("command_off_template", vars)
			return []Publish{c.publish("command_topic", s)}, err
		}
		return []Publish{c.publish("command_topic", c.opts.strDefault("payload_off", "OFF"))}, nil
	}
	r, err := c.parseTurnOn(p)
	if err != nil {
		return nil, err
	}
	switch c.schema {
	case "json":
		return c.lightJSON(r), nil
	case "template":
		return c.lightTemplate(r)
	}
	return c.lightDefault(r, current)
}

// deviceBrightness scales 0..255 to the device's brightness_scale.
func (c *Config) deviceBrightness(b int) int {
	return int(float64(b) / 255 * float64(c.Entity.Capabilities.BrightnessScale))
}

func jsonNumber(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int(f)
	}
	return f
}

func (c *Config) lightJSON(r *lightRequest) []Publish {
	msg := orderedJSON{{"state", "ON"}}
	switch {
	case r.hs != nil && c.supports("hs"):
		msg = append(msg, kv{"color", orderedJSON{{"h", round(r.hs[0], 3)}, {"s", round(r.hs[1], 3)}}})
	case r.rgb != nil && c.supports("rgb", "rgbw", "rgbww"):
		msg = append(msg, kv{"color", orderedJSON{{"r", r.rgb[0]}, {"g", r.rgb[1]}, {"b", r.rgb[2]}}})
	case r.xy != nil && c.supports("xy"):
		msg = append(msg, kv{"color", orderedJSON{{"x", round(r.xy[0], 3)}, {"y", round(r.xy[1], 3)}}})
	}
	if r.transition != nil {
		msg = append(msg, kv{"transition", jsonNumber(*r.transition)})
	}
	if r.brightness != nil {
		msg = append(msg, kv{"brightness", c.deviceBrightness(*r.brightness)})
	}
	if r.mireds != nil {
		if c.opts.boolean("color_temp_kelvin", false) {
			msg = append(msg, kv{"color_temp", *r.kelvin})
		} else {
			msg = append(msg, kv{"color_temp", *r.mireds})
		}
	}
	if r.effect != nil {
		msg = append(msg, kv{"effect", *r.effect})
	}
	return []Publish{c.publish("command_topic", msg.String())}
}

func round(f float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(f*p) / p
}

func (c *Config) renderLightTemplate(key string, vars map[string]any) (string, error) {
	t := c.tpls[key]
	if t == nil {
		return "", cmdErr(key, "is missing")
	}
	out, err := t.Render(vars)
	if err != nil {
		return "", &homemesh.Error{Op: "discovery.command", Kind: homemesh.KindInvalid, Field: key,
			Message: "the device's command template failed: " + homemesh.ErrorMessage(err), Err: err}
	}
	return out, nil
}

func (c *Config) lightTemplate(r *lightRequest) ([]Publish, error) {
	vars := map[string]any{"state": "on"}
	if r.brightness != nil {
		vars["brightness"] = *r.brightness
	}
	if r.mireds != nil {
		if c.opts.boolean("color_temp_kelvin", false) {
			vars["color_temp"] = *r.kelvin
		} else {
			vars["color_temp"] = *r.mireds
		}
	}
	if r.rgb != nil {
		vars["red"], vars["green"], vars["blue"] = r.rgb[0], r.rgb[1], r.rgb[2]
		vars["hue"], vars["sat"] = round(r.hs[0], 3), round(r.hs[1], 3)
	}
	if r.effect != nil {
		vars["effect"] = *r.effect
	}
	if r.transition != nil {
		vars["transition"] = jsonNumber(*r.transition)
	}
	s, err := c.renderLightTemplate("command_on_template", vars)
	if err != nil {
		return nil, err
	}
	return []Publish{c.publish("command_topic", s)}, nil
}

func (c *Config) lightDefault(r *lightRequest, current homemesh.State) ([]Publish, error) {
	o := c.opts
	onType := strings.ToLower(o.strDefault("on_command_type", "last"))
	on := c.publish("command_topic", o.strDefault("payload_on", "ON"))
	var out []Publish
	if onType == "first" {
		out = append(out, on)
	}
	add := func(topicKey, tplKey string, value any, vars map[string]any) error {
		pub, err := c.publishValue(topicKey, tplKey, value, vars)
		if err != nil {
			return err
		}
		out = append(out, pub)
		return nil
	}
	switch {
	case r.hs != nil && o.has("hs_command_topic"):
		h, s := round(r.hs[0], 3), round(r.hs[1], 3)
		if err := add("hs_command_topic", "hs_command_template", pythonString(h)+","+pythonString(s), map[string]any{"hue": h, "sat": s}); err != nil {
			return nil, err
		}
	case r.rgb != nil && o.has("rgb_command_topic"):
		rgb := r.rgb
		if err := add("rgb_command_topic", "rgb_command_template", joinInts(rgb), map[string]any{"red": rgb[0], "green": rgb[1], "blue": rgb[2]}); err != nil {
			return nil, err
		}
	case r.xy != nil && o.has("xy_command_topic"):
		x, y := round(r.xy[0], 3), round(r.xy[1], 3)
		if err := add("xy_command_topic", "xy_command_template", pythonString(x)+","+pythonString(y), map[string]any{"x": x, "y": y}); err != nil {
			return nil, err
		}
	}
	brightness := r.brightness
	if onType == "brightness" && brightness == nil {
		b := 255
		if v, ok := asFloat(toFloat64(current.Attributes["brightness"])); ok && v > 0 {
			b = int(v)
		}
		brightness = &b
	}
	if brightness != nil && o.has("brightness_command_topic") {
		scale := float64(c.Entity.Capabilities.BrightnessScale)
		v := int(math.Max(math.Min(math.Round(float64(*brightness)/255*scale), scale), 1))
		if err := add("brightness_command_topic", "brightness_command_template", v, nil); err != nil {
			return nil, err
		}
	}
	if r.mireds != nil && o.has("color_temp_command_topic") {
		v := *r.mireds
		if o.boolean("color_temp_kelvin", false) {
			v = *r.kelvin
		}
		if err := add("color_temp_command_topic", "color_temp_command_template", v, nil); err != nil {
			return nil, err
		}
	}
	if r.effect != nil && o.has("effect_command_topic") {
		if err := add("effect_command_topic", "effect_command_template", *r.effect, nil); err != nil {
			return nil, err
		}
	}
	if onType == "last" || (onType == "brightness" && !o.has("brightness_command_topic")) {
		out = append(out, on)
	}
	return out, nil
}

func joinInts(v []int) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

// rgbToHS converts to hue (0..360) and saturation (0..100).
func rgbToHS(rgb []int) (float64, float64) {
	r, g, b := float64(rgb[0])/255, float64(rgb[1])/255, float64(rgb[2])/255
	mx, mn := math.Max(r, math.Max(g, b)), math.Min(r, math.Min(g, b))
	d := mx - mn
	var h float64
	switch {
	case d == 0:
		h = 0
	case mx == r:
		h = math.Mod((g-b)/d, 6)
	case mx == g:
		h = (b-r)/d + 2
	default:
		h = (r-g)/d + 4
	}
	h *= 60
	if h < 0 {
		h += 360
	}
	s := 0.0
	if mx > 0 {
		s = d / mx * 100
	}
	return h, s
}

// hsToRGB converts hue and saturation at full value.
func hsToRGB(h, s float64) []int {
	s /= 100
	c := s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := 1 - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	return []int{clampInt((r + m) * 255), clampInt((g + m) * 255), clampInt((b + m) * 255)}
}

// rgbToXY converts sRGB to CIE xy with the Wide RGB D65 matrix, as Home
// Assistant's color_RGB_to_xy does.
func rgbToXY(rgb []int) []float64 {
	lin := func(v int) float64 {
		f := float64(v) / 255
		if f > 0.04045 {
			return math.Pow((f+0.055)/1.055, 2.4)
		}
		return f / 12.92
	}
	r, g, b := lin(rgb[0]), lin(rgb[1]), lin(rgb[2])
	X := r*0.664511 + g*0.154324 + b*0.162028
	Y := r*0.283881 + g*0.668433 + b*0.047685
	Z := r*0.000088 + g*0.072310 + b*0.986039
	sum := X + Y + Z
	if sum == 0 {
		return []float64{0, 0}
	}
	return []float64{round(X/sum, 4), round(Y/sum, 4)}
}

// xyToRGB converts CIE xy at full brightness, as Home Assistant's
// color_xy_brightness_to_RGB does.
func xyToRGB(x, y float64) []int {
	if y == 0 {
		return []int{0, 0, 0}
	}
	Y := 1.0
	X := Y / y * x
	Z := Y / y * (1 - x - y)
	r := X*1.656492 - Y*0.354851 - Z*0.255038
	g := -X*0.707196 + Y*1.655397 + Z*0.036152
	b := X*0.051713 - Y*0.121364 + Z*1.011530
	gamma := func(v float64) float64 {
		if v <= 0.0031308 {
			return 12.92 * v
		}
		return 1.055*math.Pow(v, 1/2.4) - 0.055
	}
	r, g, b = gamma(r), gamma(g), gamma(b)
	r, g, b = math.Max(0, r), math.Max(0, g), math.Max(0, b)
	if mx := math.Max(r, math.Max(g, b)); mx > 1 {
		r, g, b = r/mx, g/mx, b/mx
	}
	return []int{clampInt(r * 255), clampInt(g * 255), clampInt(b * 255)}
}

// orderedJSON is a JSON object that keeps its keys in order, because
// devices (and Home Assistant's own output) put "state" first.
type orderedJSON []kv

type kv struct {
	k string
	v any
}

func (o orderedJSON) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, e := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(e.k)
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(e.v)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (o orderedJSON) String() string {
	b, _ := o.MarshalJSON()
	return string(b)
}
