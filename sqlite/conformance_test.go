package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/history/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) history.Store {
		s, _ := openTemp(t)
		return s
	})
}

// TestConformanceShared runs the suite's two-process tests on two Stores
// opened on one file, as two history processes of one hub have.
func TestConformanceShared(t *testing.T) {
	storagetest.RunShared(t, func(t *testing.T) (a, b history.Store) {
		path := filepath.Join(t.TempDir(), "history.db")
		sa, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sa.Close() })
		sb, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sb.Close() })
		return sa, sb
	})
}
