package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/homemesh/homemesh/internal/hmtest"
)

// runMain runs the command line args in the background until the test ends
// or stop is called, and returns what it writes to stdout.
func runMain(t *testing.T, args ...string) (stdout *hmtest.LogBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout = &hmtest.LogBuffer{}
	stderr := &hmtest.LogBuffer{}
	done := make(chan int, 1)
	go func() { done <- Main(ctx, args, stdout, stderr) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("homemesh %v: exit %d: %s", args, code, stderr.String())
		}
	}
	t.Cleanup(stop)
	return stdout, stop
}

// awaitLine waits for re to match what out holds and returns its first
// submatch.
func awaitLine(t *testing.T, out *hmtest.LogBuffer, re *regexp.Regexp) string {
	t.Helper()
	var m []string
	hmtest.WaitFor(t, 30*time.Second, "banner line "+re.String(), func() bool {
		m = re.FindStringSubmatch(out.String())
		return m != nil
	})
	return m[1]
}

// awaitReady waits until the hub at url answers /readyz, trusting the home
// CA in data when it serves HTTPS: stopping a hub that is still starting
// is not what these tests are about.
func awaitReady(t *testing.T, url, data string) {
	t.Helper()
	pool := x509.NewCertPool()
	if pemData, err := os.ReadFile(filepath.Join(data, "ca.crt")); err == nil {
		pool.AppendCertsFromPEM(pemData)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	hmtest.WaitFor(t, 30*time.Second, url+" to be ready", func() bool {
		resp, err := client.Get(url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

var apiLine = regexp.MustCompile(`API:\s+(\S+)/api/v1`)

func TestBannerShowsTheAPIScheme(t *testing.T) {
	for _, tt := range []struct {
		name   string
		extra  []string
		scheme string
	}{
		{"loopback", nil, "http://"},
		{"forced TLS", []string{"--https"}, "https://"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			args := append([]string{"up", "--data", data, "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "", "--mesh", "127.0.0.1:0"}, tt.extra...)
			out, stop := runMain(t, args...)
			url := awaitLine(t, out, apiLine)
			awaitReady(t, url, data)
			stop()
			if !regexp.MustCompile("^" + regexp.QuoteMeta(tt.scheme) + `127\.0\.0\.1:\d+$`).MatchString(url) {
				t.Fatalf("API line shows %q, want %s127.0.0.1:port", url, tt.scheme)
			}
		})
	}
}
