package link

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// seeded returns a deterministic source of bytes.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	return mrand.NewChaCha8(s)
}

// testHome is a home CA as auth/ca.go makes one: ECDSA P-256, self-signed.
type testHome struct {
	name     string
	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	verifier *Verifier
	seq      uint64
}

func newHome(t testing.TB, name string) *testHome {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "homemesh home " + name + " CA", Organization: []string{"homemesh"}},
		NotBefore:             t0.Add(-time.Hour),
		NotAfter:              t0.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier([]*x509.Certificate{cert}, name)
	if err != nil {
		t.Fatal(err)
	}
	return &testHome{name: name, caCert: cert, caKey: key, verifier: v}
}

// identity makes a node key and certificate of h.
func (h *testHome) identity(t testing.TB, role Role) Identity {
	t.Helper()
	h.seq++
	key, err := GenerateKey(seeded(h.seq*7919 + uint64(len(h.name))))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := IssueNodeCert(h.caCert, h.caKey, h.name, role, key.PublicKey(), t0, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return Identity{Key: key, Cert: cert}
}

// node makes an Endpoint of h; tweak adjusts its Config.
func (h *testHome) node(t testing.TB, role Role, tweak func(*Config)) *Endpoint {
	t.Helper()
	cfg := Config{Identity: h.identity(t, role), Verifier: h.verifier, Rand: seeded(h.seq + 1000)}
	if tweak != nil {
		tweak(&cfg)
	}
	ep, err := New(cfg, t0)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// pump carries frames between a and b until neither has anything to say,
// and returns the payloads each received. A session error fails the test.
func pump(t testing.TB, now time.Time, a, b *Session, toA, toB [][]byte) (atA, atB [][]byte) {
	t.Helper()
	for round := 0; len(toA)+len(toB) > 0; round++ {
		if round > 100 {
			t.Fatal("sessions keep talking")
		}
		var nextA, nextB [][]byte
		for _, f := range toB {
			send, got, err := b.Handle(now, f)
			if err != nil {
				t.Fatalf("b.Handle: %v", err)
			}
			nextA = append(nextA, send...)
			atB = append(atB, got...)
		}
		for _, f := range toA {
			send, got, err := a.Handle(now, f)
			if err != nil {
				t.Fatalf("a.Handle: %v", err)
			}
			nextB = append(nextB, send...)
			atA = append(atA, got...)
		}
		toA, toB = nextA, nextB
	}
	return atA, atB
}

// connect runs a handshake from a to b (IK when ik, else XX) and returns
// both established sessions.
func connect(t testing.TB, now time.Time, a, b *Endpoint, ik bool) (*Session, *Session) {
	t.Helper()
	var key []byte
	if ik {
		key = b.static.Public
	}
	sa, init, err := a.Initiate(now, key)
	if err != nil {
		t.Fatal(err)
	}
	sb, resp, err := b.Accept(now, init)
	if err != nil {
		t.Fatal(err)
	}
	pump(t, now, sa, sb, [][]byte{resp}, nil)
	if !sa.Established() || !sb.Established() {
		t.Fatalf("not established: a %v, b %v", sa.Established(), sb.Established())
	}
	return sa, sb
}

// seal seals payload on s or fails the test.
func seal(t testing.TB, now time.Time, s *Session, payload []byte) [][]byte {
	t.Helper()
	frames, err := s.Seal(now, payload)
	if err != nil {
		t.Fatal(err)
	}
	return frames
}
