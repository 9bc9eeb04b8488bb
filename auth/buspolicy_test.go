package auth

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// connectService connects to b's server as service, through the callout.
func (b *calloutBus) connectService(t *testing.T, service string) *natsbus.Conn {
	t.Helper()
	cred, err := b.keys.Credential(service)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.srv.ConnectAs(service, natsbus.Identity{User: cred.User(), Password: cred.Secret, InboxPrefix: bus.InboxPrefix(testHome, service)})
	if err != nil {
		t.Fatalf("%s connects with its credential: %v", service, err)
	}
	t.Cleanup(c.Close)
	return c
}

// TestHistoryBusPermissions runs, as the history service's bus identity,
// everything the service does: declare the streams, create its durable
// consumers, pull and acknowledge, and answer the gateway's queries. What
// it must not do is refused.
func TestHistoryBusPermissions(t *testing.T) {
	b := newCalloutBus(t)
	hist := b.connectService(t, "history")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	streams := []struct{ name, subjects, filter, publish string }{
		{statesStream(testHome), bus.StateWildcard(testHome), bus.StateWildcard(testHome), bus.StateSubject(testHome, "lamp", "light")},
		{telemetryStream(testHome), bus.TelemetryWildcard(testHome), bus.TelemetryWildcard(testHome), bus.TelemetrySubject(testHome, "lamp")},
		{eventsStream(testHome), bus.EventWildcard(testHome), bus.EventWildcard(testHome), bus.EventSubject(testHome, "device_added")},
	}
	consumer := "history_" + testHome
	loader, err := b.srv.ConnectAs("loader", b.loader)
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close()
	for _, s := range streams {
		if _, err := hist.Stream(ctx, jetstream.StreamConfig{Name: s.name, Subjects: []string{s.subjects}, Storage: jetstream.FileStorage}); err != nil {
			t.Fatalf("history declares %s: %v", s.name, err)
		}
		cons, err := hist.JetStream().CreateOrUpdateConsumer(ctx, s.name, jetstream.ConsumerConfig{
			Durable: consumer, FilterSubject: s.filter, AckPolicy: jetstream.AckExplicitPolicy,
		})
		if err != nil {
			t.Fatalf("history creates its consumer on %s: %v", s.name, err)
		}
		if _, err := loader.JetStream().Publish(ctx, s.publish, []byte(`{}`)); err != nil {
			t.Fatalf("publish on %s: %v", s.publish, err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatalf("history pulls from %s: %v", s.name, err)
		}
		var got []jetstream.Msg
		for m := range batch.Messages() {
			got = append(got, m)
		}
		if len(got) != 1 || got[0].Subject() != s.publish {
			t.Fatalf("%s: pulled %d messages (err %v)", s.name, len(got), batch.Error())
		}
		if err := got[0].DoubleAck(ctx); err != nil {
			t.Fatalf("history acknowledges on %s: %v", s.name, err)
		}
	}

	// It answers the gateway's queries, and only the gateway's.
	sub, err := hist.Handle(bus.ServiceSubject("history", "history"), "history", func(context.Context, *nats.Msg) (any, error) {
		return map[string]string{"entity_id": "lamp_light"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := hist.Flush(); err != nil {
		t.Fatal(err)
	}
	var reply map[string]string
	if err := b.connectService(t, "gateway").Request(ctx, bus.ServiceSubject("history", "history"), struct{}{}, &reply); err != nil || reply["entity_id"] != "lamp_light" {
		t.Fatalf("the gateway asks history: %v %v", reply, err)
	}
	err = b.connectService(t, "edge").Request(ctx, bus.ServiceSubject("history", "history"), struct{}{}, nil)
	if homemesh.ErrorKind(err) != homemesh.KindPermission {
		t.Errorf("the edge asks history: %v, want a permission error", err)
	}

	// Refused: another consumer, another home's consumer, publishing
	// state, and calling another service.
	short := func() context.Context {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		t.Cleanup(cancel)
		return c
	}
	for _, name := range []string{"registry_" + testHome, "history_home2"} {
		if _, err := hist.JetStream().CreateOrUpdateConsumer(short(), statesStream(testHome), jetstream.ConsumerConfig{Durable: name, AckPolicy: jetstream.AckExplicitPolicy}); err == nil {
			t.Errorf("history created consumer %s", name)
		}
	}
	if _, err := hist.JetStream().Publish(short(), bus.StateSubject(testHome, "lamp", "light"), []byte(`{}`)); err == nil {
		t.Error("history published a state change")
	}
	if err := hist.Request(short(), bus.ServiceSubject("registry", "entities.list"), struct{}{}, nil); homemesh.ErrorKind(err) != homemesh.KindPermission {
		t.Errorf("history calls the registry: %v, want a permission error", err)
	}
}

func TestHistoryPermissionsAreItsOwn(t *testing.T) {
	p, err := ServiceBusPermissions(testHome, "history")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"$JS.API.CONSUMER.MSG.NEXT.STATES_" + testHome + ".history_" + testHome,
		"$JS.API.CONSUMER.MSG.NEXT.TELEMETRY_" + testHome + ".history_" + testHome,
		"$JS.API.CONSUMER.MSG.NEXT.EVENTS_" + testHome + ".history_" + testHome,
		"$JS.ACK.EVENTS_" + testHome + ".history_" + testHome + ".>",
		"$JS.API.STREAM.CREATE.TELEMETRY_" + testHome,
	} {
		if !slices.Contains(p.Publish, want) {
			t.Errorf("history may not publish %s", want)
		}
	}
	if !slices.Contains(p.Subscribe, "hm.svc.history.>") || !p.Responses {
		t.Errorf("history cannot serve its verbs: %v", p)
	}
	for _, s := range p.Publish {
		if len(s) > 3 && s[:3] == "hm." {
			t.Errorf("history may publish %s", s)
		}
		// Every stream it may touch is its home's own.
		if strings.HasPrefix(s, "$JS.API.STREAM.") && !strings.HasSuffix(s, "_"+testHome) {
			t.Errorf("history may manage the stream behind %s", s)
		}
	}
	gw, err := ServiceBusPermissions(testHome, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"history", "events"} {
		if !slices.Contains(gw.Publish, bus.ServiceSubject("history", verb)) {
			t.Errorf("the gateway may not call history.%s", verb)
		}
	}
}

// TestBorderPermissionsAreItsOwn checks the mesh border's bus identity: it
// registers and reports for mesh devices, serves commands and its own verbs,
// keeps its one bucket, and calls nothing else of the registry.
func TestBorderPermissionsAreItsOwn(t *testing.T) {
	p, err := ServiceBusPermissions(testHome, "border")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		bus.ServiceSubject("registry", "devices.put"), bus.ServiceSubject("registry", "entities.put"),
		"hm." + testHome + ".report.>", "$JS.API.STREAM.INFO.REPORTS_" + testHome,
		"$KV.hm_" + testHome + "_mesh_agents.>",
	} {
		if !slices.Contains(p.Publish, want) {
			t.Errorf("border may not publish %s", want)
		}
	}
	for _, deny := range []string{
		bus.ServiceSubject("registry", "entities.list"), bus.CommandWildcard(testHome), bus.StateWildcard(testHome),
		"$KV.hm_" + testHome + "_discovery.>",
	} {
		if slices.Contains(p.Publish, deny) {
			t.Errorf("border may publish %s", deny)
		}
	}
	if !slices.Contains(p.Subscribe, bus.CommandWildcard(testHome)) || !slices.Contains(p.Subscribe, "hm.svc.border.>") || !p.Responses {
		t.Errorf("border cannot serve commands and its verbs: %v", p)
	}
	gw, err := ServiceBusPermissions(testHome, "gateway")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(gw.Publish, bus.ServiceSubject("border", "topology")) {
		t.Error("the gateway may not ask the border for the topology")
	}
}
