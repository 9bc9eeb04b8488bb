package natsbus

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	// connections present it too. It excludes Callout.
	Token string
	// Callout, when set, admits clients through auth callout: the users
	// it lists connect with their passwords, every other client is
	// decided by the callout responder.
	Callout *Callout
	// TLS, when set, makes Listen serve TLS only: a client that does not
	// start TLS is refused. In-process connections never need it.
	TLS *tls.Config
	// ConfigFile is a nats-server configuration file (authorization,
	// tls, limits…) read first; the fields above override what it says
	// about the name, the store and the listener. It is how a test runs
	// the very configuration an operator gives an external server.
	ConfigFile string
}

// Callout configures auth callout on an embedded server.
type Callout struct {
	// Issuer is the public account key (an "A…" nkey) that must sign every
	// callout answer.
	Issuer string
	// Users connect with a password and bypass the callout; the callout
	// responder is one of them.
	Users []User
}

// User is a client the server admits by name and password, with its
// permissions.
type User struct {
	Name, Password string
	// Publish and Subscribe list the subjects the user may use.
	Publish, Subscribe []string
	// Responses lets the user answer the requests it receives.
	Responses bool
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
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		var err error
		if opts, err = server.ProcessConfigFile(cfg.ConfigFile); err != nil {
			return nil, fmt.Errorf("nats configuration %s: %w", cfg.ConfigFile, err)
		}
	}
	opts.ServerName = cfg.Name
	opts.JetStream = true
	opts.StoreDir = cfg.StoreDir
	opts.NoSigs = true
	opts.NoLog = true
	opts.DontListen = cfg.Listen == ""
	// Bound memory so a runaway stream cannot take the hub down.
	opts.JetStreamMaxMemory = 256 << 20
	if cfg.Token != "" {
		if cfg.Callout != nil {
			return nil, fmt.Errorf("nats: a token and auth callout exclude each other")
		}
		opts.Authorization = cfg.Token
	}
	if cfg.Callout != nil {
		applyCallout(opts, cfg.Callout)
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS
		opts.TLS = true
		opts.TLSTimeout = 5
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

func applyCallout(opts *server.Options, c *Callout) {
	callout := &server.AuthCallout{Issuer: c.Issuer}
	for _, u := range c.Users {
		perms := &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: u.Publish},
			Subscribe: &server.SubjectPermission{Allow: u.Subscribe},
		}
		if u.Responses {
			perms.Response = &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute}
		}
		opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Permissions: perms})
		callout.AuthUsers = append(callout.AuthUsers, u.Name)
	}
	opts.AuthCallout = callout
	// The callout makes a round trip to the auth service; leave room for a
	// busy host.
	opts.AuthTimeout = 5
}

// Connect opens an in-process connection named name.
func (s *Server) Connect(name string) (*Conn, error) {
	return s.ConnectAs(name, Identity{})
}

// ConnectAs opens an in-process connection named name that presents id.
func (s *Server) ConnectAs(name string, id Identity) (*Conn, error) {
	opts := []nats.Option{nats.InProcessServer(s.ns)}
	if s.token != "" && id.User == "" {
		opts = append(opts, nats.Token(s.token))
	}
	// In-process connections skip TLS: a tls:// URL or root CAs would
	// make the client insist on it.
	id.RootCAs = nil
	_, addr, _ := strings.Cut(s.ns.ClientURL(), "://")
	return dial("nats://"+addr, name, s.log, append(opts, id.options()...)...)
}

// ClientURL is the URL other processes dial, when the server listens.
func (s *Server) ClientURL() string { return s.ns.ClientURL() }

// Shutdown stops the server after in-flight JetStream writes are flushed.
func (s *Server) Shutdown() {
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
}
