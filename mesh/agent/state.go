package agent

import (
	"bytes"
	"crypto/ecdh"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
	"github.com/homemesh/homemesh/mesh/route"
)

// The files of a state directory (see the package comment).
const (
	KeyFile     = "mesh.key"
	CertFile    = "node.crt"
	CAFile      = "ca.crt"
	PairingFile = "pairing.json"
)

// ErrNotPaired is returned by LoadPairing for a directory without a
// pairing.
var ErrNotPaired = errors.New("not paired")

// Hub is a hub of the home as the pairing listed it.
type Hub struct {
	NodeID    string   `json:"node_id"`
	Key       []byte   `json:"key"` // static X25519 public key (base64 in JSON)
	Addresses []string `json:"addresses"`
}

// Pairing is what a paired agent knows: its identity in the home's mesh
// and the home's hubs.
type Pairing struct {
	Home     string
	NodeID   route.NodeID
	Role     link.Role
	Key      *ecdh.PrivateKey
	Cert     []byte // DER node certificate
	CA       []*x509.Certificate
	Hubs     []Hub
	NotAfter time.Time
}

// pairingRecord is pairing.json.
type pairingRecord struct {
	Home     string    `json:"home"`
	NodeID   string    `json:"node_id"`
	Role     string    `json:"role"`
	NotAfter time.Time `json:"not_after"`
	Hub      string    `json:"hub_url,omitempty"` // where it was paired, for people
	Hubs     []Hub     `json:"hubs"`
}

// Identity returns the node's link identity.
func (p *Pairing) Identity() link.Identity { return link.Identity{Key: p.Key, Cert: p.Cert} }

// Verifier returns a verifier of the home's node certificates.
func (p *Pairing) Verifier() (*link.Verifier, error) { return link.NewVerifier(p.CA, p.Home) }

// KeyOf returns the static key of a hub the pairing listed, for
// meshnode.Config.KeyOf: the agent opens the end-to-end channel to its hub.
func (p *Pairing) KeyOf(id route.NodeID) ([]byte, bool) {
	for _, h := range p.Hubs {
		if h.NodeID == id.String() {
			return h.Key, true
		}
	}
	return nil, false
}

// HubAddresses returns every address of every hub, the peers an agent
// dials when told of no others.
func (p *Pairing) HubAddresses() []string {
	var out []string
	for _, h := range p.Hubs {
		out = append(out, h.Addresses...)
	}
	return out
}

// LoadPairing reads the pairing in dir and checks it: the key matches the
// certificate, which the CA issued for this home. A directory that was
// never paired gives an error wrapping ErrNotPaired.
func LoadPairing(dir string) (*Pairing, error) {
	raw, err := os.ReadFile(filepath.Join(dir, PairingFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: run `homemesh agent pair --state %s` first", dir, ErrNotPaired, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read pairing: %w", err)
	}
	var rec pairingRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, PairingFile), err)
	}
	keyBytes, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("read the mesh key: %w", err)
	}
	key, err := ecdh.X25519().NewPrivateKey(keyBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: not a 32-byte X25519 key", filepath.Join(dir, KeyFile))
	}
	certs, err := readPEMCerts(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, err
	}
	cas, err := readPEMCerts(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, err
	}
	if !time.Now().Before(rec.NotAfter) {
		return nil, fmt.Errorf("%s: the node certificate expired on %s: pair again with a new setup code (remove the directory first)",
			dir, rec.NotAfter.Format(time.DateOnly))
	}
	p := &Pairing{Home: rec.Home, Key: key, Cert: certs[0].Raw, CA: cas, Hubs: rec.Hubs, NotAfter: rec.NotAfter}
	if err := p.check(time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if rec.NodeID != p.NodeID.String() {
		return nil, fmt.Errorf("%s: %s names node %s, the key is node %s", dir, PairingFile, rec.NodeID, p.NodeID)
	}
	return p, nil
}

// check verifies the node certificate against the CA and the key, fills
// NodeID and Role, and checks the hubs.
func (p *Pairing) check(now time.Time) error {
	v, err := p.Verifier()
	if err != nil {
		return err
	}
	peer, err := v.Verify(p.Cert, now)
	if err != nil {
		return fmt.Errorf("the node certificate: %w", err)
	}
	if !bytes.Equal(peer.Key, p.Key.PublicKey().Bytes()) {
		return fmt.Errorf("the node certificate is for another key")
	}
	p.NodeID, p.Role = peer.ID, peer.Role
	for i, h := range p.Hubs {
		if len(h.Key) != 32 || route.IDFromKey(h.Key).String() != h.NodeID {
			return homemesh.Invalid(fmt.Sprintf("mesh_hubs[%d]", i), "node id %q does not belong to its key", h.NodeID)
		}
	}
	return nil
}

func readPEMCerts(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	certs, err := parsePEMCerts(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// parsePEMCerts parses one or more PEM certificates and nothing else.
func parsePEMCerts(raw []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, raw = pem.Decode(raw)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a PEM block of type %s, not CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("not a certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 || strings.TrimSpace(string(raw)) != "" {
		return nil, fmt.Errorf("must hold PEM certificates only")
	}
	return out, nil
}

// save writes the pairing to dir; pairing.json goes last, as the mark of
// a complete pairing. The key was written before the claim (writeKey).
func (p *Pairing) save(dir, hubURL string) error {
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Cert})
	var ca []byte
	for _, c := range p.CA {
		ca = append(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	rec, _ := json.MarshalIndent(pairingRecord{Home: p.Home, NodeID: p.NodeID.String(), Role: p.Role.String(),
		NotAfter: p.NotAfter, Hub: hubURL, Hubs: p.Hubs}, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
	}{{CertFile, cert}, {CAFile, ca}, {PairingFile, append(rec, '\n')}} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeKey stores a new static key in dir, replacing what an unfinished
// pairing left there.
func writeKey(dir string, key *ecdh.PrivateKey) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the state directory: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, KeyFile), key.Bytes(), 0o600)
}

// writeFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so that a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
