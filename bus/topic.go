package bus

import (
	"fmt"
	"strings"
)

// MaxTopicLen is the longest MQTT topic the bridge maps, in bytes. MQTT
// allows 65535; a few hundred is plenty for real devices and bounds the cost
// of a hostile one.
const MaxTopicLen = 1024

// MQTTPrefix returns the subject prefix under which the MQTT topics of a home
// are bridged.
func MQTTPrefix(home string) string { return Prefix + "." + home + ".mqtt." }

// MQTTWildcard matches every bridged MQTT message of a home.
func MQTTWildcard(home string) string { return Prefix + "." + home + ".mqtt.>" }

// MQTTSubject maps an MQTT topic name (no wildcards) to its bus subject.
// Each topic level becomes one subject token: ASCII letters, digits and '-'
// pass through; every other byte, '_' included, becomes '_' followed by two
// upper-case hex digits; an empty level becomes the lone token "_". The
// mapping is injective, so MQTTTopic reverses it exactly: topics with
// spaces, dots, '$', '+' or non-ASCII letters survive the round trip.
func MQTTSubject(home, topic string) (string, error) {
	if err := checkTopic(topic, false); err != nil {
		return "", err
	}
	var b strings.Builder
	b.Grow(len(MQTTPrefix(home)) + len(topic) + 8)
	b.WriteString(MQTTPrefix(home))
	writeLevels(&b, topic, false)
	return b.String(), nil
}

// MQTTFilterSubject maps an MQTT topic filter to a subject filter: '+' maps
// to '*' and a trailing '#' to '>'. As in MQTT, "a/#" also matches "a"
// itself, which a single subject filter cannot express; the second return
// value is that parent subject, or "" when the filter has no '#'.
func MQTTFilterSubject(home, filter string) (subject, parent string, err error) {
	if err := checkTopic(filter, true); err != nil {
		return "", "", err
	}
	var b strings.Builder
	b.WriteString(MQTTPrefix(home))
	if filter == "#" {
		return b.String() + ">", "", nil
	}
	if strings.HasSuffix(filter, "/#") {
		writeLevels(&b, strings.TrimSuffix(filter, "/#"), true)
		parent = b.String()
		return parent + ".>", parent, nil
	}
	writeLevels(&b, filter, true)
	return b.String(), "", nil
}

// MQTTTopic maps a bridged subject back to its MQTT topic.
func MQTTTopic(home, subject string) (string, error) {
	p := MQTTPrefix(home)
	if !strings.HasPrefix(subject, p) || len(subject) == len(p) {
		return "", fmt.Errorf("subject %q is not under %q", subject, p)
	}
	tokens := strings.Split(subject[len(p):], ".")
	var b strings.Builder
	for i, tok := range tokens {
		if i > 0 {
			b.WriteByte('/')
		}
		if tok == "_" {
			continue
		}
		for j := 0; j < len(tok); j++ {
			c := tok[j]
			switch {
			case isPlain(c):
				b.WriteByte(c)
			case c == '_' && j+2 < len(tok) && isUpperHex(tok[j+1]) && isUpperHex(tok[j+2]):
				dec := unhex(tok[j+1])<<4 | unhex(tok[j+2])
				if isPlain(dec) {
					// Only the canonical form is accepted, so that one topic
					// has exactly one subject.
					return "", fmt.Errorf("subject %q: %q escapes a plain character", subject, tok)
				}
				b.WriteByte(dec)
				j += 2
			default:
				return "", fmt.Errorf("subject %q: token %q is not an escaped topic level", subject, tok)
			}
		}
		if tok == "" {
			return "", fmt.Errorf("subject %q has an empty token", subject)
		}
	}
	return b.String(), nil
}

func writeLevels(b *strings.Builder, topic string, filter bool) {
	for i, level := range strings.Split(topic, "/") {
		if i > 0 {
			b.WriteByte('.')
		}
		if level == "" {
			b.WriteByte('_')
			continue
		}
		if filter && level == "+" {
			b.WriteByte('*')
			continue
		}
		for j := 0; j < len(level); j++ {
			c := level[j]
			if isPlain(c) {
				b.WriteByte(c)
				continue
			}
			const hexDigits = "0123456789ABCDEF"
			b.WriteByte('_')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xF])
		}
	}
}

func checkTopic(topic string, filter bool) error {
	if topic == "" {
		return fmt.Errorf("empty topic")
	}
	if len(topic) > MaxTopicLen {
		return fmt.Errorf("topic longer than %d bytes", MaxTopicLen)
	}
	if strings.IndexByte(topic, 0) >= 0 {
		return fmt.Errorf("topic contains a NUL byte")
	}
	levels := strings.Split(topic, "/")
	for i, level := range levels {
		if !filter {
			if strings.ContainsAny(level, "+#") {
				return fmt.Errorf("topic name contains a wildcard in level %d", i+1)
			}
			continue
		}
		if strings.Contains(level, "#") && (level != "#" || i != len(levels)-1) {
			return fmt.Errorf("'#' must be the whole last level of a filter")
		}
		if strings.Contains(level, "+") && level != "+" {
			return fmt.Errorf("'+' must be a whole level of a filter")
		}
	}
	return nil
}

func isPlain(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

func isUpperHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'F' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}
