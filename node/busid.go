package node

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/config"
	"golang.org/x/crypto/bcrypt"
)

// busIdentities decides how this node's connections present themselves:
// with the home's derived identities when the node holds the secret key
// (it hosts auth, runs the embedded server, or does maintenance), else
// with the credential files it was given.
type busIdentities struct {
	keys  *auth.BusKeys
	files map[string]auth.BusCredential // by service
	roots *x509.CertPool
}

// loadBusIdentities prepares the identities. derive says whether the node
// may read the secret key: only processes that already hold it do, so a
// split edge never creates one by accident.
func (n *Node) loadBusIdentities(derive bool) error {
	ids := &busIdentities{files: map[string]auth.BusCredential{}}
	if derive {
		key, _, err := n.secretKeys()
		if err != nil {
			return err
		}
		switch {
		case key != nil:
		case n.maintenance:
			// Maintenance never creates a key, and some of it (audit
			// verify) needs none: without one it joins the bus without an
			// identity, which only a bus that checks none admits.
			key, _, _, _ = n.currentSecretKey()
		default:
			if key, err = auth.LoadSecretKey(n.cfg.Data); err != nil {
				return err
			}
		}
		if key != nil {
			if ids.keys, err = auth.NewBusKeys(key, n.home.ID); err != nil {
				return err
			}
		}
	}
	for _, path := range strings.Split(n.cfg.NATSCredential, ",") {
		if path = strings.TrimSpace(path); path == "" {
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return homemesh.Invalid("nats-credential", "cannot read %s: %v", path, err)
		}
		c, err := auth.ParseBusCredential(string(data))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if c.Home != n.home.ID {
			return homemesh.Invalid("nats-credential", "%s belongs to home %q, not %q", path, c.Home, n.home.ID)
		}
		ids.files[c.Service] = c
	}
	if n.cfg.NATSCA != "" {
		pem, err := os.ReadFile(n.cfg.NATSCA)
		if err != nil {
			return homemesh.Invalid("nats-ca", "cannot read %s: %v", n.cfg.NATSCA, err)
		}
		ids.roots = x509.NewCertPool()
		if !ids.roots.AppendCertsFromPEM(pem) {
			return homemesh.Invalid("nats-ca", "%s holds no PEM certificate", n.cfg.NATSCA)
		}
	}
	n.busIDs = ids
	return nil
}

// identity returns how service's connection presents itself. A node with
// a token (the older, shared-secret setup) or without any identity for
// service presents none; an authorising server then refuses it.
func (n *Node) identity(service string) natsbus.Identity {
	id := natsbus.Identity{}
	if n.busIDs == nil {
		return id
	}
	id.RootCAs = n.busIDs.roots
	if n.cfg.NATSToken != "" {
		return id
	}
	cred, ok := n.busIDs.files[service]
	if n.busIDs.keys != nil {
		cred, _ = n.busIDs.keys.Credential(service) // service is one of auth.BusServices
		ok = true
	}
	if ok {
		id.User, id.Password = cred.User(), cred.Secret
		id.InboxPrefix = bus.InboxPrefix(n.home.ID, service)
	}
	return id
}

// dialService connects service to the bus as itself. Connections refused
// for their identity are retried for a while when the auth service runs
// elsewhere, since it may still be starting and nobody answers the NATS
// server's callout meanwhile.
func (n *Node) dialService(service string) (*natsbus.Conn, error) {
	id := n.identity(service)
	name := "homemesh-" + service
	if n.server != nil {
		if n.callout {
			return n.server.ConnectAs(name, id)
		}
		return n.server.Connect(name)
	}
	c, err := natsbus.DialAs(n.natsURL(), name, id, n.log)
	for deadline := time.Now().Add(15 * time.Second); refused(err) && id.User != "" && !n.hosts("auth") && time.Now().Before(deadline); {
		n.log.Info("bus refused the connection; waiting for the auth service", "service", service)
		time.Sleep(500 * time.Millisecond)
		c, err = natsbus.DialAs(n.natsURL(), name, id, n.log)
	}
	if refused(err) && id.User == "" {
		return nil, fmt.Errorf("%w; give %s's bus credential with --nats-credential (made by `homemesh nats-credential %s`)", err, service, service)
	}
	return c, err
}

func refused(err error) bool { return homemesh.ErrorKind(err) == homemesh.KindUnauthenticated }

// embeddedCallout configures the embedded server to admit clients through
// the auth service hosted here, with TLS on its listener.
func (n *Node) embeddedCallout(cfg *natsbus.ServerConfig) error {
	keys := n.busIDs.keys
	authCred, _ := keys.Credential(auth.ServiceName)
	perms, err := auth.ServiceBusPermissions(n.home.ID, auth.ServiceName)
	if err != nil {
		return err
	}
	cfg.Callout = &natsbus.Callout{Issuer: keys.Issuer(), Users: []natsbus.User{{
		Name: authCred.User(), Password: authCred.Secret,
		Publish: perms.Publish, Subscribe: perms.Subscribe, Responses: perms.Responses,
	}}}
	if n.cfg.NATSTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(n.cfg.NATSTLSCert, n.cfg.NATSTLSKey)
		if err != nil {
			return homemesh.Invalid("nats-tls-cert", "%v", err)
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
		return nil
	}
	// The home CA lives on the bus, so its certificate exists only once
	// auth has started on the server's in-process side; until then a TLS
	// client is turned away and retries.
	cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c := n.natsTLS.Load()
		if c == nil {
			return nil, errors.New("the home CA is not loaded yet")
		}
		return c.GetCertificate(hello)
	}}
	return nil
}

// loadNATSCertificate issues the embedded listener's certificate from the
// home CA, for the listen host, the machine's name and loopback.
func (n *Node) loadNATSCertificate() error {
	if n.server == nil || !n.callout || n.cfg.NATSTLSCert != "" {
		return nil
	}
	hosts := []string{}
	if host, _, _ := net.SplitHostPort(n.cfg.NATSListen); host != "" {
		hosts = append(hosts, host)
	}
	if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name)
	}
	cfg, err := n.authSvc.ServerTLSConfig(hosts)
	if err != nil {
		return fmt.Errorf("NATS certificate (--nats-listen): %w", err)
	}
	n.natsTLS.Store(cfg)
	return nil
}

// natsTLSConfig is the certificate source of the embedded listener.
type natsTLSConfig = atomic.Pointer[tls.Config]

// BusCredential returns service's bus credential for the home in cfg,
// derived from the home's secret key (--secret-key-file,
// HOMEMESH_SECRET_KEY or DATA/secret.key, created if absent, as the hub
// would). It runs offline: no bus is needed, so credentials can be made
// before any NATS server or auth process starts.
func BusCredential(cfg config.Config, service string) (auth.BusCredential, error) {
	keys, err := offlineBusKeys(cfg)
	if err != nil {
		return auth.BusCredential{}, err
	}
	return keys.Credential(service)
}

func offlineBusKeys(cfg config.Config) (*auth.BusKeys, error) {
	n, err := New(cfg, Options{Services: []string{}}, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	n.names = nil
	if n.home, err = n.loadHome(); err != nil {
		return nil, err
	}
	if err := n.loadBusIdentities(true); err != nil {
		return nil, err
	}
	return n.busIDs.keys, nil
}

// NATSServerConfig returns the authorization block of a nats-server
// configuration that admits the home's services through the auth service:
// auth connects with its own credential (its password stored as a bcrypt
// hash) and the permissions ServiceBusPermissions gives it; every other
// client is decided by auth callout, whose answers the home's issuer key
// must sign.
func NATSServerConfig(cfg config.Config) (string, error) {
	keys, err := offlineBusKeys(cfg)
	if err != nil {
		return "", err
	}
	cred, err := keys.Credential(auth.ServiceName)
	if err != nil {
		return "", err
	}
	perms, err := auth.ServiceBusPermissions(cred.Home, auth.ServiceName)
	if err != nil {
		return "", err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(cred.Secret), 11)
	if err != nil {
		return "", fmt.Errorf("hash the auth password: %w", err)
	}
	quote := func(list []string) string {
		q := make([]string, len(list))
		for i, s := range list {
			q[i] = strconv.Quote(s)
		}
		return strings.Join(q, ", ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# homemesh home %s: the auth service admits every other client (auth callout).\n", cred.Home)
	b.WriteString("authorization {\n")
	b.WriteString("  timeout: 5\n")
	b.WriteString("  users: [\n")
	fmt.Fprintf(&b, "    { user: %q, password: %q,\n", cred.User(), string(hash))
	fmt.Fprintf(&b, "      permissions: { publish: { allow: [%s] }, subscribe: { allow: [%s] }, allow_responses: { max: 1, expires: \"1m\" } } }\n",
		quote(perms.Publish), quote(perms.Subscribe))
	b.WriteString("  ]\n")
	b.WriteString("  auth_callout {\n")
	fmt.Fprintf(&b, "    issuer: %q\n", keys.Issuer())
	fmt.Fprintf(&b, "    auth_users: [ %q ]\n", cred.User())
	b.WriteString("  }\n")
	b.WriteString("}\n")
	return b.String(), nil
}
