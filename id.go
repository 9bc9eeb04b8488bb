package homemesh

import (
	"crypto/rand"
	"strings"
)

// MaxIDLen bounds identifiers so that subjects and keys stay small.
const MaxIDLen = 128

// ValidID reports whether s is a valid identifier: 1 to MaxIDLen characters
// from [a-z0-9_-]. Identifiers become bus subject tokens and storage keys,
// which is why the alphabet is this narrow.
func ValidID(s string) bool {
	if s == "" || len(s) > MaxIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// CheckID returns a KindInvalid error naming field when id is not a valid
// identifier.
func CheckID(field, id string) error {
	if !ValidID(id) {
		return Invalid(field, "must be 1 to %d characters of a-z, 0-9, _ and -", MaxIDLen)
	}
	return nil
}

// Slug turns free text (an MQTT unique_id, a device name) into a valid
// identifier. It lower-cases letters, keeps digits, '_' and '-', and replaces
// runs of anything else by one '_'. Distinct inputs can share a slug; callers
// that need uniqueness must check for collisions. An input with nothing
// usable yields "x".
func Slug(s string) string {
	var b strings.Builder
	lastUnderscore := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
			lastUnderscore = false
		case r == '_':
			b.WriteRune(r)
			lastUnderscore = true
		default:
			if !lastUnderscore && b.Len() > 0 {
				b.WriteByte('_')
				lastUnderscore = true
			}
		}
		if b.Len() >= MaxIDLen {
			break
		}
	}
	out := strings.TrimRight(b.String(), "_")
	if len(out) > MaxIDLen {
		out = out[:MaxIDLen]
	}
	if out == "" {
		return "x"
	}
	return out
}

// RandomID returns a random identifier of n characters from [a-z0-9], used
// for homes and credentials where guessing must be impractical.
func RandomID(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		for _, c := range buf {
			// Reject the top of the byte range so every character is
			// equally likely (252 = 7*36).
			if c < 252 && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out)
}
