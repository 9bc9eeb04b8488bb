// Package edge is the communication service for MQTT devices. It runs the
// embedded MQTT broker (edge/broker), understands devices through the Home
// Assistant discovery convention (edge/discovery, edge/hatemplate), and
// turns their traffic into registry definitions and state reports; in the
// other direction it turns validated commands into exactly the MQTT payload
// each device expects.
//
// Everything an edge process knows is shared through the bus: discovery
// configs live in a JetStream KV bucket that every edge instance watches, MQTT
// traffic is bridged through NATS, and incoming messages and commands are
// processed by queue groups. Any number of edge processes can serve one
// home, and a restarted edge picks up where it left off.
package edge
