package broker

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
)

// testPKI is a CA that issues a server certificate and client certificates.
type testPKI struct {
	*hmtest.CA
	server tls.Certificate
}

func newPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	ca := hmtest.NewCA(t, name)
	return &testPKI{CA: ca, server: ca.Issue(t, "edge", x509.ExtKeyUsageServerAuth)}
}

func TestClientCertificates(t *testing.T) {
	home := newPKI(t, "home CA")
	other := newPKI(t, "another CA")
	s := bustest.Server(t)
	a := newAuth()
	b := startBroker(t, s, func(c *Config, d *Deps) {
		c.TLS = "127.0.0.1:0"
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{home.server}}
		c.ClientCAs = home.Pool
		d.Auth = a
	})
	addr := b.Addr(ListenerTLS).String()
	clientTLS := func(certs ...tls.Certificate) clientOpt {
		return withTLS(&tls.Config{RootCAs: home.Pool, ServerName: "127.0.0.1", Certificates: certs}, addr)
	}
	spy := &recorder{}
	subscribe(t, mustConnect(t, b.Addr(ListenerTCP).String(), "admin", "admin-pw", "spy"), "#", 1, spy)

	// A certificate of the home CA is the device's identity; it needs no
	// password, and its grant applies.
	devCert := home.Issue(t, "dev-cert", x509.ExtKeyUsageClientAuth)
	dev := mustConnect(t, addr, "", "", "cert-device", clientTLS(devCert))
	if got := subscribe(t, dev, "homemesh/dev-a/#", 1, &recorder{}); got != 0x80 {
		t.Errorf("SUBACK outside the certificate's grant = %#x, want 0x80", got)
	}
	wait(t, dev.Publish("homemesh/dev-cert/state", 1, false, "by certificate"))
	spy.waitFor(t, "homemesh/dev-cert/state|by certificate")

	// Passwords keep working on the same port.
	mustConnect(t, addr, "dev-a", "a-pw", "password-device", clientTLS())

	refused := map[string]clientOpt{
		"another CA's certificate":    clientTLS(other.Issue(t, "dev-cert", x509.ExtKeyUsageClientAuth)),
		"a server certificate":        clientTLS(home.Issue(t, "dev-cert", x509.ExtKeyUsageServerAuth)),
		"an identity auth never made": clientTLS(home.Issue(t, "dev-unknown", x509.ExtKeyUsageClientAuth)),
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
