package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/homemesh/homemesh"
)

// SensorConfigTopic returns the discovery topic AnnounceSensors uses for
// device i under the discovery prefix.
func (c IngestConfig) SensorConfigTopic(prefix string, i int) string {
	return prefix + "/sensor/" + c.deviceID(i) + "/temperature/config"
}

// deviceID is device i's identifier in discovery, unique per topic prefix.
func (c IngestConfig) deviceID(i int) string {
	return homemesh.Slug(c.TopicPrefix) + "-dev-" + strconv.Itoa(i)
}

// AnnounceSensors publishes a retained Home Assistant discovery config for
// each of cfg's devices under the discovery prefix (default
// "homeassistant"): a temperature sensor whose state topic is the device's
// bench topic, with the whole payload as attributes, so that a hub records
// every bench message as a registry state update carrying the send time "t".
// It returns once the broker has accepted every config.
func AnnounceSensors(ctx context.Context, cfg IngestConfig, prefix string) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	if prefix == "" {
		prefix = "homeassistant"
	}
	o := clientOptions(cfg.Broker, cfg.TLS, cfg.Username, cfg.Password)
	o.SetClientID(fmt.Sprintf("hmbench-announce-%x", time.Now().UnixNano()&0xffffffff))
	c := mqtt.NewClient(o)
	if err := wait(ctx, c.Connect()); err != nil {
		return fmt.Errorf("bench: connect announcer: %w", err)
	}
	defer c.Disconnect(250)
	toks := make([]mqtt.Token, 0, cfg.Devices)
	for i := range cfg.Devices {
		id := cfg.deviceID(i)
		b, err := json.Marshal(map[string]any{
			"name":                  "Temperature",
			"unique_id":             id + "_temperature",
			"state_topic":           cfg.StateTopic(i),
			"json_attributes_topic": cfg.StateTopic(i),
			"value_template":        "{{ value_json.temperature }}",
			"device_class":          "temperature",
			"unit_of_measurement":   "°C",
			"state_class":           "measurement",
			"device": map[string]any{
				"identifiers":  []string{id},
				"name":         "Bench device " + strconv.Itoa(i),
				"manufacturer": "homemesh",
				"model":        "bench ingest",
			},
			"origin": map[string]any{"name": "homemesh bench"},
		})
		if err != nil {
			return err
		}
		toks = append(toks, c.Publish(cfg.SensorConfigTopic(prefix, i), 1, true, b))
	}
	for _, t := range toks {
		if err := wait(ctx, t); err != nil {
			return fmt.Errorf("bench: announce: %w", err)
		}
	}
	return nil
}
