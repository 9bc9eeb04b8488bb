package natsbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
}

// Dial connects to an external NATS server or cluster. url may list several
// servers separated by commas and may carry user:password or a token.
func Dial(url, name string, log *slog.Logger) (*Conn, error) {
	return dial(url, name, log)
}

func dial(url, name string, log *slog.Logger, extra ...nats.Option) (*Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
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
			log.Error("bus error", "subject", subject, "err", err)
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, &homemesh.Error{Op: "natsbus.dial", Kind: homemesh.KindUnavailable,
			Message: "cannot reach the bus", Err: err}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream context: %w", err)
	}
	return &Conn{nc: nc, js: js, log: log}, nil
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
	msg, err := c.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: subject, Data: data})
	if err != nil {
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
