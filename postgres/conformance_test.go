package postgres

import (
	"context"
	"testing"

	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/history/storagetest"
)

func TestConformance(t *testing.T) {
	testDSN(t)
	storagetest.Run(t, func(t *testing.T) history.Store {
		s, _ := openFresh(t)
		return s
	})
	storagetest.RunShared(t, func(t *testing.T) (history.Store, history.Store) {
		a, dsn := openFresh(t)
		b, err := Open(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return a, b
	})
}

// The sharded store passes the same suite, its homes spread over two
// shards (two schemas here, for speed; TestShardedPlacesHomesAndNeverMovesThem
// uses separate databases).
func TestConformanceSharded(t *testing.T) {
	testDSN(t)
	open := func(t *testing.T) (*Sharded, []Shard) {
		shards := []Shard{{"one", freshSchema(t)}, {"two", freshSchema(t)}}
		s := openSharded(t, shards...)
		t.Cleanup(func() { s.Close() })
		return s, shards
	}
	storagetest.Run(t, func(t *testing.T) history.Store {
		s, _ := open(t)
		return s
	})
	storagetest.RunShared(t, func(t *testing.T) (history.Store, history.Store) {
		a, shards := open(t)
		b := openSharded(t, shards...)
		t.Cleanup(func() { b.Close() })
		return a, b
	})
}
