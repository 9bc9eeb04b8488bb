package discovery

import (
	"time"

	"github.com/homemesh/homemesh"
)

// Optimistic reports whether the entity reports no state of its own (or
// was configured optimistic), so that, as in Home Assistant, the state a
// command asks for should be assumed at once; Assumed says which.
func (c *Config) Optimistic() bool {
	o := c.opts
	if o.boolean("optimistic", false) {
		return true
	}
	switch c.kind {
	case homemesh.KindSwitch, homemesh.KindLight, homemesh.KindLock, homemesh.KindFan,
		homemesh.KindNumber, homemesh.KindSelect:
		return !o.has("state_topic")
	case homemesh.KindCover:
		return !o.has("state_topic") && !o.has("position_topic")
	case homemesh.KindClimate:
		return !o.has("mode_state_topic")
	}
	return false
}

// Assumed returns the state change an optimistic entity takes when cmd has
// been published (see Optimistic). It reports false for commands that imply
// no particular state.
func (c *Config) Assumed(cmd homemesh.Command, current homemesh.State) (Update, bool) {
	var u Update
	p := cmd.Params
	switch cmd.Name {
	case "turn_on":
		u.set("on")
		if c.kind == homemesh.KindClimate {
			return Update{}, false
		}
		if b, ok := asFloat(toFloat64(p["brightness"])); ok {
			u.attr("brightness", int(b))
		}
	case "turn_off":
		if c.kind == homemesh.KindClimate {
			u.set("off")
			return u, true
		}
		u.set("off")
	case "toggle":
		if current.Value == "on" {
			u.set("off")
		} else {
			u.set("on")
		}
	case "lock":
		u.set("locked")
	case "unlock":
		u.set("unlocked")
	case "open":
		u.set("open")
	case "open_cover":
		u.set("open")
		u.attr("current_position", 100)
	case "close_cover":
		u.set("closed")
		u.attr("current_position", 0)
	case "set_cover_position":
		pos, ok := asFloat(toFloat64(p["position"]))
		if !ok {
			return Update{}, false
		}
		u.attr("current_position", int(pos))
		if pos == 0 {
			u.set("closed")
		} else {
			u.set("open")
		}
	case "set_hvac_mode":
		m, ok := p["hvac_mode"].(string)
		if !ok {
			return Update{}, false
		}
		u.set(m)
	case "set_temperature":
		for _, k := range []string{"temperature", "target_temp_low", "target_temp_high"} {
			if v, ok := asFloat(toFloat64(p[k])); ok {
				u.attr(k, v)
			}
		}
		if m, ok := p["hvac_mode"].(string); ok {
			u.set(m)
		}
	case "select_option":
		o, ok := p["option"].(string)
		if !ok {
			return Update{}, false
		}
		u.set(o)
	case "set_value":
		v, ok := asFloat(toFloat64(p["value"]))
		if !ok {
			return Update{}, false
		}
		u.set(v)
	case "set_percentage":
		v, ok := asFloat(toFloat64(p["percentage"]))
		if !ok {
			return Update{}, false
		}
		u.attr("percentage", int(v))
		if v == 0 {
			u.set("off")
		} else {
			u.set("on")
		}
	case "set_preset_mode":
		m, ok := p["preset_mode"].(string)
		if !ok {
			return Update{}, false
		}
		u.attr("preset_mode", m)
	default:
		return Update{}, false
	}
	return u, true
}

// ExpireAfter returns how long a sensor or binary sensor stays available
// without a state message (expire_after); zero means forever.
func (c *Config) ExpireAfter() time.Duration {
	return seconds(c.opts.number("expire_after", 0))
}

// OffDelay returns how long after an "on" a binary sensor falls back to
// "off" by itself (off_delay); zero means never.
func (c *Config) OffDelay() time.Duration {
	if c.kind != homemesh.KindBinarySensor {
		return 0
	}
	return seconds(c.opts.number("off_delay", 0))
}

func seconds(f float64) time.Duration {
	if f <= 0 || f > 1e7 {
		return 0
	}
	return time.Duration(f * float64(time.Second))
}
