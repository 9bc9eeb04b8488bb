// Package sim is the mesh's deterministic discrete-event simulator: it
// runs one real routing core (mesh/route) per node over virtual links and
// measures how the mesh heals. `homemesh mesh sim` is its command line.
//
// # What it simulates
//
// A Topology is the ground truth: a line, a grid, a random geometric graph
// of a given mean degree, or a house of floors of rooms whose walls cost
// range and add loss, joined by stairwells. Every link has a fixed latency
// drawn from a range and an independent per-packet loss. Node 0, and any
// further hubs spread out from it, are hubs; every other node is a
// mains-powered router.
//
// Links carry opaque frames. A control packet a router returns is put on
// its link as is and sees the link's raw loss; data packets, which the
// routers forward hop by hop with Router.Forward, are retransmitted a few
// times per hop as a radio MAC would (Config.Retries), so that the
// delivery ratio measures the routing rather than the radio. Like a radio
// MAC, a link reports a data frame that found no receiver after every
// retry (a dead node, a cut link) to the sending router, which then probes
// that neighbour instead of waiting for its Hellos to stop
// (Config.LinkFeedback; off, only the Hellos tell). A source that has no
// route for a packet it originates holds it until it has one, up to
// Config.Hold, and a relay up to Config.RelayHold, as a node does
// (mesh/meshnode).
// A link layer that wraps frames in sessions fits in where frames are
// sent and received.
//
// # How a run goes
//
// Run boots every node within one Hello interval (a link comes up one
// round trip after both its ends), waits for full reachability, starts
// data flows between nodes and their nearest hub in both directions, lets
// them settle, measures the steady state (control overhead, route stretch
// against Dijkstra on the true link metric, routing memory), then runs the
// scenario: kills of relays on active paths, Poisson churn, or partitions
// and merges. Killed nodes are silent (their neighbours must notice the
// missing Hellos) and restart with the seqno they persisted; a link whose
// far end restarts, or that a merge heals, comes up as a fresh link
// session. At the end everything is restarted and merged and reachability
// is checked again.
//
// # Guarantees
//
// A run is deterministic: all randomness comes from math/rand/v2 generators
// seeded from Config.Seed, time is virtual (an event queue ordered by time
// and then by scheduling order), and nothing depends on map order or
// goroutines, so the same Config gives the same Result, Host aside. The
// event loop allocates nothing per packet in steady state: frames live in
// pooled buffers and events hold no pointers. The costs that grow with the
// network are per event O(log n) and per failure O(nodes + links).
package sim
