package natsbus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Conn is one connection to the bus, embedded or remote.
type Conn struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger

	// requests in flight, by subject, so that a permissions violation the
	// server reports for a subject ends the requests sent on it at once
	// instead of letting them wait for a reply that cannot come.
	mu       sync.Mutex
	inflight map[string]map[*int]context.CancelCauseFunc
}

// Dial connects to an external NATS server or cluster. url may list several
// servers separated by commas and may carry user:password or a token.
func Dial(url, name string, log *slog.Logger) (*Conn, error) {
	return dial(url, name, log)
}

// Identity is who a connection says it is and how it checks the server.
// The zero Identity presents nothing and trusts the system's roots.
type Identity struct {
	// User and Password are presented when User is set.
	User, Password string
	// InboxPrefix starts the connection's reply subjects; bus permissions
	// confine each service to its own (bus.InboxPrefix).
	InboxPrefix string
	// RootCAs, when set, are the only authorities a TLS server
	// certificate may come from, and TLS becomes mandatory.
	RootCAs *x509.CertPool
}

func (id Identity) options() []nats.Option {
	var opts []nats.Option
	if id.User != "" {
		opts = append(opts, nats.UserInfo(id.User, id.Password))
	}
	if id.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(id.InboxPrefix))
	}
	if id.RootCAs != nil {
		opts = append(opts, nats.Secure(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: id.RootCAs}))
	}
	return opts
}

// DialAs connects to an external NATS server or cluster as id.
func DialAs(url, name string, id Identity, log *slog.Logger) (*Conn, error) {
	return dial(url, name, log, id.options()...)
}

func dial(url, name string, log *slog.Logger, extra ...nats.Option) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Conn{log: log, inflight: map[string]map[*int]context.CancelCauseFunc{}}
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("bus reconnected", "url", nc.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.denied(err)
			}
			log.Error("bus error", "subject", subject, "err", err)
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return nil, &homemesh.Error{Op: "natsbus.dial", Kind: homemesh.KindUnauthenticated,
			Message: "the bus refused this connection's identity", Err: err}
	}
	var unknownCA x509.UnknownAuthorityError
	var badCert *tls.CertificateVerificationError
	if errors.As(err, &unknownCA) || errors.As(err, &badCert) {
		return nil, &homemesh.Error{Op: "natsbus.dial", Kind: homemesh.KindUnavailable,
			Message: "the bus's TLS certificate is not trusted (" + err.Error() + "); give the CA that issued it with --nats-ca", Err: err}
	}
	if err != nil {
		return nil, &homemesh.Error{Op: "natsbus.dial", Kind: homemesh.KindUnavailable,
			Message: "cannot reach the bus: " + err.Error(), Err: err}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	c.nc, c.js = nc, js
	return c, nil
}

// errDenied marks a request the bus refused to carry.
var errDenied = errors.New("denied by the bus permissions")

// deniedPublish finds the subject in the server's report of a publish
// outside the connection's permissions.
var deniedPublish = regexp.MustCompile(`(?i)violation for publish to "([^"]+)"`)

// denied ends the requests in flight on the subject err names.
func (c *Conn) denied(err error) {
	m := deniedPublish.FindStringSubmatch(err.Error())
	if m == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cancel := range c.inflight[m[1]] {
		cancel(fmt.Errorf("%w: %w", errDenied, err))
	}
}

// track registers a request on subject; the returned context ends when the
// bus denies the subject, and done unregisters it.
func (c *Conn) track(ctx context.Context, subject string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	key := new(int)
	c.mu.Lock()
	if c.inflight[subject] == nil {
		c.inflight[subject] = map[*int]context.CancelCauseFunc{}
	}
	c.inflight[subject][key] = cancel
	c.mu.Unlock()
	return ctx, func() {
		c.mu.Lock()
		delete(c.inflight[subject], key)
		if len(c.inflight[subject]) == 0 {
			delete(c.inflight, subject)
		}
		c.mu.Unlock()
		cancel(nil)
	}
}

// NATS exposes the underlying connection to adapters that need NATS
// features this package does not wrap.
func (c *Conn) NATS() *nats.Conn { return c.nc }

// JetStream exposes the JetStream context.
func (c *Conn) JetStream() jetstream.JetStream { return c.js }

// Close drains subscriptions, so handlers in flight finish, then closes.
func (c *Conn) Close() {
	if err := c.nc.Drain(); err != nil {
		c.nc.Close()
		return
	}
	for c.nc.IsDraining() {
		time.Sleep(5 * time.Millisecond)
	}
}

// Flush waits until the server has processed everything published so far.
func (c *Conn) Flush() error { return c.nc.Flush() }

// Publish marshals v as JSON and publishes it on subject.
func (c *Conn) Publish(subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("marshal for %s: %w", subject, err)
	}
	return c.nc.Publish(subject, data)
}

// Request sends req as JSON to subject and decodes the reply into resp
// (which may be nil). An error reply becomes a *homemesh.Error with the
// remote kind; no responder becomes KindUnavailable.
func (c *Conn) Request(ctx context.Context, subject string, req, resp any) error {
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("marshal request for %s: %w", subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	ctx, done := c.track(ctx, subject)
	defer done()
	msg, err := c.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data})
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errDenied) {
			return &homemesh.Error{Op: subject, Kind: homemesh.KindPermission, Message: "this service may not call " + subject, Err: cause}
		}
		if errors.Is(err, nats.ErrNoResponders) {
			return &homemesh.Error{Op: subject, Kind: homemesh.KindUnavailable, Message: "service not running", Err: err}
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
			return &homemesh.Error{Op: subject, Kind: homemesh.KindUnavailable, Message: "service did not answer in time", Err: err}
		}
		return &homemesh.Error{Op: subject, Kind: homemesh.KindUnavailable, Message: "bus request failed", Err: err}
	}
	if msg.Header.Get(bus.ErrorHeader) != "" {
		return bus.DecodeError(subject, msg.Data)
	}
	if resp == nil {
		return nil
	}
	if raw, ok := resp.(*EncodedJSON); ok {
		*raw = msg.Data
		return nil
	}
	if err := json.Unmarshal(msg.Data, resp); err != nil {
		return fmt.Errorf("decode reply from %s: %w", subject, err)
	}
	return nil
}

// Handler answers one request. It receives the raw request body and returns
// a value to send back as JSON, or an error to send as an error reply.
type Handler func(ctx context.Context, msg *nats.Msg) (any, error)

// Handle serves subject with h. Requests are spread over every process
// that serves the same subject with the same queue group. Handlers run one
// at a time per subscription; a service that needs concurrency subscribes
// several times or hands work to its own workers. The returned subscription
// stops when the Conn closes or is drained.
func (c *Conn) Handle(subject, queue string, h Handler) (*nats.Subscription, error) {
	return c.nc.QueueSubscribe(subject, queue, func(msg *nats.Msg) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := h(ctx, msg)
		if msg.Reply == "" {
			if err != nil {
				c.log.Warn("handler failed", "subject", msg.Subject, "err", err)
			}
			return
		}
		c.Reply(msg, resp, err)
	})
}

// EncodedJSON is a reply body already encoded as JSON. Reply sends it as
// is, and Request fills it with the reply's bytes without decoding them:
// a service that encodes a large reply itself spares the second pass
// encoding/json makes over a Marshaler's output, and a gateway that only
// forwards a reply spares decoding and encoding it again.
type EncodedJSON []byte

// Reply answers msg with resp, or with err encoded for the wire. Internal
// errors are logged here, because their cause never crosses the bus.
func (c *Conn) Reply(msg *nats.Msg, resp any, err error) {
	out := nats.NewMsg(msg.Reply)
	if err != nil {
		kind, body := bus.EncodeError(err)
		if kind == homemesh.KindInternal {
			c.log.Error("request failed", "subject", msg.Subject, "err", err)
		}
		out.Header.Set(bus.ErrorHeader, string(kind))
		out.Data = body
	} else if raw, ok := resp.(EncodedJSON); ok {
		out.Data = raw
	} else {
		data, merr := json.Marshal(resp)
		if merr != nil {
			c.log.Error("marshal reply", "subject", msg.Subject, "err", merr)
			kind, body := bus.EncodeError(merr)
			out.Header.Set(bus.ErrorHeader, string(kind))
			data = body
		}
		out.Data = data
	}
	if perr := c.nc.PublishMsg(out); perr != nil {
		c.log.Warn("reply not sent", "subject", msg.Subject, "err", perr)
	}
}

// KeyValue opens the bucket described by cfg, creating it or updating its
// settings as needed.
func (c *Conn) KeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := c.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, &homemesh.Error{Op: "natsbus.kv", Kind: homemesh.KindUnavailable,
			Message: "key-value bucket " + cfg.Bucket + " unavailable", Err: err}
	}
	return kv, nil
}

// Stream opens the stream described by cfg, creating or updating it.
func (c *Conn) Stream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := c.js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, &homemesh.Error{Op: "natsbus.stream", Kind: homemesh.KindUnavailable,
			Message: "stream " + cfg.Name + " unavailable", Err: err}
	}
	return s, nil
}

// FollowKeyValue passes every entry of kv to apply, then every change to
// it, until ctx ends. It returns once the entries stored at the call have
// been applied, so that a service starts from the bucket's state; apply
// runs on one goroutine, in order, deletions included.
func FollowKeyValue(ctx context.Context, kv jetstream.KeyValue, apply func(jetstream.KeyValueEntry)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	loaded := make(chan struct{})
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the end of the stored entries
					close(loaded)
					continue
				}
				apply(e)
			}
		}
	}()
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
