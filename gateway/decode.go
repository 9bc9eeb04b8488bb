package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/homemesh/homemesh"
)

// MaxBody bounds every request body, and every WebSocket message a client
// sends. The largest legitimate body, a credential with its allow list, is
// far below it.
const MaxBody = 64 << 10

// request is a decoded request body that can check its own shape.
type request interface {
	validate() error
}

// decodeBody reads r's body, at most MaxBody bytes, strictly into v and
// validates it.
func decodeBody(w http.ResponseWriter, r *http.Request, v request) error {
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	return decodeBytes(data, v)
}

// readBody reads r's body, at most MaxBody bytes. A longer body is
// reported as too large, not as unreadable, so that the client learns the
// limit it hit.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return nil, tooLarge()
		}
		return nil, homemesh.Invalid("body", "cannot read the request body")
	}
	return data, nil
}

// decodeBytes decodes exactly one JSON object from data into v and
// validates it. Unknown fields (matched exactly: encoding/json alone would
// accept "Command" for "command"), wrong types and trailing data are
// KindInvalid errors naming the field.
func decodeBytes(data []byte, v request) error {
	if len(data) > MaxBody {
		return tooLarge()
	}
	// First pass: one object, nothing after it, only known keys.
	dec := json.NewDecoder(bytes.NewReader(data))
	var obj map[string]json.RawMessage
	if err := dec.Decode(&obj); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return homemesh.Invalid("body", "unexpected data after the JSON object")
	}
	known := fieldNames(v)
	var unknown []string
	for k := range obj {
		if !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return decodeError(fmt.Errorf("json: unknown field %q", unknown[0]))
	}
	// Second pass: into the typed value.
	dec = json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	return v.validate()
}

// fieldNames returns the JSON names of the fields of the struct v points to.
func fieldNames(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	out := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		if name != "-" && f.IsExported() {
			out[name] = true
		}
	}
	return out
}

func tooLarge() error {
	return &homemesh.Error{Kind: homemesh.KindInvalid, Field: "body",
		Message: fmt.Sprintf("request body larger than %d KiB", MaxBody>>10), Err: errBodyTooLarge}
}

// decodeError turns a JSON decoding error into a user-safe KindInvalid
// error. The messages of encoding/json mention Go types; these do not.
func decodeError(err error) error {
	var (
		maxErr    *http.MaxBytesError
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &maxErr):
		return tooLarge()
	case errors.Is(err, io.EOF):
		return homemesh.Invalid("body", "a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return homemesh.Invalid("body", "malformed JSON: unexpected end")
	case errors.As(err, &syntaxErr):
		return homemesh.Invalid("body", "malformed JSON at offset %d", syntaxErr.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return homemesh.Invalid("body", "must be a JSON %s", jsonType(typeErr.Type))
		}
		return homemesh.Invalid(typeErr.Field, "must be a JSON %s, not %s", jsonType(typeErr.Type), typeErr.Value)
	}
	// encoding/json reports unknown fields only as text.
	const unknownPrefix = `json: unknown field "`
	if msg := err.Error(); strings.HasPrefix(msg, unknownPrefix) && strings.HasSuffix(msg, `"`) {
		name, err := strconv.Unquote(strings.TrimPrefix(msg, unknownPrefix[:len(unknownPrefix)-1]))
		if err != nil {
			name = "?"
		}
		if len(name) > 64 {
			name = name[:64]
		}
		if name == "" {
			return homemesh.Invalid("body", "unknown field \"\"")
		}
		return homemesh.Invalid(strings.ToValidUTF8(name, "?"), "unknown field")
	}
	return homemesh.Invalid("body", "malformed JSON")
}

// jsonType names the JSON type that decodes into t.
func jsonType(t reflect.Type) string {
	if t == nil {
		return "value"
	}
	switch t.Kind() {
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Pointer:
		return jsonType(t.Elem())
	}
	return "value"
}

// maxName bounds command and parameter names.
const maxName = 64

// validName reports whether s is a command or parameter name as Home
// Assistant spells its services and fields: lower-case snake_case.
func validName(s string) bool {
	if s == "" || len(s) > maxName || s[0] < 'a' || s[0] > 'z' {
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

func required(field, value string) error {
	if value == "" {
		return homemesh.Invalid(field, "is required")
	}
	return nil
}

// onboardRequest is the body of POST /api/v1/onboard.
type onboardRequest struct {
	Code     string `json:"code"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func (q *onboardRequest) validate() error {
	return firstErr(required("code", q.Code), required("username", q.Username), required("password", q.Password))
}

// loginRequest is the body of POST /api/v1/auth/login.
type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTP     string `json:"totp,omitempty"`
}

func (q *loginRequest) validate() error {
	return firstErr(required("username", q.Username), required("password", q.Password))
}

// refreshRequest is the body of POST /api/v1/auth/refresh.
type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (q *refreshRequest) validate() error { return required("refresh_token", q.RefreshToken) }

// totpConfirmRequest is the body of POST /api/v1/auth/mfa/totp/confirm.
type totpConfirmRequest struct {
	Code string `json:"code"`
}

func (q *totpConfirmRequest) validate() error { return required("code", q.Code) }

// totpDisableRequest is the body of DELETE /api/v1/auth/mfa/totp.
type totpDisableRequest struct {
	Password string `json:"password"`
	Code     string `json:"code"`
}

func (q *totpDisableRequest) validate() error {
	return firstErr(required("password", q.Password), required("code", q.Code))
}

// commandRequest is the body of POST /api/v1/entities/{id}/commands.
type commandRequest struct {
	Command string         `json:"command"`
	Params  map[string]any `json:"params,omitempty"`
}

// maxParams bounds the number of command parameters; Home Assistant's
// richest service (light.turn_on) has about a dozen.
const maxParams = 32

func (q *commandRequest) validate() error {
	if err := required("command", q.Command); err != nil {
		return err
	}
	if !validName(q.Command) {
		return homemesh.Invalid("command", "must be 1 to %d characters of a-z, 0-9 and _, starting with a letter", maxName)
	}
	if len(q.Params) > maxParams {
		return homemesh.Invalid("params", "at most %d parameters", maxParams)
	}
	for k := range q.Params {
		if !validName(k) {
			return homemesh.Invalid("params", "parameter names must be 1 to %d characters of a-z, 0-9 and _, starting with a letter", maxName)
		}
	}
	return nil
}

// credentialRequest is the body of POST /api/v1/credentials.
type credentialRequest struct {
	Name  string   `json:"name"`
	Allow []string `json:"allow"`
}

// maxAllow bounds the topic filters of one credential.
const maxAllow = 64

// validAllow checks the bounds that credentials and pairings share on a
// list of MQTT topic filters; whether the list may be empty differs between
// them and stays with each.
func validAllow(allow []string) error {
	if len(allow) > maxAllow {
		return homemesh.Invalid("allow", "at most %d topic filters", maxAllow)
	}
	for i, f := range allow {
		if f == "" {
			return homemesh.Invalid(fmt.Sprintf("allow.%d", i), "must not be empty")
		}
	}
	return nil
}

func (q *credentialRequest) validate() error {
	if err := required("name", q.Name); err != nil {
		return err
	}
	if len(q.Allow) == 0 {
		return homemesh.Invalid("allow", "at least one MQTT topic filter is required")
	}
	return validAllow(q.Allow)
}

// pairingRequest is the body of POST /api/v1/pairings. A missing allow
// list gives the device only its own topics.
type pairingRequest struct {
	Name  string   `json:"name"`
	Allow []string `json:"allow,omitempty"`
}

func (q *pairingRequest) validate() error {
	if err := required("name", q.Name); err != nil {
		return err
	}
	if q.Allow != nil && len(q.Allow) == 0 {
		return homemesh.Invalid("allow", "omit it for the device's own topics, or list at least one MQTT topic filter")
	}
	return validAllow(q.Allow)
}

// pairingClaimRequest is the body of POST /api/v1/pairings/claim.
type pairingClaimRequest struct {
	Code     string `json:"code"`
	CSR      string `json:"csr,omitempty"`
	MeshKey  string `json:"mesh_key,omitempty"`  // base64 X25519 public key; auth checks it
	MeshRole string `json:"mesh_role,omitempty"` // router or leaf; auth checks it
}

// maxCSR bounds a PEM certificate request.
const maxCSR = 16 << 10

func (q *pairingClaimRequest) validate() error {
	if err := required("code", q.Code); err != nil {
		return err
	}
	if len(q.Code) > 64 {
		return homemesh.Invalid("code", "is not a setup code")
	}
	if len(q.CSR) > maxCSR {
		return homemesh.Invalid("csr", "must be at most %d bytes", maxCSR)
	}
	// A 32-byte key is 44 base64 characters; auth checks the rest.
	if len(q.MeshKey) > 64 {
		return homemesh.Invalid("mesh_key", "must be the base64 of a 32-byte X25519 public key")
	}
	if q.MeshRole != "" && q.MeshRole != "router" && q.MeshRole != "leaf" {
		return homemesh.Invalid("mesh_role", "must be router or leaf")
	}
	return nil
}

// wsMessage is a message a WebSocket client sends: only
// {"type":"auth","access_token":"…"} exists.
type wsMessage struct {
	Type        string `json:"type"`
	AccessToken string `json:"access_token"`
}

func (q *wsMessage) validate() error {
	if q.Type != "auth" {
		return homemesh.Invalid("type", `must be "auth"`)
	}
	return required("access_token", q.AccessToken)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
