package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/homemesh/homemesh"
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
	n.maintenance = true
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
	key, previous, err := o.node.secretKeys()
	if err != nil {
		return nil, err
	}
	svc, err := auth.New(auth.Config{DataDir: o.node.cfg.Data, Home: o.node.home.ID, SecretKey: key, PreviousSecretKeys: previous},
		auth.Deps{Bus: o.Bus, Log: o.node.log})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return svc, nil
}

// KeyRotation reports a master key rotation.
type KeyRotation struct {
	auth.ResealReport
	// OldKeyID is the ID (auth.SecretKeyID) of the key replaced.
	OldKeyID string
	// KeyFile is the data directory's key file when the rotation replaced
	// it. It is "" when the old key came from --secret-key-file or the
	// environment, which the operator must now change.
	KeyFile string
}

// RotateSecretKey makes the key in newKeyFile (32 bytes, raw, hex or
// base64) the key that seals the home's secrets at rest. It re-seals every
// sealed record (auth.Service.ResealAll) and, when the old key lived in the
// data directory, then replaces that file atomically. The old key is the
// one the hub would use (flag, environment or data directory); keys from
// --previous-secret-key-file and its environment variable open records too,
// so an interrupted rotation can be finished by running it again.
func (o *Offline) RotateSecretKey(ctx context.Context, newKeyFile string) (KeyRotation, error) {
	newKey, err := readKeyFile(newKeyFile, "new-key-file")
	if err != nil {
		return KeyRotation{}, err
	}
	oldKey, previous, fromDataDir, err := o.node.currentSecretKey()
	if err != nil {
		return KeyRotation{}, err
	}
	rot := KeyRotation{OldKeyID: auth.SecretKeyID(oldKey)}
	if bytes.Equal(oldKey, newKey) {
		return rot, homemesh.Invalid("new-key-file", "holds the current secret key; a rotation needs a new one")
	}
	svc, err := auth.New(auth.Config{DataDir: o.node.cfg.Data, Home: o.node.home.ID, SecretKey: newKey,
		PreviousSecretKeys: append([][]byte{oldKey}, previous...)}, auth.Deps{Bus: o.Bus, Log: o.node.log})
	if err != nil {
		return rot, fmt.Errorf("auth: %w", err)
	}
	if rot.ResealReport, err = svc.ResealAll(ctx); err != nil {
		return rot, fmt.Errorf("%w (records re-sealed so far open with the new key, the rest with the old one: run the rotation again)", err)
	}
	if fromDataDir {
		if err := auth.WriteSecretKey(o.node.cfg.Data, newKey); err != nil {
			return rot, fmt.Errorf("every record is sealed with the new key, but replacing %s failed: %w; put the new key there yourself",
				auth.SecretKeyPath(o.node.cfg.Data), err)
		}
		rot.KeyFile = auth.SecretKeyPath(o.node.cfg.Data)
	}
	// Failing to record the rotation must not undo it; Audit logs the loss.
	_ = svc.Audit(ctx, auth.AuditEntry{Action: auth.AuditKeyRotated, Outcome: auth.OutcomeSuccess,
		Actor: "system", Source: "cli", Target: "master_key"})
	return rot, nil
}

// Close releases the bus and the data directory.
func (o *Offline) Close() { o.node.close() }
