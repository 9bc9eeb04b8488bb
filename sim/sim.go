package sim

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/sync/errgroup"

	"github.com/homemesh/homemesh"
)

// BaseTopic is the root of every simulated device's own topics:
// BaseTopic/<device-id>/….
const BaseTopic = "hmsim"

// Defaults for Config fields left at their zero value.
const (
	DefaultPrefix     = "homeassistant"
	DefaultNamePrefix = "sim"
	DefaultAlarmCode  = "1234"
	DefaultQoS        = 1
	DefaultInterval   = 30 * time.Second
)

// MaxDevices bounds one simulator run.
const MaxDevices = 10000

// connectConcurrency bounds how many devices connect at once.
const connectConcurrency = 16

// Config describes a simulated fleet. Zero values take the defaults above,
// except QoS and Interval, whose zero values are meaningful: use
// DefaultConfig for a config with every default filled in.
type Config struct {
	// Broker is host:port (plain TCP, or TLS when TLS is set) or a URL the
	// MQTT client accepts (tcp://, tls://, ws://).
	Broker string
	// TLS, when set, makes host:port brokers connect over TLS.
	TLS *tls.Config
	// Prefix is the discovery prefix; it defaults to "homeassistant".
	Prefix string
	// Devices is how many devices to simulate; kinds are assigned
	// round-robin over Kinds. Zero means one device per kind.
	Devices int
	// Kinds restricts the kinds simulated; empty means every kind.
	Kinds []homemesh.EntityKind
	// Interval is each device's telemetry period; zero means devices publish
	// only on change and on command.
	Interval time.Duration
	// Seed makes values reproducible.
	Seed int64
	// NamePrefix names devices "<NamePrefix>-<n>", n from 1; it defaults to
	// "sim" and must keep the IDs within [a-z0-9_-].
	NamePrefix string
	// Username and Password are one credential shared by every device,
	// used when Credential is nil.
	Username, Password string
	// Credential, when set, returns a device's own credential. It is given
	// the device's allow list, Topics(Prefix, deviceID), and is called once
	// per device before it connects, possibly from several goroutines at
	// once.
	Credential func(ctx context.Context, deviceID string, allow []string) (username, password string, err error)
	// QoS is used for state publishes (0, 1 or 2). Discovery and
	// availability always use QoS 1.
	QoS byte
	// AlarmCode is the code the alarm panels accept; it defaults to "1234".
	AlarmCode string
}

// DefaultConfig returns the defaults: one device of each kind, telemetry
// every 30 s, QoS 1.
func DefaultConfig() Config {
	return Config{
		Prefix:     DefaultPrefix,
		Devices:    len(homemesh.EntityKinds),
		Interval:   DefaultInterval,
		NamePrefix: DefaultNamePrefix,
		QoS:        DefaultQoS,
		AlarmCode:  DefaultAlarmCode,
	}
}

// DeviceID returns the ID of device n (from 1) for a name prefix.
func DeviceID(namePrefix string, n int) string {
	if namePrefix == "" {
		namePrefix = DefaultNamePrefix
	}
	return namePrefix + "-" + strconv.Itoa(n)
}

// Topics returns the MQTT topic filters device deviceID publishes and
// subscribes to under discovery prefix prefix: its own base, its discovery
// configs and the status topic. It is the device's per-credential allow
// list; nothing the device does falls outside it.
func Topics(prefix, deviceID string) []string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return []string{
		BaseTopic + "/" + deviceID + "/#",
		prefix + "/+/" + deviceID + "/+/config",
		prefix + "/device/" + deviceID + "/config",
		prefix + "/status",
	}
}

func (c Config) withDefaults() (Config, error) {
	if c.Broker == "" {
		return c, errors.New("sim: broker is required")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.NamePrefix == "" {
		c.NamePrefix = DefaultNamePrefix
	}
	if c.AlarmCode == "" {
		c.AlarmCode = DefaultAlarmCode
	}
	if len(c.Kinds) == 0 {
		c.Kinds = homemesh.EntityKinds
	}
	if c.Devices == 0 {
		c.Devices = len(c.Kinds)
	}
	switch {
	case c.Devices < 1 || c.Devices > MaxDevices:
		return c, fmt.Errorf("sim: devices must be 1 to %d", MaxDevices)
	case c.Interval < 0:
		return c, errors.New("sim: interval must not be negative")
	case c.QoS > 2:
		return c, errors.New("sim: qos must be 0, 1 or 2")
	case strings.ContainsAny(c.Prefix, "+#") || strings.HasPrefix(c.Prefix, "/") || strings.HasSuffix(c.Prefix, "/"):
		return c, errors.New("sim: prefix must be a topic without wildcards or edge slashes")
	case !homemesh.ValidID(DeviceID(c.NamePrefix, c.Devices)):
		return c, errors.New("sim: name prefix must be made of a-z, 0-9, _ and -")
	}
	for _, k := range c.Kinds {
		if !k.Valid() {
			return c, fmt.Errorf("sim: unknown kind %q", k)
		}
	}
	return c, nil
}

// Run connects cfg.Devices simulated devices to the broker, a bounded number
// at a time, and runs them until ctx ends; then every device reports itself
// offline and disconnects, and Run returns nil. An error means a device
// could not get its credential or make its first connection; the devices
// already running are stopped first. Later connection losses are retried.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	log = log.With("service", "sim")
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var running sync.WaitGroup
	defer running.Wait()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(connectConcurrency)
	for n := 1; n <= cfg.Devices; n++ {
		d := newDevice(&cfg, n, log)
		g.Go(func() error {
			if err := d.connect(gctx); err != nil {
				return err
			}
			running.Add(1)
			go func() {
				defer running.Done()
				d.run(ctx)
			}()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		cancel()
		if parent.Err() != nil {
			return nil // stopped while connecting: a clean stop
		}
		return err
	}
	log.Info("devices connected", "devices", cfg.Devices, "broker", cfg.Broker)
	<-ctx.Done()
	return nil
}

// brokerURL turns host:port into the URL the MQTT client dials.
func brokerURL(broker string, useTLS bool) string {
	if strings.Contains(broker, "://") {
		return broker
	}
	if useTLS {
		return "tls://" + broker
	}
	return "tcp://" + broker
}

// waitToken waits for t to complete, ctx to end or a timeout.
func waitToken(ctx context.Context, t mqtt.Token, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errors.New("timed out")
	}
}
