// Package simtest starts real MQTT brokers for tests: an embedded mochi
// broker on a random loopback port, stopped when the test ends.
package simtest

import (
	"sync"
	"testing"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/homemesh/homemesh/internal/hmtest"
)

// Broker starts an embedded MQTT broker listening on 127.0.0.1:0 and returns
// its host:port. Without hooks it allows every client and topic; otherwise
// hooks decide authentication and authorization. The broker is closed at
// the end of the test.
func Broker(t testing.TB, hooks ...mochi.Hook) string {
	t.Helper()
	addr, _ := BrokerAt(t, "127.0.0.1:0", hooks...)
	return addr
}

// BrokerAt starts an embedded MQTT broker listening on addr, like Broker,
// and also returns a function that stops it early (to test reconnection;
// a new broker may then listen on the same address).
func BrokerAt(t testing.TB, addr string, hooks ...mochi.Hook) (string, func()) {
	t.Helper()
	s := mochi.New(&mochi.Options{InlineClient: true, Logger: hmtest.Logger(t)})
	if len(hooks) == 0 {
		hooks = []mochi.Hook{new(AllowHook)}
	}
	for _, h := range hooks {
		if err := s.AddHook(h, nil); err != nil {
			t.Fatalf("add broker hook %s: %v", h.ID(), err)
		}
	}
	l := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	if err := s.AddListener(l); err != nil {
		t.Fatalf("broker listen: %v", err)
	}
	if err := s.Serve(); err != nil {
		t.Fatalf("broker serve: %v", err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { _ = s.Close() }) }
	t.Cleanup(stop)
	return l.Address(), stop
}

// AllowHook lets every client connect and use every topic.
type AllowHook struct{ mochi.HookBase }

// ID names the hook.
func (h *AllowHook) ID() string { return "allow-all" }

// Provides reports that the hook decides authentication and authorization.
func (h *AllowHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

// OnConnectAuthenticate accepts every client.
func (h *AllowHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

// OnACLCheck allows every topic.
func (h *AllowHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }
