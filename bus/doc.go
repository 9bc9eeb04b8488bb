// Package bus defines how homemesh services talk: the subject names, the
// message envelope, how errors travel on request/reply, and the reversible
// mapping between MQTT topics and bus subjects.
//
// Subjects always carry the home:
//
//	hm.<home>.state.<device>.<entity>   state changes (JetStream stream STATE)
//	hm.<home>.cmd.<device>.<entity>     commands, request/reply
//	hm.<home>.event.<kind>              events
//	hm.<home>.telemetry.<device>        raw telemetry
//	hm.<home>.mqtt.<escaped topic>      MQTT traffic bridged by the edge
//	hm.svc.<service>.<verb>             service RPC, queue groups per service
//
// docs/subjects.md is the reference; this package is the one place the
// strings are built. The package is transport-neutral: bus/natsbus carries
// the messages.
package bus
