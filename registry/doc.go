// Package registry is the service that owns a home's devices, entities and
// their current state.
//
// Connectivity services (the MQTT edge, the mesh) announce devices and
// entities with Client.PutDevice and Client.PutEntity, and report state with
// Client.Report, which publishes a homemesh.StateUpdate on the durable
// REPORTS stream. The registry consumes that stream, merges each report into
// the entity's state, stores the result in a JetStream key-value bucket and
// only then acknowledges the report, so an acknowledged report is never lost.
// Every resulting change is published on bus.StateSubject, where the gateway
// and automations pick it up, and each batch's changes are logged together
// on bus.StateLogSubject, which the stream STATES_<home> keeps for history.
//
// Definitions and states live in JetStream KV buckets, so any number of
// registry processes can serve reads (each keeps an in-memory copy fed by a
// KV watch) and the hub keeps everything across restarts.
package registry
