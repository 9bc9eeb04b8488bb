// Package e2e holds the black-box suites: they build the homemesh binary,
// run it as a person would — the all-in-one hub and the split deployment of
// separate processes over an external NATS — and drive it only through its
// public interfaces: the REST API and real MQTT clients (mosquitto_pub and
// mosquitto_sub). The same scenarios run in both modes.
package e2e
