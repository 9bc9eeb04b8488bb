package meshapp

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// Encode writes back to bytes that decode to the same message.
func FuzzDecode(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"type":"state","unique_id":"a","value":null,"available":false}`))
	f.Add([]byte(`{"type":"command","id":0,"unique_id":"a","command":"toggle","params":{}}`))
	f.Add([]byte(`{"type":"revoked","nodes":["0000000000000000","ffffffffffffffff"]}`))
	f.Add([]byte(`{"type":"links","neighbours":[]}`))
	f.Add([]byte(`{"type":"links","neighbours":[{"node_id":"0000000000000000","role":"leaf","cost":0,"rx_cost":65535,"tx_cost":1,"quality":-0}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("%q decoded to %#v, which does not encode: %v", b, m, err)
		}
		again, err := Decode(out)
		if err != nil {
			t.Fatalf("%q re-encoded as %q, which does not decode: %v", b, out, err)
		}
		// An empty list in capabilities means none, whether written [] or
		// left out.
		if diff := cmp.Diff(m, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("%q round trip differs (-first +second):\n%s", b, diff)
		}
	})
}
