package natsbus

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ServerConfig configures an embedded NATS server.
type ServerConfig struct {
	// Name identifies the server in a cluster and in JetStream metadata.
	Name string
	// StoreDir holds JetStream's files. Empty keeps JetStream in memory,
	// which only tests want.
	StoreDir string
	// Listen is a host:port for NATS clients from other processes. Empty
	// means no listener: only in-process connections reach the server.
	Listen string
	// Token, when set, is required of clients dialling Listen. In-process
	// connections present it too.
	Token string
}

// Server is an embedded nats-server with JetStream.
type Server struct {
	ns    *server.Server
	token string
	log   *slog.Logger
}

// StartServer starts an embedded server and waits until it accepts
// connections.
func StartServer(cfg ServerConfig, log *slog.Logger) (*Server, error) {
	opts := &server.Options{
		ServerName: cfg.Name,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoSigs:     true,
		NoLog:      true,
		DontListen: cfg.Listen == "",
		// Bound memory so a runaway stream cannot take the hub down.
		JetStreamMaxMemory: 256 << 20,
		Authorization:      cfg.Token,
	}
	if opts.ServerName == "" {
		opts.ServerName = "homemesh"
	}
	if cfg.StoreDir == "" {
		dir, err := os.MkdirTemp("", "homemesh-nats-")
		if err != nil {
			return nil, fmt.Errorf("jetstream temp dir: %w", err)
		}
		opts.StoreDir = dir
	} else if err := os.MkdirAll(cfg.StoreDir, 0o700); err != nil {
		return nil, fmt.Errorf("jetstream store dir: %w", err)
	}
	opts.StoreDir = filepath.Clean(opts.StoreDir)
	if cfg.Listen != "" {
		host, portStr, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("nats listen address %q: %w", cfg.Listen, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("nats listen port %q: %w", portStr, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, port
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("create nats server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats server not ready after 10s (is %s in use?)", cfg.Listen)
	}
	return &Server{ns: ns, token: cfg.Token, log: log}, nil
}

// Connect opens an in-process connection named name.
func (s *Server) Connect(name string) (*Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s.ns)}
	if s.token != "" {
		opts = append(opts, nats.Token(s.token))
	}
	return dial(s.ns.ClientURL(), name, s.log, opts...)
}

// ClientURL is the URL other processes dial, when the server listens.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server after in-flight JetStream writes are flushed.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
