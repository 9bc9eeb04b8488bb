package audit

import (
	"fmt"
)

// Reason says what is wrong with a record. The values are stable: they
// appear in `homemesh audit verify --json`.
type Reason string

// Reasons a chain fails to verify.
const (
	// ReasonMalformed: the stored bytes are not a record at all.
	ReasonMalformed Reason = "malformed"
	// ReasonEdited: the record's hash does not match its content.
	ReasonEdited Reason = "edited"
	// ReasonMissing: the record is absent; the next one present comes later
	// (deleted, or the records were reordered).
	ReasonMissing Reason = "missing"
	// ReasonOutOfOrder: a record with an earlier sequence number appears
	// again (inserted, duplicated or reordered).
	ReasonOutOfOrder Reason = "out_of_order"
	// ReasonBrokenLink: the record's Prev is not the previous record's hash
	// (the previous record was replaced by another one that hashes well).
	ReasonBrokenLink Reason = "broken_link"
	// ReasonForeign: the record belongs to another home's log.
	ReasonForeign Reason = "foreign"
	// ReasonMisplaced: the record is stored at another position than its
	// sequence number says.
	ReasonMisplaced Reason = "misplaced"
	// ReasonTruncated: the head anchor names a record after the last one.
	ReasonTruncated Reason = "truncated"
	// ReasonAnchorMismatch: the record the head anchor names has another
	// hash (the chain was rewritten from there on).
	ReasonAnchorMismatch Reason = "anchor_mismatch"
	// ReasonNoAnchor: records exist but the head anchor does not.
	ReasonNoAnchor Reason = "no_anchor"
)

// Problem is why a chain does not verify, at the first bad record. Seq is
// that record's place in the chain (1 for the first record).
type Problem struct {
	Seq    uint64 `json:"seq"`
	Reason Reason `json:"reason"`
	Detail string `json:"detail"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("audit record %d: %s: %s", p.Seq, p.Reason, p.Detail)
}

// Verifier checks a chain one record at a time, in order, holding only the
// previous record's hash, so a log of any length verifies in constant
// memory. Create one with NewVerifier.
type Verifier struct {
	home   string
	anchor *Head
	head   Head
	// anchored is the hash of the record the anchor names, once read.
	anchored string
	// known are heads kept outside the log (see Expect), with the hashes
	// the chain had at their places.
	known []Head
	seen  map[uint64]string
	err   *Problem
}

// NewVerifier returns a verifier for the chain of home whose head anchor,
// the head recorded when the last record was appended, is anchor (nil when
// there is none).
func NewVerifier(home string, anchor *Head) *Verifier {
	return &Verifier{home: home, anchor: anchor, head: Head{Hash: ZeroHash}}
}

// Expect adds heads the chain must still contain, such as a head an
// operator copied off the hub earlier. They catch what the stored anchor
// cannot: a chain rewritten together with its anchor.
func (v *Verifier) Expect(heads ...Head) {
	for _, h := range heads {
		v.known = append(v.known, h)
		if v.seen == nil {
			v.seen = map[uint64]string{}
		}
		v.seen[h.Seq] = ""
	}
}

// Check checks the next record of the chain. It returns the first Problem
// found; once one is found, every later call returns it again.
func (v *Verifier) Check(r Record) error {
	if v.err != nil {
		return v.err
	}
	want := v.head.Seq + 1
	switch {
	case r.Seq > want:
		return v.fail(want, ReasonMissing, "the next record present is %d", r.Seq)
	case r.Seq < want:
		return v.fail(want, ReasonOutOfOrder, "found record %d again where record %d belongs", r.Seq, want)
	case r.Home != v.home:
		return v.fail(want, ReasonForeign, "it belongs to home %q, not %q", short(r.Home), v.home)
	case r.ComputeHash() != r.Hash:
		return v.fail(want, ReasonEdited, "its hash does not match its content")
	case r.Prev != v.head.Hash:
		return v.fail(want, ReasonBrokenLink, "its prev does not match the hash of record %d", v.head.Seq)
	}
	v.head = r.Head()
	if v.anchor != nil && r.Seq == v.anchor.Seq {
		v.anchored = r.Hash
	}
	if _, ok := v.seen[r.Seq]; ok {
		v.seen[r.Seq] = r.Hash
	}
	return nil
}

// CheckStored checks r, read from position pos of a stored log (the
// stream sequence, which starts at 1 and never reuses a number). Besides
// what Check does, it reports a position skipped by storage as a missing
// record, and a record kept at another position than its own.
func (v *Verifier) CheckStored(pos uint64, r Record) error {
	if err := v.checkPosition(pos); err != nil {
		return err
	}
	if r.Seq != pos {
		if r.ComputeHash() != r.Hash {
			return v.fail(pos, ReasonEdited, "its hash does not match its content")
		}
		return v.fail(pos, ReasonMisplaced, "position %d holds record %d", pos, r.Seq)
	}
	return v.Check(r)
}

// Malformed reports that the bytes stored at position pos are not a record.
func (v *Verifier) Malformed(pos uint64, cause error) error {
	if err := v.checkPosition(pos); err != nil {
		return err
	}
	return v.fail(pos, ReasonMalformed, "%v", cause)
}

// Ended reports that storage holds positions up to last. Positions it
// promised but never served are missing records.
func (v *Verifier) Ended(last uint64) error {
	if v.err != nil {
		return v.err
	}
	if v.head.Seq < last {
		return v.fail(v.head.Seq+1, ReasonMissing, "storage ends at position %d but serves records only up to %d", last, v.head.Seq)
	}
	return nil
}

func (v *Verifier) checkPosition(pos uint64) error {
	if v.err != nil {
		return v.err
	}
	want := v.head.Seq + 1
	switch {
	case pos > want:
		return v.fail(want, ReasonMissing, "storage has nothing at position %d (deleted, or damaged so that storage refuses it); the next record present is at %d", want, pos)
	case pos < want:
		return v.fail(want, ReasonOutOfOrder, "storage returned position %d again", pos)
	}
	return nil
}

func (v *Verifier) fail(seq uint64, reason Reason, format string, args ...any) error {
	v.err = &Problem{Seq: seq, Reason: reason, Detail: fmt.Sprintf(format, args...)}
	return v.err
}

// Head returns the head of the records checked so far: the last good one.
func (v *Verifier) Head() Head {
	if v.head.Seq == 0 {
		return Head{}
	}
	return v.head
}

// Finish checks the chain's end against the anchor and returns the first
// problem of the whole chain, or nil when it is intact. An anchor that lags
// behind the end is accepted when the chain agrees with it there: the
// anchor is written after the record, so a crash in between, or a slower
// process, leaves it behind.
func (v *Verifier) Finish() error {
	if v.err != nil {
		return v.err
	}
	for _, h := range v.known {
		switch {
		case h.Seq > v.head.Seq:
			return v.fail(v.head.Seq+1, ReasonTruncated, "the expected head names record %d but the log ends at record %d", h.Seq, v.head.Seq)
		case h.Seq > 0 && v.seen[h.Seq] != h.Hash:
			return v.fail(h.Seq, ReasonAnchorMismatch, "its hash differs from the expected head's")
		}
	}
	a := v.anchor
	switch {
	case (a == nil || a.Seq == 0) && v.head.Seq > 0:
		return v.fail(v.head.Seq, ReasonNoAnchor, "the log has %d records but no head anchor", v.head.Seq)
	case a == nil:
		return nil
	case a.Seq > v.head.Seq:
		return v.fail(v.head.Seq+1, ReasonTruncated, "the head anchor names record %d but the log ends at record %d", a.Seq, v.head.Seq)
	case a.Seq > 0 && v.anchored != a.Hash:
		return v.fail(a.Seq, ReasonAnchorMismatch, "its hash differs from the head anchor's")
	}
	return nil
}

// Verify checks records, in order, as the complete chain of home whose
// head anchor is anchor (nil when absent). It returns the head of the
// chain, or the first Problem.
func Verify(home string, records []Record, anchor *Head) (Head, error) {
	v := NewVerifier(home, anchor)
	for _, r := range records {
		if err := v.Check(r); err != nil {
			return v.Head(), err
		}
	}
	return v.Head(), v.Finish()
}
