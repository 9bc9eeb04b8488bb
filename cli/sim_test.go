package cli

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/homemesh/homemesh"
)

// The simulator reaches an HTTPS hub by trusting the CA given with --ca,
// and nothing else.
func TestSimTrustsTheGivenCA(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/credentials" || r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"username":"mqtt-x","password":"pw"}`))
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots, err := loadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, err := apiCredentials(srv.URL+"/api/v1", "tok", roots)(context.Background(), "light-1", []string{"a/#"})
	if err != nil || user != "mqtt-x" || pass != "pw" {
		t.Fatalf("credential %q %q: %v", user, pass, err)
	}
	if _, _, err := apiCredentials(srv.URL+"/api/v1", "tok", nil)(context.Background(), "light-1", []string{"a/#"}); err == nil {
		t.Fatal("a self-signed hub was trusted without --ca")
	}
	if _, err := loadCAFile(filepath.Join(t.TempDir(), "none.crt")); homemesh.ErrorField(err) != "ca" {
		t.Fatalf("missing CA file: %v", err)
	}
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	if _, err := loadCAFile(notPEM); homemesh.ErrorField(err) != "ca" {
		t.Fatalf("CA file without a certificate: %v", err)
	}
}
