package border

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the border's Prometheus metrics. The mesh node's figures are
// read from one Topology snapshot per scrape; the border's own are
// counted as they happen.
type metrics struct {
	b *Border

	dropped  *prometheus.CounterVec
	commands *prometheus.CounterVec
	resyncs  prometheus.Counter

	neighbours, routes, e2e, agents *prometheus.Desc
	packets, bytes                  *prometheus.Desc
	packetsDropped, framesRejected  *prometheus.Desc
}

func newMetrics(b *Border) *metrics {
	const ns = "homemesh_mesh_"
	return &metrics{
		b: b,
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "messages_dropped_total",
			Help: "End-to-end messages from agents the border dropped, by reason."}, []string{"reason"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ns + "commands_total",
			Help: "Commands to mesh entities, by outcome (done or an error kind)."}, []string{"outcome"}),
		resyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: ns + "resyncs_total",
			Help: "Requests to agents to announce themselves again."}),
		neighbours: prometheus.NewDesc(ns+"neighbours", "Neighbours the hub node has a link with.", nil, nil),
		routes:     prometheus.NewDesc(ns+"routes", "Destinations the hub node has a usable route to.", nil, nil),
		e2e:        prometheus.NewDesc(ns+"e2e_handshakes_total", "End-to-end handshakes the hub node completed (channels set up and rekeyed).", nil, nil),
		agents:     prometheus.NewDesc(ns+"agents_online", "Agents that announced themselves and are reachable.", nil, nil),
		packets:    prometheus.NewDesc(ns+"packets_total", "Packets the hub node received (in) and sent (out).", []string{"direction"}, nil),
		bytes:      prometheus.NewDesc(ns+"bytes_total", "Bytes the hub node received (in) and sent (out).", []string{"direction"}, nil),
		packetsDropped: prometheus.NewDesc(ns+"packets_dropped_total",
			"Data packets the hub node dropped, by reason.", []string{"reason"}, nil),
		framesRejected: prometheus.NewDesc(ns+"frames_rejected_total",
			"Frames the hub node refused, by reason: replayed, forged, bad_cert (e.g. of another CA), foreign_home, revoked, … (e2e_ and route_ prefixes for those layers).", []string{"reason"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.dropped.Describe(ch)
	m.commands.Describe(ch)
	m.resyncs.Describe(ch)
	for _, d := range []*prometheus.Desc{m.neighbours, m.routes, m.e2e, m.agents, m.packets, m.bytes, m.packetsDropped, m.framesRejected} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.dropped.Collect(ch)
	m.commands.Collect(ch)
	m.resyncs.Collect(ch)
	if !m.b.isReady() {
		return // no mesh node yet
	}
	t := m.b.mesh.Topology()
	usable := 0
	for _, r := range t.Routes {
		if r.Feasible {
			usable++
		}
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(m.neighbours, float64(len(t.Links)))
	gauge(m.routes, float64(usable))
	counter(m.e2e, t.Counters.E2EHandshakes)
	gauge(m.agents, float64(m.b.online()))
	counter(m.packets, t.Counters.PacketsIn, "in")
	counter(m.packets, t.Counters.PacketsOut, "out")
	counter(m.bytes, t.Counters.BytesIn, "in")
	counter(m.bytes, t.Counters.BytesOut, "out")
	for reason, n := range t.Counters.Dropped {
		counter(m.packetsDropped, n, reason)
	}
	for reason, n := range t.Counters.Rejected {
		counter(m.framesRejected, n, reason)
	}
}
