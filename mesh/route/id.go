package route

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// NodeID identifies a mesh node: the first 8 bytes of the SHA-256 of its
// static X25519 public key, so a node cannot choose its id, and a link
// that authenticated the key (mesh/link) has authenticated the id.
type NodeID [8]byte

// IDFromKey returns the id of the node whose static public key is pub.
func IDFromKey(pub []byte) NodeID {
	sum := sha256.Sum256(pub)
	var id NodeID
	copy(id[:], sum[:])
	return id
}

// String returns the id as 16 lower-case hex digits.
func (id NodeID) String() string { return hex.EncodeToString(id[:]) }

// ParseNodeID parses the 16 hex digits String writes.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("node id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("node id %q: %w", s, err)
	}
	return id, nil
}
