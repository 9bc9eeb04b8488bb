package agent

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/meshapp"
)

func TestSimulatedSwitch(t *testing.T) {
	ctx := context.Background()
	light := NewSwitch("light", homemesh.KindLight)
	for _, step := range []struct {
		cmd        meshapp.Command
		field      string // of the refusal, "" when it must work
		value      string
		brightness any
	}{
		{meshapp.Command{Name: "turn_on"}, "", "on", 255},
		{meshapp.Command{Name: "turn_on", Params: map[string]any{"brightness": 40.0}}, "", "on", 40},
		{meshapp.Command{Name: "turn_on", Params: map[string]any{"brightness": 300.0}}, "params.brightness", "on", 40},
		{meshapp.Command{Name: "turn_on", Params: map[string]any{"brightness": 1.5}}, "params.brightness", "on", 40},
		{meshapp.Command{Name: "toggle"}, "", "off", nil},
		{meshapp.Command{Name: "lock"}, "command", "off", nil},
		{meshapp.Command{Name: "toggle"}, "", "on", 40},
		{meshapp.Command{Name: "turn_off"}, "", "off", nil},
	} {
		err := light.Command(ctx, &step.cmd)
		if homemesh.ErrorField(err) != step.field || (step.field == "") != (err == nil) {
			t.Fatalf("%+v: error %v, want field %q", step.cmd, err, step.field)
		}
		r := light.State()
		if r.Value != step.value || r.Attributes["brightness"] != step.brightness {
			t.Fatalf("after %+v: %+v", step.cmd, r)
		}
	}
	sw := NewSwitch("plug", homemesh.KindSwitch)
	if err := sw.Command(ctx, &meshapp.Command{Name: "turn_on", Params: map[string]any{"brightness": 1.0}}); homemesh.ErrorField(err) != "params.brightness" {
		t.Errorf("a switch with brightness: %v", err)
	}
}

func TestSimulatedSensors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		temp := NewTemperature("t", 1)
		door := NewDoor("d", 1)
		flips, last := 0, door.State().Value
		lo, hi := 100.0, 0.0
		for range 24 * 60 {
			time.Sleep(time.Minute)
			v := temp.State().Value.(float64)
			lo, hi = min(lo, v), max(hi, v)
			if d := door.State().Value; d != last {
				flips, last = flips+1, d
			}
		}
		if lo < 15 || hi > 30 || hi-lo < 0.5 {
			t.Errorf("a day of temperature between %.1f and %.1f", lo, hi)
		}
		// Closed three minutes on average and open 20 s: a few hundred
		// changes a day, seen at one-minute polls as fewer.
		if flips < 50 {
			t.Errorf("the door changed %d times in a day", flips)
		}
	})
	// The same seed walks the same way.
	synctest.Test(t, func(t *testing.T) {
		a, b := NewTemperature("t", 9), NewTemperature("t", 9)
		for range 100 {
			time.Sleep(time.Minute)
			if x, y := a.State().Value, b.State().Value; x != y {
				t.Fatalf("%v != %v", x, y)
			}
		}
	})
}

func TestSimulate(t *testing.T) {
	es, err := Simulate([]string{"temperature", "switch", "door", "light"}, 1)
	if err != nil || len(es) != 4 {
		t.Fatalf("Simulate: %v, %v", es, err)
	}
	if _, err := New(Config{Device: meshapp.DeviceInfo{Name: "sim"}, Entities: es}); err != nil {
		t.Errorf("the simulated entities do not make an agent: %v", err)
	}
	if _, err := Simulate([]string{"switch", "switch"}, 1); homemesh.ErrorField(err) != "simulate[1]" {
		t.Errorf("twice: %v", err)
	}
	if _, err := Simulate([]string{"toaster"}, 1); homemesh.ErrorField(err) != "simulate[0]" {
		t.Errorf("unknown: %v", err)
	}
}
