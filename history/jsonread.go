package history

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/homemesh/homemesh"
)

// jsonReader reads the messages history ingests in one pass over their
// bytes, into exactly what json.Unmarshal would produce, several times
// faster: reflection-driven decoding of the state log took a quarter to a
// third of the CPU of a busy ingest.
//
// It reads only what it can be sure about: valid JSON in the shape
// producers write. On anything else — a string to decode that holds an
// escape or invalid UTF-8, a duplicate key, a key that matches a field only
// when case is ignored, a null or a wrongly typed field, nesting deeper
// than maxSkipDepth, any syntax error — it gives up, and the caller decodes
// the message with encoding/json instead, which then also words the error.
// So a message it reads is one json.Unmarshal accepts, decoded the same,
// and every other message goes through json.Unmarshal as before.
//
// Unknown fields are skipped, as encoding/json skips them: checked to be
// valid JSON, whatever their bytes.
type jsonReader struct {
	data []byte
	off  int
	bad  bool // gave up: the message needs encoding/json

	// home is the service's home; strings equal to it are not copied.
	home string
	// lastDevice is the last device ID read, shared by the next change
	// of the same device rather than copied again.
	lastDevice string
	// lastTime and lastTimeText are the last UTC time read and its JSON:
	// a change's changed_at and updated_at are mostly the same.
	lastTime     time.Time
	lastTimeText []byte
}

// maxSkipDepth bounds the nesting of a skipped value; deeper values are
// left to encoding/json, whose own bound is far higher.
const maxSkipDepth = 64

// giveUp abandons the message to encoding/json. Every read after it finds
// the end of the input and does nothing.
func (r *jsonReader) giveUp() {
	r.bad = true
	r.off = len(r.data)
}

// peek returns the next byte after whitespace, or 0 at the end, which is
// never valid there.
func (r *jsonReader) peek() byte {
	for r.off < len(r.data) {
		switch c := r.data[r.off]; c {
		case ' ', '\t', '\n', '\r':
			r.off++
		default:
			return c
		}
	}
	return 0
}

// end reports whether only whitespace is left after the value read.
func (r *jsonReader) end() bool {
	r.peek()
	return !r.bad && r.off == len(r.data)
}

// expect consumes c, the next byte after whitespace.
func (r *jsonReader) expect(c byte) {
	if r.peek() != c {
		r.giveUp()
		return
	}
	r.off++
}

// moreMembers is called with the object's '{' consumed, before each member:
// it consumes the comma before every member but the first, and reports
// false, having consumed the '}', at the object's end.
func (r *jsonReader) moreMembers(first bool) bool {
	c := r.peek()
	if c == '}' {
		r.off++
		return false
	}
	if !first {
		if c != ',' {
			r.giveUp()
			return false
		}
		r.off++
		c = r.peek()
	}
	if c != '"' {
		r.giveUp()
		return false
	}
	return true
}

// moreElements is moreMembers for an array.
func (r *jsonReader) moreElements(first bool) bool {
	c := r.peek()
	if c == ']' {
		r.off++
		return false
	}
	if !first {
		if c != ',' {
			r.giveUp()
			return false
		}
		r.off++
	}
	return true
}

// key reads a member's key of a decoded object and the colon after it.
// Keys are ASCII without escapes: others could match a field once
// unescaped or Unicode-folded, as encoding/json matches them.
func (r *jsonReader) key() []byte {
	k := r.plainString(true)
	r.expect(':')
	return k
}

// field marks a field of the object being read as seen; a second one is
// left to encoding/json, for which a later value overrides, or merges into,
// an earlier one.
func (r *jsonReader) field(seen *uint8, bit uint8) {
	if *seen&bit != 0 {
		r.giveUp()
	}
	*seen |= bit
}

// skipUnknown skips the value of a member whose key is none of fields.
// A key equal to a field but for case is one encoding/json decodes into
// the field, so it is left to encoding/json.
func (r *jsonReader) skipUnknown(key []byte, fields []string) {
	for _, f := range fields {
		if asciiEqualFold(key, f) {
			r.giveUp()
			return
		}
	}
	r.skipValue(0)
}

// asciiEqualFold reports whether the ASCII strings key and name are equal
// but for the case of their letters.
func asciiEqualFold(key []byte, name string) bool {
	if len(key) != len(name) {
		return false
	}
	for i := range len(key) {
		a, b := key[i], name[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// plainString reads a string that decodes to its own bytes: no escapes,
// valid UTF-8 (and, when ascii is set, ASCII only). encoding/json would
// unescape the others and replace invalid UTF-8.
func (r *jsonReader) plainString(ascii bool) []byte {
	if r.peek() != '"' {
		r.giveUp()
		return nil
	}
	d := r.data
	start, utf := r.off+1, false
	for i := start; ; i++ {
		i = plainRun(d, i)
		if i >= len(d) {
			break
		}
		switch c := d[i]; {
		case c == '"':
			s := d[start:i]
			if utf && (ascii || !utf8.Valid(s)) {
				r.giveUp()
				return nil
			}
			r.off = i + 1
			return s
		case c >= utf8.RuneSelf:
			utf = true
		default: // a backslash or a control character
			r.giveUp()
			return nil
		}
	}
	r.giveUp()
	return nil
}

// plainRun returns the index of the first byte from d[i] on that may end
// or escape a string, or not be ASCII: a quote, a backslash, a control
// character or a byte ≥ 0x80; len(d) when there is none. It looks at eight
// bytes at a time.
func plainRun(d []byte, i int) int {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for ; i+8 <= len(d); i += 8 {
		x := binary.LittleEndian.Uint64(d[i:])
		// A byte of each term has its high bit set where x's byte is a
		// control character, a quote, a backslash, or ≥ 0x80. A borrow
		// can only mark bytes above one that is marked rightly, so the
		// lowest mark is right.
		q, b := x^(ones*'"'), x^(ones*'\\')
		marks := ((x - ones*0x20) | (q - ones) | (b - ones)) &^ x & highs
		marks |= x & highs
		if marks != 0 {
			return i + bits.TrailingZeros64(marks)/8
		}
	}
	for ; i < len(d); i++ {
		if c := d[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return i
		}
	}
	return len(d)
}

// string reads a string field. known is a string it is likely to equal,
// returned rather than a copy when it does.
func (r *jsonReader) string(known string) string {
	s := r.plainString(false)
	if string(s) == known {
		return known
	}
	return string(s)
}

// entityKind reads an entity kind, without copying the kinds there are.
func (r *jsonReader) entityKind() homemesh.EntityKind {
	s := r.plainString(false)
	for _, k := range homemesh.EntityKinds {
		if string(s) == string(k) {
			return k
		}
	}
	return homemesh.EntityKind(s)
}

// int reads a number into an int, as json.Unmarshal does for integers of
// up to 18 digits; it leaves larger ones and fractions to encoding/json.
func (r *jsonReader) int() int {
	s := r.number()
	neg := len(s) > 0 && s[0] == '-'
	if neg {
		s = s[1:]
	}
	if len(s) == 0 || len(s) > 18 {
		r.giveUp()
		return 0
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			r.giveUp()
			return 0
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n
}

// float reads a number into a float64 as json.Unmarshal does; it leaves
// numbers out of range to encoding/json.
func (r *jsonReader) float() float64 {
	s := r.number()
	if r.bad {
		return 0
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		r.giveUp()
		return 0
	}
	return f
}

// bool reads true or false.
func (r *jsonReader) bool() bool {
	switch r.peek() {
	case 't':
		r.literal("true")
		return true
	case 'f':
		r.literal("false")
		return false
	}
	r.giveUp()
	return false
}

// time reads a time into t with time.Time's UnmarshalJSON, given the
// JSON string's bytes as encoding/json gives them to it.
func (r *jsonReader) time(t *time.Time) {
	if r.peek() != '"' {
		r.giveUp()
		return
	}
	start := r.off
	r.skipString()
	if r.bad {
		return
	}
	text := r.data[start:r.off]
	if bytes.Equal(text, r.lastTimeText) {
		*t = r.lastTime
		return
	}
	if err := t.UnmarshalJSON(text); err != nil {
		r.giveUp()
		return
	}
	// Only a UTC time is shared: one with an offset may carry a new
	// *time.Location on every parse.
	if len(text) > 2 && text[len(text)-2] == 'Z' {
		r.lastTime, r.lastTimeText = *t, text
	}
}

// raw reads any value and returns its JSON, as json.RawMessage holds it
// but not copied.
func (r *jsonReader) raw() []byte {
	r.peek()
	start := r.off
	r.skipValue(0)
	if r.bad {
		return nil
	}
	return r.data[start:r.off]
}

// skipValue checks and skips one value, as encoding/json's scanner checks
// it, at depth levels of nesting below the value being skipped.
func (r *jsonReader) skipValue(depth int) {
	switch r.peek() {
	case '"':
		r.skipString()
	case '{':
		if depth >= maxSkipDepth {
			r.giveUp()
			return
		}
		r.off++
		for first := true; r.moreMembers(first); first = false {
			r.skipString()
			r.expect(':')
			r.skipValue(depth + 1)
		}
	case '[':
		if depth >= maxSkipDepth {
			r.giveUp()
			return
		}
		r.off++
		for first := true; r.moreElements(first); first = false {
			r.skipValue(depth + 1)
		}
	case 't':
		r.literal("true")
	case 'f':
		r.literal("false")
	case 'n':
		r.literal("null")
	default:
		r.number()
	}
}

// literal consumes word.
func (r *jsonReader) literal(word string) {
	if !bytes.HasPrefix(r.data[r.off:], []byte(word)) {
		r.giveUp()
		return
	}
	r.off += len(word)
}

// skipString checks and skips a string: any bytes but control characters,
// and escapes as JSON has them.
func (r *jsonReader) skipString() {
	if r.peek() != '"' {
		r.giveUp()
		return
	}
	d := r.data
	for i := r.off + 1; ; {
		i = plainRun(d, i)
		if i >= len(d) {
			break
		}
		switch c := d[i]; {
		case c == '"':
			r.off = i + 1
			return
		case c >= utf8.RuneSelf:
			i++
		case c == '\\':
			if i+1 >= len(d) {
				r.giveUp()
				return
			}
			switch d[i+1] {
			case 'b', 'f', 'n', 'r', 't', '\\', '/', '"':
				i += 2
			case 'u':
				if i+5 >= len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					r.giveUp()
					return
				}
				i += 6
			default:
				r.giveUp()
				return
			}
		default: // a control character
			r.giveUp()
			return
		}
	}
	r.giveUp()
}

// number checks and consumes a number as JSON's grammar has it and returns
// its text.
func (r *jsonReader) number() []byte {
	r.peek()
	d, start := r.data, r.off
	i := start
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && '1' <= d[i] && d[i] <= '9':
		i = skipDigits(d, i+1)
	default:
		r.giveUp()
		return nil
	}
	if i < len(d) && d[i] == '.' {
		if i+1 >= len(d) || !isDigit(d[i+1]) {
			r.giveUp()
			return nil
		}
		i = skipDigits(d, i+1)
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			r.giveUp()
			return nil
		}
		i = skipDigits(d, i)
	}
	r.off = i
	return d[start:i]
}

func skipDigits(d []byte, i int) int {
	for i < len(d) && isDigit(d[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// The fields of each object read, as encoding/json matches keys to them.
var (
	envelopeFields    = []string{"v", "id", "home", "time", "type", "payload"}
	stateChangeFields = []string{"home_id", "device_id", "entity_id", "kind", "state"}
	stateFields       = []string{"value", "attributes", "available", "changed_at", "updated_at"}
	telemetryFields   = []string{"points"}
	pointFields       = []string{"entity_id", "time", "value", "kind"}
)

// readEnvelope reads data into env as json.Unmarshal would, the payload
// with readPayload. It reports false when it gave up; env then holds
// anything, and the message is for encoding/json.
func readEnvelope[P any](data []byte, home string, env *envelope[P], readPayload func(*jsonReader, *P)) bool {
	r := &jsonReader{data: data, home: home}
	if r.peek() != '{' {
		return false
	}
	r.off++
	var seen uint8
	for first := true; r.moreMembers(first); first = false {
		switch key := r.key(); string(key) {
		case "v":
			r.field(&seen, 1<<0)
			env.V = r.int()
		case "id":
			r.field(&seen, 1<<1)
			env.ID = r.string("")
		case "home":
			r.field(&seen, 1<<2)
			env.Home = r.string(home)
		case "time":
			r.field(&seen, 1<<3)
			r.time(&env.Time)
		case "type":
			r.field(&seen, 1<<4)
			switch s := r.plainString(false); string(s) {
			case TypeStateChanges:
				env.Type = TypeStateChanges
			case TypeTelemetry:
				env.Type = TypeTelemetry
			default:
				env.Type = string(s)
			}
		case "payload":
			r.field(&seen, 1<<5)
			readPayload(r, &env.Payload)
		default:
			r.skipUnknown(key, envelopeFields)
		}
	}
	return r.end()
}

// stateChanges reads a state log's payload, a list of changes. Their
// values are not copied: they stay in the message.
func (r *jsonReader) stateChanges(changes *[]stateChangeWire) {
	if !r.open('[') {
		return
	}
	*changes = (*changes)[:0]
	for first := true; r.moreElements(first); first = false {
		*changes = append(*changes, stateChangeWire{})
		r.stateChange(&(*changes)[len(*changes)-1])
	}
	if *changes == nil {
		*changes = []stateChangeWire{} // as encoding/json makes an empty list
	}
}

func (r *jsonReader) stateChange(sc *stateChangeWire) {
	if !r.open('{') {
		return
	}
	var seen uint8
	for first := true; r.moreMembers(first); first = false {
		switch key := r.key(); string(key) {
		case "home_id":
			r.field(&seen, 1<<0)
			sc.HomeID = r.string(r.home)
		case "device_id":
			r.field(&seen, 1<<1)
			sc.DeviceID = r.string(r.lastDevice)
			r.lastDevice = sc.DeviceID
		case "entity_id":
			r.field(&seen, 1<<2)
			sc.EntityID = r.string("")
		case "kind":
			r.field(&seen, 1<<3)
			sc.Kind = r.entityKind()
		case "state":
			r.field(&seen, 1<<4)
			r.state(sc)
		default:
			r.skipUnknown(key, stateChangeFields)
		}
	}
}

func (r *jsonReader) state(sc *stateChangeWire) {
	if !r.open('{') {
		return
	}
	st := &sc.State
	var seen uint8
	for first := true; r.moreMembers(first); first = false {
		switch key := r.key(); string(key) {
		case "value":
			r.field(&seen, 1<<0)
			st.Value = r.raw()
		case "attributes":
			r.field(&seen, 1<<1)
			// Copied, as json.RawMessage copies: a point keeps them.
			st.Attributes = bytes.Clone(r.raw())
		case "available":
			r.field(&seen, 1<<2)
			st.Available = r.bool()
		case "changed_at":
			r.field(&seen, 1<<3)
			r.time(&st.ChangedAt)
		case "updated_at":
			r.field(&seen, 1<<4)
			r.time(&st.UpdatedAt)
		default:
			r.skipUnknown(key, stateFields)
		}
	}
}

// open consumes the opening delimiter c ('{' or '['), or gives up when
// the next token is something else.
func (r *jsonReader) open(c byte) bool {
	if r.peek() != c {
		r.giveUp()
		return false
	}
	r.off++
	return true
}

// telemetry reads a telemetry payload.
func (r *jsonReader) telemetry(tm *Telemetry) {
	if !r.open('{') {
		return
	}
	var seen uint8
	for first := true; r.moreMembers(first); first = false {
		switch key := r.key(); string(key) {
		case "points":
			r.field(&seen, 1<<0)
			if !r.open('[') {
				return
			}
			tm.Points = tm.Points[:0]
			for first := true; r.moreElements(first); first = false {
				tm.Points = append(tm.Points, TelemetryPoint{})
				r.telemetryPoint(&tm.Points[len(tm.Points)-1])
			}
			if tm.Points == nil {
				tm.Points = []TelemetryPoint{} // as encoding/json makes an empty list
			}
		default:
			r.skipUnknown(key, telemetryFields)
		}
	}
}

func (r *jsonReader) telemetryPoint(tp *TelemetryPoint) {
	if !r.open('{') {
		return
	}
	var seen uint8
	for first := true; r.moreMembers(first); first = false {
		switch key := r.key(); string(key) {
		case "entity_id":
			r.field(&seen, 1<<0)
			tp.EntityID = r.string("")
		case "time":
			r.field(&seen, 1<<1)
			r.time(&tp.Time)
		case "value":
			r.field(&seen, 1<<2)
			tp.Value = r.float()
		case "kind":
			r.field(&seen, 1<<3)
			tp.Kind = r.entityKind()
		default:
			r.skipUnknown(key, pointFields)
		}
	}
}

// rawPayload reads an event's payload, copied as json.RawMessage copies
// it: the event keeps it.
func (r *jsonReader) rawPayload(p *json.RawMessage) {
	*p = bytes.Clone(r.raw())
}
