package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bench"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"
)

func benchCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Load generators that print JSON results"}
	cmd.AddCommand(benchIngestCommand(stdout, stderr), benchHistoryCommand(stdout, stderr))
	return cmd
}

func benchHistoryCommand(stdout, stderr io.Writer) *cobra.Command {
	var (
		cfg        bench.HistoryConfig
		cpuProfile string
	)
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Sustained ingest into a history store through JetStream, and history query latency",
		Long: `history starts an embedded NATS server with file-backed JetStream in a
temporary directory, a fresh store (--store sqlite: a file in that
directory; --store postgres: a database created on the --dsn server for
the run and dropped afterwards) and the history service, then:

  1. publishes for --duration, as fast as JetStream accepts: the home's
     state log, as the registry publishes it (each message one committed
     batch of --points-per-message state changes), or with --telemetry
     devices' telemetry messages of that many points; waits until the
     store holds every accepted point and reads them all back to check;
  2. measures the store's size per raw point;
  3. seeds one entity with 24 h of 1-minute points and one with a year of
     hourly points, and times --queries reads of each (24 h raw, 1 year at
     1h) through the service and directly on the store.

It prints one JSON object and fails when the store holds other than what
JetStream accepted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, stopProfile()) }()
			cfg.Log = slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			res, err := bench.History(cmd.Context(), cfg)
			// A run that failed after publishing still prints what it
			// measured: the figures say how much was lost.
			if err == nil || res.Ingest.PublishedMessages > 0 {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if encErr := enc.Encode(res); encErr != nil {
					return errors.Join(err, encErr)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Store, "store", bench.StoreSQLite, "history store: sqlite or postgres")
	f.StringVar(&cfg.DSN, "dsn", os.Getenv("HOMEMESH_TEST_POSTGRES_DSN"), "PostgreSQL server for --store postgres; the run creates and drops its own database [HOMEMESH_TEST_POSTGRES_DSN]")
	f.DurationVar(&cfg.Duration, "duration", bench.DefaultHistoryDuration, "how long to publish")
	f.IntVar(&cfg.Entities, "entities", bench.DefaultHistoryEntities, "simulated entities, in devices of four")
	f.IntVar(&cfg.PointsPerMessage, "points-per-message", bench.DefaultPointsPerMessage, "state changes in one state-log message (the registry's batch), or points in one telemetry message")
	f.BoolVar(&cfg.Telemetry, "telemetry", false, "publish devices' telemetry instead of the registry's state log")
	f.IntVar(&cfg.Queries, "queries", bench.DefaultHistoryQueries, "timed reads of each query (0 skips the queries)")
	f.IntVar(&cfg.Publishers, "publishers", bench.DefaultHistoryPublishers, "publishing connections")
	f.IntVar(&cfg.InFlight, "in-flight", bench.DefaultHistoryInFlight, "publishes awaiting JetStream's ack, at most, over all publishers")
	f.Int64Var(&cfg.MaxBacklog, "max-backlog", bench.DefaultMaxBacklog, "bytes published but not yet stored, at most, so that publishers keep to the store's pace; -1: unbounded (the streams then drop what exceeds their 512 MiB)")
	f.IntVar(&cfg.BatchSize, "batch-size", 0, "history service batch size (0: the service's default)")
	f.DurationVar(&cfg.BatchWait, "batch-wait", 0, "history service batch wait (0: the service's default)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	return cmd
}

func benchIngestCommand(stdout, stderr io.Writer) *cobra.Command {
	cfg := bench.DefaultIngestConfig()
	var (
		target, broker, username, password string
		cpuProfile                         string
		qos                                int
	)
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "QoS 1 state messages from N simulated devices into the registry (or through a plain broker)",
		Long: `ingest measures how many device state messages per second reach their
destination and how long they take.

  --target hub   starts a hub in a temporary directory on loopback ports,
                 announces the devices as Home Assistant sensors and counts
                 the state changes the registry stores (the default);
  --target mqtt  publishes to --broker and counts what one subscriber on
                 the broker receives (how Mosquitto is measured).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			cfg.QoS = byte(qos)
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, stopProfile()) }()
			var res bench.Result
			switch target {
			case "hub":
				res, err = benchHub(cmd.Context(), cfg, stderr)
			case "mqtt":
				cfg.Broker, cfg.Username, cfg.Password = broker, username, password
				sink := bench.MQTTSink(broker, username, password, cfg.TopicPrefix+"/#", cfg.QoS)
				res, err = bench.Ingest(cmd.Context(), cfg, sink)
			default:
				return homemesh.Invalid("target", "%q is not hub or mqtt", target)
			}
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(res)
		},
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", "hub", "hub or mqtt")
	f.StringVar(&broker, "broker", "127.0.0.1:1883", "MQTT broker for --target mqtt")
	f.StringVar(&username, "username", "", "MQTT username for --target mqtt")
	f.StringVar(&password, "password", os.Getenv("HOMEMESH_BENCH_PASSWORD"), "MQTT password for --target mqtt [HOMEMESH_BENCH_PASSWORD]")
	f.IntVar(&cfg.Devices, "devices", cfg.Devices, "publishers, one MQTT connection each")
	f.IntVar(&cfg.Messages, "messages", cfg.Messages, "messages per device")
	f.DurationVar(&cfg.Duration, "duration", 0, "stop after this long (with or instead of --messages)")
	f.Float64Var(&cfg.Rate, "rate", 0, "total offered msgs/s, paced; 0 = as fast as possible")
	f.IntVar(&qos, "qos", int(cfg.QoS), "publish QoS")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	f.StringVar(&cfg.TopicPrefix, "topic-prefix", cfg.TopicPrefix, "device i publishes on <prefix>/dev-<i>/state")
	return cmd
}

// benchHub runs an ingest benchmark against a complete hub started in this
// process on loopback ports, measuring up to the registry: a message counts
// as delivered when the registry has stored it and published the change.
func benchHub(ctx context.Context, cfg bench.IngestConfig, stderr io.Writer) (bench.Result, error) {
	dir, err := os.MkdirTemp("", "homemesh-bench-")
	if err != nil {
		return bench.Result{}, err
	}
	defer os.RemoveAll(dir)
	hc := config.Default()
	hc.Data, hc.HTTP, hc.MQTT, hc.MQTTS = dir, "127.0.0.1:0", "127.0.0.1:0", ""
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := node.New(hc, node.Options{CreateHome: true}, log)
	if err != nil {
		return bench.Result{}, err
	}
	if err := n.Start(ctx); err != nil {
		return bench.Result{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	defer func() {
		stop()
		<-done
	}()
	<-n.Ready()

	conn, err := n.Connect("homemesh-bench")
	if err != nil {
		return bench.Result{}, err
	}
	defer conn.Close()
	cred, err := benchCredential(ctx, auth.NewClient(conn), n.Auth().OnboardingCode(), cfg.TopicPrefix)
	if err != nil {
		return bench.Result{}, err
	}
	cfg.Broker = n.Broker().Addr("tcp").String()
	cfg.Username, cfg.Password = cred.Username, cred.Password
	cfg.Target = "homemesh hub (MQTT edge → registry)"
	if err := bench.AnnounceSensors(ctx, cfg, "homeassistant"); err != nil {
		return bench.Result{}, fmt.Errorf("announce bench sensors: %w", err)
	}
	reg := registry.NewClient(conn, n.Home().ID)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ents, err := reg.Entities(ctx, registry.EntityFilter{Kind: homemesh.KindSensor})
		if err == nil && len(ents) >= cfg.Devices {
			break
		}
		if time.Now().After(deadline) {
			return bench.Result{}, fmt.Errorf("only %d of %d bench sensors were discovered", len(ents), cfg.Devices)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return bench.Ingest(ctx, cfg, &registrySink{conn: conn.NATS(), home: n.Home().ID, ready: make(chan struct{})})
}

// benchCredential onboards a throw-away owner on the fresh hub and creates
// the MQTT credential the bench devices share.
func benchCredential(ctx context.Context, a *auth.Client, code, prefix string) (auth.Credential, error) {
	if code == "" {
		return auth.Credential{}, errors.New("bench hub has no onboarding code")
	}
	password := homemesh.RandomID(24)
	if err := a.Onboard(ctx, code, "bench", password); err != nil {
		return auth.Credential{}, err
	}
	tok, err := a.Login(ctx, "bench", password, "")
	if err != nil {
		return auth.Credential{}, err
	}
	return a.CreateCredential(ctx, tok.AccessToken, "bench devices", []string{prefix + "/#", "homeassistant/#"})
}

// registrySink counts the state changes the registry publishes, reading
// the send time from the "t" attribute every bench payload carries.
type registrySink struct {
	conn  *nats.Conn
	home  string
	ready chan struct{}
}

func (s *registrySink) Ready() <-chan struct{} { return s.ready }

func (s *registrySink) Run(ctx context.Context, deliver func(int64)) error {
	sub, err := s.conn.Subscribe(bus.StateWildcard(s.home), func(m *nats.Msg) {
		// The sink shares the machine with the hub it measures, so it does
		// not decode whole state changes: the first "t" in one is the new
		// state's attribute (StateChange puts "state" before "old_state").
		if t, ok := bench.SentTime(m.Data); ok {
			deliver(t)
		}
	})
	if err != nil {
		return err
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := s.conn.Flush(); err != nil {
		return err
	}
	close(s.ready)
	<-ctx.Done()
	return sub.Unsubscribe()
}
