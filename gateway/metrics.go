package gateway

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's own metrics, beyond the per-route HTTP ones
// that ops.Instrument records.
type metrics struct {
	wsClients prometheus.Gauge
	wsDropped prometheus.Counter
}

// newMetrics creates the metrics and registers them on reg when it is not
// nil. Gateways sharing a registry share the metrics.
func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		wsClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "homemesh_gateway_websocket_clients",
			Help: "WebSocket event clients connected now.",
		}),
		wsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "homemesh_gateway_websocket_slow_clients_dropped_total",
			Help: "WebSocket event clients disconnected for falling behind.",
		}),
	}
	if reg == nil {
		return m
	}
	m.wsClients = registerOrReuse(reg, m.wsClients)
	m.wsDropped = registerOrReuse(reg, m.wsDropped)
	return m
}

func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err) // a clashing metric name is a programming error
}
