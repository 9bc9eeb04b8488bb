package agent

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/meshapp"
)

// Simulations names the simulated entities New* make, as
// `homemesh agent run --simulate` takes them.
var Simulations = []string{"temperature", "switch", "light", "door"}

// Simulate returns the simulated entities named in kinds (each one of
// Simulations, at most once), seeded with seed so that a run can be
// reproduced.
func Simulate(kinds []string, seed uint64) ([]Entity, error) {
	var out []Entity
	seen := map[string]bool{}
	for i, k := range kinds {
		k = strings.TrimSpace(k)
		if seen[k] {
			return nil, homemesh.Invalid(fmt.Sprintf("simulate[%d]", i), "%q is listed twice", k)
		}
		seen[k] = true
		switch k {
		case "temperature":
			out = append(out, NewTemperature("temperature", seed+uint64(i)))
		case "switch":
			out = append(out, NewSwitch("switch", homemesh.KindSwitch))
		case "light":
			out = append(out, NewSwitch("light", homemesh.KindLight))
		case "door":
			out = append(out, NewDoor("door", seed+uint64(i)))
		default:
			return nil, homemesh.Invalid(fmt.Sprintf("simulate[%d]", i), "unknown simulation %q (known: %s)", k, strings.Join(Simulations, ", "))
		}
	}
	return out, nil
}

// Temperature is a simulated temperature sensor whose value takes a random
// walk around 21 °C, within 15 to 30 °C, in steps of 0.1 °C.
type Temperature struct {
	uniqueID string
	mu       sync.Mutex
	rng      *rand.Rand
	value    float64
	last     time.Time
}

// NewTemperature returns a simulated temperature sensor.
func NewTemperature(uniqueID string, seed uint64) *Temperature {
	return &Temperature{uniqueID: uniqueID, rng: rand.New(rand.NewPCG(seed, 0x7e3)), value: 21}
}

// Definition describes a temperature sensor in °C.
func (t *Temperature) Definition() meshapp.Entity {
	return meshapp.Entity{UniqueID: t.uniqueID, Kind: homemesh.KindSensor, Name: "Temperature",
		DeviceClass: "temperature", Unit: "°C", StateClass: "measurement"}
}

// State advances the walk by the time since the last call: a step with a
// standard deviation of 0.05 °C per second's square root, so the value
// drifts by about a degree an hour whatever the polling rate.
func (t *Temperature) State() meshapp.Reading {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if !t.last.IsZero() {
		dt := now.Sub(t.last).Seconds()
		t.value += t.rng.NormFloat64() * 0.05 * math.Sqrt(dt)
		t.value = min(30, max(15, t.value))
	}
	t.last = now
	return meshapp.Reading{Value: math.Round(t.value*10) / 10, Available: true}
}

// Command refuses everything: a sensor takes no commands.
func (t *Temperature) Command(context.Context, *meshapp.Command) error {
	return homemesh.Invalid("command", "a temperature sensor accepts no commands")
}

// Switch is a simulated switch or dimmable light: it obeys turn_on,
// turn_off and toggle (a light also brightness, 0 to 255, with turn_on)
// and reports its new state.
type Switch struct {
	uniqueID   string
	kind       homemesh.EntityKind
	mu         sync.Mutex
	on         bool
	brightness int
}

// NewSwitch returns a simulated switch of kind homemesh.KindSwitch or
// homemesh.KindLight, off.
func NewSwitch(uniqueID string, kind homemesh.EntityKind) *Switch {
	return &Switch{uniqueID: uniqueID, kind: kind, brightness: 255}
}

var switchCommands = []string{"turn_on", "turn_off", "toggle"}

// Definition describes the switch or light and the commands it accepts.
func (s *Switch) Definition() meshapp.Entity {
	e := meshapp.Entity{UniqueID: s.uniqueID, Kind: s.kind, Caps: homemesh.Capabilities{Commands: slices.Clone(switchCommands)}}
	if s.kind == homemesh.KindLight {
		e.Name = "Light"
		e.Caps.ColorModes = []string{"brightness"}
	} else {
		e.Name = "Switch"
		e.DeviceClass = "outlet"
	}
	return e
}

// State is "on" or "off"; a light adds its brightness while on.
func (s *Switch) State() meshapp.Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := meshapp.Reading{Value: "off", Available: true}
	if s.on {
		r.Value = "on"
		if s.kind == homemesh.KindLight {
			r.Attributes = map[string]any{"brightness": s.brightness}
		}
	}
	return r
}

// Command carries out turn_on, turn_off and toggle.
func (s *Switch) Command(_ context.Context, cmd *meshapp.Command) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch cmd.Name {
	case "turn_on":
		if b, ok := cmd.Params["brightness"]; ok {
			if s.kind != homemesh.KindLight {
				return homemesh.Invalid("params.brightness", "a switch has no brightness")
			}
			f, ok := b.(float64)
			if !ok || f != math.Trunc(f) || f < 0 || f > 255 {
				return homemesh.Invalid("params.brightness", "must be an integer from 0 to 255")
			}
			s.brightness = int(f)
		}
		s.on = true
	case "turn_off":
		s.on = false
	case "toggle":
		s.on = !s.on
	default:
		return homemesh.Invalid("command", "%q is not a command of a %s (it accepts %s)", cmd.Name, s.kind, strings.Join(switchCommands, ", "))
	}
	return nil
}

// Door is a simulated door contact: a binary sensor that opens now and
// then (on average every few minutes) and closes again after a while.
type Door struct {
	uniqueID string
	mu       sync.Mutex
	rng      *rand.Rand
	open     bool
	next     time.Time
}

// NewDoor returns a simulated door contact, closed.
func NewDoor(uniqueID string, seed uint64) *Door {
	return &Door{uniqueID: uniqueID, rng: rand.New(rand.NewPCG(seed, 0xd00))}
}

// Definition describes a binary sensor of device class door.
func (d *Door) Definition() meshapp.Entity {
	return meshapp.Entity{UniqueID: d.uniqueID, Kind: homemesh.KindBinarySensor, Name: "Door", DeviceClass: "door"}
}

// State is "on" (open) or "off" (closed), flipping at random times:
// closed for 3 minutes on average, open for 20 seconds.
func (d *Door) State() meshapp.Reading {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if d.next.IsZero() {
		d.next = now.Add(d.wait(3 * time.Minute))
	}
	for !now.Before(d.next) {
		d.open = !d.open
		mean := 3 * time.Minute
		if d.open {
			mean = 20 * time.Second
		}
		d.next = d.next.Add(d.wait(mean))
	}
	v := "off"
	if d.open {
		v = "on"
	}
	return meshapp.Reading{Value: v, Available: true}
}

// wait draws an exponential wait of the given mean, at least a second.
func (d *Door) wait(mean time.Duration) time.Duration {
	return max(time.Second, time.Duration(d.rng.ExpFloat64()*float64(mean)))
}

// Command refuses everything: a contact takes no commands.
func (d *Door) Command(context.Context, *meshapp.Command) error {
	return homemesh.Invalid("command", "a door sensor accepts no commands")
}
