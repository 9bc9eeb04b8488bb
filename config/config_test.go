package config

import (
	"testing"

	"github.com/homemesh/homemesh"
)

func TestLayers(t *testing.T) {
	c := Default()
	if err := c.Decode([]byte("http: 127.0.0.1:9000\nmqtt: 127.0.0.1:1990\ndemo: true\n"), "hub.yaml"); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOMEMESH_MQTT": "127.0.0.1:1991", "HOMEMESH_LOG_LEVEL": "debug"}
	if err := c.LoadEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	if c.HTTP != "127.0.0.1:9000" || c.MQTT != "127.0.0.1:1991" || !c.Demo || c.LogLevel != "debug" || c.MQTTS != ":8883" {
		t.Fatalf("layers not applied in order: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheField(t *testing.T) {
	tests := []struct {
		name, file, field string
	}{
		{"unknown key", "htttp: x\n", "hub.yaml"},
		{"bad address", "http: nonsense\n", "http"},
		{"bad port", "mqtt: 127.0.0.1:99999\n", "mqtt"},
		{"bad home", "home: Not A Home\n", "home"},
		{"bad level", "log_level: loud\n", "log-level"},
		{"both nats", "nats: nats://x:4222\nnats_listen: 127.0.0.1:4223\n", "nats-listen"},
		{"wrong type", "demo: [1]\n", "hub.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			err := c.Decode([]byte(tt.file), "hub.yaml")
			if err == nil {
				err = c.Validate()
			}
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != tt.field {
				t.Fatalf("got %v (field %q), want invalid %q", err, homemesh.ErrorField(err), tt.field)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("http: 127.0.0.1:8080\n"))
	f.Add([]byte(`{"mqtt": ":1883", "demo": true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := c.Decode(data, "fuzz"); err != nil {
			return
		}
		_ = c.Validate()
	})
}
