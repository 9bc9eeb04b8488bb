package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
)

// Entry is one security-relevant action as its reporter describes it. The
// log adds the sequence number, time and hash chain. Nothing secret may go
// into an entry: no passwords, codes, tokens or keys.
type Entry struct {
	Action  string            `json:"action"`
	Outcome string            `json:"outcome"`
	Actor   string            `json:"actor,omitempty"`    // user name, MQTT user name or "system"
	ActorID string            `json:"actor_id,omitempty"` // user ID when the actor is a person
	Source  string            `json:"source,omitempty"`   // remote address or reporting service
	Target  string            `json:"target,omitempty"`   // what was acted on: user, entity, credential…
	Details map[string]string `json:"details,omitempty"`
}

// Limits on an entry. Longer text is cut (and marked with "…") rather than
// refused: a failed login with an absurd user name must still be recorded.
const (
	MaxText       = 256 // bytes per text field and per detail value
	MaxDetails    = 32  // detail pairs
	MaxDetailKey  = 64  // bytes per detail key
	maxActionName = 64
)

// Record is one link of the chain: an Entry with its place, time and
// hashes. Records are immutable once appended.
type Record struct {
	Seq  uint64    `json:"seq"` // 1 for the first record, then one more each
	Time time.Time `json:"time"`
	Home string    `json:"home"`
	Entry
	Prev string `json:"prev"` // Hash of the previous record; ZeroHash for the first
	Hash string `json:"hash"` // ComputeHash of this record
}

// ZeroHash is the Prev of the first record.
var ZeroHash = strings.Repeat("0", 2*sha256.Size)

// Head names the last record of a chain: what an anchor remembers and what
// an operator may keep elsewhere to compare later. The zero Head is an
// empty chain.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String renders h as SEQ:HASH, the form ParseHead reads and `homemesh
// audit verify --expect-head` takes.
func (h Head) String() string { return strconv.FormatUint(h.Seq, 10) + ":" + h.Hash }

// ParseHead reads a head written as SEQ:HASH.
func ParseHead(s string) (Head, error) {
	seq, hash, ok := strings.Cut(s, ":")
	n, err := strconv.ParseUint(seq, 10, 64)
	if !ok || err != nil || n == 0 || seq != strconv.FormatUint(n, 10) || !validHash(hash) {
		return Head{}, homemesh.Invalid("head", "must be SEQ:HASH, a record number and its 64 hex digit hash as audit verify prints them")
	}
	return Head{Seq: n, Hash: hash}, nil
}

// Head returns the head of a chain that ends with r.
func (r Record) Head() Head { return Head{Seq: r.Seq, Hash: r.Hash} }

// hashDomain starts every canonical encoding, so that a record hash can
// never be mistaken for the hash of anything else, and a future version of
// the encoding can be told apart.
const hashDomain = "homemesh audit record v1"

// Canonical returns the bytes that Hash covers: every field except Hash, in
// a fixed order, each as a uvarint length followed by its bytes, with the
// time as RFC 3339 with nanoseconds in UTC and the details sorted by key.
// Length prefixes make the encoding injective: no two different records
// encode alike, whatever their text contains. It never depends on JSON.
func (r Record) Canonical() []byte {
	b := make([]byte, 0, 256)
	field := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	field(hashDomain)
	field(strconv.FormatUint(r.Seq, 10))
	field(r.Time.UTC().Format(time.RFC3339Nano))
	field(r.Home)
	field(r.Action)
	field(r.Outcome)
	field(r.Actor)
	field(r.ActorID)
	field(r.Source)
	field(r.Target)
	keys := make([]string, 0, len(r.Details))
	for k := range r.Details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		field(k)
		field(r.Details[k])
	}
	field(r.Prev)
	return b
}

// ComputeHash returns the hex SHA-256 of r's canonical encoding.
func (r Record) ComputeHash() string {
	sum := sha256.Sum256(r.Canonical())
	return hex.EncodeToString(sum[:])
}

// Normalize returns e as the log stores it: text made valid UTF-8 and cut to
// the limits, surplus details dropped (in key order, and said so in the
// detail "truncated"). The action must be 1 to 64 characters of a-z, 0-9 and
// _, and the outcome present: those come from code, not from users.
func Normalize(e Entry) (Entry, error) {
	if !validAction(e.Action) {
		return Entry{}, homemesh.Invalid("action", "must be 1 to %d characters of a-z, 0-9 and _", maxActionName)
	}
	if !validAction(e.Outcome) {
		return Entry{}, homemesh.Invalid("outcome", "must be 1 to %d characters of a-z, 0-9 and _", maxActionName)
	}
	out := Entry{
		Action: e.Action, Outcome: e.Outcome,
		Actor: clean(e.Actor, MaxText), ActorID: clean(e.ActorID, MaxText),
		Source: clean(e.Source, MaxText), Target: clean(e.Target, MaxText),
	}
	if len(e.Details) > 0 {
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out.Details = make(map[string]string, min(len(keys), MaxDetails))
		for i, k := range keys {
			if i == MaxDetails-1 && len(keys) > MaxDetails {
				out.Details["truncated"] = strconv.Itoa(len(keys)-i) + " more details dropped"
				break
			}
			ck := clean(k, MaxDetailKey)
			if ck == "" {
				ck = "_"
			}
			out.Details[ck] = clean(e.Details[k], MaxText)
		}
	}
	return out, nil
}

func validAction(s string) bool {
	if s == "" || len(s) > maxActionName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// clean makes s valid UTF-8 of at most limit bytes. JSON cannot carry
// invalid UTF-8 unchanged, and a stored record must decode to exactly what
// was hashed.
func clean(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= limit {
		return s
	}
	const mark = "…"
	cut := limit - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Seal fills in r's Hash.
func (r *Record) Seal() { r.Hash = r.ComputeHash() }

// Encode returns the JSON a record is stored as.
func (r Record) Encode() ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode audit record %d: %w", r.Seq, err)
	}
	return data, nil
}

// MaxRecordSize bounds a stored record; a record within the entry limits is
// far smaller.
const MaxRecordSize = 64 << 10

// Decode parses a stored record strictly: one JSON object, no unknown
// fields (they would escape the hash), hashes of the right form. It checks
// the form only; whether the hash matches is Verifier's business.
func Decode(data []byte) (Record, error) {
	var r Record
	if len(data) > MaxRecordSize {
		return r, fmt.Errorf("record larger than %d bytes", MaxRecordSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("not a valid record: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Record{}, fmt.Errorf("not a valid record: data after the JSON object")
	}
	if !validHash(r.Hash) {
		return Record{}, fmt.Errorf("not a valid record: hash %q is not 64 lower-case hex digits", short(r.Hash))
	}
	if !validHash(r.Prev) {
		return Record{}, fmt.Errorf("not a valid record: prev %q is not 64 lower-case hex digits", short(r.Prev))
	}
	return r, nil
}

func validHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// short trims attacker-controlled text before it reaches a message.
func short(s string) string {
	return clean(s, 80)
}
