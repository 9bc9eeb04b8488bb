package bench

import (
	"context"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// MQTTSink returns a Sink that subscribes to filter on broker (host:port or
// a URL) with the given QoS and counts every message carrying a send
// timestamp. It is how a plain broker such as Mosquitto is measured: the
// broker's fan-out to one subscriber is the delivery.
func MQTTSink(broker, username, password, filter string, qos byte) Sink {
	return &mqttSink{broker: broker, user: username, pass: password, filter: filter, qos: qos, ready: make(chan struct{})}
}

type mqttSink struct {
	broker, user, pass, filter string
	qos                        byte
	ready                      chan struct{}
}

func (s *mqttSink) Ready() <-chan struct{} { return s.ready }

// Run connects, subscribes, closes Ready and delivers until ctx ends. It may
// be called once.
func (s *mqttSink) Run(ctx context.Context, deliver func(sentUnixNano int64)) error {
	o := clientOptions(s.broker, nil, s.user, s.pass)
	o.SetClientID(fmt.Sprintf("hmbench-sink-%x", time.Now().UnixNano()&0xffffffff))
	// The subscriber must keep up with every publisher together; a deep
	// channel absorbs bursts while handlers run in order.
	o.SetMessageChannelDepth(4096)
	c := mqtt.NewClient(o)
	if err := wait(ctx, c.Connect()); err != nil {
		return fmt.Errorf("connect sink: %w", err)
	}
	defer c.Disconnect(100)
	tok := c.Subscribe(s.filter, s.qos, func(_ mqtt.Client, m mqtt.Message) {
		if t, ok := SentTime(m.Payload()); ok {
			deliver(t)
		}
	})
	if err := wait(ctx, tok); err != nil {
		return fmt.Errorf("subscribe sink to %q: %w", s.filter, err)
	}
	close(s.ready)
	<-ctx.Done()
	return nil
}
