// Package agent is the device side of the mesh: a mesh node (mesh/meshnode)
// that speaks for one device and its entities to the home's hubs, with
// the protocol of mesh/meshapp. `homemesh agent` runs it.
//
// # Pairing
//
// Pair generates the node's static X25519 key, claims a setup code at the
// hub's gateway (POST /api/v1/pairings/claim with mesh_key and mesh_role)
// and stores what the home returns in a state directory:
//
//	| file         | holds                                                     |
//	|--------------|-----------------------------------------------------------|
//	| mesh.key     | the static X25519 private key, 32 raw bytes, mode 0600   |
//	| node.crt     | the node certificate (PEM) from the home CA               |
//	| ca.crt       | the home CA (PEM): the mesh's trust root                  |
//	| pairing.json | home, node id, role, expiry and the home's hubs          |
//
// and, once a hub told it of any, revoked-nodes (RevokedFile): the nodes
// the home revoked, one id per line. pairing.json is written last, so a directory is paired exactly when it
// exists. The setup code is a bearer secret: whoever presents it first
// gets a certificate of the home. Pair therefore sends it only to a hub
// it has authenticated: over HTTPS, with the hub's CA given by the person
// (its PEM, or its SHA-256 fingerprint), or, only when asked for, trusting
// the certificate the hub presents on first use and printing its CA's
// fingerprint to be compared afterwards; over plain HTTP only to a
// loopback address. A CA given up front must also be the CA that issued
// the node certificate.
//
// # Running
//
// An Agent takes the device's Entities and runs beside a Node. It
//
//   - announces the device and all entities, with their states, to the
//     nearest hub (Node.NearestHub) as soon as there is one, again whenever
//     the nearest hub changes, and to any hub that sends resync;
//   - polls each entity's State every PollInterval (or at once after
//     Changed) and sends a state message for each change, and every
//     TelemetryInterval sends every state, so that a hub that lost an
//     announcement asks for it again;
//   - carries out commands, with a timeout, and answers each with a
//     result, followed by the entity's new state;
//   - reports its node's live links (Node.Neighbours) to the hub in a
//     links message after each announcement, when a neighbour comes or
//     goes or a link's cost moves by more than a quarter, and at least
//     every minute, never twice within 5 s, so that the hub can show
//     links it is not part of;
//   - refuses, from the moment a hub says so (revoked), the nodes the home
//     revoked: its node takes down its links and channels with them and
//     refuses them since (Node.Revoke), and the list is kept in the state
//     directory and applied before the node runs at the next start.
//
// Command, resync and revoked are accepted only from peers whose
// certificate role is hub: the link layer has verified that certificate, so a router or
// leaf of the home cannot command another node's entities. Announce,
// state, result and links travel the other way and are dropped when
// received.
//
// Simulated entities (NewTemperature, NewSwitch, NewDoor) make a device
// without hardware; real ones implement Entity.
package agent
