package history

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the history service's Prometheus instruments. They exist
// even when no registerer is given, so the hot path never checks for nil.
type metrics struct {
	points       prometheus.Counter
	events       prometheus.Counter
	duplicates   prometheus.Counter
	rejected     *prometheus.CounterVec
	writeErrors  prometheus.Counter
	writeSeconds prometheus.Histogram
	lag          *prometheus.GaugeVec
	purged       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "homemesh", Subsystem: "history", Name: name, Help: help})
	}
	m := &metrics{
		points:     counter("points_stored_total", "Raw points (state changes and telemetry) stored."),
		events:     counter("events_stored_total", "Events stored."),
		duplicates: counter("duplicate_messages_total", "Bus messages delivered again after they were stored, and skipped."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "homemesh", Subsystem: "history", Name: "rejected_messages_total",
			Help: "Bus messages that cannot be stored (malformed, oversized, of another home), terminated, by reason."}, []string{"reason"}),
		writeErrors: counter("write_errors_total", "Batch writes that failed and were retried."),
		writeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "homemesh", Subsystem: "history", Name: "batch_write_seconds",
			Help: "Time to store one batch.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "homemesh", Subsystem: "history", Name: "consumer_pending_messages",
			Help: "Messages in each stream not yet delivered to history, as of the last message received."}, []string{"stream"}),
		purged: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "homemesh", Subsystem: "history", Name: "purged_rows_total",
			Help: "Rows removed by retention, by table (points, stats, events, ledger)."}, []string{"table"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.points, m.events, m.duplicates, m.rejected, m.writeErrors, m.writeSeconds, m.lag, m.purged} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register history metrics: another history service already registered them: %w", err)
			}
			return nil, fmt.Errorf("register history metrics: %w", err)
		}
	}
	return m, nil
}
