package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/sim"
	"github.com/spf13/cobra"
)

func simCommand(stderr io.Writer) *cobra.Command {
	cfg := sim.DefaultConfig()
	var (
		kinds    []string
		qos      int
		api      string
		token    string
		logLevel string
		caFile   string
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Run simulated devices of every kind over MQTT with Home Assistant discovery",
		Long: `sim connects simulated devices to an MQTT broker. They announce
themselves with Home Assistant discovery, report state and obey commands.

Credentials: either --username/--password shared by every device, or --api
with --token (an owner's or admin's access token), which gives every device
its own credential limited to its own topics.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.QoS = byte(qos)
			for _, k := range kinds {
				kind := homemesh.EntityKind(k)
				if !kind.Valid() {
					return homemesh.Invalid("kinds", "unknown kind %q", k)
				}
				cfg.Kinds = append(cfg.Kinds, kind)
			}
			if api != "" {
				if token == "" {
					return homemesh.Invalid("token", "is required with --api")
				}
				roots, err := loadCAFile(caFile)
				if err != nil {
					return err
				}
				cfg.Credential = apiCredentials(api, token, roots)
			} else if cfg.Username == "" {
				return homemesh.Invalid("username", "give --username/--password or --api/--token: the hub accepts no anonymous device")
			}
			return sim.Run(cmd.Context(), cfg, newLogger(stderr, logLevel))
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Broker, "broker", "127.0.0.1:1883", "MQTT broker host:port")
	f.IntVar(&cfg.Devices, "devices", cfg.Devices, "number of devices")
	f.StringSliceVar(&kinds, "kinds", nil, "restrict to these kinds (light,switch,sensor,…)")
	f.DurationVar(&cfg.Interval, "interval", cfg.Interval, "telemetry period per device (0 = on change only)")
	f.Int64Var(&cfg.Seed, "seed", 1, "random seed")
	f.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "discovery prefix")
	f.StringVar(&cfg.NamePrefix, "name-prefix", cfg.NamePrefix, "device IDs are <name-prefix>-<n>")
	f.IntVar(&qos, "qos", int(cfg.QoS), "QoS of state publishes")
	f.StringVar(&cfg.Username, "username", "", "one MQTT username for every device")
	f.StringVar(&cfg.Password, "password", os.Getenv("HOMEMESH_SIM_PASSWORD"), "its password [HOMEMESH_SIM_PASSWORD]")
	f.StringVar(&api, "api", "", "hub API base URL (http://127.0.0.1:8080/api/v1) to create per-device credentials")
	f.StringVar(&caFile, "ca", "", "CA certificate (PEM) to trust for an https --api, e.g. the hub's DATA/ca.crt")
	f.StringVar(&token, "token", os.Getenv("HOMEMESH_TOKEN"), "access token for --api [HOMEMESH_TOKEN]")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	return cmd
}

// apiCredentials creates each simulated device's own credential through the
// hub's public API, exactly as a person would.
// roots, when not nil, are the only CAs trusted for an https API (the home
// CA); nil trusts the system's.
func apiCredentials(api, token string, roots *x509.CertPool) func(ctx context.Context, deviceID string, allow []string) (string, string, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
	client := &http.Client{Timeout: 30 * time.Second, Transport: transport}
	return func(ctx context.Context, deviceID string, allow []string) (string, string, error) {
		body, _ := json.Marshal(map[string]any{"name": "sim " + deviceID, "allow": allow})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(api, "/")+"/credentials", bytes.NewReader(body))
		if err != nil {
			return "", "", err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return "", "", err
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if resp.StatusCode != http.StatusCreated {
			return "", "", fmt.Errorf("create credential for %s: %s: %s", deviceID, resp.Status, data)
		}
		var cred struct{ Username, Password string }
		if err := json.Unmarshal(data, &cred); err != nil {
			return "", "", fmt.Errorf("create credential for %s: %w", deviceID, err)
		}
		return cred.Username, cred.Password, nil
	}
}

// loadCAFile reads PEM certificates to trust; "" means the system's.
func loadCAFile(path string) (*x509.CertPool, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, homemesh.Invalid("ca", "%v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, homemesh.Invalid("ca", "%s holds no PEM certificate", path)
	}
	return pool, nil
}

// startDemo runs one simulated device of every kind inside the hub, each
// with its own credential issued directly by the in-process auth service.
func startDemo(ctx context.Context, cfg config.Config, n *node.Node, log *slog.Logger) (stop func(), err error) {
	if !cfg.Demo {
		return func() {}, nil
	}
	if n.Broker() == nil || n.Auth() == nil {
		return nil, homemesh.Invalid("demo", "needs the edge and auth services in this process")
	}
	sc := sim.DefaultConfig()
	sc.Broker = n.Broker().Addr("tcp").String()
	sc.NamePrefix = "demo"
	sc.Interval = 10 * time.Second
	sc.Credential = func(ctx context.Context, deviceID string, allow []string) (string, string, error) {
		cred, err := n.Auth().IssueCredential(ctx, "demo "+deviceID, allow)
		return cred.Username, cred.Password, err
	}
	demoCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-n.Ready()
		if err := sim.Run(demoCtx, sc, log.With("service", "demo")); err != nil && demoCtx.Err() == nil {
			log.Error("demo devices stopped", "service", "demo", "err", err)
		}
	}()
	return func() { cancel(); <-done }, nil
}
