package discovery

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh"
)

func TestOptimistic(t *testing.T) {
	tests := []struct {
		name, inline string
		cmd          homemesh.Command
		want         Update
		optimistic   bool
	}{
		{"switch without state", `{"component":"switch","cmd_t":"s/set"}`, homemesh.Command{Name: "turn_on"},
			Update{Value: "on", HasValue: true}, true},
		{"switch with state", `{"component":"switch","cmd_t":"s/set","stat_t":"s"}`, homemesh.Command{Name: "turn_off"},
			Update{Value: "off", HasValue: true}, false},
		{"cover position", `{"component":"cover","cmd_t":"c/set","set_pos_t":"c/pos"}`,
			homemesh.Command{Name: "set_cover_position", Params: map[string]any{"position": 30.0}},
			Update{Value: "open", HasValue: true, Attributes: map[string]any{"current_position": 30}}, true},
		{"select", `{"component":"select","cmd_t":"s/set","ops":["a","b"],"opt":true,"stat_t":"s"}`,
			homemesh.Command{Name: "select_option", Params: map[string]any{"option": "b"}},
			Update{Value: "b", HasValue: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseInline(t, tt.inline)
			if got := c.Optimistic(); got != tt.optimistic {
				t.Errorf("Optimistic = %v, want %v", got, tt.optimistic)
			}
			got, ok := c.Assumed(tt.cmd, homemesh.State{})
			if !ok {
				t.Fatal("Assumed reported no state")
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Assumed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDurations(t *testing.T) {
	c := parseInline(t, `{"component":"binary_sensor","stat_t":"m","exp_aft":"90","off_dly":5}`)
	if got := c.ExpireAfter(); got != 90*time.Second {
		t.Errorf("ExpireAfter = %v", got)
	}
	if got := c.OffDelay(); got != 5*time.Second {
		t.Errorf("OffDelay = %v", got)
	}
}

func TestDeviceSharedOptions(t *testing.T) {
	msg := `{"dev":{"ids":["dev1"],"name":"Dev"},"o":{"name":"x"},"~":"base/dev1",
		"stat_t":"~/state","avty_t":"~/avail","qos":1,
		"cmps":{"t":{"p":"sensor","val_tpl":"{{ value_json.t }}","uniq_id":"dev1_t"},
		        "r":{"p":"switch","cmd_t":"~/relay/set","stat_t":"~/relay","uniq_id":"dev1_r"}}}`
	a, err := Parse(DefaultPrefix, "homeassistant/device/dev1/config", []byte(msg))
	if err != nil || len(a.Errors) > 0 || len(a.Configs) != 2 {
		t.Fatalf("Parse: %v %v", err, a.Errors)
	}
	r, s := a.Configs[0], a.Configs[1] // sorted by component id: r, t
	if diff := cmp.Diff([]string{"base/dev1/avail", "base/dev1/relay"}, r.Topics()); diff != "" {
		t.Errorf("switch topics (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"base/dev1/avail", "base/dev1/state"}, s.Topics()); diff != "" {
		t.Errorf("sensor topics (-want +got):\n%s", diff)
	}
	if r.Key != (Key{Component: "switch", ID: "dev1 r"}) || r.Device.ID != "dev1" || r.Entity.DeviceID != "dev1" {
		t.Errorf("switch key %v device %q", r.Key, r.Device.ID)
	}
	pubs, err := r.Command(homemesh.Command{Name: "turn_on"}, homemesh.State{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Publish{{Topic: "base/dev1/relay/set", Payload: []byte("ON"), QoS: 1}}, pubs); diff != "" {
		t.Errorf("Command (-want +got):\n%s", diff)
	}
	u, err := s.Decode("base/dev1/state", []byte(`{"t":"7"}`), homemesh.State{})
	if err != nil || u.Value != 7.0 {
		t.Errorf("Decode = %+v, %v", u, err)
	}
	// "cmp" is tolerated for "cmps".
	a, err = Parse(DefaultPrefix, "homeassistant/device/dev1/config",
		[]byte(`{"dev":{"ids":"dev1"},"o":{"name":"x"},"cmp":{"b":{"p":"button","cmd_t":"x/press","uniq_id":"u"}}}`))
	if err != nil || len(a.Configs) != 1 {
		t.Fatalf("cmp: %v %v", err, a.Errors)
	}
}
