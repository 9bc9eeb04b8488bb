package node

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"

	"github.com/homemesh/homemesh"
)

// decodeKey accepts a 32-byte key as raw bytes, hex or base64, so the
// output of `openssl rand -hex 32` or `head -c32 /dev/urandom` both work.
func decodeKey(data []byte, field string) ([]byte, error) {
	s := bytes.TrimSpace(data)
	if len(s) == 32 {
		return s, nil
	}
	if k, err := hex.DecodeString(string(s)); err == nil && len(k) == 32 {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(s)); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	if len(data) == 32 {
		return data, nil
	}
	return nil, homemesh.Invalid(field, "must hold a 32-byte key (raw, hex or base64)")
}
