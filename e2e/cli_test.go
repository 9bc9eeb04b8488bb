package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A taken port stops the hub with a message that names the flag to change.
func TestTakenPortNamesTheFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tt := range []struct{ flag string }{{"--mqtt"}, {"--http"}, {"--mqtts"}} {
		t.Run(tt.flag, func(t *testing.T) {
			args := []string{"up", "--data", t.TempDir(), "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0"}
			for i := range args {
				if args[i] == tt.flag {
					args[i+1] = taken
				}
			}
			out, err := exec.Command(binary, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("the hub started on a taken port: %s", out)
			}
			if !strings.Contains(string(out), tt.flag) || !strings.Contains(string(out), taken) {
				t.Fatalf("error does not name %s and %s:\n%s", tt.flag, taken, out)
			}
		})
	}
}

func TestOnboardingCodeFileIsPrivate(t *testing.T) {
	data := t.TempDir()
	p := start(t, "up", "--data", data, "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "")
	code := p.await(t, codeLine)
	fi, err := os.Stat(filepath.Join(data, "onboarding-code"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("onboarding-code mode = %v, want 0600", fi.Mode().Perm())
	}
	content, _ := os.ReadFile(filepath.Join(data, "onboarding-code"))
	if !strings.Contains(string(content), code) {
		t.Fatalf("file holds %q, banner printed %q", content, code)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("http: 127.0.0.1:9000\nmqtt: \":1884\"\n"), 0o600)
	os.WriteFile(bad, []byte("http: 127.0.0.1:9000\nmqttt: \":1884\"\n"), 0o600)
	if out, err := exec.Command(binary, "config", "check", good).CombinedOutput(); err != nil {
		t.Fatalf("good file rejected: %s", out)
	}
	out, err := exec.Command(binary, "config", "check", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "mqttt") {
		t.Fatalf("bad file: err %v, output %s", err, out)
	}
}
