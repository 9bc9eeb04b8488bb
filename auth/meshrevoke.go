package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Revoking mesh nodes. A node certificate stays cryptographically valid
// until it expires, so a revoked node is cut off by list: its record is
// kept and marked revoked, the border learns the list (VerbMeshRevoked)
// and every revocation as it happens (EventMeshNodeRevoked), and hands it
// on to the agents. A claim with the key of a revoked node is refused, so
// the node cannot pair its way back in.

// meshNodePrefix starts the mesh bucket's key of every paired node.
const meshNodePrefix = "node."

// meshNodePage bounds one mesh_nodes reply: 500 nodes with the longest
// names stay far under the bus's message size.
const meshNodePage = 500

// MeshNode is a paired mesh node as owners and admins see it.
type MeshNode struct {
	NodeID    string     `json:"node_id"` // 16 hex digits
	Name      string     `json:"name"`    // the name of the pairing it claimed
	Role      string     `json:"role"`    // router or leaf
	NotAfter  time.Time  `json:"not_after"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`           // user ID of who created the pairing
	RevokedAt *time.Time `json:"revoked_at,omitempty"` // nil while the node may link
	RevokedBy string     `json:"revoked_by,omitempty"` // user ID of who revoked it
}

// MeshNodes lists the paired mesh nodes in node id order.
type MeshNodes struct {
	Nodes []MeshNode `json:"nodes"`
}

// MeshRevoked is the revocation list of the home's mesh: the hex node ids
// of every revoked node, sorted.
type MeshRevoked struct {
	Nodes []string `json:"nodes"`
}

// MeshNodeRevokedEvent is published on bus.EventSubject(home,
// EventMeshNodeRevoked). It is a bus.Envelope whose payload is
// {"node_id": …}; the node id is repeated at the top level so that a
// reader may decode either.
type MeshNodeRevokedEvent struct {
	bus.Envelope
	NodeID string `json:"node_id"`
}

type meshNodesRequest struct {
	bearer
	After string `json:"after,omitempty"` // start after this node id
}

type meshNodesReply struct {
	Nodes []MeshNode `json:"nodes"`
	More  bool       `json:"more,omitempty"`
}

type meshRevokeNodeRequest struct {
	bearer
	NodeID string `json:"node_id"`
}

// ParseMeshNodeID parses a node id as 16 hex digits (either case) and
// returns it; an error is KindInvalid naming field.
func ParseMeshNodeID(field, s string) (route.NodeID, error) {
	id, err := route.ParseNodeID(s)
	if err != nil {
		return route.NodeID{}, homemesh.Invalid(field, "must be a mesh node id: 16 hex digits")
	}
	return id, nil
}

// errMeshKeyRevoked refuses a claim with the key of a revoked node: the
// key may be in a thief's hands, so only a new one may pair.
var errMeshKeyRevoked = homemesh.Invalid("mesh_key", "this key's node was revoked; the device must make a new key")

// meshNodeRevoked reports whether the node id has a record marked revoked.
func (s *Service) meshNodeRevoked(ctx context.Context, id route.NodeID) (bool, error) {
	e, err := s.meshKV.Get(ctx, meshNodePrefix+id.String())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("read mesh node", err)
	}
	var r meshNodeRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return false, fmt.Errorf("decode mesh node %s: %w", id, err)
	}
	return r.RevokedAt != nil, nil
}

// meshNodeIDs lists the ids of the paired nodes, sorted.
func (s *Service) meshNodeIDs(ctx context.Context) ([]string, error) {
	lister, err := s.meshKV.ListKeysFiltered(ctx, meshNodePrefix+">")
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("list mesh nodes", err)
	}
	var ids []string
	for key := range lister.Keys() {
		if id, ok := strings.CutPrefix(key, meshNodePrefix); ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// meshNode reads the record of node id; found is false when it was
// deleted since it was listed.
func (s *Service) meshNode(ctx context.Context, id string) (r meshNodeRecord, found bool, err error) {
	e, err := s.meshKV.Get(ctx, meshNodePrefix+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return r, false, nil
	}
	if err != nil {
		return r, false, unavailable("read mesh node", err)
	}
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return r, false, fmt.Errorf("decode mesh node %s: %w", id, err)
	}
	return r, true, nil
}

func (s *Service) handleMeshNodes(ctx context.Context, msg *nats.Msg) (any, error) {
	req, _, err := decodeAuthorized[meshNodesRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	ids, err := s.meshNodeIDs(ctx)
	if err != nil {
		return nil, err
	}
	out, more, err := readPage(ids, req.After, meshNodePage, func(id string) (MeshNode, bool, error) {
		r, found, err := s.meshNode(ctx, id)
		return MeshNode{NodeID: id, Name: r.Name, Role: r.Role, NotAfter: r.NotAfter,
			CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy, RevokedAt: r.RevokedAt, RevokedBy: r.RevokedBy}, found, err
	})
	if err != nil {
		return nil, err
	}
	return meshNodesReply{Nodes: out, More: more}, nil
}

func (s *Service) handleMeshRevokeNode(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[meshRevokeNodeRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	id, err := ParseMeshNodeID("node_id", req.NodeID)
	if err != nil {
		return nil, err
	}
	var rec meshNodeRecord
	already := false
	now := time.Now().UTC()
	err = casUpdate(ctx, s.meshKV, meshNodePrefix+id.String(), "read mesh node", "store mesh node", func(cur []byte, exists bool) ([]byte, error) {
		if !exists {
			return nil, homemesh.Errorf(homemesh.KindNotFound, "no paired mesh node %s", id)
		}
		rec = meshNodeRecord{}
		if err := json.Unmarshal(cur, &rec); err != nil {
			return nil, fmt.Errorf("decode mesh node %s: %w", id, err)
		}
		if already = rec.RevokedAt != nil; already {
			return cur, nil
		}
		rec.RevokedAt, rec.RevokedBy = &now, actor.UserID
		return json.Marshal(rec)
	})
	if err != nil {
		return nil, err
	}
	if !already {
		s.log.Info("mesh node revoked", "node", id.String(), "name", rec.Name, "by", actor.Username)
		s.Audit(ctx, AuditEntry{Action: AuditMeshNodeRevoked, Outcome: OutcomeSuccess, Actor: actor.Username, ActorID: actor.UserID,
			Target: meshIdentity(id), Details: map[string]string{"kind": KindMeshNode, "role": rec.Role, "name": rec.Name}})
	}
	// Announced again when it was revoked before: a border that missed the
	// first event learns it now rather than at its next start.
	if err := s.publishMeshNodeRevoked(id); err != nil {
		// The border also reads the whole list when it starts, so a lost
		// event delays the revocation until then; the record keeps it.
		s.log.Error("cannot announce a revoked mesh node", "node", id.String(), "err", err)
	}
	return struct{}{}, nil
}

func (s *Service) publishMeshNodeRevoked(id route.NodeID) error {
	env, err := bus.NewEnvelope(s.cfg.Home, ServiceName, EventMeshNodeRevoked, map[string]string{"node_id": id.String()})
	if err != nil {
		return err
	}
	if err := s.bus.Publish(bus.EventSubject(s.cfg.Home, EventMeshNodeRevoked), MeshNodeRevokedEvent{Envelope: env, NodeID: id.String()}); err != nil {
		return err
	}
	return s.bus.Flush()
}

// handleMeshRevoked lists the revoked nodes. It takes no token: only the
// border may call it (verbCallers), and the list holds node ids alone.
func (s *Service) handleMeshRevoked(ctx context.Context, msg *nats.Msg) (any, error) {
	var req struct{}
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	ids, err := s.meshNodeIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, id := range ids {
		r, found, err := s.meshNode(ctx, id)
		if err != nil {
			return nil, err
		}
		if found && r.RevokedAt != nil {
			out = append(out, id)
		}
	}
	return MeshRevoked{Nodes: out}, nil
}
