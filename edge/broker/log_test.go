package broker

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/mochi-mqtt/server/v2/packets"
)

func TestNoPasswordInLogs(t *testing.T) {
	const secret = "S3cr3t-Passw0rd-xyzzy"
	var logs hmtest.LogBuffer
	s := bustest.Server(t)
	auth := newAuth()
	auth.creds["secretive"] = fakeCred{password: secret, allow: []string{"dev/s/#"}}
	b := startBroker(t, s, func(_ *Config, d *Deps) {
		d.Auth = auth
		d.Log = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	addr := b.Addr(ListenerTCP).String()

	if _, err := connect(t, addr, "secretive", secret+"-wrong", "wrong"); err == nil {
		t.Fatal("wrong password accepted")
	}
	c := mustConnect(t, addr, "secretive", secret, "right")
	wait(t, c.Publish("dev/other/x", 0, false, "denied"))
	// A second CONNECT on a live connection is a protocol error that mochi
	// logs with the offending packet; the password in it must not leak.
	conn, code := rawConnect(t, addr, connectPacket("secretive", secret, "twice", ""))
	if code != 0 {
		t.Fatalf("CONNACK %d", code)
	}
	pk := connectPacket("secretive", secret, "twice", "")
	pk.FixedHeader.Type = packets.Connect
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the second CONNECT to be logged", func() bool {
		return strings.Contains(logs.String(), "error processing packet")
	})
	hmtest.WaitFor(t, 5*time.Second, "the refusal to be logged", func() bool {
		return strings.Contains(logs.String(), "authentication failed")
	})
	if strings.Contains(logs.String(), secret) || strings.Contains(logs.String(), "UzNjcjN0") {
		t.Errorf("a password reached the logs:\n%s", logs.String())
	}
	for _, field := range []string{`"client_id":"wrong"`, `"username":"secretive"`, `"topic":"dev/other/x"`} {
		if !strings.Contains(logs.String(), field) {
			t.Errorf("logs lack %s", field)
		}
	}
}
