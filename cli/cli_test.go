package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// Flags beat the environment, which beats the file, which beats defaults.
func TestConfigLayers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(file, []byte("mqtt: 127.0.0.1:1001\nhttp: 127.0.0.1:2001\nlog_level: warn\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOMEMESH_HTTP", "127.0.0.1:2002")
	t.Setenv("HOMEMESH_LOG_LEVEL", "debug")
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	resolve := configFlags(cmd)
	cmd.SetArgs([]string{"--config", file, "--log-level", "error"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	cfg, err := resolve()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT != "127.0.0.1:1001" || cfg.HTTP != "127.0.0.1:2002" || cfg.LogLevel != "error" || cfg.MQTTS != ":8883" {
		t.Fatalf("layers: mqtt %s (file), http %s (env), log %s (flag), mqtts %s (default)", cfg.MQTT, cfg.HTTP, cfg.LogLevel, cfg.MQTTS)
	}
}

// A list setting comes from a flag as comma-separated text and beats the
// file's YAML list.
func TestConfigListFlag(t *testing.T) {
	file := filepath.Join(t.TempDir(), "hub.yaml")
	if err := os.WriteFile(file, []byte("webauthn_rp_id: hub.local\nwebauthn_origins: [https://hub.local]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	resolve := configFlags(cmd)
	cmd.SetArgs([]string{"--config", file, "--webauthn-origins", "https://hub.local:8443,https://app.hub.local"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	cfg, err := resolve()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.WebAuthnOrigins, " "); cfg.WebAuthnRPID != "hub.local" || got != "https://hub.local:8443 https://app.hub.local" {
		t.Fatalf("rp id %q, origins %q", cfg.WebAuthnRPID, got)
	}
}

func TestMainReportsErrorsByField(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "ingest", "--target", "toaster"}, "target: "},
		{[]string{"serve", "toaster", "--home", "h1", "--data", "DATA"}, "service: unknown service"},
		{[]string{"up", "--http", "nonsense", "--data", "DATA"}, "http: "},
		{[]string{"sim", "--broker", "127.0.0.1:1"}, "username: "},
		{[]string{"config", "check", "/nonexistent/hub.yaml"}, "read config"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[:2], " "), func(t *testing.T) {
			dir := t.TempDir()
			for i, a := range tt.args {
				tt.args[i] = strings.ReplaceAll(a, "DATA", dir)
			}
			var out, errOut bytes.Buffer
			if code := Main(context.Background(), tt.args, &out, &errOut); code == 0 {
				t.Fatalf("exit 0; stderr %s", errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("stderr %q does not contain %q", errOut.String(), tt.want)
			}
		})
	}
}
