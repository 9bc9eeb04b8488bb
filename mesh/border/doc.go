// Package border is the hub's side of the mesh: the service that runs a
// mesh node with the hub role and makes the agents behind it look, to the
// rest of homemesh, exactly like MQTT devices behind the edge.
//
// # What it does
//
//   - An agent's announce (mesh/meshapp) becomes a device (id
//     meshapp.DeviceID of the agent's authenticated node id, Source "mesh")
//     and its entities in the registry, and their states become reports.
//     Entities the agent no longer announces are removed.
//   - A state becomes a registry report. A state from an agent the border
//     does not know (it restarted, or the agent's announce was lost) makes
//     it send resync, at most once per ResyncInterval per agent, so the
//     agent announces again.
//   - Commands for mesh entities (bus.CommandSubject with a mesh device id)
//     are served in the queue group "border", like the edge serves MQTT
//     ones; commands for other devices are left to the edge and never
//     answered here. A command is checked against the entity's announced
//     commands, sent end to end to the agent, and answered with the
//     agent's result, or with KindUnavailable when the agent has no route
//     or does not answer within CommandTimeout.
//   - An agent whose route has been gone for longer than Grace has its
//     entities marked unavailable; when the route comes back they return
//     to what the agent last said, and the agent is asked to resync.
//   - Nodes the home revoked (Revocations: auth's list, and its event
//     for each new one) are refused by the hub's node from its start and
//     cut off at once when revoked later; their agents' records are
//     deleted and their entities marked unavailable, commands for them
//     refused, and every known agent is sent the whole list (revoked),
//     as is each agent that announces, so that one away at the time
//     learns it later.
//   - An agent's links message (its live links, with their costs) is kept
//     in memory as that agent's last report, and the topology shows its
//     links beside the hub's own until the report is LinksMaxAge old. Like
//     a state, a report from an agent the border does not know makes it
//     send resync instead; the report goes when the agent is forgotten or
//     revoked.
//   - VerbTopology answers with the mesh as this hub sees it (Topology):
//     the gateway serves it as GET /api/v1/mesh/topology.
//   - Prometheus metrics (prefix homemesh_mesh_) describe the node:
//     neighbours, routes, packets, drops and rejected frames by reason,
//     end-to-end handshakes, agents online, commands by outcome.
//
// # Identity and trust
//
// The hub's static X25519 key lives in DataDir/mesh-hub.key (mode 0600)
// and so keeps its node id across restarts. Its node certificate (role
// hub) comes from the auth service (HubCertifier, the auth verb
// mesh_hub_cert), which also records the hub's key and addresses so that
// pairing agents learn how to reach it. The CA certificates that reply
// carries are the mesh's trust roots: only nodes of this home get a link.
//
// An agent speaks only for itself: its device id derives from the node id
// its certificate proves, never from the message. The agent's static key,
// learned from that certificate, is what the hub needs to open an
// end-to-end channel to it (Mesh KeyOf); it is kept with the agent's record
// in the JetStream bucket AgentsBucket, so a restarted hub reaches its
// agents before they speak again. Every border process of the home
// watches that bucket, so what one learns the others know: any of them
// can serve a command (the newest record of an agent wins).
package border
