package history

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// reflectJSON is what encoding/json writes for r, the reference the fast
// encoder must match byte for byte.
func reflectJSON(t testing.TB, r HistoryReply) string {
	type plain HistoryReply // without the MarshalJSON method
	data, err := json.Marshal(plain(r))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func fastJSON(t testing.TB, r HistoryReply) string {
	data, err := json.Marshal(r) // through MarshalJSON, as the bus replies
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestReplyJSONMatchesEncodingJSON(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 123456000, time.UTC)
	r := HistoryReply{EntityID: "temp", Resolution: FiveMinutes, Next: "abc_-", Points: []PointRecord{
		{Time: t0, Value: 21.5},
		{Time: t0.Add(time.Second), Value: 0.0},
		{Time: t0.Add(2 * time.Second), Value: "on <&> \u2028", Attributes: json.RawMessage(`{ "brightness" : 128, "name":"a<b" }`)},
		{Time: t0, Mean: f(1e-7), Min: f(-1e21), Max: f(123456789.125), Last: f(0), Count: 12, OnSeconds: f(300)},
		{Time: t0, Count: 3, OnSeconds: f(0)},
		{Time: t0, Value: map[string]any{"x": 1}},
		{Time: t0.In(time.FixedZone("x", 3600))},
		{Time: t0, Mean: f(-0.000001), Min: f(1e20), Max: f(5e-324), Last: f(math.MaxFloat64)},
	}}
	if got, want := fastJSON(t, r), reflectJSON(t, r); got != want {
		t.Errorf("fast encoder wrote\n%s\nencoding/json writes\n%s", got, want)
	}
	// No points is an empty list, never null: clients iterate it.
	if got := fastJSON(t, HistoryReply{EntityID: "e", Resolution: Raw}); got != `{"entity_id":"e","resolution":"raw","points":[]}` {
		t.Errorf("empty reply = %s", got)
	}
	if _, err := json.Marshal(HistoryReply{Points: []PointRecord{{Mean: f(math.NaN())}}}); err == nil {
		t.Error("a NaN mean was encoded")
	}
}

func FuzzReplyJSON(f *testing.F) {
	f.Add(21.5, -3.25, int64(12), "on", []byte(`{"a":1}`), int64(1764410400123456))
	f.Add(1e-9, 1e22, int64(0), "", []byte(nil), int64(0))
	f.Fuzz(func(t *testing.T, a, b float64, count int64, state string, attrs []byte, micros int64) {
		if math.IsNaN(a) || math.IsInf(a, 0) || math.IsNaN(b) || math.IsInf(b, 0) || !json.Valid(attrs) && len(attrs) > 0 {
			t.Skip()
		}
		tm := time.UnixMicro(micros % (1 << 50)).UTC()
		r := HistoryReply{EntityID: state, Resolution: Raw, Points: []PointRecord{
			{Time: tm, Value: a},
			{Time: tm, Value: state, Attributes: attrs},
			{Time: tm, Mean: &a, Min: &b, Count: count, OnSeconds: &b},
		}}
		if got, want := fastJSON(t, r), reflectJSON(t, r); got != want {
			t.Fatalf("fast encoder wrote\n%s\nencoding/json writes\n%s", got, want)
		}
	})
}

func BenchmarkReplyJSONYearOfHours(b *testing.B) {
	r := HistoryReply{EntityID: "e1", Resolution: Hourly}
	t0 := time.Date(2025, 11, 29, 0, 0, 0, 0, time.UTC)
	for i := range 8760 {
		m, lo, hi, last := 21.5+float64(i%7)*0.13, 20.25, 23.75, 22.0
		r.Points = append(r.Points, PointRecord{Time: t0.Add(time.Duration(i) * time.Hour), Mean: &m, Min: &lo, Max: &hi, Last: &last, Count: 60})
	}
	for b.Loop() {
		data, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
	}
}

// FuzzJSONFloat holds appendJSONFloat to encoding/json's output for
// decimals of a few fractional digits, their neighbouring floats, and any
// float: the short-decimal fast path must never differ.
func FuzzJSONFloat(f *testing.F) {
	f.Add(int64(2150), uint8(2), 0.1)
	f.Add(int64(-5), uint8(4), 1e-7)
	f.Add(int64(999999999999999), uint8(0), 123456789.123)
	f.Add(int64(1), uint8(4), -0.0)
	f.Fuzz(func(t *testing.T, mantissa int64, digits uint8, other float64) {
		d := float64(mantissa) / math.Pow(10, float64(digits%7))
		for _, v := range []float64{d, math.Nextafter(d, math.Inf(1)), math.Nextafter(d, math.Inf(-1)), other} {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			got, err := appendJSONFloat(nil, v)
			if err != nil {
				t.Fatalf("appendJSONFloat(%v): %v", v, err)
			}
			want, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("appendJSONFloat(%v) = %s, encoding/json writes %s", v, got, want)
			}
		}
	})
}

// TestRFC3339NanoMatchesTheLibrary checks the whole-second UTC fast path
// and the fallbacks against time's own formatting.
func TestRFC3339NanoMatchesTheLibrary(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		time.Date(2026, 3, 29, 1, 2, 3, 4000, time.UTC),
		time.Date(2026, 3, 29, 1, 2, 3, 0, time.FixedZone("x", 3600)),
		time.Date(-5, 3, 29, 1, 2, 3, 0, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		if got, want := string(appendRFC3339Nano(nil, tm)), tm.Format(time.RFC3339Nano); got != want {
			t.Errorf("appendRFC3339Nano(%v) = %s, want %s", tm, got, want)
		}
	}
}
