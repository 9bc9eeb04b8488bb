package broker

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
)

// testPKI is a CA that issues a server certificate and client certificates.
type testPKI struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	pool   *x509.CertPool
	server tls.Certificate
}

func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{key: key, pool: x509.NewCertPool()}
	p.cert, _ = x509.ParseCertificate(der)
	p.pool.AddCert(p.cert)
	p.server = p.issue(t, "edge", x509.ExtKeyUsageServerAuth)
	return p
}

// issue makes a leaf certificate for cn with the given extended key usage.
func (p *testPKI) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: sn, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestClientCertificates(t *testing.T) {
	home := newPKI(t, "home CA")
	other := newPKI(t, "another CA")
	s := bustest.Server(t)
	a := newAuth()
	b := startBroker(t, s, func(c *Config, d *Deps) {
		c.TLS = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{home.server}}
		c.ClientCAs = home.pool
		d.Auth = a
	})
	addr := b.Addr(ListenerTLS).String()
	clientTLS := func(certs ...tls.Certificate) clientOpt {
		return withTLS(&tls.Config{RootCAs: home.pool, ServerName: "127.0.0.1", Certificates: certs}, addr)
	}
	spy := &recorder{}
	subscribe(t, mustConnect(t, b.Addr(ListenerTCP).String(), "admin", "admin-pw", "spy"), "#", 1, spy)

	// A certificate of the home CA is the device's identity; it needs no
	// password, and its grant applies.
	devCert := home.issue(t, "dev-cert", x509.ExtKeyUsageClientAuth)
	dev := mustConnect(t, addr, "", "", "cert-device", clientTLS(devCert))
	if got := subscribe(t, dev, "homemesh/dev-a/#", 1, &recorder{}); got != 0x80 {
		t.Errorf("SUBACK outside the certificate's grant = %#x, want 0x80", got)
	}
	wait(t, dev.Publish("homemesh/dev-cert/state", 1, false, "by certificate"))
	spy.waitFor(t, "homemesh/dev-cert/state|by certificate")

	// Passwords keep working on the same port.
	mustConnect(t, addr, "dev-a", "a-pw", "password-device", clientTLS())

	refused := map[string]clientOpt{
		"another CA's certificate":    clientTLS(other.issue(t, "dev-cert", x509.ExtKeyUsageClientAuth)),
		"a server certificate":        clientTLS(home.issue(t, "dev-cert", x509.ExtKeyUsageServerAuth)),
		"an identity auth never made": clientTLS(home.issue(t, "dev-unknown", x509.ExtKeyUsageClientAuth)),
	}
	for name, opt := range refused {
		t.Run(name, func(t *testing.T) {
			if _, err := connect(t, addr, "", "", "refused", opt); err == nil {
				t.Fatal("connection accepted")
			}
		})
	}
	if _, err := connect(t, addr, "dev-a", "a-pw", "mixed", clientTLS(devCert)); err == nil {
		t.Error("a certificate with another identity's user name was accepted")
	}

	// Revocation drops the connection at once, and the certificate no
	// longer gets in.
	a.revokeCert("dev-cert")
	if err := bustest.Conn(t, s).Publish(bus.EventSubject(testHome, revokedEvent), map[string]string{"username": "dev-cert"}); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the revoked certificate's client to be dropped", func() bool { return !dev.IsConnectionOpen() })
	if _, err := connect(t, addr, "", "", "cert-device", clientTLS(devCert)); err == nil {
		t.Fatal("a revoked certificate reconnected")
	}
}
