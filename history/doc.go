// Package history is the data-storage service: it keeps every state change,
// telemetry point and event of a home, durably and exactly once, and answers
// history queries.
//
// Ingestion is JetStream → durable pull consumers → batched writes → ack
// after commit. Each bus message is identified by its stream and stream
// sequence; a store records which messages a batch covered in the same
// transaction as the batch's rows, so a redelivered message is recognised
// and skipped instead of stored (and counted in the statistics) twice.
//
// Three tiers are kept apart from the first write: raw points, 5-minute
// statistics and hourly statistics. The statistics are merged in as each
// batch commits (mean/min/max/last for numbers; time spent on and change
// counts for binary states), never recomputed by a nightly job, so the
// raw tier can expire early without losing the long view.
//
// The service (New, Run) consumes the streams STATES (registry state
// changes), TELEMETRY (Telemetry payloads: many numeric points per message)
// and EVENTS through one durable consumer per stream and home,
// history_<home>; every history process of the home shares them. A
// message that can never be stored (malformed, oversized, of another home)
// is terminated, logged with its reason and counted, never retried. A
// batch the store fails to write is kept and retried with backoff, and no
// more is pulled meanwhile; its messages are acknowledged only once it is
// committed, so an outage delays history without losing or duplicating
// anything. Queries are served on the verbs history and events (Client).
//
// The storage backends live in their own packages (sqlite, postgres) and
// implement the small interfaces declared here; history/storagetest is the
// conformance suite every backend passes.
package history
