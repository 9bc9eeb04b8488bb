package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/history"
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
	// reverifyEvery is how often a session's token is checked again, so a
	// revocation whose event was missed still ends the session.
	reverifyEvery = 30 * time.Second
)

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

// hub fans the home's state changes and events out to WebSocket clients.
// It subscribes to the bus only while at least one client is connected,
// and encodes each message once for all of them; each client then gets
// only what its role and scope let it see (authz.go).
type hub struct {
	bus  *natsbus.Conn
	reg  *registry.Client
	home string
	log  *slog.Logger

	loadMu sync.Mutex // one index load at a time

	mu      sync.Mutex
	clients map[*client]struct{}
	subs    []*nats.Subscription
	index   *entityIndex
}

// client is one WebSocket session as the hub sees it.
type client struct {
	send chan []byte
	// slow is closed when the hub dropped the client for falling behind.
	slow     chan struct{}
	slowOnce sync.Once
	// revoked is closed when the session's tokens were revoked.
	revoked    chan struct{}
	revokeOnce sync.Once

	// Who the session is, fixed for its lifetime.
	userID string
	viewer
	issuedAt time.Time
}

// viewer is whom an event or state change would be shown to: a role and a
// scope, as the access token states them.
type viewer struct {
	role  string
	scope auth.Scope
}

// entityIndex is what scope decisions need to know about every entity and
// device, kept current from the registry's events.
type entityIndex struct {
	loaded   bool
	entities map[string]homemesh.Entity // only ID, DeviceID and Kind are kept
	rooms    map[string]string          // device ID → room ID
	byDevice map[string]map[string]bool // device ID → its entity IDs
}

func newEntityIndex() *entityIndex {
	return &entityIndex{entities: map[string]homemesh.Entity{}, rooms: map[string]string{}, byDevice: map[string]map[string]bool{}}
}

func (x *entityIndex) putEntity(e homemesh.Entity) {
	x.entities[e.ID] = homemesh.Entity{ID: e.ID, DeviceID: e.DeviceID, Kind: e.Kind}
	if x.byDevice[e.DeviceID] == nil {
		x.byDevice[e.DeviceID] = map[string]bool{}
	}
	x.byDevice[e.DeviceID][e.ID] = true
}

func (x *entityIndex) removeEntity(e homemesh.Entity) {
	delete(x.entities, e.ID)
	delete(x.byDevice[e.DeviceID], e.ID)
}

// sees reports whether scope lets a client see entity id. Unknown
// entities are not seen: deny by default.
func (x *entityIndex) sees(sc auth.Scope, id string) bool {
	e, ok := x.entities[id]
	return ok && inScope(sc, e, x.rooms[e.DeviceID])
}

// seesDevice reports whether scope lets a client see at least one entity
// of device id.
func (x *entityIndex) seesDevice(sc auth.Scope, id string) bool {
	for eid := range x.byDevice[id] {
		if x.sees(sc, eid) {
			return true
		}
	}
	return false
}

// update applies a registry event to the index.
func (x *entityIndex) update(m *meta) {
	switch m.typ {
	case registry.EventEntityAdded, registry.EventEntityUpdated:
		x.putEntity(m.entity)
	case registry.EventEntityRemoved:
		x.removeEntity(m.entity)
	case registry.EventDeviceAdded, registry.EventDeviceUpdated:
		x.rooms[m.device.ID] = m.device.RoomID
	case registry.EventDeviceRemoved:
		delete(x.rooms, m.device.ID)
		delete(x.byDevice, m.device.ID)
	}
}

func newHub(b *natsbus.Conn, reg *registry.Client, home string, log *slog.Logger) *hub {
	return &hub{bus: b, reg: reg, home: home, log: log, clients: map[*client]struct{}{}, index: newEntityIndex()}
}

// join registers a client for claims, subscribing to the bus for the first
// one and loading the entity index for the first client with a scope. When
// it returns, every change published afterwards reaches the client, as far
// as it may see it.
func (h *hub) join(ctx context.Context, buffer int, claims auth.Claims) (*client, error) {
	c := &client{send: make(chan []byte, buffer), slow: make(chan struct{}), revoked: make(chan struct{}),
		userID: claims.UserID, viewer: viewer{role: claims.Role, scope: claims.Scope}, issuedAt: claims.IssuedAt}
	h.mu.Lock()
	if len(h.clients) == 0 {
		if err := h.subscribe(); err != nil {
			h.mu.Unlock()
			return nil, err
		}
	}
	h.clients[c] = struct{}{}
	loaded := h.index.loaded
	h.mu.Unlock()
	if !c.scope.IsZero() && !loaded {
		if err := h.loadIndex(ctx); err != nil {
			h.leave(c)
			return nil, &homemesh.Error{Op: "gateway.events", Kind: homemesh.KindUnavailable, Message: "event stream unavailable", Err: err}
		}
	}
	return c, nil
}

// subscribe subscribes to the home's states and events. h.mu is held.
func (h *hub) subscribe() error {
	nc := h.bus.NATS()
	for _, subject := range []string{bus.StateWildcard(h.home), bus.EventWildcard(h.home)} {
		sub, err := nc.Subscribe(subject, h.dispatch)
		if err != nil {
			h.unsubscribe()
			return &homemesh.Error{Op: "gateway.events", Kind: homemesh.KindUnavailable, Message: "event stream unavailable", Err: err}
		}
		h.subs = append(h.subs, sub)
	}
	// Make sure the server has the subscriptions before the client is
	// told it is connected.
	if err := nc.Flush(); err != nil {
		h.unsubscribe()
		return &homemesh.Error{Op: "gateway.events", Kind: homemesh.KindUnavailable, Message: "event stream unavailable", Err: err}
	}
	return nil
}

// loadIndex fills the index from the registry. The subscriptions already
// run, so what the events told the index meanwhile is newer than the lists
// and wins.
func (h *hub) loadIndex(ctx context.Context) error {
	h.loadMu.Lock()
	defer h.loadMu.Unlock()
	h.mu.Lock()
	loaded, index := h.index.loaded, h.index
	h.mu.Unlock()
	if loaded {
		return nil
	}
	ds, err := h.reg.Devices(ctx)
	if err != nil {
		return err
	}
	es, err := h.reg.Entities(ctx, registry.EntityFilter{})
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.index != index {
		return nil // every client left meanwhile; the next scoped join loads afresh
	}
	for _, d := range ds {
		if _, known := index.rooms[d.ID]; !known {
			index.rooms[d.ID] = d.RoomID
		}
	}
	for _, e := range es {
		if _, known := index.entities[e.ID]; !known {
			index.putEntity(e)
		}
	}
	index.loaded = true
	return nil
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

// unsubscribe drops the subscriptions and, with them, the index, which
// no longer follows the registry. h.mu is held.
func (h *hub) unsubscribe() {
	for _, sub := range h.subs {
		_ = sub.Unsubscribe()
	}
	h.subs = nil
	h.index = newEntityIndex()
}

// dispatch runs on the bus connection's goroutine: it must never block.
func (h *hub) dispatch(msg *nats.Msg) {
	m, ok := h.encode(msg)
	if !ok {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if m.typ == registry.EventEntityRemoved {
		// Decide with the entity still indexed, then forget it.
		defer h.index.update(m)
	} else {
		h.index.update(m)
	}
	for c := range h.clients {
		if m.revocation != nil {
			if c.userID == m.revocation.UserID && c.issuedAt.Before(m.revocation.NotBefore) {
				c.revokeOnce.Do(func() { close(c.revoked) })
			}
			continue
		}
		if !h.index.visible(c.viewer, m, eventRoles[m.typ]) {
			continue
		}
		select {
		case c.send <- m.data:
		default:
			c.slowOnce.Do(func() { close(c.slow) })
		}
	}
}

// visible decides whether v may see m, live on the event stream or stored
// in the history: v's role must be one of roles, those that receive m's
// kind (state changes go to every role), and what m concerns must be in
// v's scope.
func (x *entityIndex) visible(v viewer, m *meta, roles []string) bool {
	if m.typ != stateChanged && !slices.Contains(roles, v.role) {
		return false
	}
	if v.scope.IsZero() {
		return true
	}
	switch m.typ {
	case stateChanged:
		return x.sees(v.scope, m.entityID)
	case registry.EventEntityAdded, registry.EventEntityUpdated, registry.EventEntityRemoved:
		return inScope(v.scope, m.entity, x.rooms[m.entity.DeviceID])
	case registry.EventDeviceAdded, registry.EventDeviceUpdated, registry.EventDeviceRemoved:
		return x.seesDevice(v.scope, m.device.ID)
	}
	// Other kinds, already limited by role: one that names an entity or a
	// device follows the scope as their state changes do.
	switch {
	case m.entityID != "":
		return x.sees(v.scope, m.entityID)
	case m.deviceID != "":
		return x.seesDevice(v.scope, m.deviceID)
	}
	return true
}

// stateChanged is the type of state messages.
const stateChanged = "state_changed"

// meta is a bus message encoded for clients, with what deciding who may
// see it needs.
type meta struct {
	data       []byte
	typ        string // stateChanged or the event kind
	entityID   string // state changes, and stored events that name an entity
	deviceID   string // stored events that name a device
	entity     homemesh.Entity
	device     homemesh.Device
	revocation *auth.Revocation // token revocations, which no client receives
}

// encode turns a bus message into the JSON a client receives, or reports
// that the message is not for clients.
func (h *hub) encode(msg *nats.Msg) (*meta, bool) {
	env, err := bus.DecodeEnvelope(msg.Data)
	if err != nil {
		h.log.Warn("undecodable message", "subject", msg.Subject, "err", err)
		return nil, false
	}
	if env.Home != h.home {
		return nil, false
	}
	m := &meta{typ: env.Type}
	var out any
	if _, _, _, ok := bus.SplitStateSubject(msg.Subject); ok {
		var sc registry.StateChange
		if err := json.Unmarshal(env.Payload, &sc); err != nil {
			h.log.Warn("undecodable state change", "subject", msg.Subject, "err", err)
			return nil, false
		}
		m.typ, m.entityID = stateChanged, sc.EntityID
		out = stateMessage{Type: stateChanged, EntityID: sc.EntityID, DeviceID: sc.DeviceID,
			State: sc.State, OldState: sc.Old, Time: env.Time}
	} else {
		if msg.Subject != bus.EventSubject(h.home, env.Type) {
			return nil, false
		}
		_, forwarded := eventRoles[env.Type]
		if env.Type != auth.EventTokensRevoked && !forwarded {
			return nil, false
		}
		if err := m.decodePayload(env.Payload); err != nil {
			h.log.Warn("undecodable event", "subject", msg.Subject, "err", err)
			return nil, false
		}
		if m.revocation != nil {
			return m, true
		}
		payload := env.Payload
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		out = eventMessage{Type: env.Type, Data: payload, Time: env.Time}
	}
	if m.data, err = json.Marshal(out); err != nil {
		h.log.Warn("cannot encode event", "subject", msg.Subject, "err", err)
		return nil, false
	}
	return m, true
}

// decodePayload decodes what visibility decisions need from the payload of
// an event of kind m.typ: the entity or device of the registry's events,
// the revocation of auth's. Payloads of other kinds are not read.
func (m *meta) decodePayload(payload json.RawMessage) error {
	var target any
	switch m.typ {
	case auth.EventTokensRevoked:
		m.revocation = &auth.Revocation{}
		target = m.revocation
	case registry.EventEntityAdded, registry.EventEntityUpdated, registry.EventEntityRemoved:
		target = &m.entity
	case registry.EventDeviceAdded, registry.EventDeviceUpdated, registry.EventDeviceRemoved:
		target = &m.device
	default:
		return nil
	}
	return json.Unmarshal(payload, target)
}

// storedEventMeta is what deciding who may see a stored event needs. An
// event whose payload does not decode is shown to nobody.
func storedEventMeta(e history.EventRecord) (*meta, bool) {
	m := &meta{typ: e.Kind, entityID: e.EntityID, deviceID: e.DeviceID}
	if err := m.decodePayload(e.Data); err != nil {
		return nil, false
	}
	return m, true
}

// serveEvents upgrades to a WebSocket, authenticates the client with the
// Authorization header or a first auth message, then streams events until
// the client leaves, falls behind, its token expires or the gateway stops.
func (g *Gateway) serveEvents(w http.ResponseWriter, r *http.Request) {
	// A header that is present must be valid: refuse before upgrading, so
	// non-browser clients get a plain 401.
	var (
		claims auth.Claims
		token  string
	)
	headerAuth := r.Header.Get("Authorization") != ""
	if !headerAuth && !isUpgrade(r) {
		// Without an upgrade, there is no channel for an auth message.
		writeError(w, r, g.log, homemesh.Errorf(homemesh.KindUnauthenticated, "an access token is required"))
		return
	}
	if headerAuth {
		var err error
		token, err = bearer(r)
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
		claims, token, err = g.authMessage(ctx, conn)
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
	g.stream(ctx, conn, session{claims: claims, token: token})
}

// session is who a WebSocket serves: the verified claims and the token
// they came from, re-verified while the session lasts.
type session struct {
	claims auth.Claims
	token  string
}

// sameAccess reports whether two sessions' claims grant the same: a
// session's role and scope are fixed for its lifetime.
func sameAccess(a, b auth.Claims) bool {
	return a.UserID == b.UserID && a.Role == b.Role && slices.Equal(a.Scope.Rooms, b.Scope.Rooms) &&
		slices.Equal(a.Scope.Kinds, b.Scope.Kinds) && slices.Equal(a.Scope.Entities, b.Scope.Entities)
}

// authMessage waits up to authWait for {"type":"auth","access_token":…}.
// On timeout it answers auth_invalid and closes the connection itself:
// cancelling a read would drop the connection without a word.
func (g *Gateway) authMessage(ctx context.Context, conn *websocket.Conn) (auth.Claims, string, error) {
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
		return auth.Claims{}, "", errAuthTimeout
	}
	if err != nil {
		return auth.Claims{}, "", homemesh.Errorf(homemesh.KindUnauthenticated, "no auth message received")
	}
	if typ != websocket.MessageText {
		return auth.Claims{}, "", homemesh.Errorf(homemesh.KindUnauthenticated, "the auth message must be text")
	}
	var m wsMessage
	if err := decodeBytes(data, &m); err != nil {
		return auth.Claims{}, "", homemesh.Errorf(homemesh.KindUnauthenticated, "expected {\"type\":\"auth\",\"access_token\":…}")
	}
	claims, err := g.verify(ctx, m.AccessToken)
	return claims, m.AccessToken, err
}

// errAuthTimeout means the auth timer has already answered and closed.
var errAuthTimeout = errors.New("no auth message in time")

// stream forwards hub messages to conn. It also reads from conn, because
// control frames only get answered while somebody reads, and because a
// client may send a fresh auth message to extend its session before the
// current token expires. The session ends when its token is revoked: at
// once on the revocation event, or at the next periodic re-check.
func (g *Gateway) stream(ctx context.Context, conn *websocket.Conn, s session) {
	c, err := g.events.join(ctx, g.sendBuffer, s.claims)
	if err != nil {
		_ = conn.Close(websocket.StatusTryAgainLater, "event stream unavailable")
		return
	}
	defer g.events.leave(c)
	g.metrics.wsClients.Inc()
	defer g.metrics.wsClients.Dec()

	renewed := make(chan session, 1)
	readDone := make(chan error, 1)
	var reader sync.WaitGroup
	reader.Go(func() { readDone <- g.readLoop(ctx, conn, s.claims, renewed) })
	defer func() {
		_ = conn.CloseNow() // ends the reader, if the peer has not already
		reader.Wait()
	}()

	expiry := time.NewTimer(time.Until(s.claims.ExpiresAt))
	defer expiry.Stop()
	ping := time.NewTicker(pingEvery)
	defer ping.Stop()
	reverify := time.NewTicker(reverifyEvery)
	defer reverify.Stop()
	revoked := func() {
		g.log.Info("ending a WebSocket session: its token was revoked", "user", s.claims.Username)
		_ = conn.Close(websocket.StatusPolicyViolation, "access token revoked")
	}

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
			g.log.Info("dropping slow WebSocket client", "user", s.claims.Username)
			g.metrics.wsDropped.Inc()
			_ = conn.Close(websocket.StatusTryAgainLater, "too slow: events were dropped")
			return
		case ns := <-renewed:
			s = ns
			expiry.Reset(time.Until(s.claims.ExpiresAt))
		case <-c.revoked:
			revoked()
			return
		case <-reverify.C:
			vctx, cancel := context.WithTimeout(ctx, writeWait)
			_, err := g.verify(vctx, s.token)
			cancel()
			if homemesh.ErrorKind(err) == homemesh.KindUnauthenticated {
				revoked()
				return
			}
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
// message for the same user with the same role and scope renews the
// session; anything else closes it.
func (g *Gateway) readLoop(ctx context.Context, conn *websocket.Conn, claims auth.Claims, renewed chan session) error {
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
		if err == nil && !sameAccess(nc, claims) {
			err = errors.New("token of another user, role or scope")
		}
		if err != nil {
			_ = g.writeMessage(ctx, conn, controlMessage{Type: "auth_invalid", Message: "expected a valid auth message for the same user, role and scope; reconnect to change them"})
			_ = conn.Close(websocket.StatusPolicyViolation, "invalid message")
			return err
		}
		select {
		case <-renewed: // replace a renewal not yet applied
		default:
		}
		renewed <- session{claims: nc, token: m.AccessToken}
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
