package auth

import "encoding/base64"

func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func encb64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
