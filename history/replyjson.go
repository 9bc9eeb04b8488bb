package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// MarshalJSON writes r as encoding/json would (with Points never null),
// several times faster: a year of hourly statistics is 8,760 records,
// and reflection-driven encoding of them took longer than the query.
func (r HistoryReply) MarshalJSON() ([]byte, error) {
	b := r.appendHead(make([]byte, 0, 128+100*len(r.Points)))
	for i := range r.Points {
		var err error
		if b, err = r.Points[i].appendJSON(b); err != nil {
			return nil, err
		}
		b = append(b, ',')
	}
	return r.appendTail(b), nil
}

// appendHead appends r's JSON up to its first record. The records follow,
// each with a comma after it, then appendTail ends the reply.
func (r *HistoryReply) appendHead(b []byte) []byte {
	b = append(b, `{"entity_id":`...)
	b = appendJSONString(b, r.EntityID)
	b = append(b, `,"resolution":`...)
	b = appendJSONString(b, string(r.Resolution))
	return append(b, `,"points":[`...)
}

// appendTail ends a reply begun by appendHead, dropping the last record's
// comma.
func (r *HistoryReply) appendTail(b []byte) []byte {
	if b[len(b)-1] == ',' {
		b = b[:len(b)-1]
	}
	b = append(b, ']')
	if r.Next != "" {
		b = append(b, `,"next":`...)
		b = appendJSONString(b, r.Next)
	}
	return append(b, '}')
}

// appendJSON appends the record as encoding/json writes it, omitting the
// empty fields the struct tags omit.
func (p *PointRecord) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"time":"`...)
	b = appendRFC3339Nano(b, p.Time)
	b = append(b, '"')
	if p.Value != nil {
		b = append(b, `,"value":`...)
		switch v := p.Value.(type) {
		case float64:
			var err error
			if b, err = appendJSONFloat(b, v); err != nil {
				return nil, err
			}
		case string:
			b = appendJSONString(b, v)
		default:
			raw, err := json.Marshal(v)
			if err != nil {
				return nil, err
			}
			b = append(b, raw...)
		}
	}
	if len(p.Attributes) > 0 {
		b = append(b, `,"attributes":`...)
		var compact bytes.Buffer
		if err := json.Compact(&compact, p.Attributes); err != nil {
			return nil, fmt.Errorf("attributes: %w", err)
		}
		out := bytes.NewBuffer(b)
		json.HTMLEscape(out, compact.Bytes())
		b = out.Bytes()
	}
	var err error
	for _, f := range [...]struct {
		key string
		v   *float64
	}{{`,"mean":`, p.Mean}, {`,"min":`, p.Min}, {`,"max":`, p.Max}, {`,"last":`, p.Last}} {
		if f.v != nil {
			b = append(b, f.key...)
			if b, err = appendJSONFloat(b, *f.v); err != nil {
				return nil, err
			}
		}
	}
	if p.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, p.Count, 10)
	}
	if p.OnSeconds != nil {
		b = append(b, `,"on_seconds":`...)
		if b, err = appendJSONFloat(b, *p.OnSeconds); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendStatRecord appends the record of a statistics bucket exactly as
// PointRecord.appendJSON writes the PointRecord the service makes of it:
// mean, min, max and last when the bucket has numbers, the count when not
// zero, and the on-time when not zero or alwaysOnTime. It spares the
// record's pointers and indirections, 8,760 times for a year of hours.
func appendStatRecord(b []byte, st *Stat, alwaysOnTime bool) ([]byte, error) {
	b = append(b, `{"time":"`...)
	b = appendRFC3339Nano(b, st.Start.UTC())
	b = append(b, '"')
	var err error
	if st.NumCount > 0 {
		for _, f := range [...]struct {
			key string
			v   float64
		}{{`,"mean":`, st.Mean()}, {`,"min":`, st.Min}, {`,"max":`, st.Max}, {`,"last":`, st.Last}} {
			b = append(b, f.key...)
			if b, err = appendJSONFloat(b, f.v); err != nil {
				return nil, err
			}
		}
	}
	if st.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, st.Count, 10)
	}
	if st.OnMicros != 0 || alwaysOnTime {
		b = append(b, `,"on_seconds":`...)
		if b, err = appendJSONFloat(b, float64(st.OnMicros)/1e6); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

var errNotJSONNumber = errors.New("history reply: NaN and infinities are not JSON numbers")

// appendJSONFloat appends f as encoding/json writes a float64: plain
// decimals between 1e-6 and 1e21, exponents (e-7, not e-07) outside. JSON
// has no NaN or infinity.
func appendJSONFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, errNotJSONNumber
	}
	if out, ok := appendShortDecimal(b, f); ok {
		return out, nil
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

// exactPowersOfTen are the divisors of appendShortDecimal, each exact in a
// float64.
var exactPowersOfTen = [...]float64{1, 10, 100, 1e3, 1e4}

// appendShortDecimal appends f as strconv's shortest form would, when f is
// the float nearest a decimal of at most four fractional digits, which is
// what most sensor readings and their minima and maxima are; it reports
// false for anything else, zero included (the sign of -0). A year of
// hourly statistics is 35,000 numbers, and the shortest-form search costs
// several times this.
//
// Why it is exact: with k the fewest fractional digits for which the
// nearest float to the decimal i/10^k is f, the shortest form has k
// fractional digits too, and with |i| < 1e15 the float's spacing is under
// a quarter of 10^-k, so only one such i exists and rounding f×10^k finds
// it.
func appendShortDecimal(b []byte, f float64) ([]byte, bool) {
	if a := math.Abs(f); a < 1e-4 || a >= 1e15 {
		return b, false
	}
	for k, p := range exactPowersOfTen {
		i := math.Round(f * p)
		if math.Abs(i) >= 1e15 {
			return b, false
		}
		if i/p != f {
			continue
		}
		if i < 0 {
			b = append(b, '-')
			i = -i
		}
		var buf [24]byte
		digits := strconv.AppendUint(buf[:0], uint64(i), 10)
		if k == 0 {
			return append(b, digits...), true
		}
		n := len(digits)
		if n <= k {
			// 0.00ddd: the fraction's leading zeros.
			b = append(b, '0', '.')
			for range k - n {
				b = append(b, '0')
			}
			return append(b, digits...), true
		}
		b = append(b, digits[:n-k]...)
		b = append(b, '.')
		return append(b, digits[n-k:]...), true
	}
	return b, false
}

// appendRFC3339Nano appends t as t.AppendFormat(b, time.RFC3339Nano)
// does, writing the common case of whole seconds in UTC directly.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	if t.Location() != time.UTC || t.Nanosecond() != 0 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	hour, minute, second := t.Clock()
	two := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append(two(b, int(month)), '-')
	b = append(two(b, day), 'T')
	b = append(two(b, hour), ':')
	b = append(two(b, minute), ':')
	return append(two(b, second), 'Z')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // cannot fail for a string
	return append(b, q...)
}
