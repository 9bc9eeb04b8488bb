package node_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
)

// httpsClient trusts only the certificates in pool, speaks TLS 1.3 at most
// as the gateway does, and opens a new connection for every request, so
// each request sees a fresh handshake.
func httpsClient(pool *x509.CertPool, serverName string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: serverName},
	}}
}

func caPool(t *testing.T, file string) *x509.CertPool {
	t.Helper()
	pemData, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("%s holds no certificate", file)
	}
	return pool
}

// getReady fetches /readyz and returns the connection's TLS state.
func getReady(t *testing.T, client *http.Client, url string) *tls.ConnectionState {
	t.Helper()
	resp, err := client.Get(url + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET %s/readyz: status %d, TLS %v", url, resp.StatusCode, resp.TLS != nil)
	}
	return resp.TLS
}

// refusesPlainHTTP checks that a plain HTTP request to addr gets no answer
// from the API: the server speaks only TLS there.
func refusesPlainHTTP(t *testing.T, addr string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/readyz")
	if err != nil {
		return
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the HTTPS listener answered plain HTTP")
	}
}

func TestHTTPSWithTheHomeCA(t *testing.T) {
	data := t.TempDir()
	c := nodetest.Config(data)
	c.HTTPS, c.TLSHosts = true, "hub.home.arpa,192.0.2.7"
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})

	url := n.Gateway().URL()
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("gateway URL %q, want https on loopback", url)
	}
	pool := caPool(t, filepath.Join(data, "ca.crt"))
	state := getReady(t, httpsClient(pool, ""), url)
	if state.Version != tls.VersionTLS13 {
		t.Errorf("TLS version %x, want 1.3", state.Version)
	}
	leaf := state.PeerCertificates[0]
	for _, name := range []string{"hub.home.arpa", "localhost", "127.0.0.1", "192.0.2.7"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate does not name %s: %v", name, err)
		}
	}
	if host, err := os.Hostname(); err == nil && !strings.Contains(host, "_") {
		if err := leaf.VerifyHostname(host); err != nil {
			t.Errorf("certificate does not name the machine's host name: %v", err)
		}
	}
	if err := leaf.VerifyHostname("evil.example"); err == nil {
		t.Error("certificate names a host it was never asked for")
	}
	refusesPlainHTTP(t, n.Gateway().Addr().String())

	// A client that trusts another CA refuses the hub.
	if _, err := httpsClient(x509.NewCertPool(), "").Get(url + "/readyz"); err == nil {
		t.Error("a client without the home CA accepted the certificate")
	}
}

func TestLoopbackStaysPlainHTTP(t *testing.T) {
	n, _ := nodetest.Start(t, nodetest.Config(t.TempDir()), node.Options{CreateHome: true})
	if url := n.Gateway().URL(); !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("gateway URL %q, want plain HTTP on loopback", url)
	}
}

// In split mode the gateway has no CA: it gets its certificate from the
// auth process over the bus.
func TestSplitGatewayGetsItsCertificateOverTheBus(t *testing.T) {
	srv, err := natsbus.StartServer(natsbus.ServerConfig{Name: "split", StoreDir: t.TempDir(), Listen: "127.0.0.1:0"}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	authData := t.TempDir()
	core := nodetest.Config(authData)
	core.NATS, core.Home = srv.ClientURL(), "split"
	nodetest.Start(t, core, node.Options{Services: []string{"auth", "registry"}})

	gw := nodetest.Config(t.TempDir())
	gw.NATS, gw.Home, gw.HTTPS = srv.ClientURL(), "split", true
	n, _ := nodetest.Start(t, gw, node.Options{Services: []string{"gateway"}})
	getReady(t, httpsClient(caPool(t, filepath.Join(authData, "ca.crt")), ""), n.Gateway().URL())
}

// testCert is a self-signed certificate for 127.0.0.1 written as PEM files,
// standing in for one the user brings.
func testCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "own certificate"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(path, kind string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certFile, "CERTIFICATE", der)
	write(keyFile, "PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestOwnCertificateIsServedAndReloaded(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key")
	first := testCert(t, certFile, keyFile, 1)
	c := nodetest.Config(t.TempDir())
	c.TLSCert, c.TLSKey = certFile, keyFile
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	url := n.Gateway().URL()

	pool := x509.NewCertPool()
	pool.AddCert(first)
	if got := getReady(t, httpsClient(pool, ""), url).PeerCertificates[0]; got.SerialNumber.Int64() != 1 {
		t.Fatalf("served certificate serial %v, want the file's", got.SerialNumber)
	}

	// Renewal: both files are replaced while the hub runs. The modification
	// time is set explicitly so the change is seen on file systems with
	// coarse timestamps too.
	second := testCert(t, certFile, keyFile, 2)
	later := time.Now().Add(time.Minute)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	pool.AddCert(second)
	if got := getReady(t, httpsClient(pool, ""), url).PeerCertificates[0]; got.SerialNumber.Int64() != 2 {
		t.Fatalf("served certificate serial %v after renewal, want 2", got.SerialNumber)
	}

	// A broken replacement keeps the last good certificate in service.
	if err := os.WriteFile(keyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := getReady(t, httpsClient(pool, ""), url).PeerCertificates[0]; got.SerialNumber.Int64() != 2 {
		t.Fatalf("served certificate serial %v after a broken key file, want 2", got.SerialNumber)
	}
}

func TestOwnCertificateErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "hub.crt"), filepath.Join(dir, "hub.key")
	testCert(t, certFile, keyFile, 1)
	otherKey := filepath.Join(dir, "other.key")
	testCert(t, filepath.Join(dir, "other.crt"), otherKey, 2)
	tests := []struct {
		name, cert, key, flag string
	}{
		{"missing certificate", filepath.Join(dir, "none.crt"), keyFile, "tls-cert"},
		{"missing key", certFile, filepath.Join(dir, "none.key"), "tls-key"},
		{"key of another certificate", certFile, otherKey, "tls-cert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := nodetest.Config(t.TempDir())
			c.TLSCert, c.TLSKey = tt.cert, tt.key
			n, err := node.New(c, node.Options{CreateHome: true}, hmtest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			err = n.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.flag) {
				t.Fatalf("Start: %v, want an error naming %s", err, tt.flag)
			}
		})
	}
}
