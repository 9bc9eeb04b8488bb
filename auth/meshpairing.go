package auth

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go"
)

// Mesh nodes. A device agent pairs with a setup code like any device, but
// presents the static X25519 key of its mesh node (mesh_key) instead of a
// certificate request, and receives a node certificate (mesh/link) from
// the home CA. The border, the hub's mesh node, gets its hub certificate
// over the bus (VerbMeshHubCert) and registers where agents reach it, so
// that a claim can tell a new agent about the home's hubs.
const (
	// MeshCertValidity is the lifetime of a mesh node certificate.
	MeshCertValidity = DeviceCertValidity
	// KindMeshNode is the kind of a mesh claim, in audit entries.
	KindMeshNode = "mesh_node"
	// maxHubAddresses bounds the addresses a hub registers.
	maxHubAddresses = 16
	// maxHubs bounds the hubs a claim lists.
	maxHubs = 64
)

// MeshHub is a hub of the home as a claim lists it: what an agent needs to
// reach the hub end to end.
type MeshHub struct {
	NodeID    string   `json:"node_id"`   // 16 hex digits
	Key       []byte   `json:"key"`       // static X25519 public key, 32 bytes (base64 in JSON)
	Addresses []string `json:"addresses"` // UDP host:port
}

// MeshHubCert is a hub's node certificate as VerbMeshHubCert issues it.
type MeshHubCert struct {
	NodeID        string    `json:"node_id"`
	Certificate   []byte    `json:"certificate"`    // DER
	CACertificate []byte    `json:"ca_certificate"` // DER
	NotAfter      time.Time `json:"not_after"`
}

// ClaimRequest is what a device presents to claim a setup code: the code,
// and either nothing (an MQTT credential), a PEM certificate request (an
// MQTTS client certificate) or its mesh key and role (a mesh node
// certificate). Source is the network address it came from.
type ClaimRequest struct {
	Code     string
	CSR      string
	MeshKey  string // base64 of a 32-byte X25519 public key
	MeshRole string // "router" (default) or "leaf"
	Source   string
}

// meshHubCertRequest asks for a hub certificate for Key and registers the
// hub at Addresses.
type meshHubCertRequest struct {
	Key       []byte   `json:"key"`
	Addresses []string `json:"addresses"`
}

// meshHubRecord is a registered hub in the mesh bucket, keyed "hub.<id>".
type meshHubRecord struct {
	Key       []byte    `json:"key"`
	Addresses []string  `json:"addresses"`
	NotAfter  time.Time `json:"not_after"`
	UpdatedAt time.Time `json:"updated_at"`
}

// meshNodeRecord is a node certificate issued by a claim, keyed
// "node.<id>", so the home knows which mesh nodes it paired. Revoking a
// node keeps its record, marked, for the revocation list and to refuse
// its key a new claim.
type meshNodeRecord struct {
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	NotAfter  time.Time  `json:"not_after"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	RevokedBy string     `json:"revoked_by,omitempty"` // user ID
}

// ParseMeshKey decodes the base64 of a mesh node's static X25519 public key
// and refuses keys no honest node has: of the wrong length, or of low
// order (including all zeros), with which every Diffie-Hellman result is
// zero. Errors are KindInvalid naming field.
func ParseMeshKey(field string, b64 string) (*ecdh.PublicKey, error) {
	// Only the canonical encoding, so one key has one spelling (the
	// decoder alone skips line breaks and ignores padding bits).
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 32 || base64.StdEncoding.EncodeToString(raw) != b64 {
		return nil, homemesh.Invalid(field, "must be the base64 of a 32-byte X25519 public key")
	}
	return checkMeshKey(field, raw)
}

func checkMeshKey(field string, raw []byte) (*ecdh.PublicKey, error) {
	if len(raw) != 32 {
		return nil, homemesh.Invalid(field, "must be a 32-byte X25519 public key")
	}
	// A node id is the hash of the key's bytes, so a point must have one
	// encoding: X25519 ignores the top bit and reduces values from p up,
	// which would give one key several ids. Honest generators never
	// produce either.
	if !canonicalX25519(raw) {
		return nil, homemesh.Invalid(field, "must be a canonical X25519 public key (below 2^255-19)")
	}
	pub, err := ecdh.X25519().NewPublicKey(raw)
	if err != nil {
		return nil, homemesh.Invalid(field, "must be a 32-byte X25519 public key")
	}
	// crypto/ecdh refuses to return the all-zero shared secret that every
	// low-order point yields, whatever the private key: a probe with a
	// throwaway key finds them all.
	probe, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mesh key probe: %w", err)
	}
	if _, err := probe.ECDH(pub); err != nil {
		return nil, homemesh.Invalid(field, "is a low-order point, not a usable X25519 public key")
	}
	return pub, nil
}

// parseMeshRole parses a role a claim may ask for: router (the default)
// or leaf. Hub certificates go to the border only.
func parseMeshRole(s string) (link.Role, error) {
	switch s {
	case "", "router":
		return link.RoleRouter, nil
	case "leaf":
		return link.RoleLeaf, nil
	case "hub":
		return 0, homemesh.Invalid("mesh_role", "hub certificates are issued to the hub's border only")
	}
	return 0, homemesh.Invalid("mesh_role", "must be router or leaf")
}

// meshClaim is a checked mesh part of a claim.
type meshClaim struct {
	key  *ecdh.PublicKey
	role link.Role
}

// parseMeshClaim checks the mesh fields of a claim; nil without them.
func parseMeshClaim(req claimPairingRequest) (*meshClaim, error) {
	if req.MeshKey == "" {
		if req.MeshRole != "" {
			return nil, homemesh.Invalid("mesh_key", "is required with mesh_role")
		}
		return nil, nil
	}
	if req.CSR != "" {
		return nil, homemesh.Invalid("csr", "give either csr or mesh_key, not both")
	}
	key, err := ParseMeshKey("mesh_key", req.MeshKey)
	if err != nil {
		return nil, err
	}
	role, err := parseMeshRole(req.MeshRole)
	if err != nil {
		return nil, err
	}
	return &meshClaim{key: key, role: role}, nil
}

func meshIdentity(id route.NodeID) string { return meshapp.DeviceID(id) }

func (s *Service) issueMeshNodeCertificate(ctx context.Context, rec pairingRecord, mc *meshClaim, now time.Time) (PairingClaim, error) {
	der, err := link.IssueNodeCert(s.ca.cert, s.ca.key, s.cfg.Home, mc.role, mc.key, now, MeshCertValidity)
	if err != nil {
		return PairingClaim{}, fmt.Errorf("issue mesh node certificate: %w", err)
	}
	id := route.IDFromKey(mc.key.Bytes())
	notAfter := now.Add(MeshCertValidity).UTC().Truncate(time.Second)
	hubs, err := s.meshHubs(ctx, now)
	if err != nil {
		return PairingClaim{}, err
	}
	nr := meshNodeRecord{Name: rec.Name, Role: mc.role.String(), NotAfter: notAfter, CreatedAt: now, CreatedBy: rec.CreatedBy}
	// A node that pairs again with the same key (a new setup code after a
	// lost state dir) gets a new certificate, unless it was revoked: the
	// claim checked that before spending the code, and the compare-and-set
	// keeps a revocation made since from being overwritten.
	err = casUpdate(ctx, s.meshKV, meshNodePrefix+id.String(), "read mesh node", "store mesh node", func(cur []byte, exists bool) ([]byte, error) {
		var old meshNodeRecord
		if exists && json.Unmarshal(cur, &old) == nil && old.RevokedAt != nil {
			return nil, errMeshKeyRevoked
		}
		return json.Marshal(nr)
	})
	if err != nil {
		return PairingClaim{}, err
	}
	identity := meshIdentity(id)
	s.Audit(ctx, AuditEntry{Action: AuditCertificateIssued, Outcome: OutcomeSuccess, Actor: systemCreator, Target: identity,
		Details: map[string]string{"kind": KindMeshNode, "role": nr.Role, "name": rec.Name, "not_after": notAfter.Format(time.RFC3339)}})
	return PairingClaim{
		Identity:        identity,
		MeshCertificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CACertificate:   string(s.ca.certPEM),
		NodeID:          id.String(),
		NotAfter:        notAfter,
		MeshHubs:        hubs,
		Allow:           []string{}, // a mesh node has no MQTT topics
	}, nil
}

// meshHubs lists the registered hubs whose certificates are still valid.
func (s *Service) meshHubs(ctx context.Context, now time.Time) ([]MeshHub, error) {
	lister, err := s.meshKV.ListKeys(ctx)
	if err != nil {
		return nil, unavailable("list mesh hubs", err)
	}
	hubs := []MeshHub{}
	for key := range lister.Keys() {
		hex, ok := strings.CutPrefix(key, "hub.")
		if !ok || len(hubs) >= maxHubs {
			continue
		}
		e, err := s.meshKV.Get(ctx, key)
		if err != nil {
			continue // deleted since listed
		}
		var r meshHubRecord
		if json.Unmarshal(e.Value(), &r) != nil || !now.Before(r.NotAfter) {
			continue
		}
		hubs = append(hubs, MeshHub{NodeID: hex, Key: r.Key, Addresses: r.Addresses})
	}
	slices.SortFunc(hubs, func(a, b MeshHub) int { return strings.Compare(a.NodeID, b.NodeID) })
	return hubs, nil
}

// checkHubAddresses refuses addresses an agent could not dial: each must
// be host:port with a port from 1 to 65535 and a host that is an IP
// address other than the unspecified one, or a DNS name.
func checkHubAddresses(addrs []string) ([]string, error) {
	if len(addrs) == 0 {
		return nil, homemesh.Invalid("addresses", "at least one UDP address is needed, for agents to reach the hub")
	}
	if len(addrs) > maxHubAddresses {
		return nil, homemesh.Invalid("addresses", "at most %d addresses", maxHubAddresses)
	}
	out := make([]string, 0, len(addrs))
	for i, a := range addrs {
		field := fmt.Sprintf("addresses[%d]", i)
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, homemesh.Invalid(field, "must be host:port")
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, homemesh.Invalid(field, "port must be 1 to 65535")
		}
		if ip := net.ParseIP(host); ip != nil {
			if ip.IsUnspecified() {
				return nil, homemesh.Invalid(field, "must name an address agents can reach, not %s", host)
			}
			out = append(out, net.JoinHostPort(ip.String(), port))
			continue
		}
		host = strings.ToLower(host)
		if !validDNSName(host) {
			return nil, homemesh.Invalid(field, "host must be an IP address or a DNS name")
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// handleMeshHubCert issues a hub certificate for the border's key and
// records the hub, replacing an earlier record of the same node. Only the
// border may call it (verbCallers).
func (s *Service) handleMeshHubCert(ctx context.Context, msg *nats.Msg) (any, error) {
	var req meshHubCertRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	pub, err := checkMeshKey("key", req.Key)
	if err != nil {
		return nil, err
	}
	addrs, err := checkHubAddresses(req.Addresses)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	der, err := link.IssueNodeCert(s.ca.cert, s.ca.key, s.cfg.Home, link.RoleHub, pub, now, MeshCertValidity)
	if err != nil {
		return nil, fmt.Errorf("issue hub certificate: %w", err)
	}
	id := route.IDFromKey(pub.Bytes())
	rec := meshHubRecord{Key: pub.Bytes(), Addresses: addrs, NotAfter: now.Add(MeshCertValidity).Truncate(time.Second), UpdatedAt: now}
	data, _ := json.Marshal(rec)
	if _, err := s.meshKV.Put(ctx, "hub."+id.String(), data); err != nil {
		return nil, unavailable("store mesh hub", err)
	}
	s.Audit(ctx, AuditEntry{Action: AuditCertificateIssued, Outcome: OutcomeSuccess, Actor: "border", Target: meshIdentity(id),
		Details: map[string]string{"kind": KindMeshNode, "role": link.RoleHub.String(), "addresses": truncateDetail(strings.Join(addrs, ",")),
			"not_after": rec.NotAfter.Format(time.RFC3339)}})
	s.log.Info("mesh hub certificate issued", "node", id.String(), "addresses", strings.Join(addrs, ","))
	return MeshHubCert{NodeID: id.String(), Certificate: der, CACertificate: s.ca.cert.Raw, NotAfter: rec.NotAfter}, nil
}

// truncateDetail keeps an audit detail within the audit log's limit.
func truncateDetail(s string) string {
	if len(s) <= audit.MaxText {
		return s
	}
	return strings.ToValidUTF8(s[:audit.MaxText-3], "") + "..."
}

// curve25519P is 2^255-19, the field prime of Curve25519.
var curve25519P = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))

// canonicalX25519 reports whether the little-endian u-coordinate raw is
// below p (which also means its top bit is clear).
func canonicalX25519(raw []byte) bool {
	be := make([]byte, len(raw))
	for i, b := range raw {
		be[len(raw)-1-i] = b
	}
	return new(big.Int).SetBytes(be).Cmp(curve25519P) < 0
}
