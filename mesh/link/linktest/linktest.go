// Package linktest makes home CAs and node identities for tests and the
// simulator: deterministic from a seed, so that a seeded simulation gives
// the same certificates, and with them the same handshake sizes, every run.
// Real homes get their CA from auth.
package linktest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
)

// Home is a home CA like the one auth keeps (ECDSA P-256, self-signed) and
// a Verifier that trusts it.
type Home struct {
	Name     string
	CA       *x509.Certificate
	Key      *ecdsa.PrivateKey
	Verifier *link.Verifier
	now      time.Time
}

// NewHome makes the CA of home name, derived from seed, valid from an hour
// before now for ten years.
func NewHome(name string, seed uint64, now time.Time) (*Home, error) {
	r := Rand(seed)
	var key *ecdsa.PrivateKey
	for key == nil {
		var b [32]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		key, _ = ecdsa.ParseRawPrivateKey(elliptic.P256(), b[:]) // fails only for out-of-range values
	}
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetUint64(seed + 1),
		Subject:               pkix.Name{CommonName: "homemesh home " + name + " CA", Organization: []string{"homemesh"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	// A nil random source makes the ECDSA signature deterministic.
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("linktest: make CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	v, err := link.NewVerifier([]*x509.Certificate{ca}, name)
	if err != nil {
		return nil, err
	}
	return &Home{Name: name, CA: ca, Key: key, Verifier: v, now: now}, nil
}

// Identity makes a node identity of role whose static key is drawn from r,
// with a certificate valid for a year from the home's creation time.
func (h *Home) Identity(role link.Role, r io.Reader) (link.Identity, error) {
	key, err := link.GenerateKey(r)
	if err != nil {
		return link.Identity{}, err
	}
	cert, err := link.IssueNodeCert(h.CA, h.Key, h.Name, role, key.PublicKey(), h.now, 365*24*time.Hour)
	if err != nil {
		return link.Identity{}, err
	}
	return link.Identity{Key: key, Cert: cert}, nil
}

// Rand returns a deterministic stream of bytes for seed, for keys and for
// Config.Rand.
func Rand(seed uint64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}
