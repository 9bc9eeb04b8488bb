package node

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/config"
)

// maxCertHosts bounds the names put into one certificate, well inside what
// the home CA accepts, however many interfaces the machine has.
const maxCertHosts = 48

// certHosts returns the names a server certificate for listen must carry:
// the listen host, the machine's host name and the configured extra names.
// A listener on every interface is reached by the machine's addresses, so
// those are named too. The CA adds localhost and the loopback addresses.
func (n *Node) certHosts(listen string) []string {
	host, _, _ := net.SplitHostPort(listen)
	var hosts []string
	add := func(h string) {
		if len(hosts) < maxCertHosts && config.ValidHost(h) {
			hosts = append(hosts, strings.ToLower(h))
		}
	}
	// Names asked for come first, so a machine with many interfaces can
	// never crowd them out.
	for _, h := range n.cfg.ExtraTLSHosts() {
		add(h)
	}
	// A host name with characters a certificate cannot carry is skipped:
	// clients then reach the hub by a name from --tls-hosts.
	if name, err := os.Hostname(); err == nil {
		add(name)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		for _, ip := range interfaceAddrs() {
			add(ip)
		}
	} else {
		add(host)
	}
	return hosts
}

// interfaceAddrs returns the machine's unicast addresses that other
// machines can use; link-local ones need a zone, which no certificate names.
func interfaceAddrs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		ipnet, ok := a.(*net.IPNet)
		if !ok || !ipnet.IP.IsGlobalUnicast() {
			continue
		}
		out = append(out, ipnet.IP.String())
	}
	return out
}

// gatewayTLS returns the gateway's TLS configuration, or nil when it serves
// plain HTTP (see config.HTTPTLS): the user's own certificate files when
// given, else a certificate from the home CA.
func (n *Node) gatewayTLS(ctx context.Context, c *natsbus.Conn) (*tls.Config, error) {
	if !n.cfg.HTTPTLS() {
		if host, _, _ := net.SplitHostPort(n.cfg.HTTP); !config.LoopbackHost(host) {
			n.log.Warn("serving the API over plain HTTP on a non-loopback address (--http-insecure): passwords and tokens cross the network unencrypted",
				"service", "gateway", "addr", n.cfg.HTTP)
		}
		return nil, nil
	}
	if n.cfg.TLSCert != "" {
		files, err := loadCertFiles(n.cfg.TLSCert, n.cfg.TLSKey, n.log.With("service", "gateway"))
		if err != nil {
			return nil, err
		}
		return &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: files.certificate}, nil
	}
	cfg, err := n.serverTLS(ctx, c, n.certHosts(n.cfg.HTTP))
	if err != nil {
		return nil, fmt.Errorf("gateway: HTTPS certificate from the home CA (--http, --tls-hosts): %w", err)
	}
	return cfg, nil
}

// certFiles serves a certificate and key kept in PEM files by someone else
// (an ACME client, an administrator). On each handshake it looks at the
// files' size and modification time and loads them again when either
// changed, so a renewed certificate is served without a restart. A pair
// that fails to load (say, the certificate was replaced but not yet its
// key) is logged and the previous one kept; the next change is tried again.
type certFiles struct {
	certPath, keyPath string
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	certStamp fileStamp
	keyStamp  fileStamp
}

// fileStamp is what tells a changed file from an unchanged one.
type fileStamp struct {
	size    int64
	modTime int64 // nanoseconds since the epoch, comparable with ==
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{size: fi.Size(), modTime: fi.ModTime().UnixNano()}, nil
}

// loadCertFiles loads the pair once; errors name the flag to fix.
func loadCertFiles(certPath, keyPath string, log *slog.Logger) (*certFiles, error) {
	f := &certFiles{certPath: certPath, keyPath: keyPath, log: log}
	cert, certStamp, keyStamp, err := f.load()
	if err != nil {
		return nil, err
	}
	f.cert, f.certStamp, f.keyStamp = cert, certStamp, keyStamp
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		log.Warn("the HTTPS certificate has expired; clients will refuse it", "file", certPath,
			"not_after", cert.Leaf.NotAfter)
	}
	return f, nil
}

func (f *certFiles) load() (*tls.Certificate, fileStamp, fileStamp, error) {
	// Stamps are taken before reading, so a write racing with the read is
	// seen as a change on the next handshake.
	certStamp, err := stamp(f.certPath)
	if err != nil {
		return nil, certStamp, fileStamp{}, homemesh.Invalid("tls-cert", "%v", err)
	}
	keyStamp, err := stamp(f.keyPath)
	if err != nil {
		return nil, certStamp, keyStamp, homemesh.Invalid("tls-key", "%v", err)
	}
	certPEM, err := os.ReadFile(f.certPath)
	if err != nil {
		return nil, certStamp, keyStamp, homemesh.Invalid("tls-cert", "%v", err)
	}
	keyPEM, err := os.ReadFile(f.keyPath)
	if err != nil {
		return nil, certStamp, keyStamp, homemesh.Invalid("tls-key", "%v", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// The crypto/tls messages name what is wrong (no PEM block, a key
		// that does not match) without quoting the files.
		return nil, certStamp, keyStamp, homemesh.Invalid("tls-cert", "%s with %s: %v", f.certPath, f.keyPath, err)
	}
	return &cert, certStamp, keyStamp, nil
}

// certificate is the tls.Config GetCertificate hook.
func (f *certFiles) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	certStamp, certErr := stamp(f.certPath)
	keyStamp, keyErr := stamp(f.keyPath)
	if certErr != nil || keyErr != nil || certStamp == f.certStamp && keyStamp == f.keyStamp {
		// A file being replaced may be missing for a moment: keep serving.
		return f.cert, nil
	}
	cert, certStamp, keyStamp, err := f.load()
	f.certStamp, f.keyStamp = certStamp, keyStamp
	if err != nil {
		f.log.Warn("cannot reload the HTTPS certificate; serving the previous one", "err", err)
		return f.cert, nil
	}
	f.cert = cert
	f.log.Info("HTTPS certificate reloaded", "file", f.certPath)
	return f.cert, nil
}
