// Package hmtest holds helpers shared by homemesh tests: waiting for a
// condition with a deadline instead of sleeping, quiet loggers, and
// certificate authorities made for one test.
package hmtest

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every few milliseconds until it returns true, failing
// the test with what after timeout. Tests wait for outcomes this way rather
// than sleeping for a guessed duration.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger returns a JSON logger that writes to stderr when HOMEMESH_TEST_LOG
// is set and discards otherwise, so failing tests can be rerun verbosely.
func Logger(t testing.TB) *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("HOMEMESH_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// LogBuffer collects log output from many goroutines, for tests that check
// what was, and what was never, logged.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything logged so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Run runs a service's Run method in the background until the test ends or
// the returned stop is called, and fails the test if Run returns an error.
// stop waits for Run to return and may be called more than once.
func Run(t testing.TB, name string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
