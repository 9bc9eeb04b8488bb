package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/homemesh/homemesh/bench"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/sim/simtest"
)

func TestIngest(t *testing.T) {
	broker := simtest.Broker(t)
	tests := []struct {
		name string
		cfg  bench.IngestConfig
		want int // messages sent and delivered
	}{
		{"qos1 blast", bench.IngestConfig{Devices: 10, Messages: 50, QoS: 1}, 500},
		{"qos0 blast", bench.IngestConfig{Devices: 5, Messages: 20, QoS: 0}, 100},
		{"qos1 paced", bench.IngestConfig{Devices: 10, Messages: 20, Rate: 1000, QoS: 1}, 200},
		{"qos0 paced", bench.IngestConfig{Devices: 4, Messages: 25, Rate: 500, QoS: 0}, 100},
		{"qos2 paced by duration", bench.IngestConfig{Devices: 4, Duration: 200 * time.Millisecond, Rate: 400, QoS: 2}, -1},
		{"qos1 blast by duration", bench.IngestConfig{Devices: 3, Duration: 100 * time.Millisecond, QoS: 1}, -1},
		{"qos1 count before duration", bench.IngestConfig{Devices: 2, Messages: 5, Duration: time.Minute, QoS: 1}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cfg := tt.cfg
			cfg.Broker = broker
			cfg.TopicPrefix = "t" + time.Now().Format("150405.000000")
			sink := bench.MQTTSink(broker, "", "", cfg.TopicPrefix+"/+/state", cfg.QoS)
			res, err := bench.Ingest(ctx, cfg, sink)
			if err != nil {
				t.Fatalf("Ingest: %v", err)
			}
			out, _ := json.Marshal(res)
			t.Logf("%s", out)
			if tt.want >= 0 && res.Sent != tt.want {
				t.Errorf("Sent = %d, want %d", res.Sent, tt.want)
			}
			if res.Sent == 0 || res.Delivered != res.Sent || res.Lost != 0 || res.Failed != 0 {
				t.Errorf("sent %d, delivered %d, lost %d, failed %d; want all sent delivered", res.Sent, res.Delivered, res.Lost, res.Failed)
			}
			if res.Target != broker || res.Devices != cfg.Devices || res.QoS != cfg.QoS || res.OfferedRate != cfg.Rate {
				t.Errorf("result echoes target %q devices %d qos %d rate %v, want %q %d %d %v",
					res.Target, res.Devices, res.QoS, res.OfferedRate, broker, cfg.Devices, cfg.QoS, cfg.Rate)
			}
			l := res.LatencyMS
			if !(res.Seconds > 0 && res.MsgsPerSec > 0 && l.P50 >= 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.Max && l.Max > 0) {
				t.Errorf("implausible figures: %s", out)
			}
		})
	}
}

func TestIngestInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  bench.IngestConfig
	}{
		{"no broker", bench.IngestConfig{}},
		{"qos 3", bench.IngestConfig{Broker: "127.0.0.1:1", QoS: 3}},
		{"negative rate", bench.IngestConfig{Broker: "127.0.0.1:1", Rate: -1}},
		{"too many devices", bench.IngestConfig{Broker: "127.0.0.1:1", Devices: bench.MaxDevices + 1}},
		{"too many messages", bench.IngestConfig{Broker: "127.0.0.1:1", Devices: 1000, Messages: bench.MaxMessages}},
		{"wildcard prefix", bench.IngestConfig{Broker: "127.0.0.1:1", TopicPrefix: "a/#"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := bench.Ingest(context.Background(), tt.cfg, bench.MQTTSink("127.0.0.1:1", "", "", "x", 0)); err == nil {
				t.Error("Ingest succeeded, want an error")
			}
		})
	}
}

func TestIngestUnreachable(t *testing.T) {
	broker := simtest.Broker(t)
	tests := []struct {
		name         string
		pub, sinkURL string
	}{
		{"sink cannot connect", broker, "127.0.0.1:1"},
		{"publishers cannot connect", "127.0.0.1:1", broker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cfg := bench.IngestConfig{Broker: tt.pub, Devices: 2, Messages: 1, QoS: 1}
			if _, err := bench.Ingest(ctx, cfg, bench.MQTTSink(tt.sinkURL, "", "", "bench/#", 1)); err == nil {
				t.Error("Ingest succeeded, want an error")
			}
		})
	}
}

func TestPayload(t *testing.T) {
	for _, seq := range []int{0, 7, 99999} {
		now := time.Now().UnixNano()
		p := bench.Payload(seq, now)
		var got struct {
			Temperature float64 `json:"temperature"`
			T           int64   `json:"t"`
			Seq         int     `json:"seq"`
		}
		if err := json.Unmarshal(p, &got); err != nil {
			t.Fatalf("Payload(%d) is not JSON: %v: %s", seq, err, p)
		}
		if got.T != now || got.Seq != seq {
			t.Errorf("Payload(%d) = %s, want t %d and seq %d", seq, p, now, seq)
		}
		if len(p) < 80 || len(p) > 130 {
			t.Errorf("Payload is %d bytes, want about 100", len(p))
		}
		if ts, ok := bench.SentTime(p); !ok || ts != now {
			t.Errorf("SentTime = %d, %v; want %d, true", ts, ok, now)
		}
	}
	if _, ok := bench.SentTime([]byte(`{"temperature":1}`)); ok {
		t.Error("SentTime found a timestamp in a payload without one")
	}
}

func TestAnnounceSensors(t *testing.T) {
	broker := simtest.Broker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := bench.IngestConfig{Broker: broker, Devices: 3, TopicPrefix: "bench"}
	if err := bench.AnnounceSensors(ctx, cfg, "homeassistant"); err != nil {
		t.Fatal(err)
	}

	// A late subscriber sees every config, retained.
	var mu sync.Mutex
	got := map[string]map[string]any{}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + broker).SetClientID("checker")
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	c.Subscribe("homeassistant/#", 1, func(_ mqtt.Client, m mqtt.Message) {
		if !m.Retained() {
			return // a live copy racing the subscription; the retained one counts
		}
		var v map[string]any
		if err := json.Unmarshal(m.Payload(), &v); err != nil {
			t.Errorf("%s: %v", m.Topic(), err)
		}
		mu.Lock()
		got[m.Topic()] = v
		mu.Unlock()
	}).WaitTimeout(10 * time.Second)
	hmtest.WaitFor(t, 10*time.Second, "three retained configs", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 3 })

	cfgTopic := cfg.SensorConfigTopic("homeassistant", 1)
	mu.Lock()
	defer mu.Unlock()
	sub := map[string]any{}
	for _, k := range []string{"state_topic", "json_attributes_topic", "value_template", "unique_id"} {
		sub[k] = got[cfgTopic][k]
	}
	want := map[string]any{
		"state_topic":           "bench/dev-1/state",
		"json_attributes_topic": "bench/dev-1/state",
		"value_template":        "{{ value_json.temperature }}",
		"unique_id":             "bench-dev-1_temperature",
	}
	if diff := cmp.Diff(want, sub); diff != "" {
		t.Errorf("config on %s (-want +got):\n%s", cfgTopic, diff)
	}
}

// TestMosquittoAnchor measures the anchor figures against an external
// broker named by HOMEMESH_BENCH_MOSQUITTO (host:port) and prints them as
// JSON. It is skipped otherwise.
func TestMosquittoAnchor(t *testing.T) {
	broker := os.Getenv("HOMEMESH_BENCH_MOSQUITTO")
	if broker == "" {
		t.Skip("set HOMEMESH_BENCH_MOSQUITTO=host:port to measure an external broker")
	}
	runs := []struct {
		name string
		cfg  bench.IngestConfig
	}{
		{"qos1 blast 100x1000", bench.IngestConfig{Devices: 100, Messages: 1000, QoS: 1}},
		{"qos1 paced 5000/s for 10s", bench.IngestConfig{Devices: 100, Duration: 10 * time.Second, Rate: 5000, QoS: 1}},
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cfg := r.cfg
			cfg.Broker = broker
			cfg.TopicPrefix = "hmbench"
			res, err := bench.Ingest(ctx, cfg, bench.MQTTSink(broker, "", "", "hmbench/+/state", cfg.QoS))
			if err != nil {
				t.Fatal(err)
			}
			out, _ := json.Marshal(res)
			t.Logf("%s", out)
		})
	}
}
