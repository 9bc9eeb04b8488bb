package broker

import (
	"context"
	"log/slog"
)

// mochiHandler adapts mochi's logging to ours: only warnings and errors
// pass, and attributes that may carry packets (and with them passwords or
// payloads) are dropped, because a secret must never reach a log line.
type mochiHandler struct {
	h slog.Handler
}

func (m *mochiHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && m.h.Enabled(ctx, l)
}

func (m *mochiHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pk", "packet", "will", "data", "password":
			return true
		case "error":
			a.Key = "err"
		case "client":
			a.Key = "client_id"
		}
		out.AddAttrs(a)
		return true
	})
	return m.h.Handle(ctx, out)
}

func (m *mochiHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	kept := attrs[:0:0]
	for _, a := range attrs {
		switch a.Key {
		case "pk", "packet", "will", "data", "password":
			continue
		}
		kept = append(kept, a)
	}
	return &mochiHandler{h: m.h.WithAttrs(kept)}
}

func (m *mochiHandler) WithGroup(name string) slog.Handler {
	return &mochiHandler{h: m.h.WithGroup(name)}
}
