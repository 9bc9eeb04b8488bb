package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Pairing: an owner or admin asks for a one-time setup code; the device
// presents it once, without any other credential, and receives either a
// certificate for a key it generated (when it sends a certificate request)
// or an MQTT user name and password.
const (
	// PairingTTL is how long a setup code stays valid.
	PairingTTL = 10 * time.Minute
	// DeviceCertValidity is the lifetime of a device certificate.
	DeviceCertValidity = 365 * 24 * time.Hour
	// deviceIDPrefix starts every certificate identity, so that it can
	// never be mistaken for a credential user name ("mqtt-…").
	deviceIDPrefix = "dev-"
	// maxCSR bounds a PEM certificate request; a P-256 or Ed25519 one is
	// well under 1 KiB.
	maxCSR = 16 << 10
	// Claims per source address: at most claimLimit within claimWindow.
	// A device claims once; a person typing a code may err a few times.
	claimLimit  = 10
	claimWindow = time.Minute
)

// Credential kinds, as listed.
const (
	KindPassword    = "password"
	KindCertificate = "certificate"
)

// DefaultAllow is the allow list a paired device gets when its pairing
// names none: its own topic tree and its own Home Assistant discovery
// configs (node_id = its identity), nothing else.
func DefaultAllow(identity string) []string {
	return []string{"homemesh/" + identity + "/#", "homeassistant/+/" + identity + "/#"}
}

// Pairing is a one-time setup code, shown once to the person who asked.
type Pairing struct {
	Code      string    `json:"code"`
	ExpiresAt time.Time `json:"expires_at"`
}

// PairingClaim is what a device receives for a valid setup code: an MQTT
// credential (Username, Password) when it sent no certificate request, its
// certificate and the home CA's (PEM) when it did, or, when it sent a mesh
// key, its mesh node certificate (MeshCertificate), node id, the home CA
// and the home's hubs. Identity is the name the edge knows it by, or for a
// mesh node its device id (mesh-<node id>).
type PairingClaim struct {
	Identity        string    `json:"identity"`
	Username        string    `json:"username,omitempty"`
	Password        string    `json:"password,omitempty"`
	Certificate     string    `json:"certificate,omitempty"`
	MeshCertificate string    `json:"mesh_certificate,omitempty"`
	CACertificate   string    `json:"ca_certificate,omitempty"`
	NodeID          string    `json:"node_id,omitempty"`
	NotAfter        time.Time `json:"not_after,omitzero"`
	MeshHubs        []MeshHub `json:"mesh_hubs,omitempty"`
	Allow           []string  `json:"allow"`
}

// pairingRecord is a stored setup code; the key is the code's hash.
type pairingRecord struct {
	Name      string    `json:"name"`
	Allow     []string  `json:"allow,omitempty"`
	CreatedBy string    `json:"created_by"`
	ExpiresAt time.Time `json:"expires_at"`
}

// pairingKey is the KV key of a setup code: a SHA-256 of its normalised
// form. The code has 100 random bits, so the hash needs no salt or
// stretching, and the bucket never holds a usable code.
func pairingKey(code string) string {
	norm := strings.NewReplacer("-", "", " ", "").Replace(strings.ToUpper(strings.TrimSpace(code)))
	sum := sha256.Sum256([]byte("homemesh pairing " + norm))
	return "p." + hex.EncodeToString(sum[:])
}

func (s *Service) handleCreatePairing(ctx context.Context, msg *nats.Msg) (any, error) {
	req, actor, err := decodeAuthorized[createPairingRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	if err := validateName(req.Name); err != nil {
		return nil, err
	}
	if req.Allow != nil {
		if err := ValidateAllow(req.Allow); err != nil {
			return nil, err
		}
	}
	code := newOnboardingCode() // the same 100-bit, typeable form
	now := time.Now().UTC()
	rec := pairingRecord{Name: req.Name, Allow: req.Allow, CreatedBy: actor.UserID, ExpiresAt: now.Add(PairingTTL)}
	data, _ := json.Marshal(rec)
	if _, err := s.pairKV.Create(ctx, pairingKey(code), data); err != nil {
		return nil, unavailable("store pairing", err)
	}
	s.log.Info("pairing created", "name", req.Name, "by", actor.Username)
	s.Audit(ctx, AuditEntry{Action: AuditPairingCreated, Outcome: OutcomeSuccess, Actor: actor.Username,
		ActorID: actor.UserID, Target: req.Name, Details: map[string]string{"expires_at": rec.ExpiresAt.Format(time.RFC3339)}})
	return Pairing{Code: code, ExpiresAt: rec.ExpiresAt}, nil
}

var errPairingCode = homemesh.Errorf(homemesh.KindPermission, "unknown, spent or expired setup code")

func (s *Service) handleClaimPairing(ctx context.Context, msg *nats.Msg) (any, error) {
	var req claimPairingRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	if err := s.countClaim(ctx, req.Source, now); err != nil {
		return nil, err
	}
	audit := AuditEntry{Action: AuditPairingClaimed, Source: safeLogName(req.Source)}
	fail := func(err error, why string) (any, error) {
		s.log.Warn("pairing claim refused", "reason", why, "source", safeLogName(req.Source))
		audit.Outcome = OutcomeFailure
		audit.Details = map[string]string{"reason": why}
		s.Audit(ctx, audit)
		return nil, err
	}
	if strings.TrimSpace(req.Code) == "" {
		return nil, homemesh.Invalid("code", "is required")
	}
	if len(req.Code) > 64 {
		return fail(errPairingCode, "malformed code")
	}
	// The request is checked before the code is spent, so a device whose
	// request is malformed may fix it and try again.
	mesh, err := parseMeshClaim(req)
	if err != nil {
		return fail(err, "bad mesh key or role")
	}
	if mesh != nil {
		revoked, err := s.meshNodeRevoked(ctx, route.IDFromKey(mesh.key.Bytes()))
		if err != nil {
			return nil, err
		}
		if revoked {
			return fail(errMeshKeyRevoked, "mesh key of a revoked node")
		}
	}
	var csr *x509.CertificateRequest
	if req.CSR != "" {
		var err error
		if csr, err = ParseDeviceCSR(req.CSR); err != nil {
			return fail(err, "bad certificate request")
		}
	}
	key := pairingKey(req.Code)
	e, err := s.pairKV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fail(errPairingCode, "unknown code")
	}
	if err != nil {
		return nil, unavailable("read pairing", err)
	}
	var rec pairingRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode pairing: %w", err)
	}
	// Spend the code: only the claim that deletes this very revision wins.
	if err := s.pairKV.Purge(ctx, key, jetstream.LastRevision(e.Revision())); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fail(errPairingCode, "code spent concurrently")
		}
		return nil, unavailable("spend pairing", err)
	}
	if !now.Before(rec.ExpiresAt) {
		return fail(errPairingCode, "expired code")
	}
	audit.Target = rec.Name
	var claim PairingClaim
	switch {
	case mesh != nil:
		claim, err = s.issueMeshNodeCertificate(ctx, rec, mesh, now)
	case csr != nil:
		claim, err = s.issueDeviceCertificate(ctx, rec, csr, now)
	default:
		claim, err = s.issuePairedCredential(ctx, rec)
	}
	if err != nil {
		return nil, err
	}
	audit.Outcome = OutcomeSuccess
	audit.Actor = claim.Identity
	audit.Details = map[string]string{"kind": KindPassword}
	switch {
	case mesh != nil:
		audit.Details["kind"] = KindMeshNode
		audit.Details["role"] = mesh.role.String()
	case csr != nil:
		audit.Details["kind"] = KindCertificate
	}
	s.Audit(ctx, audit)
	s.log.Info("pairing claimed", "name", rec.Name, "identity", claim.Identity, "kind", audit.Details["kind"])
	return claim, nil
}

// countClaim counts a claim from source and refuses it when the source
// has made claimLimit claims within claimWindow. The count lives in KV, so
// every auth process enforces one limit.
func (s *Service) countClaim(ctx context.Context, source string, now time.Time) error {
	key := "c." + hex.EncodeToString([]byte(source))
	if len(key) > 200 {
		sum := sha256.Sum256([]byte(source))
		key = "c." + hex.EncodeToString(sum[:])
	}
	return casUpdate(ctx, s.throttleKV, key, "read claim throttle", "write claim throttle", func(cur []byte, exists bool) ([]byte, error) {
		var r throttleRecord
		if exists && json.Unmarshal(cur, &r) != nil {
			r = throttleRecord{}
		}
		if now.Sub(r.First) >= claimWindow {
			r = throttleRecord{First: now}
		}
		if r.Failures >= claimLimit {
			retry := r.First.Add(claimWindow).Sub(now)
			s.log.Warn("pairing claim refused: rate limited", "source", safeLogName(source))
			return nil, &homemesh.Error{Op: "auth.pairing_claim", Kind: homemesh.KindRateLimited,
				Message: "too many pairing attempts from this address; try again later", RetryAfter: retry}
		}
		r.Failures++
		return json.Marshal(r)
	})
}

// ParseDeviceCSR decodes a PEM PKCS #10 certificate request whose
// signature verifies and whose key is ECDSA P-256 or Ed25519. Every
// failure is KindInvalid naming "csr".
func ParseDeviceCSR(text string) (*x509.CertificateRequest, error) {
	if len(text) > maxCSR {
		return nil, homemesh.Invalid("csr", "must be at most %d bytes", maxCSR)
	}
	block, rest := pem.Decode([]byte(text))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, homemesh.Invalid("csr", "must be one PEM block of type CERTIFICATE REQUEST")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, homemesh.Invalid("csr", "must hold exactly one PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, homemesh.Invalid("csr", "not a PKCS #10 certificate request")
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, homemesh.Invalid("csr", "key must be ECDSA P-256 or Ed25519")
		}
	case ed25519.PublicKey:
	default:
		return nil, homemesh.Invalid("csr", "key must be ECDSA P-256 or Ed25519")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, homemesh.Invalid("csr", "signature does not match its key")
	}
	return csr, nil
}

// certRecord is a device certificate's identity as stored in the
// credentials bucket, keyed by the identity. Without its record, no
// certificate for the identity is accepted: deleting it revokes them all.
type certRecord struct {
	Kind      string    `json:"kind"` // KindCertificate
	Name      string    `json:"name"`
	Allow     []string  `json:"allow"`
	Serial    string    `json:"serial"` // hex
	NotAfter  time.Time `json:"not_after"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by"`
}

// deviceURI is the URI SAN that names identity in a device certificate of
// home.
func deviceURI(home, identity string) *url.URL {
	return &url.URL{Scheme: "homemesh", Host: home, Path: "/devices/" + identity}
}

func (s *Service) issueDeviceCertificate(ctx context.Context, rec pairingRecord, csr *x509.CertificateRequest, now time.Time) (PairingClaim, error) {
	identity := deviceIDPrefix + homemesh.RandomID(20)
	allow := rec.Allow
	if allow == nil {
		allow = DefaultAllow(identity)
	}
	sn := serial()
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: identity, Organization: []string{"homemesh"}, OrganizationalUnit: []string{s.cfg.Home}},
		URIs:         []*url.URL{deviceURI(s.cfg.Home, identity)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(DeviceCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca.cert, csr.PublicKey, s.ca.key)
	if err != nil {
		return PairingClaim{}, fmt.Errorf("issue device certificate: %w", err)
	}
	cr := certRecord{Kind: KindCertificate, Name: rec.Name, Allow: allow, Serial: sn.Text(16),
		NotAfter: tmpl.NotAfter.UTC(), CreatedAt: now, CreatedBy: rec.CreatedBy}
	data, _ := json.Marshal(cr)
	if _, err := s.credsKV.Create(ctx, identity, data); err != nil {
		return PairingClaim{}, unavailable("store device identity", err)
	}
	s.Audit(ctx, AuditEntry{Action: AuditCertificateIssued, Outcome: OutcomeSuccess, Actor: systemCreator, Target: identity,
		Details: map[string]string{"serial": cr.Serial, "name": rec.Name, "not_after": cr.NotAfter.Format(time.RFC3339)}})
	return PairingClaim{
		Identity:      identity,
		Certificate:   string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CACertificate: string(s.ca.certPEM),
		NotAfter:      cr.NotAfter,
		Allow:         slices.Clone(allow),
	}, nil
}

func (s *Service) issuePairedCredential(ctx context.Context, rec pairingRecord) (PairingClaim, error) {
	username := newCredentialUsername()
	allow := rec.Allow
	if allow == nil {
		allow = DefaultAllow(username)
	}
	cred, err := s.storeCredential(ctx, username, rec.Name, allow, rec.CreatedBy)
	if err != nil {
		return PairingClaim{}, err
	}
	s.Audit(ctx, AuditEntry{Action: AuditCredentialCreated, Outcome: OutcomeSuccess, Actor: systemCreator, Target: cred.Username,
		Details: map[string]string{"name": rec.Name, "via": "pairing"}})
	return PairingClaim{Identity: cred.Username, Username: cred.Username, Password: cred.Password, Allow: cred.Allow}, nil
}

var errCert = homemesh.Errorf(homemesh.KindUnauthenticated, "certificate not accepted")

// handleAuthenticateCert checks a client certificate the edge received
// over MQTTS: issued by this home's CA for client authentication, within
// its lifetime, and still the current certificate of an identity that
// exists. It answers with the identity's grant.
func (s *Service) handleAuthenticateCert(ctx context.Context, msg *nats.Msg) (any, error) {
	var req certAuthRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(req.Certificate)
	if err != nil {
		s.log.Warn("mqtt certificate refused", "reason", "unparsable")
		return nil, errCert
	}
	identity := cert.Subject.CommonName
	refuse := func(why string) (any, error) {
		s.log.Warn("mqtt certificate refused", "identity", safeLogName(identity), "reason", why)
		return nil, errCert
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.ca.cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return refuse("not issued by the home CA for clients")
	}
	if !strings.HasPrefix(identity, deviceIDPrefix) || !homemesh.ValidID(identity) {
		return refuse("not a device identity")
	}
	e, err := s.credsKV.Get(ctx, identity)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return refuse("identity revoked or unknown")
	}
	if err != nil {
		return nil, unavailable("read device identity", err)
	}
	var rec certRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil || rec.Kind != KindCertificate {
		return refuse("not a certificate identity")
	}
	if rec.Serial != cert.SerialNumber.Text(16) {
		return refuse("superseded certificate")
	}
	return Grant{Username: identity, Allow: rec.Allow}, nil
}
