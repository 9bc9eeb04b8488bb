// Package broker is the MQTT broker of the edge: an embedded mochi-mqtt
// server that speaks MQTT 3.1, 3.1.1 and 5 over TCP and TLS, admits only
// authenticated clients, confines each to the topic filters of its
// credential, and bridges every accepted message both ways through NATS.
//
// # Use
//
//	b, err := broker.New(broker.Config{Home: home, InstanceID: id, TCP: ":1883"},
//		broker.Deps{Bus: conn, Auth: authenticator, Log: log})
//	if err := b.Listen(); err != nil { … } // a taken port is reported here, naming the address
//	go b.Run(ctx)
//	<-b.Ready()
//
// # Security
//
// Anonymous clients are refused. Every CONNECT is checked by the
// Authenticator, whose Grant lists the MQTT topic filters the credential may
// publish to and subscribe to. A publish outside them is dropped (never
// delivered, never bridged); a subscribe outside them gets a SUBACK failure;
// a last will outside them refuses the connection. $SYS is never reachable.
// When auth publishes bus.EventSubject(home, "credential_revoked") with
// {"username": …} (bare or inside an envelope), every client of that
// credential is disconnected and its persistent sessions are dropped.
//
// # Bridge
//
// Every accepted publish (and every last will sent) is published on NATS
// subject bus.MQTTSubject(home, topic) with the raw payload and the headers
// Hm-Origin (this instance), Hm-Retain ("1" or "0"), Hm-Qos ("0".."2") and,
// for MQTT 5, Hm-Content-Type. The broker subscribes to
// bus.MQTTWildcard(home) and delivers to its local subscribers every message
// whose Hm-Origin is not its own: publishes of other edge instances and
// commands of services, which publish without Hm-Origin. A service message
// without headers is delivered at QoS 1, not retained. Nothing loops: what
// the bridge injects is never bridged out again.
//
// # Persistence
//
// Retained messages and persistent sessions (clean session false, or an MQTT
// 5 session expiry) live in JetStream key-value buckets shared by every edge
// instance of the home, not in process memory:
//
//	hm_<home>_mqtt_retained  key = escaped topic, value = the message
//	hm_<home>_mqtt_sessions  key = base64url client ID, value = client, subscriptions, grant
//	hm_<home>_mqtt_inflight  key = <session key>.<packet id>, value = a QoS 1/2 message not yet acknowledged
//
// A restarted broker loads them, so devices find their retained messages
// (discovery configs included) and sessions find the messages published
// while they were away. Writes happen off the hot path in one ordered
// writer; clean sessions never touch JetStream. A retained message is
// persisted by the instance its publisher is connected to (or, for a service
// message without Hm-Origin, by every instance, idempotently); other
// instances retain it in memory as it arrives over the bridge.
//
// A persistent session lives on the instance its client connects to. When a
// client with a persistent session moves to another instance, the session
// the new instance loaded at its start (if any) is used; live state is not
// handed over between running instances.
package broker
