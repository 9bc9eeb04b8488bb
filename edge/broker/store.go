package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats.go/jetstream"
)

// Bucket name suffixes; the full name is "hm_<home>_mqtt_<suffix>".
const (
	bucketRetained = "retained"
	bucketSessions = "sessions"
	bucketInflight = "inflight"
)

// BucketName returns the JetStream key-value bucket holding one kind of
// MQTT state ("retained", "sessions" or "inflight") of a home.
func BucketName(home, kind string) string { return "hm_" + home + "_mqtt_" + kind }

// sessionRecord is the stored form of a persistent session: the client, its
// subscriptions and the grant its deliveries are checked against.
type sessionRecord struct {
	Client        storage.Client         `json:"client"`
	Subscriptions []storage.Subscription `json:"subscriptions"`
	Grant         struct {
		Username string   `json:"username"`
		Allow    []string `json:"allow"`
	} `json:"grant"`
}

// retainedKey escapes a topic into a key: its bus subject without the home
// prefix, which is injective and uses only characters keys allow.
func retainedKey(home, topic string) (string, error) {
	s, err := bus.MQTTSubject(home, topic)
	if err != nil {
		return "", err
	}
	return s[len(bus.MQTTPrefix(home)):], nil
}

func sessionKey(clientID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(clientID))
}

func inflightKey(clientID string, id uint16) string {
	return sessionKey(clientID) + "." + strconv.Itoa(int(id))
}

// persistent reports whether a client's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Net.Inline {
		return false
	}
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opDeletePrefix
)

type kvOp struct {
	kind   opKind
	bucket int // index into store.kvs
	key    string
	value  []byte
}

// store is a mochi storage hook over JetStream key-value buckets, modelled
// on mochi's own redis and badger hooks. Reads happen once, at start; writes
// go through one ordered writer goroutine so that client goroutines never
// wait for JetStream.
type store struct {
	mqtt.HookBase
	home  string
	conn  *natsbus.Conn
	log   *slog.Logger
	grant func(clientID string) (string, []string)

	kvs     [3]jetstream.KeyValue  // retained, sessions, inflight
	present [3]map[string]struct{} // keys known to exist; owned by the writer after open

	loadedRetained []storage.Message
	loadedSessions []sessionRecord
	loadedInflight []storage.Message

	mu      sync.RWMutex
	closed  bool
	ops     chan kvOp
	done    chan struct{}
	stopped sync.Once
}

const (
	kvRetained = iota
	kvSessions
	kvInflight
)

func newStore(home string, conn *natsbus.Conn, log *slog.Logger, grant func(string) (string, []string)) *store {
	return &store{home: home, conn: conn, log: log, grant: grant, ops: make(chan kvOp, 4096), done: make(chan struct{})}
}

// open creates the buckets, reads their contents and starts the writer.
func (s *store) open(ctx context.Context) error {
	names := [3]string{bucketRetained, bucketSessions, bucketInflight}
	for i, n := range names {
		kv, err := s.conn.KeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      BucketName(s.home, n),
			Description: "homemesh MQTT " + n + " of home " + s.home,
			History:     1,
			Storage:     jetstream.FileStorage,
		})
		if err != nil {
			return err
		}
		s.kvs[i] = kv
		s.present[i] = map[string]struct{}{}
	}
	err := s.loadAll(ctx, kvRetained, func(key string, v []byte) error {
		var m storage.Message
		if err := json.Unmarshal(v, &m); err != nil {
			return err
		}
		s.loadedRetained = append(s.loadedRetained, m)
		return nil
	})
	if err == nil {
		err = s.loadAll(ctx, kvSessions, func(key string, v []byte) error {
			var r sessionRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Client.ID == "" || sessionKey(r.Client.ID) != key {
				return errors.New("client ID does not match its key")
			}
			s.loadedSessions = append(s.loadedSessions, r)
			return nil
		})
	}
	if err == nil {
		err = s.loadAll(ctx, kvInflight, func(key string, v []byte) error {
			var m storage.Message
			if err := json.Unmarshal(v, &m); err != nil {
				return err
			}
			s.loadedInflight = append(s.loadedInflight, m)
			return nil
		})
	}
	if err != nil {
		return &homemesh.Error{Op: "broker.load", Kind: homemesh.KindUnavailable, Message: "cannot load MQTT state from the bus", Err: err}
	}
	go s.write()
	return nil
}

// loadAll reads every live entry of a bucket. A malformed entry is logged
// and skipped rather than keeping the broker down.
func (s *store) loadAll(ctx context.Context, bucket int, each func(key string, v []byte) error) error {
	w, err := s.kvs[bucket].WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.kvs[bucket].Bucket(), err)
	}
	defer w.Stop()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("watch %s ended early", s.kvs[bucket].Bucket())
			}
			if e == nil {
				return nil // initial values done
			}
			if err := each(e.Key(), e.Value()); err != nil {
				s.log.Warn("skipping malformed stored MQTT state", "bucket", e.Bucket(), "key", e.Key(), "err", err)
				continue
			}
			s.present[bucket][e.Key()] = struct{}{}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// releaseLoaded drops what mochi has already copied in.
func (s *store) releaseLoaded() {
	s.loadedRetained, s.loadedSessions, s.loadedInflight = nil, nil, nil
}

func (s *store) enqueue(op kvOp) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	s.ops <- op
}

// write applies queued operations in order. Runs of operations already
// queued are coalesced per key, and deletes of keys that do not exist are
// skipped, so a QoS 1 message acknowledged quickly costs little.
func (s *store) write() {
	defer close(s.done)
	pending := map[[2]string]kvOp{}
	var order [][2]string
	flush := func() {
		for _, k := range order {
			s.apply(pending[k])
		}
		clear(pending)
		order = order[:0]
	}
	add := func(op kvOp) {
		if op.kind == opDeletePrefix {
			flush()
			s.apply(op)
			return
		}
		k := [2]string{strconv.Itoa(op.bucket), op.key}
		if _, ok := pending[k]; !ok {
			order = append(order, k)
		}
		pending[k] = op
	}
	for op := range s.ops {
		add(op)
	drain:
		for len(order) < 1024 {
			select {
			case next, ok := <-s.ops:
				if !ok {
					break drain
				}
				add(next)
			default:
				break drain
			}
		}
		flush()
	}
}

func (s *store) apply(op kvOp) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, present := s.kvs[op.bucket], s.present[op.bucket]
	var err error
	switch op.kind {
	case opPut:
		if _, err = kv.Put(ctx, op.key, op.value); err == nil {
			present[op.key] = struct{}{}
		}
	case opDelete:
		if _, ok := present[op.key]; !ok {
			return
		}
		if err = kv.Delete(ctx, op.key); err == nil {
			delete(present, op.key)
		}
	case opDeletePrefix:
		for key := range present {
			if strings.HasPrefix(key, op.key) {
				if err = kv.Delete(ctx, key); err != nil {
					break
				}
				delete(present, key)
			}
		}
	}
	if err != nil {
		s.log.Error("mqtt state not persisted", "bucket", kv.Bucket(), "err", err)
	}
}

// ID names the hook.
func (s *store) ID() string { return "homemesh-jetstream" }

// Provides lists the hook methods the store implements.
func (s *store) Provides(b byte) bool {
	switch b {
	case mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribed, mqtt.OnUnsubscribed,
		mqtt.OnRetainMessage, mqtt.OnRetainedExpired, mqtt.OnQosPublish, mqtt.OnQosComplete,
		mqtt.OnQosDropped, mqtt.OnClientExpired,
		mqtt.StoredClients, mqtt.StoredSubscriptions, mqtt.StoredInflightMessages, mqtt.StoredRetainedMessages:
		return true
	}
	return false
}

// Init accepts no configuration.
func (s *store) Init(config any) error {
	if config != nil {
		return mqtt.ErrInvalidConfigType
	}
	return nil
}

// Stop writes everything queued, giving up after a bound so a dead bus
// cannot hold shutdown forever.
func (s *store) Stop() error {
	s.stopped.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.ops)
		s.mu.Unlock()
	})
	if s.kvs[0] == nil {
		return nil // never opened: no writer
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(15 * time.Second):
		return errors.New("mqtt state writer did not finish in 15s")
	}
}

func (s *store) putSession(cl *mqtt.Client) {
	props := cl.Properties.Props.Copy(false)
	var r sessionRecord
	r.Client = storage.Client{
		ID:              cl.ID,
		T:               storage.ClientKey,
		Remote:          cl.Net.Remote,
		Listener:        cl.Net.Listener,
		Username:        cl.Properties.Username,
		Clean:           cl.Properties.Clean,
		ProtocolVersion: cl.Properties.ProtocolVersion,
		Properties: storage.ClientProperties{
			SessionExpiryInterval:     props.SessionExpiryInterval,
			SessionExpiryIntervalFlag: props.SessionExpiryIntervalFlag,
			AuthenticationMethod:      props.AuthenticationMethod,
			RequestProblemInfo:        props.RequestProblemInfo,
			RequestProblemInfoFlag:    props.RequestProblemInfoFlag,
			RequestResponseInfo:       props.RequestResponseInfo,
			ReceiveMaximum:            props.ReceiveMaximum,
			TopicAliasMaximum:         props.TopicAliasMaximum,
			User:                      props.User,
			MaximumPacketSize:         props.MaximumPacketSize,
		},
		Will: storage.ClientWill(cl.Properties.Will),
	}
	for _, sub := range cl.State.Subscriptions.GetAll() {
		r.Subscriptions = append(r.Subscriptions, storage.Subscription{
			T: storage.SubscriptionKey, Client: cl.ID, Filter: sub.Filter, Qos: sub.Qos,
			Identifier: sub.Identifier, NoLocal: sub.NoLocal,
			RetainHandling: sub.RetainHandling, RetainAsPublished: sub.RetainAsPublished,
		})
	}
	r.Grant.Username, r.Grant.Allow = s.grant(cl.ID)
	data, err := json.Marshal(r)
	if err != nil {
		s.log.Error("encode mqtt session", "client_id", cl.ID, "err", err)
		return
	}
	s.enqueue(kvOp{kind: opPut, bucket: kvSessions, key: sessionKey(cl.ID), value: data})
}

// deleteSession forgets a client's stored session and queued messages.
func (s *store) deleteSession(clientID string) {
	s.enqueue(kvOp{kind: opDelete, bucket: kvSessions, key: sessionKey(clientID)})
	s.enqueue(kvOp{kind: opDeletePrefix, bucket: kvInflight, key: sessionKey(clientID) + "."})
}

// OnSessionEstablished stores a persistent session, or drops a stored one
// that a clean session replaces.
func (s *store) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	if persistent(cl) {
		s.putSession(cl)
		return
	}
	s.deleteSession(cl.ID)
}

// OnDisconnect drops a session that ends with its connection.
func (s *store) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !expire || cl.IsTakenOver() || errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || cl.Net.Inline {
		return
	}
	s.deleteSession(cl.ID)
}

// OnSubscribed rewrites a persistent session with its new subscriptions.
func (s *store) OnSubscribed(cl *mqtt.Client, _ packets.Packet, _ []byte) {
	if persistent(cl) {
		s.putSession(cl)
	}
}

// OnUnsubscribed rewrites a live persistent session. Unsubscriptions of a
// closing client are part of its teardown, handled by OnDisconnect.
func (s *store) OnUnsubscribed(cl *mqtt.Client, _ packets.Packet) {
	if persistent(cl) && !cl.Closed() {
		s.putSession(cl)
	}
}

// OnRetainMessage stores or deletes a retained message. Messages bridged in
// from another edge instance were stored by that instance.
func (s *store) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if cl.ID == edgeBridgeID && cl.Net.Inline {
		return
	}
	key, err := retainedKey(s.home, pk.TopicName)
	if err != nil {
		s.log.Warn("retained message not persisted", "topic", pk.TopicName, "err", err)
		return
	}
	if r == -1 || len(pk.Payload) == 0 {
		s.enqueue(kvOp{kind: opDelete, bucket: kvRetained, key: key})
		return
	}
	data, err := json.Marshal(toStored(cl.ID, pk))
	if err != nil {
		s.log.Error("encode retained message", "topic", pk.TopicName, "err", err)
		return
	}
	s.enqueue(kvOp{kind: opPut, bucket: kvRetained, key: key, value: data})
}

// OnRetainedExpired deletes an expired retained message.
func (s *store) OnRetainedExpired(topic string) {
	if key, err := retainedKey(s.home, topic); err == nil {
		s.enqueue(kvOp{kind: opDelete, bucket: kvRetained, key: key})
	}
}

// OnQosPublish stores a QoS 1/2 message sent to a persistent session until
// it is acknowledged. Acknowledgements of inbound messages are not stored.
func (s *store) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, _ int) {
	if !persistent(cl) || pk.FixedHeader.Type != packets.Publish {
		return
	}
	m := toStored(cl.ID, pk)
	m.T, m.ID, m.Sent, m.PacketID = storage.InflightKey, inflightKey(cl.ID, pk.PacketID), sent, pk.PacketID
	data, err := json.Marshal(m)
	if err != nil {
		s.log.Error("encode inflight message", "client_id", cl.ID, "err", err)
		return
	}
	s.enqueue(kvOp{kind: opPut, bucket: kvInflight, key: m.ID, value: data})
}

// OnQosComplete forgets an acknowledged message.
func (s *store) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if persistent(cl) {
		s.enqueue(kvOp{kind: opDelete, bucket: kvInflight, key: inflightKey(cl.ID, pk.PacketID)})
	}
}

// OnQosDropped forgets a dropped message.
func (s *store) OnQosDropped(cl *mqtt.Client, pk packets.Packet) { s.OnQosComplete(cl, pk) }

// OnClientExpired forgets an expired session.
func (s *store) OnClientExpired(cl *mqtt.Client) { s.deleteSession(cl.ID) }

// StoredClients returns the persistent sessions' clients.
func (s *store) StoredClients() ([]storage.Client, error) {
	out := make([]storage.Client, 0, len(s.loadedSessions))
	for _, r := range s.loadedSessions {
		out = append(out, r.Client)
	}
	return out, nil
}

// StoredSubscriptions returns the persistent sessions' subscriptions.
func (s *store) StoredSubscriptions() ([]storage.Subscription, error) {
	var out []storage.Subscription
	for _, r := range s.loadedSessions {
		for _, sub := range r.Subscriptions {
			sub.Client = r.Client.ID
			out = append(out, sub)
		}
	}
	return out, nil
}

// StoredInflightMessages returns the messages queued for persistent sessions.
func (s *store) StoredInflightMessages() ([]storage.Message, error) { return s.loadedInflight, nil }

// StoredRetainedMessages returns the retained messages.
func (s *store) StoredRetainedMessages() ([]storage.Message, error) { return s.loadedRetained, nil }

func toStored(clientID string, pk packets.Packet) storage.Message {
	props := pk.Properties.Copy(false)
	return storage.Message{
		T:           storage.RetainedKey,
		Client:      clientID,
		Origin:      pk.Origin,
		FixedHeader: pk.FixedHeader,
		TopicName:   pk.TopicName,
		Payload:     pk.Payload,
		Created:     pk.Created,
		Properties: storage.MessageProperties{
			PayloadFormat:          props.PayloadFormat,
			PayloadFormatFlag:      props.PayloadFormatFlag,
			MessageExpiryInterval:  props.MessageExpiryInterval,
			ContentType:            props.ContentType,
			ResponseTopic:          props.ResponseTopic,
			CorrelationData:        props.CorrelationData,
			SubscriptionIdentifier: props.SubscriptionIdentifier,
			User:                   props.User,
		},
	}
}

// RetainedPayload returns the retained message of topic from the shared
// retained store, for a service that starts listening to a topic after its
// retained message arrived (the edge binding a newly discovered entity).
func RetainedPayload(ctx context.Context, conn *natsbus.Conn, home, topic string) ([]byte, bool, error) {
	key, err := retainedKey(home, topic)
	if err != nil {
		return nil, false, err
	}
	kv, err := conn.JetStream().KeyValue(ctx, BucketName(home, bucketRetained))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var m storage.Message
	if err := json.Unmarshal(e.Value(), &m); err != nil {
		return nil, false, fmt.Errorf("retained message of %q: %w", topic, err)
	}
	return m.Payload, len(m.Payload) > 0, nil
}
