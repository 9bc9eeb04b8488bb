// Package meshapp is the application protocol between a mesh device agent
// (mesh/agent, `homemesh agent`) and a hub (mesh/border): what travels
// inside the end-to-end channels of mesh/link once a route exists.
//
// # Messages
//
// Every message is one JSON object of at most MaxMessageSize bytes whose
// "type" says what it is:
//
//	| type     | direction   | fields                                                   |
//	|----------|-------------|----------------------------------------------------------|
//	| announce | agent → hub | device {name, manufacturer, model, sw_version},          |
//	|          |             | entities [{unique_id, kind, name, device_class,          |
//	|          |             |   unit_of_measurement, state_class, capabilities,        |
//	|          |             |   state {value, attributes, available, time}}]           |
//	| state    | agent → hub | unique_id, value, attributes, available, time            |
//	| command  | hub → agent | id, unique_id, command, params                           |
//	| result   | agent → hub | id, error ("" or absent: done)                           |
//	| resync   | hub → agent | (none)                                                   |
//	| revoked  | hub → agent | nodes ["<node id hex>", …]                               |
//	| links    | agent → hub | neighbours [{node_id, role, cost, rx_cost, tx_cost,      |
//	|          |             |   quality}]                                              |
//
// An agent sends announce when it starts, when a hub sends resync (the hub
// does not know it, e.g. after a restart) and when its nearest hub changes;
// state whenever a value changes and periodically as telemetry; result
// for every command, echoing its id; links after each announce, when a
// neighbour comes or goes or a link's cost moves by more than a quarter,
// and at least every minute, but at most once in 5 s, so that the hub
// can show the links between other nodes, which distance-vector routing
// does not tell it. A neighbour is a live link of the sender: its node id,
// the role its certificate gives it (hub, router or leaf), the link's ETX
// costs (0 to 65535, 256 for a perfect link: cost, and rx_cost and
// tx_cost for its two directions as the sender sees them) and its quality
// (256 / cost, 0 to 1). A hub sends revoked, listing every
// node the home revoked (in several messages past MaxRevoked), to each
// agent it knows when a node is revoked and whenever an agent announces;
// the agent refuses those nodes from then on and remembers them, and a
// message only ever adds to that list. capabilities is homemesh.Capabilities
// with its JSON names; command and params are homemesh.Command's name and
// params (Home Assistant's service names and fields without the domain).
// value is a JSON scalar (null, boolean, number or string), as Home
// Assistant states are; time is RFC 3339 and may be omitted by a node
// without a clock, in which case the hub uses the time of arrival.
//
// # Strictness and limits
//
// Decode refuses anything Encode would not write: an unknown type, an
// unknown or misspelled field (names match exactly, unlike encoding/json),
// a missing required field, a value of the wrong JSON type, or one past a
// limit: MaxMessageSize bytes per message (the end-to-end payload limit
// of mesh/link, just under 64 KiB), MaxEntities entities per
// device, MaxRevoked nodes per revoked message and MaxNeighbours per
// links message (each node id in its lower-case form, once), ids (unique_id, command, device_class,
// state_class) of at most
// MaxIDLen characters of [a-z0-9_-], and bounded text, attribute and
// parameter sizes. Its errors are *homemesh.Error of kind invalid whose
// Field is the dotted path of the culprit ("entities[3].unique_id"), so a
// hub can log exactly what an agent got wrong. Encode validates the same
// way, so an agent finds its own mistakes before sending them.
//
// # Identity
//
// The protocol carries no device or node id: the hub derives the device id
// from the end-to-end source node id, which the link layer authenticated
// (DeviceID: "mesh-<node id hex>"), so an agent can only ever speak for its
// own device. Entities become "<device id>-<unique_id>" (EntityID). A
// links message names the sender's neighbours, never the sender, so an
// agent can only report its own links. An
// agent accepts command, resync and revoked only from a peer whose
// certificate role is hub; that check belongs to the agent, since this package sees
// only bytes.
package meshapp
