package ops

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// unmatched labels requests that no mux pattern matched, so that scanning
// random paths cannot grow the number of series.
const unmatched = "unmatched"

// Instrument wraps h, recording homemesh_http_requests_total and
// homemesh_http_request_duration_seconds by method, route and status. The
// route is the pattern the request matched on a Go 1.22+ ServeMux
// (r.Pattern), never the raw path, which keeps cardinality bounded. Both
// metrics are registered on reg once; calling Instrument again with the same
// reg reuses them.
func Instrument(reg prometheus.Registerer, h http.Handler) http.Handler {
	requests := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "homemesh_http_requests_total",
		Help: "HTTP requests served, by method, route pattern and status.",
	}, []string{"method", "route", "status"}))
	duration := register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "homemesh_http_request_duration_seconds",
		Help:    "Time to serve HTTP requests, by method, route pattern and status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route", "status"}))

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, req: r}
		h.ServeHTTP(rec, r)
		route := rec.pattern()
		status := strconv.Itoa(rec.statusCode())
		method := methodLabel(r.Method)
		requests.WithLabelValues(method, route, status).Inc()
		duration.WithLabelValues(method, route, status).Observe(time.Since(start).Seconds())
	})
}

// register registers c on reg, or returns the collector already registered
// under the same description.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: a clashing metric name
	}
	return c
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// recorder captures the status written and the pattern the inner mux
// matched. The mux sets Pattern on the request it was given, which is the
// one passed in here, so reading it after ServeHTTP sees the match.
type recorder struct {
	http.ResponseWriter
	req    *http.Request
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

func (r *recorder) pattern() string {
	if r.req.Pattern == "" {
		return unmatched
	}
	return r.req.Pattern
}

// Unwrap lets http.ResponseController reach the underlying writer (flush,
// deadlines), which WebSockets and streaming need.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush forwards to the underlying writer when it can flush.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack forwards to the underlying writer, so WebSocket upgrades work
// through the instrumentation. A hijacked connection counts as 101.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("ops: response writer cannot hijack")
	}
	if r.status == 0 {
		r.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}
