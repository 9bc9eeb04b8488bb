package ops_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh/internal/ops"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestHandler(t *testing.T) {
	var notReady atomic.Pointer[error]
	ready := func() error {
		if p := notReady.Load(); p != nil {
			return *p
		}
		return nil
	}
	srv := httptest.NewServer(ops.Handler(ready, ops.NewRegistry()))
	defer srv.Close()

	reason := errors.New("bus not connected")
	tests := []struct {
		name       string
		path       string
		notReady   error
		wantStatus int
		wantBody   string // substring
	}{
		{"healthz", "/healthz", nil, 200, "ok"},
		{"healthz while not ready", "/healthz", reason, 200, "ok"},
		{"readyz ready", "/readyz", nil, 200, "ok"},
		{"readyz not ready", "/readyz", reason, 503, "bus not connected"},
		{"metrics has go collector", "/metrics", nil, 200, "go_goroutines"},
		{"metrics has process collector", "/metrics", nil, 200, "process_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.notReady != nil {
				notReady.Store(&tt.notReady)
			} else {
				notReady.Store(nil)
			}
			status, body := get(t, srv.URL+tt.path)
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", status, tt.wantStatus, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %q does not contain %q", body, tt.wantBody)
			}
		})
	}
}

func TestHandlerNilReady(t *testing.T) {
	srv := httptest.NewServer(ops.Handler(nil, nil))
	defer srv.Close()
	if status, _ := get(t, srv.URL+"/readyz"); status != 200 {
		t.Errorf("readyz with nil ready = %d, want 200", status)
	}
}

func TestInstrumentUsesPatterns(t *testing.T) {
	reg := ops.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /things/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "thing")
	})
	app := httptest.NewServer(ops.Instrument(reg, mux))
	defer app.Close()
	metrics := httptest.NewServer(ops.Handler(nil, reg))
	defer metrics.Close()

	for _, p := range []string{"/things/a", "/things/b", "/things/missing", "/nope/1", "/nope/2"} {
		get(t, app.URL+p)
	}
	_, body := get(t, metrics.URL+"/metrics")
	var got []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "homemesh_http_requests_total{") {
			got = append(got, line)
		}
	}
	want := []string{
		`homemesh_http_requests_total{method="GET",route="GET /things/{id}",status="200"} 2`,
		`homemesh_http_requests_total{method="GET",route="GET /things/{id}",status="404"} 1`,
		`homemesh_http_requests_total{method="GET",route="unmatched",status="404"} 2`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("request counters (-want +got):\n%s", diff)
	}
	if strings.Contains(body, "/things/a") || strings.Contains(body, "/nope/1") {
		t.Error("raw paths leaked into metric labels")
	}
	if !strings.Contains(body, "homemesh_http_request_duration_seconds_bucket") {
		t.Error("no duration histogram")
	}

	// Wrapping again with the same registry reuses the metrics.
	_ = ops.Instrument(reg, mux)
}
