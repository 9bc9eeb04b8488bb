package route

import "testing"

func TestNodeIDRoundTrip(t *testing.T) {
	id := IDFromKey([]byte("a static public key of 32 bytes!"))
	got, err := ParseNodeID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseNodeID(%s) = %v, %v", id, got, err)
	}
	if IDFromKey([]byte("another key")) == id {
		t.Fatal("two keys gave one id")
	}
	for _, bad := range []string{"", "00", "zz00000000000000", "0000000000000000ff"} {
		if _, err := ParseNodeID(bad); err == nil {
			t.Errorf("ParseNodeID(%q) accepted", bad)
		}
	}
}

func FuzzParseNodeID(f *testing.F) {
	f.Add("0123456789abcdef")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseNodeID(s)
		if err != nil {
			return
		}
		if again, err := ParseNodeID(id.String()); err != nil || again != id {
			t.Fatalf("%q parsed to %s, which parses back to %v, %v", s, id, again, err)
		}
	})
}
