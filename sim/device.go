package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/homemesh/homemesh"
)

// message is one MQTT publish a device makes.
type message struct {
	topic    string
	payload  []byte
	retained bool
}

// model is the firmware of one kind of device: what it announces and how it
// behaves. A model's methods are only called from its device's goroutine,
// so models need no locking.
type model interface {
	// discovery returns the retained discovery configs.
	discovery() []message
	// availability returns the availability topic and its two payloads.
	availability() (topic, online, offline string)
	// commands returns the topics the device obeys.
	commands() []string
	// state returns the messages that report the current state.
	state() []message
	// command obeys a message on one of the command topics and returns the
	// messages it publishes in response (often state()).
	command(topic string, payload []byte) []message
	// tick evolves the state by one telemetry period and returns what to
	// publish.
	tick() []message
}

// stepper is a model whose state moves on its own after a command (a cover
// travelling, an alarm arming). pending says how long until the next step
// (0 = nothing pending); step advances it and returns what to publish.
type stepper interface {
	pending() time.Duration
	step() []message
}

// device is one simulated device: one MQTT connection, one model.
type device struct {
	id    string
	n     int
	kind  homemesh.EntityKind
	cfg   *Config
	log   *slog.Logger
	rng   *rand.Rand
	m     model
	c     mqtt.Client
	inbox chan mqtt.Message
	// announce asks the loop to publish discovery, availability and state
	// (on every connect and on the status topic's "online").
	announce chan struct{}
}

func newDevice(cfg *Config, n int, log *slog.Logger) *device {
	d := &device{
		id:       DeviceID(cfg.NamePrefix, n),
		n:        n,
		kind:     cfg.Kinds[(n-1)%len(cfg.Kinds)],
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(n))),
		inbox:    make(chan mqtt.Message, 32),
		announce: make(chan struct{}, 1),
	}
	d.log = log.With("device_id", d.id, "kind", string(d.kind))
	d.m = newModel(d)
	return d
}

// base returns the device's own topic root, BaseTopic/<id>.
func (d *device) base() string { return BaseTopic + "/" + d.id }

// configTopic returns the per-entity discovery topic for a component and
// object: <prefix>/<component>/<device-id>/<object>/config.
func (d *device) configTopic(component, object string) string {
	return d.cfg.Prefix + "/" + component + "/" + d.id + "/" + object + "/config"
}

// connect gets the device's credential and makes its first connection.
func (d *device) connect(ctx context.Context) error {
	user, pass := d.cfg.Username, d.cfg.Password
	if d.cfg.Credential != nil {
		var err error
		user, pass, err = d.cfg.Credential(ctx, d.id, Topics(d.cfg.Prefix, d.id))
		if err != nil {
			return fmt.Errorf("sim: credential for %s: %w", d.id, err)
		}
	}
	avTopic, _, offline := d.m.availability()
	o := mqtt.NewClientOptions()
	o.AddBroker(brokerURL(d.cfg.Broker, d.cfg.TLS != nil))
	o.SetTLSConfig(d.cfg.TLS)
	o.SetClientID(d.id)
	o.SetUsername(user)
	o.SetPassword(pass)
	o.SetCleanSession(true)
	o.SetWill(avTopic, offline, 1, true)
	o.SetKeepAlive(30 * time.Second)
	o.SetConnectTimeout(10 * time.Second)
	o.SetAutoReconnect(true)
	o.SetMaxReconnectInterval(30 * time.Second)
	o.SetOnConnectHandler(d.onConnect)
	o.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		d.log.Warn("connection lost", "err", err)
	})
	d.c = mqtt.NewClient(o)
	if err := waitToken(ctx, d.c.Connect(), 30*time.Second); err != nil {
		d.c.Disconnect(0)
		return fmt.Errorf("sim: connect %s: %w", d.id, err)
	}
	return nil
}

// onConnect runs on every (re)connection: the session is clean, so the
// device subscribes again and announces itself again, as firmware does on
// boot.
func (d *device) onConnect(c mqtt.Client) {
	subs := map[string]byte{d.cfg.Prefix + "/status": 1}
	for _, t := range d.m.commands() {
		subs[t] = 1
	}
	tok := c.SubscribeMultiple(subs, func(_ mqtt.Client, m mqtt.Message) {
		select {
		case d.inbox <- m:
		default:
			d.log.Warn("command dropped: inbox full", "topic", m.Topic())
		}
	})
	go func() {
		// The handler runs on the client's goroutine; waiting there would
		// stall it.
		if tok.WaitTimeout(30*time.Second) && tok.Error() == nil {
			d.requestAnnounce()
			return
		}
		d.log.Error("subscribe failed", "err", tok.Error())
	}()
}

func (d *device) requestAnnounce() {
	select {
	case d.announce <- struct{}{}:
	default:
	}
}

// run is the device's firmware loop. It returns after ctx ends, once the
// device has said it is offline and disconnected.
func (d *device) run(ctx context.Context) {
	defer d.c.Disconnect(250)
	var tick <-chan time.Time
	var ticker *time.Timer
	if d.cfg.Interval > 0 {
		// A random phase spreads a fleet's telemetry over the period.
		ticker = time.NewTimer(time.Duration(d.rng.Int64N(int64(d.cfg.Interval))) + 1)
		defer ticker.Stop()
		tick = ticker.C
	}
	motion := time.NewTimer(time.Hour)
	motion.Stop()
	defer motion.Stop()
	stepper, _ := d.m.(stepper)
	for {
		var out []message
		select {
		case <-ctx.Done():
			// Say goodbye as firmware shutting down does; the broker sends
			// no last will after a clean disconnect. Without a connection
			// the retained will already says offline.
			if d.c.IsConnectionOpen() {
				topic, _, offline := d.m.availability()
				stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
				d.publish(stopCtx, message{topic, []byte(offline), true}, 1)
				cancel()
			}
			return
		case <-d.announce:
			out = append(out, d.m.discovery()...)
			topic, online, _ := d.m.availability()
			out = append(out, message{topic, []byte(online), true})
			out = append(out, d.m.state()...)
		case m := <-d.inbox:
			if m.Topic() == d.cfg.Prefix+"/status" {
				// A retained "online" arrives on every subscription, right
				// before the device announces itself anyway.
				if string(m.Payload()) == "online" && !m.Retained() {
					d.log.Info("discovery prefix is online again; announcing")
					d.requestAnnounce()
				}
				continue
			}
			d.log.Debug("command", "topic", m.Topic(), "payload", string(m.Payload()))
			out = d.m.command(m.Topic(), m.Payload())
			if stepper != nil && stepper.pending() > 0 {
				motion.Reset(stepper.pending())
			}
		case <-tick:
			out = d.m.tick()
			ticker.Reset(d.cfg.Interval)
		case <-motion.C:
			out = stepper.step()
			if wait := stepper.pending(); wait > 0 {
				motion.Reset(wait)
			}
		}
		for _, m := range out {
			qos := d.cfg.QoS
			if m.retained {
				qos = 1
			}
			d.publish(ctx, m, qos)
		}
	}
}

// publishTimeout bounds the wait for one publish to be accepted, and
// shutdownTimeout the wait for the goodbye message.
const (
	publishTimeout  = 10 * time.Second
	shutdownTimeout = 2 * time.Second
)

// publish sends m and waits for the broker to accept it, so a device never
// has more than one message in flight. A failure is logged: firmware keeps
// running while its connection is down.
func (d *device) publish(ctx context.Context, m message, qos byte) {
	if err := waitToken(ctx, d.c.Publish(m.topic, qos, m.retained, m.payload), publishTimeout); err != nil && ctx.Err() == nil {
		d.log.Debug("publish failed", "topic", m.topic, "err", err)
	}
}

// jsonMsg builds a message with a JSON payload.
func jsonMsg(topic string, v any, retained bool) message {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("sim: marshal %T: %v", v, err)) // only maps and structs of plain values are marshalled
	}
	return message{topic: topic, payload: b, retained: retained}
}

// textMsg builds a message with a plain text payload.
func textMsg(topic, payload string, retained bool) message {
	return message{topic: topic, payload: []byte(payload), retained: retained}
}
