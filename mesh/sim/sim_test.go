package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// smallConfig is a run small and short enough for every CI run.
func smallConfig(nodes int, topology, scenario string) Config {
	cfg := DefaultConfig()
	cfg.Nodes = nodes
	cfg.Topology = topology
	cfg.Scenario = scenario
	cfg.Duration = 2 * time.Minute
	cfg.Settle = 5 * time.Second
	cfg.Steady = 10 * time.Second
	cfg.PartitionTime = 30 * time.Second
	return cfg
}

// The routing's correctness properties hold in small networks of every
// kind, under kills and partitions: no packet loops, every failure is
// noticed and every broken flow recovers, and after convergence every node
// reaches every other.
func TestScenariosAreCorrect(t *testing.T) {
	for _, tc := range []struct {
		nodes              int
		topology, scenario string
	}{
		{40, TopologyRandom, ScenarioKill},
		{40, TopologyRandom, ScenarioPartition},
		{36, TopologyGrid, ScenarioKill},
		{36, TopologyGrid, ScenarioPartition},
		{50, TopologyRandom, ScenarioChurn},
		{30, TopologyHouse, ScenarioPartition},
		{12, TopologyLine, ScenarioKill},
	} {
		t.Run(tc.topology+"-"+tc.scenario, func(t *testing.T) {
			cfg := smallConfig(tc.nodes, tc.topology, tc.scenario)
			if tc.scenario == ScenarioChurn {
				cfg.Churn = 5
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkCorrect(t, res, tc.scenario)
		})
	}
}

// checkCorrect checks the correctness properties every run must have.
func checkCorrect(t *testing.T, res *Result, scenario string) {
	t.Helper()
	b, _ := json.Marshal(res)
	t.Logf("%s", b)
	if res.Loops != 0 || res.TableLoops != 0 {
		t.Errorf("%d TTL expiries, %d loops in the routing tables", res.Loops, res.TableLoops)
	}
	if res.ColdStartS == nil {
		t.Error("never reached full reachability after the cold start")
	}
	if !res.ReachableAtEnd || res.AllPairsReachable == nil || !*res.AllPairsReachable {
		t.Errorf("not every node reaches every other at the end (checked dests: %v, all pairs: %v)", res.ReachableAtEnd, res.AllPairsReachable)
	}
	if res.MissingRoutes != 0 {
		t.Errorf("%d routes missing after convergence", res.MissingRoutes)
	}
	if res.DetectionS.N == 0 || res.Undetected != 0 {
		t.Errorf("detected %d failures, missed %d", res.DetectionS.N, res.Undetected)
	}
	if res.SpuriousDeaths != 0 {
		t.Errorf("%d live neighbours declared dead", res.SpuriousDeaths)
	}
	if res.Unrecovered != 0 {
		t.Errorf("%d broken flows never recovered", res.Unrecovered)
	}
	if scenario == ScenarioPartition && (res.MergeS == nil || res.MergesFailed != 0) {
		t.Errorf("merge: %v, %d merges failed", res.MergeS, res.MergesFailed)
	}
	if res.Misdelivered != 0 || res.BadLinkSends != 0 || res.RejectedControl != 0 || res.Lost["rejected"] != 0 {
		t.Errorf("misdelivered %d, bad link sends %d, rejected control %d, rejected data %d",
			res.Misdelivered, res.BadLinkSends, res.RejectedControl, res.Lost["rejected"])
	}
}

// With the real link layer on every link (Noise sessions between certified
// nodes, every frame sealed and opened, rekeys) the routing keeps the same
// properties, no frame of an honest node is refused, and the overhead on
// the wire includes the link layer's bytes.
func TestLinkLayerInTheSimulator(t *testing.T) {
	for _, scenario := range []string{ScenarioKill, ScenarioChurn} {
		t.Run(scenario, func(t *testing.T) {
			cfg := smallConfig(40, TopologyRandom, scenario)
			cfg.Link = true
			if scenario == ScenarioChurn {
				cfg.Churn = 5
			}
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			checkCorrect(t, res, scenario)
			l := res.Link
			if l == nil || l.Handshakes == 0 || l.FramesSent == 0 {
				t.Fatalf("link layer idle: %+v", l)
			}
			// The run lasts past the 2-minute rekey.
			if l.Rekeys == 0 {
				t.Error("no link rekeyed")
			}
			if l.HandshakeFailures != 0 || l.SessionsClosed != 0 {
				t.Errorf("%d handshakes failed, %d sessions closed", l.HandshakeFailures, l.SessionsClosed)
			}
			for reason, n := range l.Refused {
				if n != 0 {
					t.Errorf("%d frames of honest nodes refused as %s", n, reason)
				}
			}
			if res.OverheadByType["link"] <= 0 {
				t.Errorf("the overhead leaves out the link layer: %v", res.OverheadByType)
			}
		})
	}
}

// A link that reports undeliverable data frames lets the routers notice a
// dead relay on a path before its Hellos are missed, without breaking the
// correctness properties: fewer packets are lost and failures are detected
// sooner than with the Hellos alone.
func TestLinkFeedbackShortensOutages(t *testing.T) {
	run := func(feedback bool) *Result {
		cfg := smallConfig(60, TopologyRandom, ScenarioKill)
		cfg.LinkFeedback = feedback
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Loops != 0 || res.TableLoops != 0 || res.Unrecovered != 0 || res.SpuriousDeaths != 0 || !res.ReachableAtEnd {
			t.Fatalf("feedback %v: loops %d/%d, unrecovered %d, spurious deaths %d, reachable at the end %v",
				feedback, res.Loops, res.TableLoops, res.Unrecovered, res.SpuriousDeaths, res.ReachableAtEnd)
		}
		return res
	}
	with, without := run(true), run(false)
	if with.UndeliveredFrames == 0 || with.Routers.DeliveryFails == 0 {
		t.Errorf("with feedback: %d frames reported undelivered, %d delivery failures counted by the routers",
			with.UndeliveredFrames, with.Routers.DeliveryFails)
	}
	if without.UndeliveredFrames != 0 || without.Routers.DeliveryFails != 0 {
		t.Errorf("without feedback the links reported %d frames", without.UndeliveredFrames)
	}
	if with.Lost["dead_next_hop"] >= without.Lost["dead_next_hop"] || with.DetectionS.P50 >= without.DetectionS.P50 {
		t.Errorf("with feedback: %d packets lost to dead relays, detection p50 %.2f s; without: %d, %.2f s",
			with.Lost["dead_next_hop"], with.DetectionS.P50, without.Lost["dead_next_hop"], without.DetectionS.P50)
	}
}

// A source holds what it originates while it has no route, and a relay
// what it relays, as a node does, and sends it once it has one: fewer
// packets are lost to missing routes than when they are dropped at once,
// and nothing breaks.
func TestHeldPacketsGoOnceRouted(t *testing.T) {
	run := func(hold, relayHold time.Duration) *Result {
		cfg := smallConfig(100, TopologyRandom, ScenarioChurn)
		cfg.Churn = 10
		cfg.Hold, cfg.RelayHold = hold, relayHold
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Loops != 0 || res.TableLoops != 0 || res.Unrecovered != 0 || !res.ReachableAtEnd || res.Misdelivered != 0 {
			t.Fatalf("hold %v, relay hold %v: loops %d/%d, unrecovered %d, reachable at the end %v, misdelivered %d",
				hold, relayHold, res.Loops, res.TableLoops, res.Unrecovered, res.ReachableAtEnd, res.Misdelivered)
		}
		return res
	}
	both, sources, dropped := run(10*time.Second, 5*time.Second), run(10*time.Second, 0), run(0, 0)
	if sources.HeldPackets == 0 || dropped.HeldPackets != 0 || sources.RelayHeldPackets != 0 {
		t.Errorf("sources held %d packets with a hold, %d without; relays held %d without a relay hold",
			sources.HeldPackets, dropped.HeldPackets, sources.RelayHeldPackets)
	}
	if sources.Lost["no_route"] >= dropped.Lost["no_route"] || sources.Delivered <= dropped.Delivered {
		t.Errorf("with a hold: %d lost to missing routes, %d delivered; without: %d, %d",
			sources.Lost["no_route"], sources.Delivered, dropped.Lost["no_route"], dropped.Delivered)
	}
	if both.RelayHeldPackets == 0 || both.Lost["no_route"] >= sources.Lost["no_route"] || both.Delivered <= sources.Delivered {
		t.Errorf("with a relay hold: relays held %d, %d lost to missing routes, %d delivered; without: %d, %d",
			both.RelayHeldPackets, both.Lost["no_route"], both.Delivered, sources.Lost["no_route"], sources.Delivered)
	}
}

// A link that gives an undelivered data packet back lets the router send
// it again another way once it has probed the silent neighbour: far fewer
// packets are lost to dead relays than when the link only reports the
// loss, and the routing's properties hold.
func TestSalvagedPacketsGoAnotherWay(t *testing.T) {
	run := func(salvage bool) *Result {
		cfg := smallConfig(100, TopologyRandom, ScenarioChurn)
		cfg.Churn = 10
		cfg.Seed = 4
		cfg.Salvage = salvage
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if res.Loops != 0 || res.TableLoops != 0 || res.Unrecovered != 0 || !res.ReachableAtEnd || res.Misdelivered != 0 {
			t.Fatalf("salvage %v: loops %d/%d, unrecovered %d, reachable at the end %v, misdelivered %d",
				salvage, res.Loops, res.TableLoops, res.Unrecovered, res.ReachableAtEnd, res.Misdelivered)
		}
		return res
	}
	with, without := run(true), run(false)
	if with.SalvagedPackets == 0 || without.SalvagedPackets != 0 {
		t.Errorf("salvaged %d packets with salvage on, %d with it off", with.SalvagedPackets, without.SalvagedPackets)
	}
	if 4*with.Lost["dead_next_hop"] >= without.Lost["dead_next_hop"] || with.Delivered <= without.Delivered {
		t.Errorf("with salvage: %d lost to dead relays, %d delivered; without: %d, %d",
			with.Lost["dead_next_hop"], with.Delivered, without.Lost["dead_next_hop"], without.Delivered)
	}
}

// The same seed gives the same run, figure for figure; another seed gives
// another.
func TestDeterministic(t *testing.T) {
	run := func(seed uint64, withLink bool) []byte {
		cfg := smallConfig(40, TopologyRandom, ScenarioKill)
		cfg.Seed = seed
		cfg.Link = withLink
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		res.Host = Host{}
		b, err := json.MarshalIndent(res, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, withLink := range []bool{false, true} {
		a, b := run(3, withLink), run(3, withLink)
		if diff := cmp.Diff(string(a), string(b)); diff != "" {
			t.Fatalf("two runs with seed 3 (link layer %v) differ (-first +second):\n%s", withLink, diff)
		}
		if string(run(4, withLink)) == string(a) {
			t.Fatalf("seeds 3 and 4 gave the same run (link layer %v)", withLink)
		}
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for flag, mutate := range map[string]func(*Config){
		"nodes":         func(c *Config) { c.Nodes = 1 },
		"topology":      func(c *Config) { c.Topology = "ring" },
		"degree":        func(c *Config) { c.Degree = 0 },
		"hubs":          func(c *Config) { c.Hubs = 0 },
		"loss":          func(c *Config) { c.Loss = 1 },
		"latency":       func(c *Config) { c.LatencyMin = 0 },
		"hello":         func(c *Config) { c.Hello = 0 },
		"scenario":      func(c *Config) { c.Scenario = "flood" },
		"downtime":      func(c *Config) { c.Downtime = time.Minute },
		"churn":         func(c *Config) { c.Churn = -1 },
		"payload":       func(c *Config) { c.Payload = 3 },
		"ttl":           func(c *Config) { c.TTL = 300 },
		"kill-interval": func(c *Config) { c.KillInterval = 0 },
		"hold":          func(c *Config) { c.Hold = -time.Second },
		"attack":        func(c *Config) { c.Attack = true },
	} {
		cfg := DefaultConfig()
		mutate(&cfg)
		err := cfg.Validate()
		if homemesh.ErrorField(err) != flag {
			t.Errorf("%s: %v", flag, err)
		}
		if _, err := Run(context.Background(), cfg); homemesh.ErrorField(err) != flag {
			t.Errorf("Run with bad %s: %v", flag, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// A run stops with the context's error once the context ends.
func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := DefaultConfig()
	cfg.Nodes = 100
	if _, err := Run(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with a cancelled context: %v, want context.Canceled", err)
	}
}

// An attacker on the links and an insider get nothing through: replayed,
// forged and foreign-CA frames are refused and counted by the link layer,
// announcements of other nodes' ids by the routers, and the routing keeps
// its properties meanwhile.
func TestAttacksAreRefused(t *testing.T) {
	cfg := smallConfig(40, TopologyRandom, ScenarioKill)
	cfg.Link, cfg.Attack = true, true
	cfg.Loss = 0 // so that every injected hijack reaches its router
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	a, l := res.Attack, res.Link
	if a == nil || l == nil || a.Replays == 0 || a.Forgeries == 0 || a.Intruders == 0 || a.Hijacks == 0 {
		t.Fatalf("the attacker did not run: %+v", a)
	}
	if a.ReplaysAccepted+a.ForgeriesAccepted+a.IntrudersLinked != 0 {
		t.Errorf("attacks got through: %+v", a)
	}
	if l.Refused["replayed"] < a.Replays || l.Refused["forged"] < a.Forgeries || l.Refused["bad_cert"] < a.Intruders {
		t.Errorf("refusals %v do not count the attacks %+v", l.Refused, a)
	}
	if got := res.Routers.Rejected[route.RejectForeignOrigin.String()]; got != a.Hijacks {
		t.Errorf("routers refused %d announcements of other nodes' ids, want the %d sent", got, a.Hijacks)
	}
	if res.Loops != 0 || res.TableLoops != 0 || !res.ReachableAtEnd || res.Unrecovered != 0 || res.MissingRoutes != 0 {
		t.Errorf("the routing suffered: loops %d/%d, reachable %v, unrecovered %d, missing routes %d",
			res.Loops, res.TableLoops, res.ReachableAtEnd, res.Unrecovered, res.MissingRoutes)
	}
}

// A run reports its progress to a watcher without changing: the figures
// are those of the same run unwatched.
func TestProgressReported(t *testing.T) {
	cfg := smallConfig(40, TopologyRandom, ScenarioKill)
	var reports []Progress
	cfg.Progress = func(p Progress) { reports = append(reports, p) }
	watched, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Progress = nil
	plain, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) == 0 || reports[0].Virtual <= 0 || reports[0].Events == 0 {
		t.Fatalf("progress reports %+v", reports)
	}
	watched.Host, plain.Host = Host{}, Host{}
	a, _ := json.Marshal(watched)
	b, _ := json.Marshal(plain)
	if !bytes.Equal(a, b) {
		t.Error("watching the run changed its figures")
	}
}
