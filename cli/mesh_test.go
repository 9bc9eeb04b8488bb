package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// A bad flag value is an error naming the flag, before anything runs.
func TestMeshSimRejectsBadFlags(t *testing.T) {
	for flag, args := range map[string][]string{
		"loss":     {"--loss", "1"},
		"latency":  {"--latency", "20ms-10ms"},
		"topology": {"--topology", "ring"},
		"scenario": {"--scenario", "flood"},
		"nodes":    {"--nodes", "1"},
		"degree":   {"--degree", "0"},
		"hubs":     {"--hubs", "0"},
	} {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), append([]string{"mesh", "sim"}, args...), &stdout, &stderr)
		if code == 0 || !strings.HasPrefix(stderr.String(), "homemesh: "+flag+":") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

// --json prints one JSON object with the figures the design names.
func TestMeshSimPrintsJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"mesh", "sim", "--nodes", "20", "--topology", "grid", "--scenario", "kill",
		"--duration", "40s", "--settle", "2s", "--steady", "5s", "--seed", "2", "--json"}
	if code := Main(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var res map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	for _, key := range []string{"detection_s", "recovery_s", "loops", "delivery_ratio", "overhead_bps_per_node",
		"stretch_p99", "route_bytes_per_node", "merge_s", "cold_start_s", "params", "host"} {
		if _, ok := res[key]; !ok {
			t.Errorf("no %q in %s", key, stdout.String())
		}
	}
	for _, key := range []string{"p50", "p95", "p99", "max"} {
		if _, ok := res["recovery_s"].(map[string]any)[key]; !ok {
			t.Errorf("recovery_s has no %q", key)
		}
	}
	stdout.Reset()
	if code := Main(context.Background(), args[:len(args)-1], &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "cold start") {
		t.Fatalf("summary: exit %d, %q", code, stdout.String())
	}
}
