package natsbus_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
)

// testPKI returns a CA and a server certificate it issued for 127.0.0.1,
// sent with the CA in its chain.
func testPKI(t *testing.T) (*x509.CertPool, tls.Certificate) {
	t.Helper()
	ca := hmtest.NewCA(t, "test CA")
	cert := ca.Issue(t, "nats", x509.ExtKeyUsageServerAuth)
	cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	return ca.Pool, cert
}

func TestTLSListener(t *testing.T) {
	pool, cert := testPKI(t)
	srv, err := natsbus.StartServer(natsbus.ServerConfig{
		StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
		TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()

	// A client that trusts the CA reaches the server over TLS.
	c, err := natsbus.DialAs(srv.ClientURL(), "verified", natsbus.Identity{RootCAs: pool}, nil)
	if err != nil {
		t.Fatalf("TLS client with the CA: %v", err)
	}
	if !c.NATS().TLSRequired() {
		t.Error("the connection does not say TLS is required")
	}
	c.Close()

	// A client that does not trust the CA is refused by its own check.
	if c, err := natsbus.DialAs(srv.ClientURL(), "unverified", natsbus.Identity{RootCAs: x509.NewCertPool()}, nil); err == nil {
		c.Close()
		t.Fatal("a client trusting another CA connected")
	}

	// A plaintext client is refused: the server requires TLS. Raw TCP
	// shows it: the server announces tls_required and closes the
	// connection when the client speaks plain NATS.
	_, addr, _ := strings.Cut(srv.ClientURL(), "://")
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	n, _ := conn.Read(buf)
	if got := string(buf[:n]); !containsAll(got, "INFO", `"tls_required":true`) {
		t.Fatalf("server greeting = %q, want tls_required", got)
	}
	_, _ = conn.Write([]byte("CONNECT {}\r\nPING\r\n"))
	n, _ = conn.Read(buf)
	if got := string(buf[:n]); containsAll(got, "PONG") {
		t.Fatalf("a plaintext client was served: %q", got)
	}

	// In-process connections need no TLS.
	in, err := srv.Connect("in-process")
	if err != nil {
		t.Fatalf("in-process connection: %v", err)
	}
	in.Close()
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestTokenAndCalloutExcludeEachOther(t *testing.T) {
	_, err := natsbus.StartServer(natsbus.ServerConfig{StoreDir: t.TempDir(), Token: "t",
		Callout: &natsbus.Callout{Issuer: "A"}}, nil)
	if err == nil {
		t.Fatal("a server with a token and a callout started")
	}
}
