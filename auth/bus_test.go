package auth

import (
	"context"
	"crypto/rand"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go"
)

// calloutBus is a NATS server that admits clients through a running auth
// service's callout, as a split deployment's server does.
type calloutBus struct {
	srv *natsbus.Server
	// loader is a user outside the callout that may use every subject,
	// standing in for publishers in tests.
	loader natsbus.Identity
	keys   *BusKeys
	in     *instance
	logs   *hmtest.LogBuffer
}

func newCalloutBus(t *testing.T) *calloutBus {
	t.Helper()
	key := make([]byte, SecretKeySize)
	rand.Read(key)
	keys, err := NewBusKeys(key, testHome)
	if err != nil {
		t.Fatal(err)
	}
	authCred, _ := keys.Credential(ServiceName)
	perms, err := ServiceBusPermissions(testHome, ServiceName)
	if err != nil {
		t.Fatal(err)
	}
	loader := natsbus.Identity{User: "loader", Password: rand.Text()}
	srv, err := natsbus.StartServer(natsbus.ServerConfig{
		StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
		Callout: &natsbus.Callout{Issuer: keys.Issuer(), Users: []natsbus.User{{
			Name: authCred.User(), Password: authCred.Secret,
			Publish: perms.Publish, Subscribe: perms.Subscribe, Responses: perms.Responses,
		}, {Name: loader.User, Password: loader.Password, Publish: []string{">"}, Subscribe: []string{">"}}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	conn, err := srv.ConnectAs("auth", natsbus.Identity{User: authCred.User(), Password: authCred.Secret, InboxPrefix: bus.InboxPrefix(testHome, ServiceName)})
	if err != nil {
		t.Fatalf("auth connects with its own identity: %v", err)
	}
	t.Cleanup(conn.Close)
	logs := &hmtest.LogBuffer{}
	svc, err := New(Config{DataDir: t.TempDir(), Home: testHome, SecretKey: key}, Deps{Bus: conn, Log: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stopCallout, err := svc.ServeBusCallout()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopCallout)
	stop := hmtest.Run(t, "auth", svc.Run)
	<-svc.Ready()
	return &calloutBus{srv: srv, loader: loader, keys: keys, in: &instance{svc: svc, client: NewClient(conn), conn: conn, stop: stop}, logs: logs}
}

// violations collects the asynchronous errors the server reports to a
// client, which is how NATS tells a client it broke its permissions.
type violations struct {
	mu   sync.Mutex
	errs []string
}

func (v *violations) add(_ *nats.Conn, _ *nats.Subscription, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.errs = append(v.errs, err.Error())
}

func (v *violations) has(t *testing.T, op, subject string) {
	t.Helper()
	want := strings.ToLower("permissions violation for " + op + ` to "` + subject + `"`)
	hmtest.WaitFor(t, 5*time.Second, want, func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return slices.ContainsFunc(v.errs, func(e string) bool { return strings.Contains(strings.ToLower(e), want) })
	})
}

// connect dials b as cred over TCP, recording permission violations.
func (b *calloutBus) connect(t *testing.T, cred BusCredential) (*nats.Conn, *violations, error) {
	t.Helper()
	v := &violations{}
	nc, err := nats.Connect(b.srv.ClientURL(), nats.UserInfo(cred.User(), cred.Secret),
		nats.CustomInboxPrefix(bus.InboxPrefix(cred.Home, cred.Service)), nats.ErrorHandler(v.add))
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, v, err
}

func TestBusCalloutGivesEachServiceItsPermissions(t *testing.T) {
	b := newCalloutBus(t)
	gwCred, _ := b.keys.Credential("gateway")
	gw, gwViolations, err := b.connect(t, gwCred)
	if err != nil {
		t.Fatalf("gateway with its credential: %v", err)
	}
	edgeCred, _ := b.keys.Credential("edge")
	edge, edgeViolations, err := b.connect(t, edgeCred)
	if err != nil {
		t.Fatalf("edge with its credential: %v", err)
	}

	// Allowed: the gateway calls auth's public keys and gets the reply on
	// its own inbox; the edge serves commands the gateway sends.
	msg, err := gw.Request(subject(VerbKeys), []byte(`{}`), 5*time.Second)
	if err != nil || !strings.Contains(string(msg.Data), testHome) {
		t.Fatalf("gateway calls keys: %v", err)
	}
	cmdSub, err := edge.Subscribe(bus.CommandWildcard(testHome), func(m *nats.Msg) { _ = m.Respond([]byte(`{}`)) })
	if err != nil {
		t.Fatal(err)
	}
	_ = edge.Flush()
	if _, err := gw.Request(bus.CommandSubject(testHome, "lamp", "light"), []byte(`{}`), 5*time.Second); err != nil {
		t.Fatalf("gateway commands through the edge: %v", err)
	}
	_ = cmdSub.Unsubscribe()

	// Denied: each is reported to the client as a permissions violation.
	for _, s := range []string{
		subject(VerbAuthenticateMQTT),                       // the edge's verb, not the gateway's
		bus.StateSubject(testHome, "lamp", "light"),         // only the registry publishes state
		bus.ServiceSubject("registry", "entities.put"),      // only the edge defines entities
		bus.Prefix + "." + testHome + ".mqtt.zigbee2mqtt.x", // only the edge bridges MQTT
	} {
		if err := gw.Publish(s, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		gwViolations.has(t, "publish", s)
	}
	for _, s := range []string{subject(VerbCreateCredential), bus.StateSubject(testHome, "lamp", "light"), bus.ServiceSubject("registry", "devices.list")} {
		if err := edge.Publish(s, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		edgeViolations.has(t, "publish", s)
	}
	for _, s := range []string{bus.ServiceSubject(ServiceName, ">"), "_INBOX.>", bus.InboxPrefix(testHome, "gateway") + ".>"} {
		if _, err := edge.SubscribeSync(s); err != nil {
			t.Fatal(err)
		}
		edgeViolations.has(t, "subscription", s)
	}

	// The server keeps serving the allowed subjects after violations.
	if _, err := gw.Request(subject(VerbKeys), []byte(`{}`), 5*time.Second); err != nil {
		t.Fatalf("gateway after violations: %v", err)
	}
}

func TestBusCalloutRefusesUnknownIdentities(t *testing.T) {
	b := newCalloutBus(t)
	good, _ := b.keys.Credential("registry")
	otherKey := make([]byte, SecretKeySize)
	rand.Read(otherKey)
	otherHome, _ := NewBusKeys(otherKey, "home2")
	foreign, _ := otherHome.Credential("registry")
	otherSecret, _ := NewBusKeys(otherKey, testHome)
	forged, _ := otherSecret.Credential("registry")
	authCred, _ := otherSecret.Credential(ServiceName)

	for _, tc := range []struct {
		name string
		cred BusCredential
	}{
		{"wrong secret", BusCredential{Home: testHome, Service: "registry", Secret: forged.Secret}},
		{"another service's secret", BusCredential{Home: testHome, Service: "gateway", Secret: good.Secret}},
		{"another home", foreign},
		{"unknown service", BusCredential{Home: testHome, Service: "root", Secret: good.Secret}},
		{"auth without its password", authCred},
		{"no identity", BusCredential{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := natsbus.DialAs(b.srv.ClientURL(), "intruder", natsbus.Identity{User: tc.cred.User(), Password: tc.cred.Secret}, nil)
			if tc.cred == (BusCredential{}) {
				_, err = natsbus.DialAs(b.srv.ClientURL(), "intruder", natsbus.Identity{}, nil)
			}
			if homemesh.ErrorKind(err) != homemesh.KindUnauthenticated {
				t.Fatalf("connect = %v, want refused as unauthenticated", err)
			}
		})
	}
	if _, err := natsbus.DialAs(b.srv.ClientURL(), "registry", natsbus.Identity{User: good.User(), Password: good.Secret}, nil); err != nil {
		t.Fatalf("the right credential after refusals: %v", err)
	}
	logs := b.logs.String()
	if !strings.Contains(logs, "bus connection refused") {
		t.Errorf("refusals are not logged:\n%s", logs)
	}
	for _, secret := range []string{good.Secret, forged.Secret, foreign.Secret} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a bus secret was logged")
		}
	}
}

func TestBusRequestOutsidePermissionsIsPermissionError(t *testing.T) {
	b := newCalloutBus(t)
	cred, _ := b.keys.Credential("gateway")
	conn, err := natsbus.DialAs(b.srv.ClientURL(), "gateway", natsbus.Identity{User: cred.User(), Password: cred.Secret, InboxPrefix: bus.InboxPrefix(testHome, "gateway")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = conn.Request(ctx, subject(VerbAuthenticateMQTT), mqttAuthRequest{}, nil)
	if homemesh.ErrorKind(err) != homemesh.KindPermission {
		t.Fatalf("request outside the permissions = %v, want kind permission", err)
	}
}

func TestBusCredentialsAreDerivedPerHomeAndService(t *testing.T) {
	key := make([]byte, SecretKeySize)
	rand.Read(key)
	a, _ := NewBusKeys(key, testHome)
	again, _ := NewBusKeys(key, testHome)
	other, _ := NewBusKeys(key, "home2")
	seen := map[string]bool{}
	for _, s := range BusServices {
		c, err := a.Credential(s)
		if err != nil {
			t.Fatal(err)
		}
		c2, _ := again.Credential(s)
		c3, _ := other.Credential(s)
		if c != c2 {
			t.Errorf("%s: the same key and home derive different credentials", s)
		}
		if c.Secret == c3.Secret || seen[c.Secret] {
			t.Errorf("%s: secret shared with another home or service", s)
		}
		seen[c.Secret] = true
		parsed, err := ParseBusCredential(c.Encode() + "\n")
		if err != nil || parsed != c {
			t.Errorf("%s: round trip = %+v, %v", s, parsed, err)
		}
	}
	if a.Issuer() != again.Issuer() || a.Issuer() == other.Issuer() || !strings.HasPrefix(a.Issuer(), "A") {
		t.Errorf("issuer keys: %s %s %s", a.Issuer(), again.Issuer(), other.Issuer())
	}
	if _, err := a.Credential("root"); homemesh.ErrorField(err) != "service" {
		t.Errorf("unknown service: %v", err)
	}
	if _, err := NewBusKeys(key[:5], testHome); homemesh.ErrorField(err) != "secret_key" {
		t.Errorf("short key: %v", err)
	}
}

func TestParseBusCredentialNamesTheField(t *testing.T) {
	for _, text := range []string{"", "hmbus1.home1.edge", "hmbus2.home1.edge.AAAA", "hmbus1.Home!.edge.AAAA",
		"hmbus1.home1.root.AAAA", "hmbus1.home1.edge.short", "hmbus1.home1.edge." + strings.Repeat("A", 43) + ".x"} {
		_, err := ParseBusCredential(text)
		if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "nats-credential" {
			t.Errorf("ParseBusCredential(%q) = %v, want an invalid nats-credential", text, err)
		}
	}
}

// TestEveryVerbHasItsCallers keeps the bus permissions in step with the
// service: a verb nobody is allowed to call would be dead, and a verb added
// without deciding who calls it must fail here rather than in production.
func TestEveryVerbHasItsCallers(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, f := range pkgs["auth"].Files {
		ast.Inspect(f, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range vs.Names {
				if strings.HasPrefix(name.Name, "Verb") && i < len(vs.Values) {
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
						v, _ := strconv.Unquote(lit.Value)
						verbs = append(verbs, v)
					}
				}
			}
			return true
		})
	}
	if len(verbs) == 0 {
		t.Fatal("found no verbs")
	}
	for _, v := range verbs {
		callers, ok := verbCallers[v]
		if !ok || len(callers) == 0 {
			t.Errorf("verb %q: say in verbCallers which services may call it", v)
		}
		for _, c := range callers {
			if !slices.Contains(BusServices, c) {
				t.Errorf("verb %q: unknown caller %q", v, c)
			}
		}
	}
}

func TestServiceBusPermissionsAreNarrow(t *testing.T) {
	for _, s := range BusServices {
		p, err := ServiceBusPermissions(testHome, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, subj := range append(slices.Clone(p.Publish), p.Subscribe...) {
			if s != ServiceName && (subj == ">" || strings.HasPrefix(subj, "$JS.API.>") || subj == "_INBOX.>" || subj == "hm.>") {
				t.Errorf("%s may use %q", s, subj)
			}
			if strings.Contains(subj, "home2") || (strings.HasPrefix(subj, "hm.") && !strings.HasPrefix(subj, "hm.svc.") && !strings.HasPrefix(subj, "hm."+testHome+".")) {
				t.Errorf("%s may use %q outside its home", s, subj)
			}
		}
		if !slices.Contains(p.Subscribe, bus.InboxPrefix(testHome, s)+".>") {
			t.Errorf("%s cannot read its replies", s)
		}
	}
	if _, err := ServiceBusPermissions(testHome, "root"); homemesh.ErrorField(err) != "service" {
		t.Errorf("unknown service: %v", err)
	}
	var e *homemesh.Error
	if _, err := ServiceBusPermissions("Bad Home", "edge"); !errors.As(err, &e) {
		t.Errorf("bad home: %v", err)
	}
}

// TestRegistryVerbsAndEventsHaveTheirRules keeps the registry's part of the
// table in step with the registry, which auth may not import: its verbs
// and event kinds are read from its source.
func TestRegistryVerbsAndEventsHaveTheirRules(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../registry/subjects.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var verbs, events []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			lit, ok := vs.Values[min(i, len(vs.Values)-1)].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				continue
			}
			v, _ := strconv.Unquote(lit.Value)
			switch {
			case strings.HasPrefix(name.Name, "verb"):
				verbs = append(verbs, v)
			case strings.HasPrefix(name.Name, "Event"):
				events = append(events, v)
			}
		}
		return true
	})
	if len(verbs) == 0 || len(events) == 0 {
		t.Fatalf("found verbs %v and events %v", verbs, events)
	}
	for _, v := range verbs {
		if len(registryCallers[v]) == 0 {
			t.Errorf("registry verb %q: say in registryCallers which services may call it", v)
		}
	}
	for _, e := range events {
		if !slices.Contains(registryEvents, e) {
			t.Errorf("registry event %q: add it to registryEvents", e)
		}
	}
}
