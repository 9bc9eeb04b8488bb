package homemesh

import (
	"errors"
	"fmt"
	"time"
)

// Kind classifies an error so that callers, the bus and the HTTP gateway can
// react to it without parsing messages. The set is closed: each kind maps to
// exactly one HTTP status in the gateway and one wire value on the bus.
type Kind string

// The error kinds. Their string values are part of the public contract.
const (
	KindInternal        Kind = "internal"        // a bug or an unexpected failure; the message is generic
	KindInvalid         Kind = "invalid"         // the request is malformed; Field names the culprit
	KindNotFound        Kind = "not_found"       // the thing asked for does not exist
	KindUnauthenticated Kind = "unauthenticated" // no or bad credentials
	KindPermission      Kind = "permission"      // authenticated, but not allowed
	KindConflict        Kind = "conflict"        // the request clashes with the current state
	KindUnavailable     Kind = "unavailable"     // a dependency is down; retrying may help
	KindRateLimited     Kind = "rate_limited"    // too many attempts; RetryAfter says when to try again
)

// Error is the one error type of homemesh. Message is safe to show to a user;
// Err is the underlying cause, which may hold details that must not leave the
// process.
type Error struct {
	Op      string // the operation that failed, e.g. "registry.put_device"
	Kind    Kind
	Field   string // for KindInvalid: the offending field, dotted path ("params.brightness")
	Message string // user-safe text
	// RetryAfter, for KindRateLimited (and optionally KindUnavailable), is
	// how long the caller should wait before trying again.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Op != "" {
		return e.Op + ": " + msg
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error of the given kind whose message is formatted from
// format and args. The message is shown to users, so it must not include
// secrets.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a KindInvalid error naming field and why it is wrong.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Kind: KindInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrorKind reports the kind of err: the kind of the first *Error in its
// chain, or KindInternal when there is none.
func ErrorKind(err error) Kind {
	var e *Error
	if errors.As(err, &e) && e.Kind != "" {
		return e.Kind
	}
	return KindInternal
}

// ErrorMessage reports the user-safe message of err. Errors that are not
// *Error yield a generic message, so that internal details never leak.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		if e.Message != "" {
			return e.Message
		}
		if e.Kind != KindInternal {
			return string(e.Kind)
		}
	}
	return "internal error"
}

// ErrorField reports the offending field of err, if any.
func ErrorField(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Field
	}
	return ""
}

// ErrorRetryAfter reports how long the caller of a failed request should wait
// before retrying: the RetryAfter of the first *Error in err's chain, or 0.
func ErrorRetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
