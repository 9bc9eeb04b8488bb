package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

const testHome = "home1"

// fakeAuth is an Authenticator over a fixed table of credentials and of
// certificate identities (subject common names).
type fakeAuth struct {
	mu    sync.Mutex
	creds map[string]fakeCred
	certs map[string][]string // identity → allow
}

func (a *fakeAuth) AuthenticateCert(_ context.Context, der []byte) (Grant, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Grant{}, homemesh.Errorf(homemesh.KindUnauthenticated, "bad certificate")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	allow, ok := a.certs[cert.Subject.CommonName]
	if !ok {
		return Grant{}, homemesh.Errorf(homemesh.KindUnauthenticated, "unknown identity")
	}
	return Grant{Username: cert.Subject.CommonName, Allow: allow}, nil
}

// revokeCert forgets a certificate identity, as auth does on revocation.
func (a *fakeAuth) revokeCert(identity string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.certs, identity)
}

type fakeCred struct {
	password string
	allow    []string
}

func (a *fakeAuth) AuthenticateMQTT(_ context.Context, username, password, _ string) (Grant, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.creds[username]
	if !ok || c.password != password {
		return Grant{}, homemesh.Errorf(homemesh.KindUnauthenticated, "bad credentials")
	}
	return Grant{Username: username, Allow: c.allow}, nil
}

func newAuth() *fakeAuth {
	return &fakeAuth{creds: map[string]fakeCred{
		"admin":  {"admin-pw", []string{"#"}},
		"z2m":    {"z2m-pw", []string{"zigbee2mqtt/#", "homeassistant/#"}},
		"dev-a":  {"a-pw", []string{"dev/a/#"}},
		"dev-b":  {"b-pw", []string{"dev/b/#"}},
		"living": {"l-pw", []string{"living room/#"}},
	}, certs: map[string][]string{
		"dev-cert": {"homemesh/dev-cert/#"},
	}}
}

type testBroker struct {
	*Broker
	stop func()
}

// mqttOnBus subscribes on a connection of its own to every MQTT message
// the bridge puts on the bus for testHome, buffering up to n, until the
// test ends. The subscription is flushed, so a message published after it
// returns is caught.
func mqttOnBus(t testing.TB, s *natsbus.Server, n int) <-chan *nats.Msg {
	t.Helper()
	nc := bustest.Conn(t, s).NATS()
	msgs := make(chan *nats.Msg, n)
	sub, err := nc.ChanSubscribe(bus.MQTTWildcard(testHome), msgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	nc.Flush()
	return msgs
}

type brokerOpt func(*Config, *Deps)

// startBroker runs a broker on a random loopback port against s and stops
// it when the test ends (or when stop is called).
func startBroker(t testing.TB, s *natsbus.Server, opts ...brokerOpt) *testBroker {
	t.Helper()
	cfg := Config{Home: testHome, InstanceID: "edge-" + homemesh.RandomID(6), TCP: "127.0.0.1:0"}
	deps := Deps{Bus: bustest.Conn(t, s), Auth: newAuth(), Log: hmtest.Logger(t)}
	for _, o := range opts {
		o(&cfg, &deps)
	}
	b, err := New(cfg, deps)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := b.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	select {
	case <-b.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("broker not ready after 10s")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("Run did not return 20s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return &testBroker{Broker: b, stop: stop}
}

func withMetrics(reg prometheus.Registerer) brokerOpt {
	return func(_ *Config, d *Deps) { d.Metrics = reg }
}

type clientOpt func(*paho.ClientOptions)

func persistentSession(o *paho.ClientOptions) { o.SetCleanSession(false) }

// connect opens a paho MQTT 3.1.1 client; it returns the connect error
// rather than failing so refusals can be tested.
func connect(t testing.TB, addr, user, pass, id string, opts ...clientOpt) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetUsername(user).SetPassword(pass).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).SetOrderMatters(true)
	for _, f := range opts {
		f(o)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func mustConnect(t testing.TB, addr, user, pass, id string, opts ...clientOpt) paho.Client {
	t.Helper()
	c, err := connect(t, addr, user, pass, id, opts...)
	if err != nil {
		t.Fatalf("connect %s as %s: %v", id, user, err)
	}
	return c
}

func withTLS(tc *tls.Config, addr string) clientOpt {
	return func(o *paho.ClientOptions) {
		o.Servers = nil
		o.AddBroker("ssl://" + addr).SetTLSConfig(tc)
	}
}

func wait(t testing.TB, tok paho.Token) {
	t.Helper()
	if !tok.WaitTimeout(10 * time.Second) {
		t.Fatal("MQTT operation timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("MQTT operation: %v", err)
	}
}

// recorder collects messages in arrival order.
type recorder struct {
	mu   sync.Mutex
	msgs []string // "topic|payload"
	qos  []byte
}

func (r *recorder) handler(_ paho.Client, m paho.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m.Topic()+"|"+string(m.Payload()))
	r.qos = append(r.qos, m.Qos())
}

func (r *recorder) natsHandler(home string) nats.MsgHandler {
	return func(m *nats.Msg) {
		topic, err := bus.MQTTTopic(home, m.Subject)
		if err != nil {
			topic = "!" + m.Subject
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.msgs = append(r.msgs, topic+"|"+string(m.Data))
	}
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func (r *recorder) has(msg string) bool {
	for _, m := range r.all() {
		if m == msg {
			return true
		}
	}
	return false
}

func (r *recorder) waitFor(t testing.TB, msg string) {
	t.Helper()
	hmtest.WaitFor(t, 10*time.Second, fmt.Sprintf("message %q", msg), func() bool { return r.has(msg) })
}

// settle publishes a marker on topic through c and waits until r has it.
// mochi sends SUBACK before it collects retained messages, so a retained
// message published in that window reaches a new subscriber twice; tests
// that count deliveries settle their subscriptions first.
func settle(t testing.TB, c paho.Client, topic string, r *recorder) {
	t.Helper()
	wait(t, c.Publish(topic, 1, false, "settle"))
	r.waitFor(t, topic+"|settle")
}

func subscribe(t testing.TB, c paho.Client, filter string, qos byte, r *recorder) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, r.handler)
	wait(t, tok)
	return tok.(*paho.SubscribeToken).Result()[filter]
}

type pahoOptions = paho.ClientOptions

func cmpSortStrings(less func(a, b string) bool) cmp.Option { return cmpopts.SortSlices(less) }
