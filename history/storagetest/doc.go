// Package storagetest is the conformance suite every history backend
// passes: one set of tests, run against each implementation of
// history.Store, so that SQLite and PostgreSQL store, deduplicate,
// summarise and purge exactly alike.
//
// A backend's test calls Run with a function that opens a fresh, empty
// store (and registers its own cleanup):
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) history.Store { return openEmpty(t) })
//	}
//
// A backend whose two handles can share one database (two *Store on the
// same SQLite file, two pools on the same PostgreSQL database) also calls
// RunShared, whose open returns two handles on the same fresh database;
// those subtests write the same messages through both handles at once, as
// two history processes do after a redelivery.
//
// Every subtest uses fixed UTC times around 2026-11-29T10:00:00Z and
// passes now to Purge explicitly. Expected values are written out by hand
// in the tests, never computed with the code under test.
//
// What the suite holds a store to, beyond the doc comments of package
// history:
//
//   - Returned points are compared on Entity, Time (to the microsecond,
//     any location), Numeric, and Value for numeric points or State for
//     the others; Attrs and event Data are compared as JSON values, and
//     nil, empty and "null" all mean none. Device and Kind of returned
//     points are not compared.
//   - A query returns at most Limit rows; More is set exactly when rows
//     remain in the range after the last one returned (so a page that ends
//     on the last row has More unset). History.After and the events'
//     (AfterTime, AfterID) select rows strictly after them.
//   - Statistics rows carry their Entity and are selected, paged (After)
//     and ordered by bucket Start, within [From, To). A row whose Count,
//     NumCount and OnMicros are all zero (an on-time credit later taken
//     back) may or may not be returned: the suite ignores it. Min, Max,
//     Last and LastTime are only compared when NumCount > 0.
//   - The ledger is kept per (home, stream): the same stream and sequence
//     in another home is another message. A message's ledger age is the
//     time it was written, by the store's clock, not the time of its
//     points; Purge compares it with now − history.LedgerRetention. One
//     batch of consecutive sequences is one ledger row.
//   - WriteResult.Points and .Events count only rows actually stored: a
//     point at the microsecond of a stored point of the same entity, or an
//     event with the ID (and time) of a stored event of the home, is
//     skipped silently (first wins, also within one batch in batch order)
//     and counts neither as stored nor as a duplicate message; the message
//     itself is recorded in the ledger all the same.
//   - Binary on-time: the points of a batch are inserted in time order,
//     each binary one asking history.OnTime with its neighbours among the
//     points stored so far, those of the same batch inserted before it
//     included (asking after inserting the whole batch counts twice).
//   - A raw row expires when its time is before now minus the raw
//     retention of its entity's kind; a statistics row when its bucket
//     Start is before now minus its tier's retention; an event when its
//     time is before now minus RetentionPolicy.Events. Purge covers every
//     home. PurgeResult counts every removed row exactly (Stats sums both
//     tiers), however the rows were removed. Deletes remove at most limit
//     rows per table per call, and More is set when a table reached the
//     bound and still holds expired rows; a backend may drop a whole
//     partition of expired rows regardless of the limit (the bounded test
//     keeps an unexpired row in every partition it purges, by day or
//     longer).
//   - Invalid input fails with homemesh.KindInvalid and a field whose last
//     dotted segment (without an index) names the culprit: "home",
//     "stream", "seq", a point's "entity", "time" or non-finite "value",
//     an event's "id", "time" or "kind" for a Write (and nothing of the
//     batch is stored); "from" or "to" for a range that ends before it
//     starts, "resolution" for an unknown resolution. A range with To
//     equal to From is valid and empty.
//   - Resolutions are exact, case-sensitive strings; Auto is resolved by
//     the service, the suite never passes it to a store.
//   - Data spans far from t0 (up to 1000 days before it, and 2027): a
//     partitioned backend needs a partition or a default for any time.
//   - Close is idempotent: the suite closes some stores itself, expects a
//     second Close to return nil, and the backend's cleanup closes them
//     again.
package storagetest
