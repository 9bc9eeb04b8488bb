package history

import (
	"encoding/hex"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var packDay = time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC)

// samplePackedDay has a numeric hour, a binary one and a textual one, an
// hour with an on-time correction below zero and the last hour of the day.
func samplePackedDay() []Stat {
	h := func(n int) time.Time { return packDay.Add(time.Duration(n) * time.Hour) }
	return []Stat{
		{Entity: "e", Start: h(0), Count: 60, NumCount: 60, Sum: 1234.5, Min: -3.25, Max: 40.125, Last: 21.5, LastTime: h(0).Add(59*time.Minute + 7*time.Microsecond)},
		{Entity: "e", Start: h(1), Count: 3, OnMicros: 1_800_000_000},
		{Entity: "e", Start: h(7), Count: 1},
		{Entity: "e", Start: h(8), OnMicros: -5},
		{Entity: "e", Start: h(23), Count: 1, NumCount: 1, Sum: math.MaxFloat64, Min: math.MaxFloat64, Max: math.MaxFloat64, Last: math.MaxFloat64, LastTime: h(23)},
	}
}

func TestPackHoursRoundTrip(t *testing.T) {
	want := samplePackedDay()
	data, err := PackHours(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := UnpackHours(nil, "e", packDay, data)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
}

// TestPackHoursGolden pins the stored format: packed days written by one
// version must read the same in every later one.
func TestPackHoursGolden(t *testing.T) {
	data, err := PackHours(samplePackedDay())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "hourpack-v1.hex")
	if *update {
		if err := os.WriteFile(path, []byte(hex.EncodeToString(data)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(data), strings.TrimSpace(string(golden)); got != want {
		t.Fatalf("packed day\n%s\nwant (%s)\n%s", got, path, want)
	}
}

func TestPackHoursRefuses(t *testing.T) {
	h := func(n int) time.Time { return packDay.Add(time.Duration(n) * time.Hour) }
	for _, tc := range []struct {
		name  string
		stats []Stat
		want  string
	}{
		{"none", nil, "no statistics"},
		{"off the hour", []Stat{{Start: h(1).Add(time.Minute)}}, "not on the hour"},
		{"other day", []Stat{{Start: h(1)}, {Start: h(25)}}, "is not on 2026-03-29"},
		{"out of order", []Stat{{Start: h(3)}, {Start: h(2)}}, "out of order"},
		{"repeated hour", []Stat{{Start: h(3)}, {Start: h(3)}}, "out of order"},
		{"negative count", []Stat{{Start: h(3), Count: -1}}, "negative count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := PackHours(tc.stats)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("PackHours = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestUnpackHoursRefuses(t *testing.T) {
	good, err := PackHours(samplePackedDay())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		day  time.Time
		data []byte
		want string
	}{
		{"empty", packDay, nil, "byte 0: empty"},
		{"version", packDay, []byte{2, 0, 0, 0, 0}, "version 2, want 1"},
		{"not midnight", packDay.Add(time.Hour), good, "not a UTC midnight"},
		{"hour 24", packDay, []byte{1, 24, 0, 0, 0}, "hour 24"},
		{"hour repeated", packDay, []byte{1, 3, 0, 0, 0, 3, 0, 0, 0}, "hour 3 after hour 3"},
		{"truncated varint", packDay, []byte{1, 3, 0x80}, "count: truncated"},
		{"truncated numbers", packDay, []byte{1, 3, 2, 0, 2, 0, 0}, "truncated numbers"},
		{"negative count", packDay, []byte{1, 3, 1, 0, 0}, "negative count"},
		{"truncated", packDay, good[:len(good)-1], "truncated"},
		{"too long", packDay, make([]byte, hourPackMax+1), "more than a day"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := UnpackHours(nil, "e", tc.day, tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UnpackHours = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestMergeSorted(t *testing.T) {
	h := func(n int) time.Time { return packDay.Add(time.Duration(n) * time.Hour) }
	packed := []Stat{
		{Start: h(1), Count: 1, NumCount: 1, Sum: 5, Min: 5, Max: 5, Last: 5, LastTime: h(1)},
		{Start: h(3), Count: 2},
	}
	late := []Stat{
		{Start: h(0), Count: 1},
		{Start: h(1), Count: 1, NumCount: 1, Sum: 7, Min: 7, Max: 7, Last: 7, LastTime: h(1).Add(time.Second)},
		{Start: h(4), OnMicros: 9},
	}
	want := []Stat{
		{Start: h(0), Count: 1},
		{Start: h(1), Count: 2, NumCount: 2, Sum: 12, Min: 5, Max: 7, Last: 7, LastTime: h(1).Add(time.Second)},
		{Start: h(3), Count: 2},
		{Start: h(4), OnMicros: 9},
	}
	if d := cmp.Diff(want, MergeSorted(packed, late)); d != "" {
		t.Fatalf("MergeSorted (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, MergeSorted(late, packed)); d != "" {
		t.Fatalf("MergeSorted reversed (-want +got):\n%s", d)
	}
}

// FuzzUnpackHours: no input panics, and whatever unpacks packs again
// into a day that unpacks to the same statistics.
func FuzzUnpackHours(f *testing.F) {
	good, err := PackHours(samplePackedDay())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte{1})
	f.Add([]byte{1, 23, 2, 0, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		stats, err := UnpackHours(nil, "e", packDay, data)
		if err != nil || len(stats) == 0 {
			return
		}
		again, err := PackHours(stats)
		if err != nil {
			t.Fatalf("unpacked statistics do not pack: %v", err)
		}
		back, err := UnpackHours(nil, "e", packDay, again)
		if err != nil {
			t.Fatalf("repacked day does not unpack: %v", err)
		}
		if d := cmp.Diff(stats, back, cmp.Comparer(sameFloatBits)); d != "" {
			t.Fatalf("repacked day differs (-first +second):\n%s", d)
		}
	})
}

// sameFloatBits compares floats by their bits, so that NaNs from fuzzed
// input compare equal to themselves.
func sameFloatBits(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }
