package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/config"
)

// Offline is maintenance access to a hub's state without running its
// services: what `homemesh user reset-mfa` and `homemesh audit verify` use
// when nobody can log in. With an embedded bus it opens the data
// directory's NATS store itself and holds the directory's lock, so the hub
// cannot start meanwhile (and a running hub makes OpenOffline fail with a
// clear message). With --nats it joins the external bus instead.
type Offline struct {
	node *Node
	// Bus is a connection to the home's bus.
	Bus *natsbus.Conn
}

// OpenOffline opens the home in cfg.Data (or on cfg.NATS) for maintenance.
// The data directory must exist: maintenance never creates a home.
func OpenOffline(cfg config.Config, log *slog.Logger) (*Offline, error) {
	if _, err := os.Stat(cfg.Data); err != nil {
		return nil, fmt.Errorf("data directory %s (--data): %w", cfg.Data, err)
	}
	n, err := New(cfg, Options{Services: []string{}}, log)
	if err != nil {
		return nil, err
	}
	n.names = nil // no services: only the home and the bus
	if err := n.Start(context.Background()); err != nil {
		return nil, err
	}
	c, err := n.Connect("homemesh-maintenance")
	if err != nil {
		n.close()
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	n.conns = append(n.conns, c)
	return &Offline{node: n, Bus: c}, nil
}

// HomeID is the ID of the opened home.
func (o *Offline) HomeID() string { return o.node.home.ID }

// Auth returns the home's auth service over the opened bus, loaded with
// the secret key (flag, environment or data directory, as the hub finds
// it) but not serving requests: maintenance calls its methods directly.
func (o *Offline) Auth() (*auth.Service, error) {
	key, err := o.node.secretKey()
	if err != nil {
		return nil, err
	}
	svc, err := auth.New(auth.Config{DataDir: o.node.cfg.Data, Home: o.node.home.ID, SecretKey: key},
		auth.Deps{Bus: o.Bus, Log: o.node.log})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return svc, nil
}

// Close releases the bus and the data directory.
func (o *Offline) Close() { o.node.close() }
