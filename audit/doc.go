// Package audit is homemesh's tamper-evident audit log: an append-only,
// hash-chained sequence of records, one per security-relevant action (a
// login, a failed login, a role change, a pairing, a credential change, a
// command to a lock or an alarm, a revocation).
//
// Each Record carries its sequence number, its time, its home, the Entry
// that describes the action, the hash of the previous record (Prev) and its
// own Hash: the SHA-256 of a canonical, length-prefixed encoding of every
// other field (see Record.ComputeHash). Editing any field of a record breaks
// its hash; deleting, reordering or inserting records breaks the sequence or
// the links. A head anchor (the last sequence number and hash, kept apart
// from the records) catches a truncated tail.
//
// Log stores the chain of one home in a JetStream stream with file storage
// that denies deletes and purges, and keeps the head anchor in a key-value
// bucket. Appends use optimistic concurrency on the stream's last sequence,
// so any number of processes append to one linear chain. Verifier checks a
// sequence of records and reports the first bad one and why; Log.Verify
// runs it over a whole stored log.
//
// What the chain cannot catch: someone with write access to the storage who
// rewrites every record from some point on and the anchor as well produces
// a chain that verifies. Keeping a copy of the head (as `homemesh audit
// verify` prints it) outside the hub and comparing later closes that gap.
package audit
