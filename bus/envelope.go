package bus

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/oklog/ulid/v2"
)

// EnvelopeVersion is the schema version written into every envelope. A
// reader rejects a version it does not know rather than guessing.
const EnvelopeVersion = 1

// Envelope wraps every published (not request/reply) message.
type Envelope struct {
	V       int             `json:"v"`
	ID      string          `json:"id"` // ULID: unique and time-ordered
	Home    string          `json:"home"`
	Source  string          `json:"source"` // the publishing service or device
	Time    time.Time       `json:"time"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// NewEnvelope wraps payload, marshalled as JSON, in a fresh envelope.
func NewEnvelope(home, source, typ string, payload any) (Envelope, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("marshal %s payload: %w", typ, err)
	}
	now := time.Now().UTC()
	return Envelope{
		V: EnvelopeVersion, ID: ulid.Make().String(), Home: home, Source: source,
		Time: now, Type: typ, Payload: raw,
	}, nil
}

// EncodeEnvelope returns the JSON of a fresh envelope around payload. It is
// what NewEnvelope followed by json.Marshal produces, without validating and
// copying the payload a second time: state changes are published thousands
// of times a second.
func EncodeEnvelope(home, source, typ string, payload any) ([]byte, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("marshal %s payload: %w", typ, err)
	}
	return EncodeEnvelopeRaw(home, source, typ, raw), nil
}

// EncodeEnvelopeRaw is EncodeEnvelope for a payload that is already JSON;
// raw must be valid JSON, which is not checked.
func EncodeEnvelopeRaw(home, source, typ string, raw []byte) []byte {
	b := make([]byte, 0, len(raw)+160)
	b = append(b, `{"v":`...)
	b = strconv.AppendInt(b, EnvelopeVersion, 10)
	b = append(b, `,"id":"`...)
	b = append(b, ulid.Make().String()...)
	b = append(b, `","home":`...)
	b = appendJSONString(b, home)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, source)
	b = append(b, `,"time":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"payload":`...)
	b = append(b, raw...)
	return append(b, '}')
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // cannot fail for a string
	return append(b, q...)
}

// DecodeEnvelope parses data as an envelope and checks its version.
func DecodeEnvelope(data []byte) (Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return env, homemesh.Invalid("envelope", "not a JSON envelope: %v", err)
	}
	if env.V != EnvelopeVersion {
		return env, homemesh.Invalid("envelope.v", "unsupported version %d", env.V)
	}
	return env, nil
}

// ErrorHeader is the header set on a reply that carries an error. Its value
// is the error kind.
const ErrorHeader = "Hm-Error"

// WireError is the JSON body of an error reply.
type WireError struct {
	Error struct {
		Kind    homemesh.Kind `json:"kind"`
		Message string        `json:"message"`
		Field   string        `json:"field,omitempty"`
		// RetryAfterMS carries homemesh.Error.RetryAfter in milliseconds.
		RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	} `json:"error"`
}

// EncodeError turns err into a reply body. Only the kind, user-safe message
// and field cross the wire; the cause stays in the process that logged it.
// This is the one place errors become bytes.
func EncodeError(err error) (kind homemesh.Kind, body []byte) {
	var w WireError
	w.Error.Kind = homemesh.ErrorKind(err)
	w.Error.Message = homemesh.ErrorMessage(err)
	w.Error.Field = homemesh.ErrorField(err)
	w.Error.RetryAfterMS = homemesh.ErrorRetryAfter(err).Milliseconds()
	body, _ = json.Marshal(w) // cannot fail: strings only
	return w.Error.Kind, body
}

// DecodeError turns an error reply body back into a *homemesh.Error.
func DecodeError(op string, body []byte) error {
	var w WireError
	if err := json.Unmarshal(body, &w); err != nil || w.Error.Kind == "" {
		return &homemesh.Error{Op: op, Kind: homemesh.KindInternal, Message: "malformed error reply"}
	}
	return &homemesh.Error{Op: op, Kind: w.Error.Kind, Message: w.Error.Message, Field: w.Error.Field,
		RetryAfter: time.Duration(max(w.Error.RetryAfterMS, 0)) * time.Millisecond, Err: errors.New(w.Error.Message)}
}
