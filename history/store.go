package history

import (
	"context"
	"time"
)

// Writer stores batches. Write is atomic: either every new message of the
// batch is stored (raw points, events, the statistics they change, and the
// record that the messages were stored) or none is. Messages an earlier
// Write stored are skipped and counted in Duplicates, also when two
// processes write overlapping batches at the same time.
type Writer interface {
	Write(ctx context.Context, b Batch) (WriteResult, error)
}

// Reader answers history and event queries.
type Reader interface {
	History(ctx context.Context, q HistoryQuery) (HistoryPage, error)
	Events(ctx context.Context, q EventQuery) (EventPage, error)
}

// Purger removes what a retention policy no longer keeps, at most limit
// rows per table per call, so that writers and readers are never blocked
// for long; callers repeat while More is set.
type Purger interface {
	Purge(ctx context.Context, now time.Time, p RetentionPolicy, limit int) (PurgeResult, error)
}

// Store is what the history service needs of a backend.
type Store interface {
	Writer
	Reader
	Purger
	Close() error
}

// LedgerRetention is how long stores remember which messages they stored.
// It must outlast any redelivery: the streams keep messages at most 48
// hours, so a message older than this can no longer come again.
const LedgerRetention = 7 * 24 * time.Hour
