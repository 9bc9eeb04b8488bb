package agent

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/link"
)

// ClaimPath is the gateway endpoint a setup code is claimed at.
const ClaimPath = "/api/v1/pairings/claim"

// maxClaimReply bounds the claim's reply: two certificates and the hubs.
const maxClaimReply = 256 << 10

// PairConfig says where and how to pair.
type PairConfig struct {
	// HubURL is the hub's gateway: https://host:port, or http:// to a
	// loopback address.
	HubURL string
	// Code is the one-time setup code an owner or admin created.
	Code string
	// Role is link.RoleRouter (the default when zero) or link.RoleLeaf.
	Role link.Role
	// CA is the PEM of the home CA, as the hub's DATA/ca.crt holds it; the
	// hub's HTTPS certificate must chain to it.
	CA []byte
	// CAFingerprint is the SHA-256 of the home CA's DER certificate in hex
	// (colons and case ignored), an alternative to CA: the hub must
	// present that CA in its TLS chain.
	CAFingerprint string
	// TrustOnFirstUse accepts whatever CA the hub presents, when neither
	// CA nor CAFingerprint is given. The CA's fingerprint is written to
	// Out, to be compared with the hub's. Anyone who can intercept the
	// connection can then take the setup code.
	TrustOnFirstUse bool
	// StateDir is where the pairing is stored; it must not hold one yet.
	StateDir string
	// Out receives what a person should read (the fingerprint); nil
	// discards it.
	Out io.Writer
	// Transport, when set, is used instead of one built from the trust
	// settings (tests).
	Transport http.RoundTripper
}

// claimRequest and claimReply are the gateway's claim body and reply.
type claimRequest struct {
	Code     string `json:"code"`
	MeshKey  string `json:"mesh_key"`
	MeshRole string `json:"mesh_role"`
}

type claimReply struct {
	Identity        string    `json:"identity"`
	MeshCertificate string    `json:"mesh_certificate"`
	CACertificate   string    `json:"ca_certificate"`
	NodeID          string    `json:"node_id"`
	NotAfter        time.Time `json:"not_after"`
	MeshHubs        []Hub     `json:"mesh_hubs"`
}

type apiError struct {
	Error struct {
		Kind    homemesh.Kind `json:"kind"`
		Message string        `json:"message"`
		Field   string        `json:"field"`
	} `json:"error"`
}

// Pair claims the setup code for a new mesh node and stores the pairing in
// cfg.StateDir. Bad settings are KindInvalid naming the setting ("hub",
// "ca", "code" …); the hub's refusals keep the kind and field it gave.
func Pair(ctx context.Context, cfg PairConfig) (*Pairing, error) {
	if cfg.Role == 0 {
		cfg.Role = link.RoleRouter
	}
	if cfg.Role != link.RoleRouter && cfg.Role != link.RoleLeaf {
		return nil, homemesh.Invalid("role", "must be router or leaf")
	}
	if strings.TrimSpace(cfg.Code) == "" {
		return nil, homemesh.Invalid("code", "is required: an owner or admin creates one with POST /api/v1/pairings")
	}
	if cfg.StateDir == "" {
		return nil, homemesh.Invalid("state", "is required")
	}
	if _, err := os.Stat(filepath.Join(cfg.StateDir, PairingFile)); err == nil {
		return nil, homemesh.Invalid("state", "%s is paired already; remove it (or give another directory) to pair again", cfg.StateDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("state: %w", err)
	}
	endpoint, err := claimURL(cfg.HubURL)
	if err != nil {
		return nil, err
	}
	trust, err := newTrust(cfg, endpoint)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: cfg.Transport, Timeout: 30 * time.Second,
		// The code must go only where the person pointed: never follow a
		// redirect with it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if client.Transport == nil {
		client.Transport = &http.Transport{TLSClientConfig: trust.tlsConfig(), Proxy: http.ProxyFromEnvironment}
	}

	key, err := link.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	// The key is on disk before the code is spent, so a claim that
	// succeeds is never lost to a failing disk afterwards.
	if err := writeKey(cfg.StateDir, key); err != nil {
		return nil, err
	}
	body, _ := json.Marshal(claimRequest{Code: cfg.Code, MeshKey: base64.StdEncoding.EncodeToString(key.PublicKey().Bytes()), MeshRole: cfg.Role.String()})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, homemesh.Errorf(homemesh.KindUnavailable, "claim at %s: %v", endpoint.Redacted(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxClaimReply+1))
	if err != nil {
		return nil, homemesh.Errorf(homemesh.KindUnavailable, "claim at %s: %v", endpoint.Redacted(), err)
	}
	if resp.StatusCode != http.StatusCreated {
		return nil, claimError(resp.StatusCode, raw)
	}
	if len(raw) > maxClaimReply {
		return nil, fmt.Errorf("the hub's reply is larger than %d bytes", maxClaimReply)
	}
	var reply claimReply
	if err := json.Unmarshal(raw, &reply); err != nil {
		return nil, fmt.Errorf("the hub's reply is not a claim: %w", err)
	}
	p, err := trust.pairing(reply, key)
	if err != nil {
		return nil, err
	}
	if p.Role != cfg.Role {
		return nil, fmt.Errorf("the hub issued a %s certificate, not the %s asked for", p.Role, cfg.Role)
	}
	if err := p.save(cfg.StateDir, endpoint.Scheme+"://"+endpoint.Host); err != nil {
		return nil, err
	}
	return p, nil
}

// claimURL checks the hub's URL and returns the claim endpoint under it.
func claimURL(hub string) (*url.URL, error) {
	if hub == "" {
		return nil, homemesh.Invalid("hub", "is required: the hub's address, https://host:port")
	}
	u, err := url.Parse(hub)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, homemesh.Invalid("hub", "must be a URL like https://hub.local:8080")
	}
	switch u.Scheme {
	case "https":
	case "http":
		// A setup code in clear text is anyone's who listens: only to
		// this machine.
		host := u.Hostname()
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, homemesh.Invalid("hub", "plain http is only for a hub on this machine; use https://%s", u.Host)
		}
	default:
		return nil, homemesh.Invalid("hub", "must start with https:// (or http:// for a hub on this machine)")
	}
	return u.JoinPath(ClaimPath), nil
}

// trust is how Pair authenticates the hub: the CA a person gave, or the
// one the hub presented.
type trust struct {
	given       []*x509.Certificate // the CA from PairConfig.CA
	fingerprint []byte              // PairConfig.CAFingerprint, decoded
	tofu        bool
	https       bool
	out         io.Writer

	mu        sync.Mutex
	presented *x509.Certificate // the CA of the hub's TLS chain
}

func newTrust(cfg PairConfig, endpoint *url.URL) (*trust, error) {
	t := &trust{tofu: cfg.TrustOnFirstUse, https: endpoint.Scheme == "https", out: cfg.Out}
	if t.out == nil {
		t.out = io.Discard
	}
	if len(cfg.CA) > 0 {
		cas, err := parsePEMCerts(cfg.CA)
		if err != nil {
			return nil, homemesh.Invalid("ca", "%v", err)
		}
		for _, c := range cas {
			if !c.IsCA {
				return nil, homemesh.Invalid("ca", "%q is not a CA certificate", c.Subject.CommonName)
			}
		}
		t.given = cas
	}
	if cfg.CAFingerprint != "" {
		fp, err := hex.DecodeString(strings.ToLower(strings.ReplaceAll(cfg.CAFingerprint, ":", "")))
		if err != nil || len(fp) != sha256.Size {
			return nil, homemesh.Invalid("ca_fingerprint", "must be a SHA-256 fingerprint: 64 hex digits, colons allowed")
		}
		t.fingerprint = fp
	}
	if t.given != nil && t.fingerprint != nil {
		return nil, homemesh.Invalid("ca_fingerprint", "give the CA or its fingerprint, not both")
	}
	if t.https && t.given == nil && t.fingerprint == nil && !t.tofu {
		return nil, homemesh.Invalid("ca", "the hub's CA is needed to trust %s: copy ca.crt from the hub's data directory, or give its SHA-256 fingerprint, or (accepting that the setup code can be intercepted) trust on first use", endpoint.Host)
	}
	return t, nil
}

// tlsConfig checks the hub's certificate chain: against the given CA, or
// for the pinned fingerprint, or (trust on first use) only for being a
// chain, remembering its CA.
func (t *trust) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done below, where the pinned and first-use
		// cases can see the chain; the standard check would reject the
		// home CA, which is in no system store.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the hub presented no certificate")
			}
			leaf := cs.PeerCertificates[0]
			roots := x509.NewCertPool()
			inter := x509.NewCertPool()
			var anchor *x509.Certificate
			switch {
			case t.given != nil:
				for _, c := range t.given {
					roots.AddCert(c)
				}
			default:
				// The CA is the chain's last certificate (the hub sends
				// its leaf and the home CA).
				anchor = cs.PeerCertificates[len(cs.PeerCertificates)-1]
				if !anchor.IsCA {
					return errors.New("the hub's TLS chain does not include its CA")
				}
				if t.fingerprint != nil {
					sum := sha256.Sum256(anchor.Raw)
					if !bytes.Equal(sum[:], t.fingerprint) {
						return fmt.Errorf("the hub's CA has fingerprint %s, not the one given", Fingerprint(anchor))
					}
				}
				roots.AddCert(anchor)
			}
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			chains, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: cs.ServerName,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("the hub's certificate: %w", err)
			}
			t.mu.Lock()
			t.presented = chains[0][len(chains[0])-1]
			t.mu.Unlock()
			if anchor != nil && t.fingerprint == nil {
				fmt.Fprintf(t.out, "Trusting the hub's CA on first use: %q, SHA-256 fingerprint\n  %s\nCompare it with the hub's (openssl x509 -noout -fingerprint -sha256 -in DATA/ca.crt).\n",
					anchor.Subject.CommonName, Fingerprint(anchor))
			}
			return nil
		},
	}
}

// Fingerprint is the SHA-256 of a certificate's DER in the colon-separated
// upper-case hex openssl prints.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = fmt.Sprintf("%02X", b)
	}
	return strings.Join(parts, ":")
}

// pairing checks the hub's reply: the CA is the one trusted for the
// connection, the node certificate is for key and of the CA's home.
func (t *trust) pairing(r claimReply, key *ecdh.PrivateKey) (*Pairing, error) {
	cas, err := parsePEMCerts([]byte(r.CACertificate))
	if err != nil {
		return nil, fmt.Errorf("the claim's ca_certificate: %w", err)
	}
	ca := cas[0]
	trusted := t.given
	t.mu.Lock()
	if trusted == nil && t.presented != nil {
		trusted = []*x509.Certificate{t.presented}
	}
	t.mu.Unlock()
	if t.https && !containsCert(trusted, ca) {
		return nil, fmt.Errorf("the hub's mesh CA %q is not the CA the connection was trusted with", ca.Subject.CommonName)
	}
	if !t.https && t.given != nil && !containsCert(t.given, ca) {
		return nil, fmt.Errorf("the hub's mesh CA %q is not the CA given", ca.Subject.CommonName)
	}
	certs, err := parsePEMCerts([]byte(r.MeshCertificate))
	if err != nil {
		return nil, fmt.Errorf("the claim's mesh_certificate: %w", err)
	}
	home, err := homeOf(certs[0])
	if err != nil {
		return nil, err
	}
	p := &Pairing{Home: home, Key: key, Cert: certs[0].Raw, CA: []*x509.Certificate{ca}, Hubs: r.MeshHubs, NotAfter: r.NotAfter}
	if err := p.check(time.Now()); err != nil {
		return nil, err
	}
	if r.NodeID != p.NodeID.String() {
		return nil, fmt.Errorf("the claim names node %q, the certificate node %s", r.NodeID, p.NodeID)
	}
	return p, nil
}

// claimError turns the gateway's error reply into an error of the same
// kind and field.
func claimError(status int, body []byte) error {
	var e apiError
	if json.Unmarshal(body, &e) == nil && e.Error.Kind != "" {
		msg := e.Error.Message
		if e.Error.Kind == homemesh.KindPermission {
			msg += " (ask an owner or admin for a new setup code)"
		}
		return &homemesh.Error{Op: "agent.pair", Kind: e.Error.Kind, Field: e.Error.Field, Message: "the hub refused the claim: " + msg}
	}
	return homemesh.Errorf(homemesh.KindUnavailable, "the hub answered the claim with HTTP %d", status)
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// homeOf reads the home from a node certificate's URI
// (homemesh:home/<home>/node/<id>?role=…); the Verifier then checks it.
func homeOf(c *x509.Certificate) (string, error) {
	if len(c.URIs) == 1 && c.URIs[0].Scheme == "homemesh" {
		parts := strings.Split(c.URIs[0].Opaque, "/")
		if len(parts) == 4 && parts[0] == "home" && parts[2] == "node" && homemesh.ValidID(parts[1]) {
			return parts[1], nil
		}
	}
	return "", errors.New("the claim's mesh_certificate names no home")
}
