package bench

import (
	"bytes"
	"strconv"
)

// Payload returns the JSON state message that bench device publishers send:
// {"temperature":…,"humidity":…,"battery":…,"seq":…,"t":<sentUnixNano>},
// about 100 bytes. The values vary with seq so that consumers that suppress
// unchanged states still see every message as a change.
func Payload(seq int, sentUnixNano int64) []byte {
	b := make([]byte, 0, 112)
	b = append(b, `{"temperature":`...)
	b = strconv.AppendFloat(b, 18+float64(seq%100)/10, 'f', 1, 64)
	b = append(b, `,"humidity":`...)
	b = strconv.AppendFloat(b, 40+float64(seq%200)/10, 'f', 1, 64)
	b = append(b, `,"battery":`...)
	b = strconv.AppendInt(b, int64(100-seq%50), 10)
	b = append(b, `,"linkquality":`...)
	b = strconv.AppendInt(b, int64(120+seq%90), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"t":`...)
	b = strconv.AppendInt(b, sentUnixNano, 10)
	b = append(b, '}')
	return b
}

// SentTime extracts the send timestamp (unix nanoseconds) from a message
// built by Payload. It reports false when payload carries none. It scans
// instead of decoding the JSON so that a sink keeps up with the publishers.
func SentTime(payload []byte) (int64, bool) {
	i := bytes.Index(payload, []byte(`"t":`))
	if i < 0 {
		return 0, false
	}
	rest := payload[i+4:]
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	if end == 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	if err != nil {
		return 0, false
	}
	return v, true
}
