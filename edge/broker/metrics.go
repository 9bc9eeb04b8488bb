package broker

import (
	"errors"
	"fmt"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the broker's Prometheus instruments. Counters exist even when
// no registerer is given, so the hot path never checks for nil.
type metrics struct {
	authFailures prometheus.Counter
	aclDenials   prometheus.Counter
	bridgedOut   prometheus.Counter
	bridgedIn    prometheus.Counter
	bridgeErrors prometheus.Counter

	throttledMessages prometheus.Counter
	throttledBytes    prometheus.Counter
	floodDisconnects  prometheus.Counter
	connectsRefused   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, srv *mqtt.Server) (*metrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "homemesh", Subsystem: "mqtt", Name: name, Help: help})
	}
	m := &metrics{
		authFailures: counter("auth_failures_total", "MQTT connections refused for missing or bad credentials."),
		aclDenials:   counter("acl_denials_total", "MQTT publishes, subscribes and deliveries refused by a credential's grant."),
		bridgedOut:   counter("bridged_out_total", "MQTT messages published on the bus."),
		bridgedIn:    counter("bridged_in_total", "Bus messages delivered into the MQTT broker."),
		bridgeErrors: counter("bridge_errors_total", "Messages the bridge failed to pass in either direction."),

		throttledMessages: counter("throttled_messages_total", "MQTT publishes dropped for exceeding their client's message or byte rate."),
		throttledBytes:    counter("throttled_bytes_total", "Bytes (topic and payload) of MQTT publishes dropped for exceeding their client's rate."),
		floodDisconnects:  counter("flood_disconnects_total", "MQTT clients disconnected for flooding, or for exceeding their rate at QoS 1 or 2 over MQTT 3."),
		connectsRefused:   counter("connects_refused_total", "MQTT connection attempts refused for exceeding the connection rate of their address or device."),
	}
	if reg == nil {
		return m, nil
	}
	info := srv.Info
	collectors := []prometheus.Collector{
		m.authFailures, m.aclDenials, m.bridgedOut, m.bridgedIn, m.bridgeErrors,
		m.throttledMessages, m.throttledBytes, m.floodDisconnects, m.connectsRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "homemesh", Subsystem: "mqtt", Name: "clients_connected",
			Help: "MQTT clients connected now."},
			func() float64 { return float64(atomic.LoadInt64(&info.ClientsConnected)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "homemesh", Subsystem: "mqtt", Name: "messages_received_total",
			Help: "MQTT PUBLISH messages received, from clients and the bridge."},
			func() float64 { return float64(atomic.LoadInt64(&info.MessagesReceived)) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "homemesh", Subsystem: "mqtt", Name: "messages_sent_total",
			Help: "MQTT PUBLISH messages sent to clients."},
			func() float64 { return float64(atomic.LoadInt64(&info.MessagesSent)) }),
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("register mqtt metrics: another broker already registered them: %w", err)
			}
			return nil, fmt.Errorf("register mqtt metrics: %w", err)
		}
	}
	return m, nil
}
