package audit

import (
	"testing"
)

// FuzzDecodeVerify feeds arbitrary bytes to Decode and, for whatever
// decodes, checks that Verify neither panics nor accepts a record whose
// hash does not cover it, and that a sealed record survives storage.
func FuzzDecodeVerify(f *testing.F) {
	for _, r := range chain(3) {
		data, _ := r.Encode()
		f.Add(data)
	}
	f.Add([]byte(`{"seq":1,"time":"2026-01-01T00:00:00Z","home":"home1","action":"login","outcome":"success","prev":"` + ZeroHash + `","hash":"` + ZeroHash + `"}`))
	f.Add([]byte(`{"seq":1,"details":{"a":"\ud800"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Decode(data)
		if err != nil {
			return
		}
		_, verr := Verify(r.Home, []Record{r}, &Head{Seq: r.Seq, Hash: r.Hash})
		if verr == nil && (r.Seq != 1 || r.Prev != ZeroHash || r.ComputeHash() != r.Hash) {
			t.Fatalf("verified a record that is not a valid first record: %+v", r)
		}
		// Sealing what decoded and storing it again yields the same hash:
		// the encoding never depends on anything JSON leaves unspecified.
		r.Seal()
		again, err := r.Encode()
		if err != nil {
			return // e.g. a time JSON cannot carry
		}
		back, err := Decode(again)
		if err != nil {
			t.Fatalf("a re-encoded record does not decode: %v\n%s", err, again)
		}
		if back.ComputeHash() != r.Hash {
			t.Fatalf("storage changed a record:\n%s\n%+v\n%+v", again, r, back)
		}
	})
}

// FuzzParseHead checks that ParseHead accepts exactly what String writes.
func FuzzParseHead(f *testing.F) {
	f.Add("7:" + ZeroHash)
	f.Add("0:" + ZeroHash)
	f.Add("x:y")
	f.Add("007:" + ZeroHash)
	f.Add("18446744073709551615:" + chain(1)[0].Hash)
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHead(s)
		if err != nil {
			return
		}
		if h.String() != s {
			t.Fatalf("ParseHead(%q) = %+v, which prints as %q", s, h, h.String())
		}
	})
}
