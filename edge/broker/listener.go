package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// connectTimeout bounds how long a new connection may take to finish its
// TLS handshake and send CONNECT; after CONNECT the MQTT keepalive rules.
const connectTimeout = 10 * time.Second

// listener is a mochi listener over a socket bound in advance, so that a
// taken port is reported by Listen before anything else starts.
type listener struct {
	id    string
	ln    net.Listener
	tls   *tls.Config
	log   *slog.Logger
	end   atomic.Bool
	close sync.Once
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id string, ln net.Listener, tc *tls.Config, log *slog.Logger) *listener {
	return &listener{id: id, ln: ln, tls: tc, log: log.With("listener", id)}
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Address() string  { return l.ln.Addr().String() }
func (l *listener) Protocol() string { return l.id }

// Init does nothing: the socket is already bound.
func (l *listener) Init(*slog.Logger) error { return nil }

// Serve accepts connections until Close.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go l.handle(conn, establish)
	}
}

func (l *listener) handle(conn net.Conn, establish listeners.EstablishFn) {
	_ = conn.SetDeadline(time.Now().Add(connectTimeout))
	if l.tls != nil {
		tc := tls.Server(conn, l.tls)
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			l.log.Debug("mqtt tls handshake failed", "peer", conn.RemoteAddr().String(), "err", err)
			conn.Close()
			return
		}
		conn = tc
	}
	if err := establish(l.id, conn); err != nil {
		l.log.Debug("mqtt connection ended", "peer", conn.RemoteAddr().String(), "err", err)
	}
}

// Close stops accepting and disconnects this listener's clients.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.close.Do(func() {
		l.end.Store(true)
		_ = l.ln.Close()
		closeClients(l.id)
	})
}
