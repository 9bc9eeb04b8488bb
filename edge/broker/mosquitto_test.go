package broker

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
)

// TestMosquittoClients checks every protocol version with the reference
// clients: a retained publish through mosquitto_pub is read back by
// mosquitto_sub (retained messages need no timing) and reaches the bus.
func TestMosquittoClients(t *testing.T) {
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package mosquitto-clients); skipping protocol version checks", tool)
		}
	}
	s := bustest.Server(t)
	b := startBroker(t, s)
	host, port, _ := net.SplitHostPort(b.Addr(ListenerTCP).String())
	msgs := mqttOnBus(t, s, 16)

	run := func(t *testing.T, name string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	tests := []struct {
		version string
		extra   []string // publish options
		ctype   string
	}{
		{"mqttv31", nil, ""},
		{"mqttv311", nil, ""},
		{"mqttv5", []string{"-D", "publish", "content-type", "application/json"}, "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			topic := "living room/" + tt.version + " lamp.1/state"
			payload := `{"v":"` + tt.version + `"}`
			args := append([]string{"-V", tt.version, "-u", "living", "-P", "l-pw", "-i", "pub-" + tt.version,
				"-q", "1", "-r", "-t", topic, "-m", payload}, tt.extra...)
			if out, err := run(t, "mosquitto_pub", args...); err != nil {
				t.Fatalf("mosquitto_pub: %v: %s", err, out)
			}
			select {
			case m := <-msgs:
				wantSubject, _ := bus.MQTTSubject(testHome, topic)
				if m.Subject != wantSubject || string(m.Data) != payload || m.Header.Get(HeaderContentType) != tt.ctype {
					t.Errorf("bridged %s %q content type %q, want %s %q %q", m.Subject, m.Data,
						m.Header.Get(HeaderContentType), wantSubject, payload, tt.ctype)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("publish not bridged")
			}
			out, err := run(t, "mosquitto_sub", "-V", tt.version, "-u", "living", "-P", "l-pw", "-i", "sub-"+tt.version,
				"-q", "1", "-t", topic, "-C", "1", "-W", "10")
			if err != nil || out != payload {
				t.Errorf("mosquitto_sub = %q, %v; want %q", out, err, payload)
			}
			out, err = run(t, "mosquitto_sub", "-V", tt.version, "-u", "living", "-P", "wrong", "-i", "bad-"+tt.version,
				"-t", topic, "-C", "1", "-W", "5")
			if err == nil {
				t.Errorf("mosquitto_sub with a wrong password succeeded: %q", out)
			}
			out, err = run(t, "mosquitto_sub", "-V", tt.version, "-u", "living", "-P", "l-pw", "-i", "deny-"+tt.version,
				"-t", "kitchen/#", "-C", "1", "-W", "5")
			if !strings.Contains(out, "denied") {
				t.Errorf("subscribe outside the grant = %q, %v; want it denied", out, err)
			}
		})
	}
}
