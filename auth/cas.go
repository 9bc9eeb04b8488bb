package auth

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// casAttempts bounds how often casUpdate retries a lost race before it
// reports contention rather than spin.
const casAttempts = 10

// errContention is why casUpdate gives up: other writers kept winning.
var errContention = errors.New("too much contention")

// casUpdate replaces the value at key with what change makes of it by
// compare-and-set, creating the key when it is absent. When another writer
// gets there first it reads again and retries, so concurrent writers on
// any auth process all count and none is lost. change sees the latest
// value each time (exists is false when there is none) and its error
// aborts. read and write name the two steps in storage errors, such as
// "read owners" and "store owners".
func casUpdate(ctx context.Context, kv jetstream.KeyValue, key, read, write string, change func(current []byte, exists bool) ([]byte, error)) error {
	for range casAttempts {
		var cur []byte
		var rev uint64
		e, err := kv.Get(ctx, key)
		switch {
		case err == nil:
			cur, rev = e.Value(), e.Revision()
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return unavailable(read, err)
		}
		next, err := change(cur, rev != 0)
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, next)
		} else {
			_, err = kv.Update(ctx, key, next, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !wrongRevision(err) {
			return unavailable(write, err)
		}
	}
	return unavailable(write, errContention)
}
