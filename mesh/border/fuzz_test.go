package border

import (
	"encoding/json"
	"testing"

	"github.com/homemesh/homemesh/mesh/route"
)

// FuzzParseRecord feeds agent records as the bucket might hold them,
// damaged or forged: parseRecord must refuse without panicking, and accept
// only a record of the node its key names, with that node's static key.
func FuzzParseRecord(f *testing.F) {
	key := make([]byte, 32)
	key[0] = 9
	id := route.IDFromKey(key)
	good, _ := json.Marshal(record{Node: id.String(), Key: key, Role: "router", Announced: true,
		Entities: map[string]entityRecord{"relay": {Kind: "switch", Commands: []string{"turn_on"}}}})
	f.Add(id.String(), good)
	f.Add(id.String(), []byte(`{"node_id":"`+id.String()+`","key":"AAAA"}`))
	f.Add("zz", []byte(`{}`))
	f.Add(id.String(), []byte(`{"entities":{"Bad!":{}}}`))
	f.Fuzz(func(t *testing.T, k string, data []byte) {
		rec, got, err := parseRecord(k, data)
		if err != nil {
			return
		}
		if got.String() != k || rec.Node != k || route.IDFromKey(rec.Key) != got {
			t.Fatalf("accepted a record of %s under %q", rec.Node, k)
		}
	})
}
