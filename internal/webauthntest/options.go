package webauthntest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// maxOptions bounds the options a relying party may send; real ones are a
// few hundred bytes.
const maxOptions = 64 << 10

// Bytes is binary data that a relying party sends as base64url text, with
// or without padding.
type Bytes []byte

// UnmarshalJSON decodes a base64url string.
func (b *Bytes) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("not a base64url string: %w", err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return fmt.Errorf("not a base64url string: %w", err)
	}
	*b = raw
	return nil
}

// CreationOptions are the parts of PublicKeyCredentialCreationOptions the
// authenticator uses.
type CreationOptions struct {
	RP struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"rp"`
	User struct {
		ID          Bytes  `json:"id"`
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
	} `json:"user"`
	Challenge Bytes                  `json:"challenge"`
	Params    []credentialParam      `json:"pubKeyCredParams"`
	Exclude   []credentialDescriptor `json:"excludeCredentials"`
	Selection struct {
		ResidentKey        string `json:"residentKey"`
		RequireResidentKey bool   `json:"requireResidentKey"`
		UserVerification   string `json:"userVerification"`
	} `json:"authenticatorSelection"`
}

// RequestOptions are the parts of PublicKeyCredentialRequestOptions the
// authenticator uses.
type RequestOptions struct {
	Challenge        Bytes                  `json:"challenge"`
	RPID             string                 `json:"rpId"`
	Allow            []credentialDescriptor `json:"allowCredentials"`
	UserVerification string                 `json:"userVerification"`
}

type credentialParam struct {
	Type string `json:"type"`
	Alg  int    `json:"alg"`
}

type credentialDescriptor struct {
	Type string `json:"type"`
	ID   Bytes  `json:"id"`
}

// minChallenge is the shortest challenge WebAuthn allows (§13.4.3).
const minChallenge = 16

// ParseCreationOptions parses what a relying party sends for
// navigator.credentials.create: {"publicKey": {...}} or the inner object.
// It checks what an authenticator needs: an RP ID, a user handle of 1 to 64
// bytes and a challenge of at least 16 bytes.
func ParseCreationOptions(data []byte) (CreationOptions, error) {
	var o CreationOptions
	if err := unwrap(data, &o); err != nil {
		return o, err
	}
	switch {
	case o.RP.ID == "":
		return o, errors.New("webauthntest: options: rp.id is required")
	case len(o.User.ID) == 0 || len(o.User.ID) > 64:
		return o, errors.New("webauthntest: options: user.id must be 1 to 64 bytes")
	case len(o.Challenge) < minChallenge:
		return o, errors.New("webauthntest: options: challenge must be at least 16 bytes")
	}
	return o, nil
}

// ParseRequestOptions parses what a relying party sends for
// navigator.credentials.get: {"publicKey": {...}} or the inner object. It
// requires an RP ID and a challenge of at least 16 bytes.
func ParseRequestOptions(data []byte) (RequestOptions, error) {
	var o RequestOptions
	if err := unwrap(data, &o); err != nil {
		return o, err
	}
	switch {
	case o.RPID == "":
		return o, errors.New("webauthntest: options: rpId is required")
	case len(o.Challenge) < minChallenge:
		return o, errors.New("webauthntest: options: challenge must be at least 16 bytes")
	}
	return o, nil
}

// unwrap decodes data into v, looking inside a "publicKey" member when the
// top-level object has one.
func unwrap(data []byte, v any) error {
	if len(data) > maxOptions {
		return fmt.Errorf("webauthntest: options larger than %d bytes", maxOptions)
	}
	var outer struct {
		PublicKey json.RawMessage `json:"publicKey"`
	}
	if err := json.Unmarshal(data, &outer); err != nil {
		return fmt.Errorf("webauthntest: options: %w", err)
	}
	inner := data
	if len(bytes.TrimSpace(outer.PublicKey)) > 0 && !bytes.Equal(bytes.TrimSpace(outer.PublicKey), []byte("null")) {
		inner = outer.PublicKey
	}
	if err := json.Unmarshal(inner, v); err != nil {
		return fmt.Errorf("webauthntest: options: %w", err)
	}
	return nil
}
