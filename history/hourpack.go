package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// The hourly tier of closed days is stored packed: one value per entity
// and UTC day holding that day's hourly statistics. A year of an entity's
// hours is then 365 stored values instead of 8,760 rows, and a chart of a
// year reads 24 times fewer rows; per-row work, not bytes, was what such a
// read spent its time on in both stores.
//
// The format, version 1:
//
//	byte     version (1)
//	then per bucket, in increasing hour:
//	byte     hour of the day, 0–23
//	varint   count
//	varint   on-time in microseconds
//	varint   numeric count; when positive it is followed by
//	8 bytes  sum, min, max, last (IEEE 754, little endian, each)
//	varint   last's time, in microseconds after the hour's start
//
// Integers are signed varints (encoding/binary's AppendVarint).

const hourPackVersion = 1

// hourPackMax is the largest packed day: the version byte and 24 buckets
// of at most 1 + 3×10 + 4×8 + 10 bytes.
const hourPackMax = 1 + 24*(1+3*binary.MaxVarintLen64+4*8+binary.MaxVarintLen64)

// PackHours returns the packed form of one entity's hourly statistics of
// one UTC day, which must be in increasing order of start. A bucket
// without numeric points keeps only its count and on-time.
func PackHours(stats []Stat) ([]byte, error) {
	if len(stats) == 0 {
		return nil, errors.New("pack hours: no statistics")
	}
	day := Day(stats[0].Start)
	b := make([]byte, 1, 1+len(stats)*48)
	b[0] = hourPackVersion
	prev := -1
	for _, st := range stats {
		start := st.Start.UTC()
		hour := int(start.Sub(day) / time.Hour)
		switch {
		case start.Truncate(time.Hour) != start:
			return nil, fmt.Errorf("pack hours: bucket start %s is not on the hour", start.Format(time.RFC3339Nano))
		case hour < 0 || hour >= 24:
			return nil, fmt.Errorf("pack hours: bucket %s is not on %s", start.Format(time.RFC3339), day.Format(time.DateOnly))
		case hour <= prev:
			return nil, fmt.Errorf("pack hours: bucket %s is out of order", start.Format(time.RFC3339))
		case st.Count < 0 || st.NumCount < 0:
			return nil, fmt.Errorf("pack hours: bucket %s has a negative count", start.Format(time.RFC3339))
		}
		prev = hour
		b = append(b, byte(hour))
		b = binary.AppendVarint(b, st.Count)
		b = binary.AppendVarint(b, st.OnMicros)
		b = binary.AppendVarint(b, st.NumCount)
		if st.NumCount == 0 {
			continue
		}
		for _, f := range [...]float64{st.Sum, st.Min, st.Max, st.Last} {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
		}
		b = binary.AppendVarint(b, st.LastTime.Sub(start).Microseconds())
	}
	return b, nil
}

// UnpackHours appends to dst the hourly statistics of entity packed by
// PackHours for the UTC day starting at day, in increasing order of
// start. It fails, saying where and why, on anything PackHours does not
// write.
func UnpackHours(dst []Stat, entity string, day time.Time, data []byte) ([]Stat, error) {
	day = day.UTC()
	if !Day(day).Equal(day) {
		return dst, fmt.Errorf("unpack hours: day %s is not a UTC midnight", day.Format(time.RFC3339Nano))
	}
	bad := func(at int, format string, args ...any) error {
		return fmt.Errorf("unpack hours of %s: byte %d: %s", day.Format(time.DateOnly), at, fmt.Sprintf(format, args...))
	}
	if len(data) == 0 {
		return dst, bad(0, "empty")
	}
	if len(data) > hourPackMax {
		return dst, bad(hourPackMax, "%d bytes, more than a day of buckets", len(data))
	}
	if data[0] != hourPackVersion {
		return dst, bad(0, "version %d, want %d", data[0], hourPackVersion)
	}
	i, prev := 1, -1
	varint := func(field string) (int64, error) {
		v, n := binary.Varint(data[i:])
		if n <= 0 {
			return 0, bad(i, "%s: truncated or overlong varint", field)
		}
		i += n
		return v, nil
	}
	for i < len(data) {
		hour := int(data[i])
		if hour >= 24 || hour <= prev {
			return dst, bad(i, "hour %d after hour %d", hour, prev)
		}
		prev = hour
		i++
		st := Stat{Entity: entity, Start: day.Add(time.Duration(hour) * time.Hour)}
		var err error
		if st.Count, err = varint("count"); err != nil {
			return dst, err
		}
		if st.OnMicros, err = varint("on-time"); err != nil {
			return dst, err
		}
		if st.NumCount, err = varint("numeric count"); err != nil {
			return dst, err
		}
		if st.Count < 0 || st.NumCount < 0 {
			return dst, bad(i, "negative count")
		}
		if st.NumCount > 0 {
			if len(data)-i < 32 {
				return dst, bad(i, "truncated numbers")
			}
			for _, f := range [...]*float64{&st.Sum, &st.Min, &st.Max, &st.Last} {
				*f = math.Float64frombits(binary.LittleEndian.Uint64(data[i:]))
				i += 8
			}
			off, err := varint("last time")
			if err != nil {
				return dst, err
			}
			if off < 0 || off >= time.Hour.Microseconds() {
				return dst, bad(i, "last time %d µs is outside the hour", off)
			}
			st.LastTime = st.Start.Add(time.Duration(off) * time.Microsecond)
		}
		dst = append(dst, st)
	}
	return dst, nil
}

// Day returns the start of t's UTC day, the key of a packed day.
func Day(t time.Time) time.Time {
	return t.UTC().Truncate(24 * time.Hour)
}

// MergeSorted merges b into a, both sorted by start with one bucket per
// start and of one entity, merging the buckets they share: the packed and
// the not yet packed parts of an hourly tier. The result may share a's or
// b's array.
func MergeSorted(a, b []Stat) []Stat {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]Stat, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := a[i].Start.Compare(b[j].Start); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			st := a[i]
			st.Merge(b[j])
			out = append(out, st)
			i, j = i+1, j+1
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
