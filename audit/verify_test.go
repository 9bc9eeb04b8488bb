package audit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testHome = "home1"

// chain builds n valid records as Log would append them.
func chain(n int) []Record {
	out := make([]Record, 0, n)
	prev := ZeroHash
	t0 := time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC)
	for i := range n {
		r := Record{
			Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Home: testHome,
			Entry: Entry{Action: "login", Outcome: "success", Actor: fmt.Sprintf("user%d", i), Source: "127.0.0.1",
				Details: map[string]string{"method": "password", "n": fmt.Sprint(i)}},
			Prev: prev,
		}
		r.Seal()
		prev = r.Hash
		out = append(out, r)
	}
	return out
}

func headOf(rs []Record) *Head {
	h := rs[len(rs)-1].Head()
	return &h
}

// reseal recomputes the hashes from index i on, as a forger who knows the
// scheme would, keeping every link valid.
func reseal(rs []Record, i int) {
	for ; i < len(rs); i++ {
		if i == 0 {
			rs[i].Prev = ZeroHash
		} else {
			rs[i].Prev = rs[i-1].Hash
		}
		rs[i].Seal()
	}
}

func TestVerifyIntactChain(t *testing.T) {
	rs := chain(5)
	h, err := Verify(testHome, rs, headOf(rs))
	if err != nil {
		t.Fatal(err)
	}
	if h != rs[4].Head() {
		t.Fatalf("head %+v, want %+v", h, rs[4].Head())
	}
	if _, err := Verify(testHome, nil, nil); err != nil {
		t.Fatalf("empty log without anchor: %v", err)
	}
	// An anchor one step behind (a crash between append and anchor write)
	// is accepted when the chain agrees with it.
	lag := rs[3].Head()
	if _, err := Verify(testHome, rs, &lag); err != nil {
		t.Fatalf("lagging anchor: %v", err)
	}
}

func TestVerifyFindsTheFirstBadRecord(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(rs []Record) ([]Record, *Head)
		seq    uint64
		reason Reason
	}{
		{"edit the actor", func(rs []Record) ([]Record, *Head) {
			rs[2].Actor = "mallory"
			return rs, headOf(rs)
		}, 3, ReasonEdited},
		{"edit a detail", func(rs []Record) ([]Record, *Head) {
			rs[3].Details["method"] = "totp"
			return rs, headOf(rs)
		}, 4, ReasonEdited},
		{"add a detail", func(rs []Record) ([]Record, *Head) {
			rs[1].Details["extra"] = ""
			return rs, headOf(rs)
		}, 2, ReasonEdited},
		{"edit the time by a nanosecond", func(rs []Record) ([]Record, *Head) {
			rs[0].Time = rs[0].Time.Add(time.Nanosecond)
			return rs, headOf(rs)
		}, 1, ReasonEdited},
		{"edit the outcome", func(rs []Record) ([]Record, *Head) {
			rs[4].Outcome = "failure"
			return rs, headOf(rs)
		}, 5, ReasonEdited},
		{"edit and rehash one record", func(rs []Record) ([]Record, *Head) {
			rs[2].Actor = "mallory"
			rs[2].Seal()
			return rs, headOf(rs)
		}, 4, ReasonBrokenLink},
		{"delete a record", func(rs []Record) ([]Record, *Head) {
			return slices.Delete(rs, 2, 3), headOf(rs)
		}, 3, ReasonMissing},
		{"delete the first record", func(rs []Record) ([]Record, *Head) {
			return rs[1:], headOf(rs)
		}, 1, ReasonMissing},
		{"delete and renumber", func(rs []Record) ([]Record, *Head) {
			rs = slices.Delete(rs, 2, 3)
			for i := 2; i < len(rs); i++ {
				rs[i].Seq--
			}
			return rs, headOf(rs)
		}, 3, ReasonEdited},
		{"swap two records", func(rs []Record) ([]Record, *Head) {
			rs[1], rs[2] = rs[2], rs[1]
			return rs, headOf(rs)
		}, 2, ReasonMissing},
		{"insert a forged record", func(rs []Record) ([]Record, *Head) {
			forged := Record{Seq: 3, Time: rs[2].Time, Home: testHome, Entry: Entry{Action: "login", Outcome: "success"}, Prev: rs[1].Hash}
			forged.Seal()
			return slices.Insert(rs, 2, forged), headOf(rs)
		}, 4, ReasonOutOfOrder},
		{"duplicate a record", func(rs []Record) ([]Record, *Head) {
			return slices.Insert(rs, 2, rs[1]), headOf(rs)
		}, 3, ReasonOutOfOrder},
		{"truncate the tail", func(rs []Record) ([]Record, *Head) {
			return rs[:3], headOf(rs)
		}, 4, ReasonTruncated},
		{"truncate everything", func(rs []Record) ([]Record, *Head) {
			return nil, headOf(rs)
		}, 1, ReasonTruncated},
		{"rewrite the tail from record 4 on", func(rs []Record) ([]Record, *Head) {
			h := headOf(rs)
			rs[3].Actor = "mallory"
			reseal(rs, 3)
			return rs, h
		}, 5, ReasonAnchorMismatch},
		{"rewrite behind a lagging anchor", func(rs []Record) ([]Record, *Head) {
			h := rs[3].Head()
			rs[2].Actor = "mallory"
			reseal(rs, 2)
			return rs, &h
		}, 4, ReasonAnchorMismatch},
		{"drop the anchor", func(rs []Record) ([]Record, *Head) {
			return rs, nil
		}, 5, ReasonNoAnchor},
		{"a record of another home", func(rs []Record) ([]Record, *Head) {
			rs[1].Home = "home2"
			reseal(rs, 1)
			return rs, headOf(rs)
		}, 2, ReasonForeign},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, anchor := tt.tamper(chain(5))
			_, err := Verify(testHome, rs, anchor)
			var p *Problem
			if !errors.As(err, &p) {
				t.Fatalf("verify = %v, want a *Problem", err)
			}
			if p.Seq != tt.seq || p.Reason != tt.reason {
				t.Fatalf("problem = %v, want record %d %s", p, tt.seq, tt.reason)
			}
			if !strings.Contains(p.Error(), fmt.Sprintf("audit record %d: %s", tt.seq, tt.reason)) {
				t.Errorf("message %q does not name the record and reason", p.Error())
			}
		})
	}
}

// Rewriting the whole chain and the anchor is what a hash chain cannot
// catch on its own; an external copy of an earlier head does.
func TestAnExternalHeadCatchesAWholeRewrite(t *testing.T) {
	rs := chain(5)
	kept := rs[2].Head() // what an operator copied off the hub earlier
	rs[1].Actor = "mallory"
	reseal(rs, 1)
	if _, err := Verify(testHome, rs, headOf(rs)); err != nil {
		t.Fatalf("a complete rewrite with its anchor verifies on its own, as documented; got %v", err)
	}
	v := NewVerifier(testHome, headOf(rs))
	v.Expect(kept)
	for _, r := range rs {
		if err := v.Check(r); err != nil {
			t.Fatal(err)
		}
	}
	err := v.Finish()
	var p *Problem
	if !errors.As(err, &p) || p.Seq != 3 || p.Reason != ReasonAnchorMismatch {
		t.Fatalf("verify against the kept head = %v, want record 3 anchor_mismatch", err)
	}
	// A kept head beyond the end means the tail is gone.
	v = NewVerifier(testHome, headOf(rs[:2]))
	v.Expect(kept)
	for _, r := range rs[:2] {
		_ = v.Check(r)
	}
	if err := v.Finish(); !errors.As(err, &p) || p.Seq != 3 || p.Reason != ReasonTruncated {
		t.Fatalf("kept head past the end = %v, want record 3 truncated", err)
	}
}

func TestCheckStoredPositions(t *testing.T) {
	rs := chain(3)
	v := NewVerifier(testHome, headOf(rs))
	if err := v.CheckStored(1, rs[0]); err != nil {
		t.Fatal(err)
	}
	// A valid record copied into another slot.
	err := v.CheckStored(2, rs[0])
	var p *Problem
	if !errors.As(err, &p) || p.Seq != 2 || p.Reason != ReasonMisplaced {
		t.Fatalf("copied record = %v, want record 2 misplaced", err)
	}
	if again := v.CheckStored(3, rs[2]); again != err {
		t.Fatal("a verifier must keep reporting its first problem")
	}

	v = NewVerifier(testHome, headOf(rs))
	_ = v.CheckStored(1, rs[0])
	if err := v.Malformed(2, errors.New("not JSON")); !errors.As(err, &p) || p.Seq != 2 || p.Reason != ReasonMalformed {
		t.Fatalf("malformed = %v", err)
	}

	v = NewVerifier(testHome, headOf(rs))
	_ = v.CheckStored(1, rs[0])
	if err := v.Ended(3); !errors.As(err, &p) || p.Seq != 2 || p.Reason != ReasonMissing {
		t.Fatalf("storage ending early = %v", err)
	}
}

func TestCanonicalEncoding(t *testing.T) {
	r := chain(1)[0]
	// Map order never matters.
	for range 20 {
		c := r
		c.Details = map[string]string{}
		for _, k := range []string{"n", "method"} {
			c.Details[k] = r.Details[k]
		}
		if c.ComputeHash() != r.Hash {
			t.Fatal("the hash depends on map order")
		}
	}
	// The time zone of the value does not matter, the instant does.
	c := r
	c.Time = r.Time.In(time.FixedZone("CET", 3600))
	if c.ComputeHash() != r.Hash {
		t.Fatal("the hash depends on the time zone")
	}
	// Length prefixes keep field boundaries: moving text across fields
	// changes the hash.
	a, b := r, r
	a.Actor, a.ActorID = "ab", "c"
	b.Actor, b.ActorID = "a", "bc"
	if a.ComputeHash() == b.ComputeHash() {
		t.Fatal("moving a character between fields kept the hash")
	}
	a, b = r, r
	a.Details = map[string]string{"k": "v=w"}
	b.Details = map[string]string{"k=v": "w"}
	if a.ComputeHash() == b.ComputeHash() {
		t.Fatal("moving text between a detail key and value kept the hash")
	}
	// A stored record decodes to exactly what was hashed.
	data, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ComputeHash() != r.Hash {
		t.Fatalf("round trip changed the record:\n%s", cmp.Diff(r, got))
	}
}

func TestDecodeIsStrict(t *testing.T) {
	good, _ := chain(1)[0].Encode()
	for name, data := range map[string]string{
		"unknown field":  strings.Replace(string(good), `{"seq"`, `{"note":"x","seq"`, 1),
		"trailing data":  string(good) + `{}`,
		"short hash":     strings.Replace(string(good), `"hash":"`, `"hash":"ab`, 1),
		"upper-case hex": strings.Replace(string(good), `"prev":"0`, `"prev":"A`, 1),
		"not JSON":       "garbage",
		"an array":       "[]",
	} {
		if _, err := Decode([]byte(data)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

func TestNormalize(t *testing.T) {
	if _, err := Normalize(Entry{Outcome: "success"}); fieldOf(err) != "action" {
		t.Errorf("no action: %v", err)
	}
	if _, err := Normalize(Entry{Action: "Login!", Outcome: "success"}); fieldOf(err) != "action" {
		t.Errorf("bad action: %v", err)
	}
	if _, err := Normalize(Entry{Action: "login"}); fieldOf(err) != "outcome" {
		t.Errorf("no outcome: %v", err)
	}
	details := map[string]string{}
	for i := range 40 {
		details[fmt.Sprintf("k%02d", i)] = "v"
	}
	e, err := Normalize(Entry{Action: "login_failed", Outcome: "failure",
		Actor: "bad\xffname" + strings.Repeat("é", 300), Details: details})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Actor) > MaxText || !strings.HasPrefix(e.Actor, "bad\uFFFDname") || !strings.HasSuffix(e.Actor, "…") {
		t.Errorf("actor not cleaned and cut: %q (%d bytes)", e.Actor, len(e.Actor))
	}
	if len(e.Details) != MaxDetails || e.Details["truncated"] == "" {
		t.Errorf("details not bounded: %d, truncated=%q", len(e.Details), e.Details["truncated"])
	}
	// What Normalize returns survives the JSON round trip unchanged.
	r := Record{Seq: 1, Time: time.Now(), Home: testHome, Entry: e, Prev: ZeroHash}
	r.Seal()
	data, _ := r.Encode()
	got, err := Decode(data)
	if err != nil || got.ComputeHash() != r.Hash {
		t.Fatalf("normalised record does not survive storage: %v", err)
	}
}
