package link

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	_ "crypto/sha512" // crypto.SHA384 for P-384 CAs
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// Role is what a node does in the mesh. It travels in the node's
// certificate, so a peer cannot claim a role the home CA did not give it.
type Role uint8

// The roles a node certificate can carry.
const (
	RoleHub    Role = iota + 1 // a router that is also a border to the home's services
	RoleRouter                 // a mains-powered node that forwards for others
	RoleLeaf                   // a battery node: attaches to one parent, never forwards
)

// String returns the role's name as it appears in certificates.
func (r Role) String() string {
	switch r {
	case RoleHub:
		return "hub"
	case RoleRouter:
		return "router"
	case RoleLeaf:
		return "leaf"
	}
	return fmt.Sprintf("role(%d)", uint8(r))
}

// ParseRole parses a role name: hub, router or leaf.
func ParseRole(s string) (Role, error) {
	switch s {
	case "hub":
		return RoleHub, nil
	case "router":
		return RoleRouter, nil
	case "leaf":
		return RoleLeaf, nil
	}
	return 0, homemesh.Invalid("role", "must be hub, router or leaf, not %q", s)
}

// Peer is what a verified node certificate says about its holder.
type Peer struct {
	ID       route.NodeID // derived from Key, never taken from the certificate's text alone
	Home     string
	Role     Role
	Key      []byte    // the node's static X25519 public key, 32 bytes
	NotAfter time.Time // when the certificate (or its CA) expires
}

const (
	uriScheme = "homemesh"
	// maxCertLen bounds a certificate carried in a handshake; a node
	// certificate is about 400 bytes.
	maxCertLen = 2048
	// clockSkew is how far before its issue time a certificate is valid,
	// so that nodes with slightly slow clocks accept it at once.
	clockSkew = time.Hour
)

var (
	oidX25519             = asn1.ObjectIdentifier{1, 3, 101, 110}
	oidECDSAWithSHA256    = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384    = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidEd25519            = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidExtKeyUsage        = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtBasicConstraint = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtSubjectAltName  = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidExtAuthorityKeyID  = asn1.ObjectIdentifier{2, 5, 29, 35}
)

// nodeURI is the certificate's one URI SAN, naming the home, the node and
// its role. It is an opaque URI rather than homemesh://<home>/... because
// a home id may be longer than a DNS label and x509 checks URI hosts as
// domain names.
func nodeURI(home string, id route.NodeID, role Role) string {
	return fmt.Sprintf("%s:home/%s/node/%s?role=%s", uriScheme, home, id, role)
}

// parseNodeURI parses what nodeURI writes, strictly.
func parseNodeURI(u *url.URL) (home string, id route.NodeID, role Role, err error) {
	if u.Scheme != uriScheme || u.Opaque == "" || u.Host != "" || u.User != nil || u.Fragment != "" {
		return "", id, 0, fmt.Errorf("URI %q is not a homemesh node URI", u)
	}
	parts := strings.Split(u.Opaque, "/")
	if len(parts) != 4 || parts[0] != "home" || parts[2] != "node" || !homemesh.ValidID(parts[1]) {
		return "", id, 0, fmt.Errorf("URI %q is not a homemesh node URI", u)
	}
	if id, err = route.ParseNodeID(parts[3]); err != nil {
		return "", id, 0, err
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil || len(q) != 1 || len(q["role"]) != 1 {
		return "", id, 0, fmt.Errorf("URI %q must have exactly one role", u)
	}
	if role, err = ParseRole(q["role"][0]); err != nil {
		return "", id, 0, err
	}
	return parts[1], id, role, nil
}

// The ASN.1 shapes of RFC 5280 that IssueNodeCert writes. crypto/x509
// parses and verifies certificates with X25519 subject keys but refuses to
// create them, so the to-be-signed part is assembled here and signed with
// the CA's crypto.Signer; everything that reads certificates uses
// crypto/x509.
type tbsCertificate struct {
	Version            int `asn1:"optional,explicit,default:0,tag:0"`
	SerialNumber       *big.Int
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Issuer             asn1.RawValue
	Validity           certValidity
	Subject            asn1.RawValue
	PublicKey          publicKeyInfo
	Extensions         []pkix.Extension `asn1:"optional,explicit,tag:3"`
}

type certValidity struct {
	NotBefore, NotAfter time.Time
}

type publicKeyInfo struct {
	Algorithm pkix.AlgorithmIdentifier
	PublicKey asn1.BitString
}

type certificate struct {
	TBSCertificate     asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	SignatureValue     asn1.BitString
}

type authorityKeyID struct {
	ID []byte `asn1:"optional,tag:0"`
}

// IssueNodeCert issues a node certificate, in DER, signed by the home CA
// (caCert and its key caKey: ECDSA P-256 or P-384, or Ed25519). The
// certificate's subject key is the node's static X25519 key pub; its one
// URI SAN, homemesh:home/<home>/node/<node id>?role=<role>, names the home,
// the node id derived from pub and the role; its key usage is key agreement
// only and it is not a CA. It is valid from an hour before now (clock
// skew) until now+validity. The same arguments give the same bytes: the
// serial number is derived from them and ECDSA signatures are
// deterministic (RFC 6979).
func IssueNodeCert(caCert *x509.Certificate, caKey crypto.Signer, home string, role Role, pub *ecdh.PublicKey, now time.Time, validity time.Duration) ([]byte, error) {
	const op = "link.issue_node_cert"
	if caCert == nil || caKey == nil {
		return nil, fmt.Errorf("%s: no CA certificate or key", op)
	}
	if err := homemesh.CheckID("home", home); err != nil {
		return nil, err
	}
	if role < RoleHub || role > RoleLeaf {
		return nil, homemesh.Invalid("role", "must be hub, router or leaf")
	}
	if pub == nil || pub.Curve() != ecdh.X25519() {
		return nil, homemesh.Invalid("pub", "must be an X25519 public key")
	}
	if validity <= 0 {
		return nil, homemesh.Invalid("validity", "must be positive")
	}
	if !caCert.IsCA {
		return nil, fmt.Errorf("%s: the issuer certificate is not a CA", op)
	}
	if k, ok := caCert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(caKey.Public()) {
		return nil, fmt.Errorf("%s: the CA key does not match the CA certificate", op)
	}
	sigAlg, hash, err := signatureAlgorithm(caKey.Public())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}

	key := pub.Bytes()
	id := route.IDFromKey(key)
	notBefore := now.Add(-clockSkew).UTC().Truncate(time.Second)
	notAfter := now.Add(validity).UTC().Truncate(time.Second)

	subject, err := asn1.Marshal(pkix.Name{
		CommonName:   "homemesh node " + id.String(),
		Organization: []string{"homemesh"},
	}.ToRDNSequence())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	extensions, err := nodeExtensions(caCert, nodeURI(home, id, role))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	tbs := tbsCertificate{
		Version:            2, // v3
		SerialNumber:       serialNumber(key, home, role, notBefore),
		SignatureAlgorithm: sigAlg,
		Issuer:             asn1.RawValue{FullBytes: caCert.RawSubject},
		Validity:           certValidity{NotBefore: notBefore, NotAfter: notAfter},
		Subject:            asn1.RawValue{FullBytes: subject},
		PublicKey: publicKeyInfo{
			Algorithm: pkix.AlgorithmIdentifier{Algorithm: oidX25519},
			PublicKey: asn1.BitString{Bytes: key, BitLength: 8 * len(key)},
		},
		Extensions: extensions,
	}
	der, err := signCert(caCert, caKey, tbs, hash)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	return der, nil
}

// signCert signs tbs with the CA's key and checks that the result parses
// and verifies.
func signCert(caCert *x509.Certificate, caKey crypto.Signer, tbs tbsCertificate, hash crypto.Hash) ([]byte, error) {
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		return nil, err
	}
	signed := tbsDER
	if hash != 0 {
		h := hash.New()
		h.Write(tbsDER)
		signed = h.Sum(nil)
	}
	// A nil random source makes ECDSA signatures deterministic (RFC 6979)
	// and is what Ed25519 expects.
	sig, err := caKey.Sign(nil, signed, hash)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	der, err := asn1.Marshal(certificate{
		TBSCertificate:     asn1.RawValue{FullBytes: tbsDER},
		SignatureAlgorithm: tbs.SignatureAlgorithm,
		SignatureValue:     asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("the issued certificate does not parse: %w", err)
	}
	if err := cert.CheckSignatureFrom(caCert); err != nil {
		return nil, fmt.Errorf("the issued certificate does not verify: %w", err)
	}
	return der, nil
}

func signatureAlgorithm(pub crypto.PublicKey) (pkix.AlgorithmIdentifier, crypto.Hash, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA256}, crypto.SHA256, nil
		case elliptic.P384():
			return pkix.AlgorithmIdentifier{Algorithm: oidECDSAWithSHA384}, crypto.SHA384, nil
		}
	case ed25519.PublicKey:
		return pkix.AlgorithmIdentifier{Algorithm: oidEd25519}, 0, nil
	}
	return pkix.AlgorithmIdentifier{}, 0, fmt.Errorf("CA key %T is not ECDSA P-256/P-384 or Ed25519", pub)
}

func nodeExtensions(caCert *x509.Certificate, uri string) ([]pkix.Extension, error) {
	// keyAgreement is bit 4 of the KeyUsage bit string (RFC 5280 4.2.1.3).
	keyUsage, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x08}, BitLength: 5})
	if err != nil {
		return nil, err
	}
	// An empty BasicConstraints sequence: not a CA.
	basic, err := asn1.Marshal(struct{}{})
	if err != nil {
		return nil, err
	}
	san, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)}})
	if err != nil {
		return nil, err
	}
	ext := []pkix.Extension{
		{Id: oidExtKeyUsage, Critical: true, Value: keyUsage},
		{Id: oidExtBasicConstraint, Critical: true, Value: basic},
		{Id: oidExtSubjectAltName, Critical: true, Value: san},
	}
	if len(caCert.SubjectKeyId) > 0 {
		aki, err := asn1.Marshal(authorityKeyID{ID: caCert.SubjectKeyId})
		if err != nil {
			return nil, err
		}
		ext = append(ext, pkix.Extension{Id: oidExtAuthorityKeyID, Value: aki})
	}
	return ext, nil
}

// serialNumber derives a positive 127-bit serial from what makes a
// certificate unique, so that issuing needs no randomness.
func serialNumber(key []byte, home string, role Role, notBefore time.Time) *big.Int {
	h := sha256.New()
	h.Write(key)
	h.Write([]byte(home))
	h.Write([]byte{0, byte(role)})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(notBefore.Unix())))
	sum := h.Sum(nil)[:16]
	sum[0] &= 0x7f
	n := new(big.Int).SetBytes(sum)
	return n.Add(n, big.NewInt(1))
}

// Verifier checks node certificates against the home's CA roots and its
// list of revoked nodes. It is safe for concurrent use and may be shared by
// every session of a node (or of many simulated nodes of one home): a
// revocation then applies to all of them. It caches successful signature
// checks by certificate digest; validity times and revocations are checked
// on every call.
type Verifier struct {
	home  string
	roots *x509.CertPool

	mu    sync.Mutex
	cache map[[32]byte]verified
	// revoked holds the nodes whose certificates are refused although
	// they still chain to a root: a stolen or retired device keeps a
	// valid certificate until it expires, so refusal is by list.
	revoked map[route.NodeID]struct{}
}

type verified struct {
	peer      Peer
	notBefore time.Time
}

// maxVerifierCache bounds the cache of verified certificates: enough for
// every node of a large home, about 150 bytes each.
const maxVerifierCache = 16384

// NewVerifier returns a Verifier that accepts node certificates issued by
// one of roots for home, and refuses everything else.
func NewVerifier(roots []*x509.Certificate, home string) (*Verifier, error) {
	if err := homemesh.CheckID("home", home); err != nil {
		return nil, err
	}
	if len(roots) == 0 {
		return nil, homemesh.Invalid("roots", "at least one CA certificate is needed")
	}
	pool := x509.NewCertPool()
	for i, r := range roots {
		if r == nil || !r.IsCA {
			return nil, homemesh.Invalid(fmt.Sprintf("roots[%d]", i), "is not a CA certificate")
		}
		pool.AddCert(r)
	}
	return &Verifier{home: home, roots: pool, cache: map[[32]byte]verified{}, revoked: map[route.NodeID]struct{}{}}, nil
}

// Home returns the home whose nodes v accepts.
func (v *Verifier) Home() string { return v.home }

// Revoke adds ids to the nodes v refuses: from now on Verify refuses their
// certificates with ErrRevoked, whatever their validity. A revocation is
// never lifted; a revoked device pairs again with a new key, hence a new
// node id. Sessions and channels already established with those nodes are
// the host's to close.
func (v *Verifier) Revoke(ids ...route.NodeID) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, id := range ids {
		v.revoked[id] = struct{}{}
	}
}

// Revoked reports whether Revoke was called for id.
func (v *Verifier) Revoked(id route.NodeID) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.revoked[id]
	return ok
}

// Verify checks the DER node certificate der at time now and returns what
// it says about its holder. It refuses, with an error wrapping
// ErrForeignHome, a certificate of another home, and with one wrapping
// ErrBadCert anything else that is wrong: a certificate that does not
// parse, is not signed by one of the roots, is outside its validity
// period (or its CA's), is a CA, has a key usage other than key agreement,
// has a subject key that is not X25519, or names a node id other than the
// one its key hashes to; and with one wrapping ErrRevoked the certificate
// of a node passed to Revoke.
func (v *Verifier) Verify(der []byte, now time.Time) (Peer, error) {
	if len(der) == 0 || len(der) > maxCertLen {
		return Peer{}, fmt.Errorf("%w: %d bytes", ErrBadCert, len(der))
	}
	digest := sha256.Sum256(der)
	v.mu.Lock()
	c, ok := v.cache[digest]
	v.mu.Unlock()
	if ok {
		if now.Before(c.notBefore) || !now.Before(c.peer.NotAfter) {
			return Peer{}, fmt.Errorf("%w: outside its validity period", ErrBadCert)
		}
		return v.notRevoked(c.peer)
	}

	cert, peer, err := parseNodeCert(der)
	if err != nil {
		return Peer{}, err
	}
	if peer.Home != v.home {
		return Peer{}, fmt.Errorf("%w: node %s belongs to home %q", ErrForeignHome, peer.ID, peer.Home)
	}
	chains, err := cert.Verify(x509.VerifyOptions{
		Roots:       v.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return Peer{}, fmt.Errorf("%w: %v", ErrBadCert, err)
	}
	notBefore := cert.NotBefore
	for _, c := range chains[0] {
		if c.NotBefore.After(notBefore) {
			notBefore = c.NotBefore
		}
		if c.NotAfter.Before(peer.NotAfter) {
			peer.NotAfter = c.NotAfter
		}
	}
	v.mu.Lock()
	if len(v.cache) >= maxVerifierCache {
		clear(v.cache)
	}
	v.cache[digest] = verified{peer: peer, notBefore: notBefore}
	v.mu.Unlock()
	return v.notRevoked(peer)
}

// notRevoked returns p, or ErrRevoked when its node is revoked.
func (v *Verifier) notRevoked(p Peer) (Peer, error) {
	if v.Revoked(p.ID) {
		return Peer{}, fmt.Errorf("%w: node %s", ErrRevoked, p.ID)
	}
	return p, nil
}

// parseNodeCert parses a node certificate and checks everything about it
// that does not depend on the roots or the time.
func parseNodeCert(der []byte) (*x509.Certificate, Peer, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, Peer{}, fmt.Errorf("%w: %v", ErrBadCert, err)
	}
	// crypto/x509 leaves PublicKey nil for algorithms it cannot verify
	// with, X25519 among them, but parses the key on request.
	spki, err := x509.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo)
	if err != nil {
		return nil, Peer{}, fmt.Errorf("%w: subject key: %v", ErrBadCert, err)
	}
	pub, ok := spki.(*ecdh.PublicKey)
	if !ok || pub.Curve() != ecdh.X25519() {
		return nil, Peer{}, fmt.Errorf("%w: subject key %T is not X25519", ErrBadCert, spki)
	}
	if cert.IsCA || cert.KeyUsage != x509.KeyUsageKeyAgreement || len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		return nil, Peer{}, fmt.Errorf("%w: not a node certificate (CA or key usage)", ErrBadCert)
	}
	if len(cert.URIs) != 1 || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) > 0 {
		return nil, Peer{}, fmt.Errorf("%w: a node certificate has exactly one URI and no other name", ErrBadCert)
	}
	home, id, role, err := parseNodeURI(cert.URIs[0])
	if err != nil {
		return nil, Peer{}, fmt.Errorf("%w: %v", ErrBadCert, err)
	}
	key := pub.Bytes()
	if route.IDFromKey(key) != id {
		return nil, Peer{}, fmt.Errorf("%w: names node %s but its key is that of %s", ErrBadCert, id, route.IDFromKey(key))
	}
	return cert, Peer{ID: id, Home: home, Role: role, Key: key, NotAfter: cert.NotAfter}, nil
}

// sameKey reports whether a and b are the same static key.
func sameKey(a, b []byte) bool { return len(a) > 0 && bytes.Equal(a, b) }
