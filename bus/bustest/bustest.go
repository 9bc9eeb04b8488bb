// Package bustest starts real embedded NATS servers for tests, with
// JetStream stored in the test's temporary directory.
package bustest

import (
	"testing"

	"github.com/homemesh/homemesh/bus/natsbus"
)

// Server starts an embedded server that listens on a random loopback port
// and is shut down when the test ends.
func Server(t testing.TB) *natsbus.Server {
	t.Helper()
	s, err := natsbus.StartServer(natsbus.ServerConfig{
		Name: "test", StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
	}, nil)
	if err != nil {
		t.Fatalf("start nats: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// Conn opens an in-process connection to s, closed when the test ends.
func Conn(t testing.TB, s *natsbus.Server) *natsbus.Conn {
	t.Helper()
	c, err := s.Connect(t.Name())
	if err != nil {
		t.Fatalf("connect nats: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
