package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/mesh/border"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go"
)

// meshRevocations is the border's source of revoked mesh nodes: auth's
// list (auth.VerbMeshRevoked) and its event for each new revocation
// (auth.EventMeshNodeRevoked), over the border's bus connection.
type meshRevocations struct {
	conn *natsbus.Conn
	auth *auth.Client
	home string
	log  *slog.Logger
}

var _ border.Revocations = meshRevocations{}

// Revoked returns auth's list.
func (r meshRevocations) Revoked(ctx context.Context) ([]route.NodeID, error) {
	return r.auth.MeshRevoked(ctx)
}

// Follow subscribes to the event until ctx ends. The subscription is in
// place on the server when it returns, so a list fetched afterwards misses
// nothing.
func (r meshRevocations) Follow(ctx context.Context, revoked func(route.NodeID)) error {
	subject := bus.EventSubject(r.home, auth.EventMeshNodeRevoked)
	sub, err := r.conn.NATS().Subscribe(subject, func(m *nats.Msg) {
		id, err := parseMeshNodeRevoked(m.Data)
		if err != nil {
			r.log.Warn("malformed mesh node revocation event", "subject", m.Subject, "err", err)
			return
		}
		revoked(id)
	})
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	if err := r.conn.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	context.AfterFunc(ctx, func() { _ = sub.Unsubscribe() })
	return nil
}

// parseMeshNodeRevoked reads the node id of an auth.MeshNodeRevokedEvent:
// at the top level, or in the envelope's payload.
func parseMeshNodeRevoked(b []byte) (route.NodeID, error) {
	var ev auth.MeshNodeRevokedEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return route.NodeID{}, fmt.Errorf("not a JSON event: %w", err)
	}
	if ev.NodeID == "" && len(ev.Payload) > 0 {
		var p struct {
			NodeID string `json:"node_id"`
		}
		if err := json.Unmarshal(ev.Payload, &p); err != nil {
			return route.NodeID{}, fmt.Errorf("payload: %w", err)
		}
		ev.NodeID = p.NodeID
	}
	if ev.NodeID == "" {
		return route.NodeID{}, errors.New("node_id: missing")
	}
	id, err := route.ParseNodeID(ev.NodeID)
	if err != nil {
		return route.NodeID{}, fmt.Errorf("node_id: %w", err)
	}
	return id, nil
}
