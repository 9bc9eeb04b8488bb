// Package nodetest starts homemesh nodes inside a test process, with every
// listener on a free loopback port, so that tests of the host and of the
// command line exercise the real services without fixed ports. It lives
// under node because the style tests let only the host import node.
package nodetest

import (
	"context"
	"testing"
	"time"

	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/node"
)

// readyTimeout bounds the wait for a node's services; a hub that opens its
// JetStream stores on a loaded machine can take seconds.
const readyTimeout = 30 * time.Second

// Config returns the default configuration with its data under data and
// its HTTP, MQTT, MQTTS and mesh listeners on free loopback ports.
func Config(data string) config.Config {
	c := config.Default()
	c.Data, c.HTTP, c.MQTT, c.MQTTS, c.Mesh = data, "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	return c
}

// Start builds a node from c and opts, starts it and waits until it is
// ready, failing the test otherwise. The node runs until stop is called or
// the test ends; stop waits for it to return and may be called more than
// once.
func Start(t testing.TB, c config.Config, opts node.Options) (n *node.Node, stop func()) {
	t.Helper()
	n, err := node.New(c, opts, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	stop = hmtest.Run(t, "node", n.Run)
	select {
	case <-n.Ready():
	case <-time.After(readyTimeout):
		t.Fatal("node not ready")
	}
	return n, stop
}
