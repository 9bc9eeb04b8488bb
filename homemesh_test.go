package homemesh_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/homemesh/homemesh"
)

func TestValidIDAndSlug(t *testing.T) {
	for _, id := range []string{"a", "kitchen-plug", "sensor_1", strings.Repeat("x", homemesh.MaxIDLen)} {
		if !homemesh.ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "A", "a.b", "a b", "ü", strings.Repeat("x", homemesh.MaxIDLen+1), "a/b", "*", ">"} {
		if homemesh.ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
	tests := map[string]string{
		"0x00158d0001a2b3c4_light": "0x00158d0001a2b3c4_light",
		"Living Room Lamp":         "living_room_lamp",
		"  --Odd__Name!! ":         "--odd__name",
		"!!!":                      "x",
		"Küche/Licht":              "k_che_licht",
	}
	for in, want := range tests {
		if got := homemesh.Slug(in); got != want || !homemesh.ValidID(got) {
			t.Errorf("Slug(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSlug(f *testing.F) {
	f.Add("Living Room")
	f.Add(strings.Repeat("ab ", 100))
	f.Fuzz(func(t *testing.T, s string) {
		if got := homemesh.Slug(s); !homemesh.ValidID(got) {
			t.Fatalf("Slug(%q) = %q is not a valid ID", s, got)
		}
	})
}

func TestRandomID(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		id := homemesh.RandomID(12)
		if len(id) != 12 || !homemesh.ValidID(id) || seen[id] {
			t.Fatalf("RandomID(12) = %q", id)
		}
		seen[id] = true
	}
}

func TestErrorKindsAndMessages(t *testing.T) {
	cause := errors.New("pq: connection refused to 10.1.2.3")
	err := fmt.Errorf("load history: %w", &homemesh.Error{Op: "history.query", Kind: homemesh.KindUnavailable, Message: "history unavailable", Err: cause})
	if homemesh.ErrorKind(err) != homemesh.KindUnavailable || homemesh.ErrorMessage(err) != "history unavailable" || !errors.Is(err, cause) {
		t.Fatalf("wrapped error: kind %s message %q", homemesh.ErrorKind(err), homemesh.ErrorMessage(err))
	}
	if homemesh.ErrorKind(cause) != homemesh.KindInternal || homemesh.ErrorMessage(cause) != "internal error" {
		t.Fatal("a plain error must be internal with a generic message")
	}
	inv := homemesh.Invalid("params.brightness", "must be 0 to 255, got %d", 300)
	if homemesh.ErrorField(inv) != "params.brightness" || inv.Error() != "params.brightness: must be 0 to 255, got 300" {
		t.Fatalf("Invalid: %q", inv.Error())
	}
	for _, k := range homemesh.EntityKinds {
		if !k.Valid() {
			t.Errorf("%s not valid", k)
		}
	}
	if homemesh.EntityKind("toaster").Valid() {
		t.Error("unknown kind valid")
	}
}
