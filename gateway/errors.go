package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/homemesh/homemesh"
)

// Errors that need a status no kind expresses. They are wrapped in a
// *homemesh.Error so that the body still carries a kind.
var (
	errBodyTooLarge     = errors.New("request body too large")
	errMethodNotAllowed = errors.New("method not allowed")
)

// kindStatus is the one table that maps error kinds to HTTP statuses.
var kindStatus = map[homemesh.Kind]int{
	homemesh.KindInvalid:         http.StatusBadRequest,
	homemesh.KindUnauthenticated: http.StatusUnauthorized,
	homemesh.KindPermission:      http.StatusForbidden,
	homemesh.KindNotFound:        http.StatusNotFound,
	homemesh.KindConflict:        http.StatusConflict,
	homemesh.KindUnavailable:     http.StatusServiceUnavailable,
	homemesh.KindRateLimited:     http.StatusTooManyRequests,
	homemesh.KindInternal:        http.StatusInternalServerError,
}

// statusFor returns the HTTP status of err: a few transport-level causes
// first, then the kind table. Unknown kinds are internal errors.
func statusFor(err error) int {
	switch {
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errMethodNotAllowed):
		return http.StatusMethodNotAllowed
	}
	if s, ok := kindStatus[homemesh.ErrorKind(err)]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Kind    homemesh.Kind `json:"kind"`
	Message string        `json:"message"`
	Field   string        `json:"field,omitempty"`
}

// writeError answers with err. Only its kind, user-safe message and field
// leave the process; internal errors are logged with their cause.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := statusFor(err)
	kind := homemesh.ErrorKind(err)
	if _, ok := kindStatus[kind]; !ok {
		kind = homemesh.KindInternal
	}
	if status >= 500 {
		log.LogAttrs(r.Context(), levelFor(status), "request failed",
			slog.String("method", r.Method), slog.String("route", r.Pattern),
			slog.Int("status", status), slog.Any("err", err))
	}
	if d := homemesh.ErrorRetryAfter(err); d > 0 {
		// Whole seconds, rounded up: "Retry-After: 0" would invite a retry storm.
		w.Header().Set("Retry-After", strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="homemesh"`)
	}
	writeJSON(w, status, errorBody{Error: errorDetail{
		Kind: kind, Message: homemesh.ErrorMessage(err), Field: homemesh.ErrorField(err),
	}})
}

func levelFor(status int) slog.Level {
	if status == http.StatusServiceUnavailable {
		return slog.LevelWarn
	}
	return slog.LevelError
}

// writeJSON answers with v as JSON. Responses are never cached: they carry
// live state and, sometimes, secrets shown once.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		data = []byte(`{"error":{"kind":"internal","message":"internal error"}}`)
	}
	writeJSONBody(w, status, data)
}

// writeJSONBody answers with data, which is already JSON.
func writeJSONBody(w http.ResponseWriter, status int, data []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
