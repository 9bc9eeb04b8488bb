package audit

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics count what appends do, so an operator sees a failing audit log
// before an auditor does.
type metrics struct {
	appends, failures, conflicts, anchorFailures prometheus.Counter
}

// newMetrics creates the counters and registers them on reg when it is not
// nil. Logs sharing a registry share the counters.
func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		if reg == nil {
			return c
		}
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				if existing, ok := are.ExistingCollector.(prometheus.Counter); ok {
					return existing
				}
			}
			panic(err) // a clashing metric name is a programming error
		}
		return c
	}
	return &metrics{
		appends:        counter("homemesh_audit_appends_total", "Audit records appended."),
		failures:       counter("homemesh_audit_append_failures_total", "Audit records that could not be appended."),
		conflicts:      counter("homemesh_audit_append_conflicts_total", "Appends retried because another process appended first."),
		anchorFailures: counter("homemesh_audit_anchor_failures_total", "Appends after which the head anchor could not be advanced."),
	}
}
