package link

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/homemesh/homemesh/mesh/route"
)

func TestIssueAndVerify(t *testing.T) {
	home := newHome(t, "my_home-1")
	for _, role := range []Role{RoleHub, RoleRouter, RoleLeaf} {
		id := home.identity(t, role)
		p, err := home.verifier.Verify(id.Cert, t0)
		if err != nil {
			t.Fatal(err)
		}
		key := id.Key.PublicKey().Bytes()
		if p.Home != "my_home-1" || p.Role != role || !bytes.Equal(p.Key, key) || p.ID != route.IDFromKey(key) {
			t.Fatalf("verified %+v", p)
		}
		if !p.NotAfter.Equal(t0.Add(365 * 24 * time.Hour)) {
			t.Fatalf("NotAfter %v", p.NotAfter)
		}
		again, err := IssueNodeCert(home.caCert, home.caKey, home.name, role, id.Key.PublicKey(), t0, 365*24*time.Hour)
		if err != nil || !bytes.Equal(again, id.Cert) {
			t.Fatalf("issuing twice gave other bytes (%v)", err)
		}
	}
}

func TestIssueRefusesBadArguments(t *testing.T) {
	home := newHome(t, "home")
	key, _ := GenerateKey(seeded(1))
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, issue := range map[string]func() ([]byte, error){
		"bad home": func() ([]byte, error) {
			return IssueNodeCert(home.caCert, home.caKey, "Home!", RoleHub, key.PublicKey(), t0, time.Hour)
		},
		"bad role": func() ([]byte, error) {
			return IssueNodeCert(home.caCert, home.caKey, "home", 0, key.PublicKey(), t0, time.Hour)
		},
		"no key": func() ([]byte, error) {
			return IssueNodeCert(home.caCert, home.caKey, "home", RoleHub, nil, t0, time.Hour)
		},
		"no time": func() ([]byte, error) {
			return IssueNodeCert(home.caCert, home.caKey, "home", RoleHub, key.PublicKey(), t0, 0)
		},
		"wrong key": func() ([]byte, error) {
			return IssueNodeCert(home.caCert, otherKey, "home", RoleHub, key.PublicKey(), t0, time.Hour)
		},
		"not a CA": func() ([]byte, error) {
			return IssueNodeCert(&x509.Certificate{}, home.caKey, "home", RoleHub, key.PublicKey(), t0, time.Hour)
		},
		"P-256 node": func() ([]byte, error) {
			p, _ := otherKey.ECDH()
			return IssueNodeCert(home.caCert, home.caKey, "home", RoleHub, p.PublicKey(), t0, time.Hour)
		},
	} {
		if _, err := issue(); err == nil {
			t.Errorf("%s: issued", name)
		}
	}
}

func TestIssueWithEd25519CA(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	key, _ := GenerateKey(seeded(2))
	cert, err := IssueNodeCert(ca, priv, "home", RoleLeaf, key.PublicKey(), t0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := NewVerifier([]*x509.Certificate{ca}, "home")
	if p, err := v.Verify(cert, t0); err != nil || p.Role != RoleLeaf {
		t.Fatalf("Verify: %+v, %v", p, err)
	}
}

// reissue re-signs the certificate of id with its to-be-signed part
// changed by mutate.
func reissue(t *testing.T, home *testHome, der []byte, mutate func(*tbsCertificate)) []byte {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	var tbs tbsCertificate
	if _, err := asn1.Unmarshal(cert.RawTBSCertificate, &tbs); err != nil {
		t.Fatal(err)
	}
	mutate(&tbs)
	out, err := signCert(home.caCert, home.caKey, tbs, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func setExtension(tbs *tbsCertificate, id asn1.ObjectIdentifier, value any) {
	b, err := asn1.Marshal(value)
	if err != nil {
		panic(err)
	}
	for i, e := range tbs.Extensions {
		if e.Id.Equal(id) {
			tbs.Extensions[i].Value = b
			return
		}
	}
	tbs.Extensions = append(tbs.Extensions, pkix.Extension{Id: id, Value: b})
}

func sanOf(uris ...string) []asn1.RawValue {
	var v []asn1.RawValue
	for _, u := range uris {
		v = append(v, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(u)})
	}
	return v
}

func TestVerifyRefuses(t *testing.T) {
	home := newHome(t, "home")
	other := newHome(t, "other")
	impostor := newHome(t, "home") // another CA calling its home "home"
	id := home.identity(t, RoleRouter)
	nodeID := route.IDFromKey(id.Key.PublicKey().Bytes())

	tlsKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tlsDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(9), NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"},
		URIs:     []*url.URL{{Scheme: "homemesh", Opaque: "home/home/node/" + route.IDFromKey([]byte("x")).String(), RawQuery: "role=hub"}},
	}, home.caCert, &tlsKey.PublicKey, home.caKey)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		der  []byte
		at   time.Time
		want error
	}{
		{"garbage", []byte("not a certificate"), t0, ErrBadCert},
		{"empty", nil, t0, ErrBadCert},
		{"another home", other.identity(t, RoleRouter).Cert, t0, ErrForeignHome},
		{"another CA", impostor.identity(t, RoleRouter).Cert, t0, ErrBadCert},
		{"expired", id.Cert, t0.Add(366 * 24 * time.Hour), ErrBadCert},
		{"not yet valid", id.Cert, t0.Add(-2 * time.Hour), ErrBadCert},
		{"a TLS certificate of the same CA", tlsDER, t0, ErrBadCert},
		{"signing key usage", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			setExtension(tbs, oidExtKeyUsage, asn1.BitString{Bytes: []byte{0x88}, BitLength: 5})
		}), t0, ErrBadCert},
		{"a CA", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			setExtension(tbs, oidExtBasicConstraint, struct{ IsCA bool }{true})
		}), t0, ErrBadCert},
		{"another node's id", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			setExtension(tbs, oidExtSubjectAltName, sanOf(nodeURI("home", route.NodeID{1, 2, 3}, RoleRouter)))
		}), t0, ErrBadCert},
		{"two URIs", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			u := nodeURI("home", nodeID, RoleRouter)
			setExtension(tbs, oidExtSubjectAltName, sanOf(u, u))
		}), t0, ErrBadCert},
		{"not a node URI", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			setExtension(tbs, oidExtSubjectAltName, sanOf("https://example.com/node/"+nodeID.String()))
		}), t0, ErrBadCert},
		{"unknown role", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			setExtension(tbs, oidExtSubjectAltName, sanOf("homemesh:home/home/node/"+nodeID.String()+"?role=king"))
		}), t0, ErrBadCert},
		{"Ed25519 subject key", reissue(t, home, id.Cert, func(tbs *tbsCertificate) {
			tbs.PublicKey.Algorithm.Algorithm = oidEd25519
		}), t0, ErrBadCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := home.verifier.Verify(tc.der, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyCacheKeepsCheckingTime(t *testing.T) {
	home := newHome(t, "home")
	id := home.identity(t, RoleRouter)
	for _, at := range []time.Time{t0, t0.Add(time.Hour)} {
		if _, err := home.verifier.Verify(id.Cert, at); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := home.verifier.Verify(id.Cert, t0.Add(2*365*24*time.Hour)); !errors.Is(err, ErrBadCert) {
		t.Fatalf("expired certificate from the cache: %v", err)
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range []Role{RoleHub, RoleRouter, RoleLeaf} {
		if got, err := ParseRole(r.String()); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %v, %v", r, got, err)
		}
	}
	if _, err := ParseRole("king"); err == nil {
		t.Error("ParseRole accepted king")
	}
}

func TestNewChecksConfig(t *testing.T) {
	home := newHome(t, "home")
	other := newHome(t, "other")
	id := home.identity(t, RoleRouter)
	stranger := home.identity(t, RoleRouter)
	for name, cfg := range map[string]Config{
		"no verifier":           {Identity: id},
		"no key":                {Identity: Identity{Cert: id.Cert}, Verifier: home.verifier},
		"certificate of a key":  {Identity: Identity{Key: id.Key, Cert: stranger.Cert}, Verifier: home.verifier},
		"other home's verifier": {Identity: id, Verifier: other.verifier},
		"tiny MTU":              {Identity: id, Verifier: home.verifier, MTU: 100},
		"reject before rekey":   {Identity: id, Verifier: home.verifier, RekeyAfter: time.Hour, RejectAfter: time.Minute},
	} {
		if _, err := New(cfg, t0); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
