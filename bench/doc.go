// Package bench holds homemesh's load generators. Each one drives a system
// under test over its real protocol, measures what arrives at the far end and
// returns a Result that the command line prints as JSON.
//
// Ingest is the MQTT ingest benchmark: a fleet of simulated devices, one MQTT
// connection each, publishes small JSON state messages that carry their send
// time, and a Sink observes each delivery at the other side (a subscriber on
// the same broker, or a homemesh hub's registry). Latency is delivery time
// minus the send time in the payload, so publisher and sink must share a
// clock: run both on one machine.
//
// Every run is bounded: by a message count or a duration, and by a drain
// period for stragglers. Latencies go into a fixed-size histogram, so memory
// does not grow with the number of messages.
package bench
