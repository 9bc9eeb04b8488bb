package auth

import (
	"fmt"
	"slices"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/bus"
)

// BusPermissions is what one service may do on the bus: the subjects it may
// publish on and subscribe to (NATS wildcards allowed), and whether it may
// answer the requests it receives whatever their reply subject. Anything
// not listed is refused by the NATS server with a permissions violation.
type BusPermissions struct {
	Publish   []string
	Subscribe []string
	Responses bool
}

// verbCallers says which services may call each auth verb. Every verb the
// service serves must appear here (a test checks), so a new verb is closed
// to everyone until somebody decides who calls it.
var verbCallers = map[string][]string{
	VerbOnboard:               {"gateway"},
	VerbLogin:                 {"gateway"},
	VerbRefresh:               {"gateway"},
	VerbKeys:                  {"gateway"},
	VerbCreateCredential:      {"gateway"},
	VerbDeleteCredential:      {"gateway"},
	VerbListCredentials:       {"gateway"},
	VerbAuthenticateMQTT:      {"edge"},
	VerbServerCert:            {"edge", "gateway"},
	VerbAuditAppend:           {"registry", "edge", "gateway"},
	VerbRevocations:           {"gateway"},
	VerbAuditList:             {"gateway"},
	VerbLogout:                {"gateway"},
	VerbRevokeAll:             {"gateway"},
	VerbCreatePairing:         {"gateway"},
	VerbClaimPairing:          {"gateway"},
	VerbAuthenticateCert:      {"edge"},
	VerbMeshHubCert:           {"border"},
	VerbMeshNodes:             {"gateway"},
	VerbMeshRevokeNode:        {"gateway"},
	VerbMeshRevoked:           {"border"},
	VerbPasskeyRegisterBegin:  {"gateway"},
	VerbPasskeyRegisterFinish: {"gateway"},
	VerbPasskeyLoginBegin:     {"gateway"},
	VerbPasskeyLoginFinish:    {"gateway"},
	VerbPasskeyList:           {"gateway"},
	VerbPasskeyRemove:         {"gateway"},
	VerbCreateToken:           {"gateway"},
	VerbListTokens:            {"gateway"},
	VerbDeleteToken:           {"gateway"},
	VerbVerifyToken:           {"gateway"},
	VerbCreateUser:            {"gateway"},
	VerbListUsers:             {"gateway"},
	VerbGetUser:               {"gateway"},
	VerbUpdateUser:            {"gateway"},
	VerbDeleteUser:            {"gateway"},
	VerbChangePassword:        {"gateway"},
	VerbRotateKeys:            {"gateway"},
	VerbMFAStatus:             {"gateway"},
	VerbMFATOTPBegin:          {"gateway"},
	VerbMFATOTPConfirm:        {"gateway"},
	VerbMFATOTPDisable:        {"gateway"},
}

// registryCallers says which services may call each registry verb.
var registryCallers = map[string][]string{
	"devices.list":    {"gateway"},
	"devices.get":     {"gateway"},
	"devices.put":     {"edge", "border"},
	"entities.list":   {"gateway"},
	"entities.get":    {"gateway"},
	"entities.put":    {"edge", "border"},
	"entities.remove": {"edge", "border"},
	"devices.update":  {"gateway"},
	"rooms.list":      {"gateway"},
	"rooms.create":    {"gateway"},
	"rooms.remove":    {"gateway"},
}

// borderCallers says which services may call each verb of the mesh border
// (mesh/border's VerbTopology).
var borderCallers = map[string][]string{
	"topology": {"gateway"},
}

// historyCallers says which services may call each history verb.
var historyCallers = map[string][]string{
	"history": {"gateway"},
	"events":  {"gateway"},
}

// registryEvents are the event kinds the registry publishes.
var registryEvents = []string{"entity_added", "entity_updated", "entity_removed",
	"device_added", "device_updated", "device_removed", "room_added", "room_removed"}

// The JetStream streams and buckets each service opens, all of one home.
// Names follow the owning packages (registry.ReportsStream,
// history.StatesStream, TelemetryStream and EventsStream, edge's discovery
// bucket, the broker's BucketName); auth cannot import them, as services
// never import one another.
func reportsStream(home string) string   { return "REPORTS_" + home }
func statesStream(home string) string    { return "STATES_" + home }
func telemetryStream(home string) string { return "TELEMETRY_" + home }
func eventsStream(home string) string    { return "EVENTS_" + home }

func registryBuckets(home string) []string {
	return []string{"hm_" + home + "_rooms", "hm_" + home + "_devices", "hm_" + home + "_entities", "hm_" + home + "_states"}
}

func edgeBuckets(home string) []string {
	return []string{"hm_" + home + "_discovery", "hm_" + home + "_mqtt_retained",
		"hm_" + home + "_mqtt_sessions", "hm_" + home + "_mqtt_inflight"}
}

// borderBuckets are the mesh border's buckets: what it learned of each
// agent (mesh/border's AgentsBucket).
func borderBuckets(home string) []string {
	return []string{"hm_" + home + "_mesh_agents"}
}

// jsAPI is the JetStream API prefix.
const jsAPI = "$JS.API."

// streamSubjects lets a service declare a stream (create it, or update it
// to the settings it expects) and read its settings.
func streamSubjects(stream string) []string {
	return []string{jsAPI + "STREAM.INFO." + stream, jsAPI + "STREAM.CREATE." + stream, jsAPI + "STREAM.UPDATE." + stream}
}

// bucketSubjects lets a service open, read, write and watch one key-value
// bucket: the stream behind it, direct and stored gets, the ordered
// consumers of watches (and their flow control), and the key subjects.
func bucketSubjects(bucket string) []string {
	stream := "KV_" + bucket
	return append(streamSubjects(stream),
		jsAPI+"DIRECT.GET."+stream, jsAPI+"DIRECT.GET."+stream+".>",
		jsAPI+"STREAM.MSG.GET."+stream,
		jsAPI+"CONSUMER.CREATE."+stream, jsAPI+"CONSUMER.CREATE."+stream+".>",
		jsAPI+"CONSUMER.INFO."+stream+".>", jsAPI+"CONSUMER.DELETE."+stream+".>",
		"$JS.FC."+stream+".>",
		"$KV."+bucket+".>",
	)
}

// durableConsumer lets a service create (or update) its durable pull
// consumer on stream, read its settings, pull messages from it and
// acknowledge them, and nothing of any other consumer.
func durableConsumer(stream, consumer string) []string {
	return []string{
		jsAPI + "CONSUMER.CREATE." + stream + "." + consumer, jsAPI + "CONSUMER.CREATE." + stream + "." + consumer + ".>",
		jsAPI + "CONSUMER.INFO." + stream + "." + consumer,
		jsAPI + "CONSUMER.MSG.NEXT." + stream + "." + consumer,
		"$JS.ACK." + stream + "." + consumer + ".>",
	}
}

// rpc returns the request subjects of service's verbs that caller may use.
func rpc(service, caller string, callers map[string][]string) []string {
	var out []string
	for verb, who := range callers {
		if slices.Contains(who, caller) {
			out = append(out, bus.ServiceSubject(service, verb))
		}
	}
	return out
}

// ServiceBusPermissions returns what service may do on home's bus. It is
// derived from what each service does, and docs/subjects.md shows it as a
// table: every service may subscribe to its own reply subjects
// (bus.InboxPrefix) and read JetStream's account information; beyond that
// each gets exactly its own subjects, streams and buckets and the verbs it
// calls.
func ServiceBusPermissions(home, service string) (BusPermissions, error) {
	if err := homemesh.CheckID("home", home); err != nil {
		return BusPermissions{}, err
	}
	var p BusPermissions
	p.Subscribe = []string{bus.InboxPrefix(home, service) + ".>"}
	p.Publish = []string{jsAPI + "INFO"}
	switch service {
	case ServiceName:
		// auth signs every other service's permissions, so confining its
		// own JetStream use to named buckets would protect nothing; it
		// still cannot serve or send anything but its own verbs and events.
		p.Subscribe = append(p.Subscribe, bus.ServiceSubject(ServiceName, ">"), calloutSubject)
		// Only auth appends to the audit log's stream: no other service
		// can write a record, only ask auth to.
		p.Publish = append(p.Publish, bus.EventWildcard(home), audit.Subject(home),
			jsAPI+">", "$KV.>", "$JS.ACK.>", "$JS.FC.>")
		p.Responses = true
	case "registry":
		consumer := "registry_" + home
		p.Subscribe = append(p.Subscribe, bus.ServiceSubject("registry", ">"))
		p.Publish = append(p.Publish, bus.StateWildcard(home), bus.StateLogSubject(home))
		for _, kind := range registryEvents {
			p.Publish = append(p.Publish, bus.EventSubject(home, kind))
		}
		p.Publish = append(p.Publish, streamSubjects(reportsStream(home))...)
		p.Publish = append(p.Publish, durableConsumer(reportsStream(home), consumer)...)
		for _, b := range registryBuckets(home) {
			p.Publish = append(p.Publish, bucketSubjects(b)...)
		}
		p.Publish = append(p.Publish, rpc(ServiceName, service, verbCallers)...)
		p.Responses = true
	case "edge":
		mqtt := bus.Prefix + "." + home + ".mqtt.>"
		p.Subscribe = append(p.Subscribe, mqtt, bus.CommandWildcard(home), bus.EventSubject(home, EventCredentialRevoked))
		p.Publish = append(p.Publish, mqtt, bus.Prefix+"."+home+".report.>", bus.TelemetrySubject(home, "*"))
		p.Publish = append(p.Publish, streamSubjects(reportsStream(home))...)
		for _, b := range edgeBuckets(home) {
			p.Publish = append(p.Publish, bucketSubjects(b)...)
		}
		p.Publish = append(p.Publish, rpc("registry", service, registryCallers)...)
		p.Publish = append(p.Publish, rpc(ServiceName, service, verbCallers)...)
		p.Responses = true
	case "border":
		// The mesh border is the edge of the mesh: it registers agents'
		// devices, reports their states, serves the home's commands (and
		// answers only those of mesh devices) and its own verbs. It hears
		// of revoked mesh nodes, to cut them off at once.
		p.Subscribe = append(p.Subscribe, bus.CommandWildcard(home), bus.ServiceSubject("border", ">"),
			bus.EventSubject(home, EventMeshNodeRevoked))
		p.Publish = append(p.Publish, bus.Prefix+"."+home+".report.>")
		p.Publish = append(p.Publish, streamSubjects(reportsStream(home))...)
		for _, b := range borderBuckets(home) {
			p.Publish = append(p.Publish, bucketSubjects(b)...)
		}
		p.Publish = append(p.Publish, rpc("registry", service, registryCallers)...)
		p.Publish = append(p.Publish, rpc(ServiceName, service, verbCallers)...)
		p.Responses = true
	case "history":
		// History stores what the home's streams carry: it declares them
		// (the registry's too, as every process that consumes them does)
		// and shares one durable consumer per stream with the home's other
		// history processes. It publishes nothing but answers.
		consumer := "history_" + home
		p.Subscribe = append(p.Subscribe, bus.ServiceSubject("history", ">"))
		for _, stream := range []string{reportsStream(home), statesStream(home), telemetryStream(home), eventsStream(home)} {
			p.Publish = append(p.Publish, streamSubjects(stream)...)
		}
		for _, stream := range []string{statesStream(home), telemetryStream(home), eventsStream(home)} {
			p.Publish = append(p.Publish, durableConsumer(stream, consumer)...)
		}
		p.Responses = true
	case "gateway":
		p.Subscribe = append(p.Subscribe, bus.StateWildcard(home), bus.EventWildcard(home))
		p.Publish = append(p.Publish, bus.CommandWildcard(home))
		p.Publish = append(p.Publish, rpc("history", service, historyCallers)...)
		p.Publish = append(p.Publish, rpc("registry", service, registryCallers)...)
		p.Publish = append(p.Publish, rpc("border", service, borderCallers)...)
		p.Publish = append(p.Publish, rpc(ServiceName, service, verbCallers)...)
	default:
		return BusPermissions{}, homemesh.Invalid("service", "unknown service %q (known: %s)", service, strings.Join(BusServices, ", "))
	}
	slices.Sort(p.Publish)
	slices.Sort(p.Subscribe)
	return p, nil
}

// calloutSubject is where the NATS server asks who a connecting client is.
const calloutSubject = "$SYS.REQ.USER.AUTH"

// String lists the permissions, one rule per line, for logs and docs.
func (p BusPermissions) String() string {
	var b strings.Builder
	for _, s := range p.Publish {
		fmt.Fprintf(&b, "pub %s\n", s)
	}
	for _, s := range p.Subscribe {
		fmt.Fprintf(&b, "sub %s\n", s)
	}
	if p.Responses {
		b.WriteString("responses\n")
	}
	return b.String()
}
