package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
)

// WebSocket defaults; tests shorten the per-gateway copies.
const (
	// defaultAuthWait is how long a client without an Authorization header
	// has to send its auth message.
	defaultAuthWait = 10 * time.Second
	// defaultSendBuffer is how many messages may wait for one client; a
	// client that falls further behind is disconnected so that it cannot
	// slow the hub or the other clients.
	defaultSendBuffer = 256
)

// WebSocket timers.
var (
	// writeWait bounds one write to a client.
	writeWait = 10 * time.Second
	// pingEvery keeps idle connections alive through proxies and detects
	// dead peers.
	pingEvery = 30 * time.Second
)

// registryEvents are the event kinds forwarded to WebSocket clients. Other
// kinds on the home's event subjects (credential revocations, …) are not
// for every user's eyes, so they are dropped: deny by default.
var registryEvents = map[string]bool{
	registry.EventEntityAdded: true, registry.EventEntityUpdated: true, registry.EventEntityRemoved: true,
	registry.EventDeviceAdded: true, registry.EventDeviceUpdated: true, registry.EventDeviceRemoved: true,
}

// stateMessage is what a client receives for each state change.
type stateMessage struct {
	Type     string         `json:"type"` // "state_changed"
	EntityID string         `json:"entity_id"`
	DeviceID string         `json:"device_id"`
	State    homemesh.State `json:"state"`
	OldState homemesh.State `json:"old_state"`
	Time     time.Time      `json:"time"`
}

// eventMessage is what a client receives for each registry event.
type eventMessage struct {
	Type string          `json:"type"` // the registry event kind
	Data json.RawMessage `json:"data"`
	Time time.Time       `json:"time"`
}

// controlMessage answers a client's auth message.
type controlMessage struct {
	Type    string `json:"type"` // "auth_ok", "auth_invalid"
	Message string `json:"message,omitempty"`
}

// hub fans the home's state changes and registry events out to WebSocket
// clients. It subscribes to the bus only while at least one client is
// connected, and encodes each message once for all of them.
type hub struct {
	bus  *natsbus.Conn
	home string
	log  *slog.Logger

	mu      sync.Mutex
	clients map[*client]struct{}
	subs    []*nats.Subscription
}

// client is one WebSocket session as the hub sees it.
type client struct {
	send chan []byte
	// slow is closed when the hub dropped the client for falling behind.
	slow     chan struct{}
	slowOnce sync.Once
}

func newHub(b *natsbus.Conn, home string, log *slog.Logger) *hub {
	return &hub{bus: b, home: home, log: log, clients: map[*client]struct{}{}}
}

// join registers a client, subscribing to the bus for the first one. When
// it returns, every change published afterwards reaches the client.
func (h *hub) join(buffer int) (*client, error) {
	c := &client{send: make(chan []byte, buffer), slow: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.clients) == 0 {
		nc := h.bus.NATS()
		for _, subject := range []string{bus.StateWildcard(h.home), bus.EventWildcard(h.home)} {
			sub, err := nc.Subscribe(subject, h.dispatch)
			if err != nil {
				h.unsubscribe()
				return nil, &homemesh.Error{Op: "gateway.events", Kind: homemesh.KindUnavailable, Message: "event stream unavailable", Err: err}
			}
			h.subs = append(h.subs, sub)
		}
		// Make sure the server has the subscriptions before the client is
		// told it is connected.
		if err := nc.Flush(); err != nil {
			h.unsubscribe()
			return nil, &homemesh.Error{Op: "gateway.events", Kind: homemesh.KindUnavailable, Message: "event stream unavailable", Err: err}
		}
	}
	h.clients[c] = struct{}{}
	return c, nil
}

// leave unregisters c, unsubscribing after the last client.
func (h *hub) leave(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
	if len(h.clients) == 0 {
		h.unsubscribe()
	}
}

// stop drops the bus subscriptions.
func (h *hub) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.unsubscribe()
}

func (h *hub) unsubscribe() {
	for _, sub := range h.subs {
		_ = sub.Unsubscribe()
	}
	h.subs = nil
}

// dispatch runs on the bus connection's goroutine: it must never block.
func (h *hub) dispatch(msg *nats.Msg) {
	data, ok := h.encode(msg)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		select {
		case c.send <- data:
		default:
			c.slowOnce.Do(func() { close(c.slow) })
		}
	}
}

// encode turns a bus message into the JSON a client receives, or reports
// that the message is not for clients.
func (h *hub) encode(msg *nats.Msg) ([]byte, bool) {
	env, err := bus.DecodeEnvelope(msg.Data)
	if err != nil {
		h.log.Warn("undecodable message", "subject", msg.Subject, "err", err)
		return nil, false
	}
	if env.Home != h.home {
		return nil, false
	}
	var out any
	if _, _, _, ok := bus.SplitStateSubject(msg.Subject); ok {
		var sc registry.StateChange
		if err := json.Unmarshal(env.Payload, &sc); err != nil {
			h.log.Warn("undecodable state change", "subject", msg.Subject, "err", err)
			return nil, false
		}
		out = stateMessage{Type: "state_changed", EntityID: sc.EntityID, DeviceID: sc.DeviceID,
			State: sc.State, OldState: sc.Old, Time: env.Time}
	} else {
		if !registryEvents[env.Type] || msg.Subject != bus.EventSubject(h.home, env.Type) {
			return nil, false
		}
		payload := env.Payload
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		out = eventMessage{Type: env.Type, Data: payload, Time: env.Time}
	}
	data, err := json.Marshal(out)
	if err != nil {
		h.log.Warn("cannot encode event", "subject", msg.Subject, "err", err)
		return nil, false
	}
	return data, true
}

// serveEvents upgrades to a WebSocket, authenticates the client with the
// Authorization header or a first auth message, then streams events until
// the client leaves, falls behind, its token expires or the gateway stops.
func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	// A header that is present must be valid: refuse before upgrading, so
	// non-browser clients get a plain 401.
	var claims auth.Claims
	headerAuth := r.Header.Get("Authorization") != ""
	if !headerAuth && !isUpgrade(r) {
		// Without an upgrade, there is no channel for an auth message.
		writeError(w, r, g.log, homemesh.Errorf(homemesh.KindUnauthenticated, "an access token is required"))
		return
	}
	if headerAuth {
		token, err := bearer(r)
		if err == nil {
			claims, err = g.verify(r.Context(), token)
		}
		if err != nil {
			writeError(w, r, g.log, err)
			return
		}
	}

	g.sessions.Add(1)
	defer g.sessions.Done()
	if g.closing.Err() != nil {
		writeError(w, r, g.log, homemesh.Errorf(homemesh.KindUnavailable, "shutting down"))
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	conn.SetReadLimit(MaxBody)

	// The request context is not usable after the upgrade, and cancelling
	// a context that a read uses drops the connection without a close
	// frame; so I/O gets its own context, ended with the session, and the
	// gateway's closing is watched separately.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if !headerAuth {
		claims, err = g.authMessage(ctx, conn)
		if errors.Is(err, errAuthTimeout) {
			return
		}
		if err != nil {
			msg := homemesh.ErrorMessage(err)
			if homemesh.ErrorKind(err) == homemesh.KindInternal {
				msg = "authentication failed"
			}
			_ = g.writeMessage(ctx, conn, controlMessage{Type: "auth_invalid", Message: msg})
			_ = conn.Close(websocket.StatusPolicyViolation, "authentication failed")
			return
		}
	}
	if err := g.writeMessage(ctx, conn, controlMessage{Type: "auth_ok"}); err != nil {
		return
	}
	g.stream(ctx, conn, claims)
}

// authMessage waits up to authWait for {"type":"auth","access_token":…}.
// On timeout it answers auth_invalid and closes the connection itself:
// cancelling a read would drop the connection without a word.
func (g *Gateway) authMessage(ctx context.Context, conn *websocket.Conn) (auth.Claims, error) {
	stop := context.AfterFunc(g.closing, func() { _ = conn.Close(websocket.StatusGoingAway, "server shutting down") })
	defer stop()
	timedOut := make(chan struct{})
	timer := time.AfterFunc(g.authWait, func() {
		defer close(timedOut)
		_ = g.writeMessage(ctx, conn, controlMessage{Type: "auth_invalid", Message: "no auth message received in time"})
		_ = conn.Close(websocket.StatusPolicyViolation, "authentication timeout")
	})
	typ, data, err := conn.Read(ctx)
	if !timer.Stop() {
		<-timedOut // let the goodbye finish before the caller drops the connection
		return auth.Claims{}, errAuthTimeout
	}
	if err != nil {
		return auth.Claims{}, homemesh.Errorf(homemesh.KindUnauthenticated, "no auth message received")
	}
	if typ != websocket.MessageText {
		return auth.Claims{}, homemesh.Errorf(homemesh.KindUnauthenticated, "the auth message must be text")
	}
	var m wsMessage
	if err := decodeBytes(data, &m); err != nil {
		return auth.Claims{}, homemesh.Errorf(homemesh.KindUnauthenticated, "expected {\"type\":\"auth\",\"access_token\":…}")
	}
	return g.verify(ctx, m.AccessToken)
}

// errAuthTimeout means the auth timer has already answered and closed.
var errAuthTimeout = errors.New("no auth message in time")

// stream forwards hub messages to conn. It also reads from conn, because
// control frames only get answered while somebody reads, and because a
// client may send a fresh auth message to extend its session before the
// current token expires.
func (g *Gateway) stream(ctx context.Context, conn *websocket.Conn, claims auth.Claims) {
	c, err := g.events.join(g.sendBuffer)
	if err != nil {
		_ = conn.Close(websocket.StatusTryAgainLater, "event stream unavailable")
		return
	}
	defer g.events.leave(c)
	g.metrics.wsClients.Inc()
	defer g.metrics.wsClients.Dec()

	renewed := make(chan auth.Claims, 1)
	readDone := make(chan error, 1)
	var reader sync.WaitGroup
	reader.Go(func() { readDone <- g.readLoop(ctx, conn, claims, renewed) })
	defer func() {
		_ = conn.CloseNow() // ends the reader, if the peer has not already
		reader.Wait()
	}()

	expiry := time.NewTimer(time.Until(claims.ExpiresAt))
	defer expiry.Stop()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()

	for {
		select {
		case data := <-c.send:
			wctx, cancel := context.WithTimeout(ctx, writeWait)
			err := conn.Write(wctx, websocket.MessageText, data)
			cancel()
			if err != nil {
				return
			}
		case <-c.slow:
			g.log.Info("dropping slow WebSocket client", "user", claims.Username)
			g.metrics.wsDropped.Inc()
			_ = conn.Close(websocket.StatusTryAgainLater, "too slow: events were dropped")
			return
		case nc := <-renewed:
			claims = nc
			expiry.Reset(time.Until(claims.ExpiresAt))
		case <-expiry.C:
			_ = conn.Close(websocket.StatusPolicyViolation, "access token expired")
			return
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, writeWait)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case <-readDone:
			return
		case <-g.closing.Done():
			_ = conn.Close(websocket.StatusGoingAway, "server shutting down")
			return
		}
	}
}

// readLoop reads client messages until the connection ends. A valid auth
// message for the same user renews the session; anything else closes it.
func (g *Gateway) readLoop(ctx context.Context, conn *websocket.Conn, claims auth.Claims, renewed chan auth.Claims) error {
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			return err
		}
		var m wsMessage
		if typ == websocket.MessageText {
			err = decodeBytes(data, &m)
		} else {
			err = errors.New("binary message")
		}
		var nc auth.Claims
		if err == nil {
			nc, err = g.verify(ctx, m.AccessToken)
		}
		if err == nil && nc.UserID != claims.UserID {
			err = errors.New("token of another user")
		}
		if err != nil {
			_ = g.writeMessage(ctx, conn, controlMessage{Type: "auth_invalid", Message: "expected a valid auth message for the same user"})
			_ = conn.Close(websocket.StatusPolicyViolation, "invalid message")
			return err
		}
		select {
		case <-renewed: // replace a renewal not yet applied
		default:
		}
		renewed <- nc
		if err := g.writeMessage(ctx, conn, controlMessage{Type: "auth_ok"}); err != nil {
			return err
		}
	}
}

func (g *Gateway) writeMessage(ctx context.Context, conn *websocket.Conn, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeWait)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, data)
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}
