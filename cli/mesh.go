package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/sim"
	"github.com/spf13/cobra"
)

func meshCommand(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "mesh", Short: "Mesh network tools"}
	cmd.AddCommand(meshSimCommand(stdout, stderr))
	return cmd
}

func meshSimCommand(stdout, stderr io.Writer) *cobra.Command {
	cfg := sim.DefaultConfig()
	var (
		loss, latency string
		asJSON        bool
		cpuProfile    string
		progress      bool
	)
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "Simulate a mesh of routers in virtual time and print what it measured",
		Long: `sim runs the mesh routing core (mesh/route), one router per node, over
virtual links with latency and loss, deterministically: the same flags and
--seed give the same figures. The run:

  1. boots every node within one Hello interval and measures the time to
     full reachability (cold_start_s);
  2. starts data flows between nodes and their nearest hub, both ways,
     forwarded hop by hop by the routers, lets them settle for --settle,
     then measures control overhead, route stretch against Dijkstra on the
     true link metric and routing memory over --steady;
  3. runs the scenario for --duration:
       kill       kills a relay on a flow's path every --kill-interval and
                  restarts it --downtime later with its persisted seqno;
       churn      kills random nodes at --churn % of the nodes a minute,
                  each down for an exponential time of mean --downtime;
       partition  cuts the network in two for --partition-time, merges it
                  and measures the time to full reachability (merge_s),
                  repeatedly;
     measuring failure detection (detection_s), the outage of every flow a
     failure broke until a packet gets through again (recovery_s), loops
     (TTL expiries), blackholes and the delivery ratio;
  4. restarts what is down, merges what is cut and checks that every node
     reaches every other again.

It prints one JSON object with --json, else a summary.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if cfg.Loss, err = sim.ParseLoss(loss); err != nil {
				return homemesh.Invalid("loss", "%v", err)
			}
			if cfg.LatencyMin, cfg.LatencyMax, err = sim.ParseLatency(latency); err != nil {
				return homemesh.Invalid("latency", "%v", err)
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			stopProfile, err := startCPUProfile(cpuProfile)
			if err != nil {
				return err
			}
			defer func() { err = errors.Join(err, stopProfile()) }()
			start := time.Now()
			if progress {
				stderr := cmd.ErrOrStderr()
				cfg.Progress = func(p sim.Progress) {
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					fmt.Fprintf(stderr, "mesh sim: %.1f s virtual, %d M events, %.1f GiB heap, %s wall\n",
						p.Virtual.Seconds(), p.Events>>20, float64(ms.HeapAlloc)/(1<<30), time.Since(start).Round(time.Second))
				}
			}
			res, err := sim.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			res.Host.WallS = time.Since(start).Seconds()
			res.Host.MaxRSSBytes = peakRSS()
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			return printMeshSummary(stdout, res)
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of nodes")
	f.StringVar(&cfg.Topology, "topology", cfg.Topology, "line, grid, random (geometric) or house (floors of rooms)")
	f.Float64Var(&cfg.Degree, "degree", cfg.Degree, "mean degree of the random topology")
	f.IntVar(&cfg.Hubs, "hubs", cfg.Hubs, "hubs: node 0 and the nodes farthest from the hubs before them")
	f.StringVar(&loss, "loss", "1%", "per-packet loss on every link: a fraction (0.01) or a percentage (1%)")
	f.StringVar(&latency, "latency", "10ms-20ms", "one-way link latency, uniform per link in this range")
	f.DurationVar(&cfg.Hello, "hello", cfg.Hello, "Hello interval")
	f.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "kill, churn, partition or none")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed: the same seed and flags give the same run")
	f.BoolVar(&asJSON, "json", false, "print the result as one JSON object")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the scenario runs, in virtual time")
	f.DurationVar(&cfg.KillInterval, "kill-interval", cfg.KillInterval, "kill scenario: time between kills")
	f.DurationVar(&cfg.Downtime, "downtime", cfg.Downtime, "how long a killed node stays down (the mean, under churn)")
	f.Float64Var(&cfg.Churn, "churn", cfg.Churn, "churn scenario: kills per minute, as a percentage of the nodes")
	f.DurationVar(&cfg.PartitionTime, "partition-time", cfg.PartitionTime, "partition scenario: how long each partition lasts")
	f.IntVar(&cfg.Flows, "flows", cfg.Flows, "nodes exchanging data with their nearest hub (0: all, at most 1000 sampled)")
	f.DurationVar(&cfg.FlowInterval, "flow-interval", cfg.FlowInterval, "time between one flow's packets")
	f.IntVar(&cfg.Payload, "payload", cfg.Payload, "data packet payload bytes")
	f.DurationVar(&cfg.Probe, "probe", cfg.Probe, "probe interval of a flow a failure broke: the resolution of recovery_s")
	f.IntVar(&cfg.Retries, "retries", cfg.Retries, "link-layer retransmissions of a lost data frame (control frames get none)")
	f.BoolVar(&cfg.Link, "link", cfg.Link, "run the real link layer on every link: Noise sessions between certified nodes, every frame sealed and opened")
	f.BoolVar(&cfg.Attack, "attack", cfg.Attack, "while the scenario runs, replay and forge frames, try to link a node of another CA and announce other nodes' ids (needs --link)")
	f.BoolVar(&cfg.LinkFeedback, "link-feedback", cfg.LinkFeedback, "links report data frames unacknowledged after every retry to the sender's router, as a radio MAC does")
	f.BoolVar(&cfg.Salvage, "salvage", cfg.Salvage, "with --link-feedback, links give an undelivered data packet back to the router, which sends it again another way")
	f.DurationVar(&cfg.Hold, "hold", cfg.Hold, "how long a source holds a packet while it has no route, as a node does (0: drop at once)")
	f.DurationVar(&cfg.RelayHold, "relay-hold", cfg.RelayHold, "how long a relay holds a packet while it has no route, as a node does (0: drop at once)")
	f.IntVar(&cfg.TTL, "ttl", cfg.TTL, "initial TTL of data packets (0: the routing default, or 255 where paths are longer)")
	f.DurationVar(&cfg.Settle, "settle", cfg.Settle, "time between cold-start reachability and the steady measurement")
	f.DurationVar(&cfg.Steady, "steady", cfg.Steady, "length of the steady measurement (overhead, stretch, memory)")
	f.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "longest wait for reachability, detection or recovery")
	f.IntVar(&cfg.ReachDests, "reach-dests", cfg.ReachDests, "destinations whose reachability from every node is checked (all nodes in smaller networks)")
	f.IntVar(&cfg.StretchSources, "stretch-sources", cfg.StretchSources, "sources whose routes are compared with Dijkstra (all nodes in smaller networks)")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	f.BoolVar(&progress, "progress", false, "report how far the run has got on standard error now and then (for long runs)")
	return cmd
}

// printMeshSummary writes the headline figures of a run for a person.
func printMeshSummary(w io.Writer, r *sim.Result) error {
	opt := func(v *float64) string {
		if v == nil {
			return "never"
		}
		return strconv.FormatFloat(*v, 'f', 2, 64) + " s"
	}
	tail := func(s sim.Summary) string {
		if s.N == 0 {
			return "no samples"
		}
		return fmt.Sprintf("p50 %.2f  p95 %.2f  p99 %.2f  max %.2f  (n %d)", s.P50, s.P95, s.P99, s.Max, s.N)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d nodes, %s topology, %d links (mean degree %.2f), scenario %s, seed %d\n",
		r.Nodes, r.Params.Topology, r.Links, r.MeanDegree, r.Params.Scenario, r.Params.Seed)
	fmt.Fprintf(&b, "cold start to full reachability  %s\n", opt(r.ColdStartS))
	fmt.Fprintf(&b, "failure detection (s)            %s\n", tail(r.DetectionS))
	fmt.Fprintf(&b, "kill to restored delivery (s)    %s\n", tail(r.RecoveryS))
	fmt.Fprintf(&b, "partition merge                  %s\n", opt(r.MergeS))
	fmt.Fprintf(&b, "loops (TTL expiries)             %d\n", r.Loops)
	fmt.Fprintf(&b, "delivery ratio                   %.4f %% of %d packets\n", 100*r.DeliveryRatio, r.Sent)
	fmt.Fprintf(&b, "steady overhead                  %.0f bit/s/node\n", r.OverheadBpsPerNode)
	fmt.Fprintf(&b, "stretch p99                      %.4f\n", r.StretchP99)
	fmt.Fprintf(&b, "routing state                    %.0f B/node, %.0f routes/node\n", r.RouteBytesPerNode, r.RoutesPerNode)
	fmt.Fprintf(&b, "reachable at the end             %v\n", r.ReachableAtEnd)
	fmt.Fprintf(&b, "simulator                        %.1f s wall, %.0f s virtual, %d MiB peak RSS\n",
		r.Host.WallS, r.VirtualS, r.Host.MaxRSSBytes>>20)
	_, err := w.Write(b.Bytes())
	return err
}

// startCPUProfile starts writing a CPU profile to path (the --cpuprofile
// flag; "" for none) and returns the function that stops it and closes the
// file.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, homemesh.Invalid("cpuprofile", "%v", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, homemesh.Invalid("cpuprofile", "%v", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// peakRSS returns the process's peak resident set size where the system
// reports it (Linux), else 0.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
