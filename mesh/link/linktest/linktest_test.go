package linktest

import (
	"bytes"
	"testing"
	"time"

	"github.com/homemesh/homemesh/mesh/link"
)

func TestDeterministic(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var certs [2][]byte
	for i := range certs {
		h, err := NewHome("home", 42, now)
		if err != nil {
			t.Fatal(err)
		}
		id, err := h.Identity(link.RoleRouter, Rand(7))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := link.New(link.Config{Identity: id, Verifier: h.Verifier}, now); err != nil {
			t.Fatal(err)
		}
		certs[i] = id.Cert
	}
	if !bytes.Equal(certs[0], certs[1]) {
		t.Fatal("the same seeds gave different certificates")
	}
	other, err := NewHome("home", 43, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Verifier.Verify(certs[0], now); err == nil {
		t.Fatal("a CA of another seed accepted the certificate")
	}
}
