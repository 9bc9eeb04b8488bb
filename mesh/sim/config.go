package sim

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/homemesh/homemesh"
)

// Scenarios, as the --scenario flag names them.
const (
	ScenarioNone      = "none"
	ScenarioKill      = "kill"
	ScenarioChurn     = "churn"
	ScenarioPartition = "partition"
)

// Config is one simulator run. Field comments name the flag of `homemesh
// mesh sim` that sets each field; validation errors name that flag.
type Config struct {
	Nodes    int     // --nodes
	Topology string  // --topology: line, grid, random or house
	Degree   float64 // --degree: the mean degree of a random topology
	Hubs     int     // --hubs: node 0 and the nodes farthest from the hubs before it
	// Loss is each link's independent per-packet loss probability (--loss);
	// house links add loss for every wall they cross.
	Loss       float64
	LatencyMin time.Duration // --latency: one-way link latency, uniform in [min, max] per link
	LatencyMax time.Duration
	Hello      time.Duration // --hello: the routers' Hello interval
	Seed       uint64        // --seed

	Scenario string        // --scenario: kill, churn, partition or none
	Duration time.Duration // --duration: how long the scenario runs after the steady phase
	// KillInterval is the time between kills in the kill scenario
	// (--kill-interval); the victim restarts Downtime after its kill.
	KillInterval time.Duration
	Downtime     time.Duration // --downtime: a killed node's time off (its mean, under churn)
	Churn        float64       // --churn: kills per minute as a percentage of the nodes
	// PartitionTime is how long each partition lasts before the halves
	// merge (--partition-time); partitions repeat, merged as long again,
	// while Duration lasts.
	PartitionTime time.Duration

	// Flows is how many nodes exchange data with their nearest hub, both
	// ways (--flows); 0 means every node up to 1,000, else 1,000 sampled.
	Flows        int
	FlowInterval time.Duration // --flow-interval: the time between one flow's packets
	Payload      int           // --payload: data packet payload bytes
	// Probe is how often a flow whose path a failure broke sends probes
	// until one is delivered (--probe): the recovery time's resolution.
	Probe time.Duration
	// Retries is how often a link retransmits a lost data frame (--retries),
	// as a radio MAC does; control frames are never retransmitted, so the
	// routing sees the raw loss.
	Retries int
	// LinkFeedback makes the links report a data frame that found no
	// receiver after every retry (--link-feedback) to the sending router,
	// as a radio MAC's missing acknowledgements do; the router then probes
	// the neighbour instead of waiting for its Hellos to stop.
	LinkFeedback bool
	// Salvage makes such a link give the undelivered packet back to the
	// router (--salvage, with --link-feedback), as a radio MAC that gives
	// up on a frame does: the packet goes again once the route leads to a
	// neighbour not in doubt, instead of being lost with the dead one.
	Salvage bool
	// Hold is how long a source holds a packet it originates while it has
	// no route to the destination, sending it once it has one (--hold), as
	// a node does (mesh/meshnode queues up to 64 packets per destination
	// and 1,024 in all, for up to 10 s); 0 drops it at once. Probes are
	// never held.
	Hold time.Duration
	// RelayHold is how long a relay holds a packet it has no route for,
	// sending it on once it has one (--relay-hold), as a node does
	// (mesh/meshnode: up to 32 packets per destination and 256 in all,
	// for up to 5 s); 0 drops it at once. A relay's route is lost for a
	// moment after a failure, while it waits for a feasible one.
	RelayHold time.Duration
	// Link runs the real link layer on every virtual link (--link): Noise
	// sessions between certified nodes, every frame sealed and opened, the
	// overhead counted on the wire. Node ids are then the hashes of the
	// nodes' keys.
	Link bool
	// Attack runs an attacker while the scenario lasts (--attack, needs
	// --link): replayed and forged frames, a node of another CA, and an
	// insider announcing other nodes' ids.
	Attack bool
	// TTL is data packets' initial TTL (--ttl); 0 means the routing
	// core's default, or 255 in a network whose paths to the hubs are too
	// long for it.
	TTL int

	// Settle is how long after cold-start reachability the network runs
	// before the steady measurement (--settle); Steady is that
	// measurement's length (--steady).
	Settle time.Duration
	Steady time.Duration
	// Timeout bounds every wait for reachability and every recovery
	// (--timeout); what does not happen within it is reported as failed.
	Timeout time.Duration
	// ReachDests caps the destinations whose reachability from every node
	// is checked (--reach-dests): all nodes when the network is no larger,
	// else the hubs and a sample.
	ReachDests int
	// StretchSources caps the sources whose routes are compared with
	// Dijkstra (--stretch-sources): all nodes when the network is no
	// larger, else a sample.
	StretchSources int

	// Progress, if set, is called about every progressInterval of wall
	// time with how far the run has got, for a person watching a long
	// run; it must not touch the simulation.
	Progress func(Progress)
}

const progressInterval = 30 * time.Second

// Progress is how far a run has got.
type Progress struct {
	Virtual time.Duration // virtual time since the start
	Events  uint64        // events handled so far
}

// DefaultConfig returns the configuration of the target run: 1,000
// nodes, random geometric at degree 6, 10–20 ms links with 1 % loss, 1 s
// Hellos, the kill scenario.
func DefaultConfig() Config {
	return Config{
		Nodes:          1000,
		Topology:       TopologyRandom,
		Degree:         6,
		Hubs:           1,
		Loss:           0.01,
		LatencyMin:     10 * time.Millisecond,
		LatencyMax:     20 * time.Millisecond,
		Hello:          time.Second,
		Seed:           1,
		Scenario:       ScenarioKill,
		Duration:       5 * time.Minute,
		KillInterval:   30 * time.Second,
		Downtime:       15 * time.Second,
		Churn:          1,
		PartitionTime:  30 * time.Second,
		FlowInterval:   time.Second,
		Payload:        32,
		Probe:          100 * time.Millisecond,
		Retries:        3,
		LinkFeedback:   true,
		Salvage:        true,
		Hold:           10 * time.Second,
		RelayHold:      5 * time.Second,
		Settle:         20 * time.Second,
		Steady:         60 * time.Second,
		Timeout:        2 * time.Minute,
		ReachDests:     1000,
		StretchSources: 200,
	}
}

// Validate reports the first bad setting as a homemesh.Error naming its
// flag.
func (c Config) Validate() error {
	switch {
	case c.Nodes < 2:
		return homemesh.Invalid("nodes", "%d is too few: need at least 2", c.Nodes)
	case c.Nodes > 1_000_000:
		return homemesh.Invalid("nodes", "%d is more than 1000000", c.Nodes)
	case c.Topology != TopologyLine && c.Topology != TopologyGrid && c.Topology != TopologyRandom && c.Topology != TopologyHouse:
		return homemesh.Invalid("topology", "%q is not line, grid, random or house", c.Topology)
	case c.Topology == TopologyRandom && (c.Degree < 1 || c.Degree > float64(c.Nodes-1)):
		return homemesh.Invalid("degree", "%g is not between 1 and nodes-1 (%d)", c.Degree, c.Nodes-1)
	case c.Hubs < 1 || c.Hubs >= c.Nodes:
		return homemesh.Invalid("hubs", "%d is not between 1 and nodes-1", c.Hubs)
	case c.Loss < 0 || c.Loss >= 1:
		return homemesh.Invalid("loss", "%g is not a probability in [0, 1)", c.Loss)
	case c.LatencyMin <= 0 || c.LatencyMax < c.LatencyMin:
		return homemesh.Invalid("latency", "%v-%v is not a positive range", c.LatencyMin, c.LatencyMax)
	case c.Hello <= 0:
		return homemesh.Invalid("hello", "%v is not positive", c.Hello)
	case c.Scenario != ScenarioNone && c.Scenario != ScenarioKill && c.Scenario != ScenarioChurn && c.Scenario != ScenarioPartition:
		return homemesh.Invalid("scenario", "%q is not kill, churn, partition or none", c.Scenario)
	case c.Duration < 0:
		return homemesh.Invalid("duration", "%v is negative", c.Duration)
	case c.KillInterval <= 0:
		return homemesh.Invalid("kill-interval", "%v is not positive", c.KillInterval)
	case c.Downtime <= 0:
		return homemesh.Invalid("downtime", "%v is not positive", c.Downtime)
	case c.Scenario == ScenarioKill && c.Downtime >= c.KillInterval:
		return homemesh.Invalid("downtime", "%v is not shorter than --kill-interval %v", c.Downtime, c.KillInterval)
	case c.Churn < 0 || c.Churn > 100:
		return homemesh.Invalid("churn", "%g is not a percentage per minute in [0, 100]", c.Churn)
	case c.PartitionTime <= 0:
		return homemesh.Invalid("partition-time", "%v is not positive", c.PartitionTime)
	case c.Flows < 0:
		return homemesh.Invalid("flows", "%d is negative", c.Flows)
	case c.FlowInterval <= 0:
		return homemesh.Invalid("flow-interval", "%v is not positive", c.FlowInterval)
	case c.Payload < payloadHeader || c.Payload > 65535:
		return homemesh.Invalid("payload", "%d is not between %d and 65535 bytes", c.Payload, payloadHeader)
	case c.Probe <= 0:
		return homemesh.Invalid("probe", "%v is not positive", c.Probe)
	case c.Retries < 0 || c.Retries > 15:
		return homemesh.Invalid("retries", "%d is not between 0 and 15", c.Retries)
	case c.Hold < 0:
		return homemesh.Invalid("hold", "%v is negative", c.Hold)
	case c.RelayHold < 0:
		return homemesh.Invalid("relay-hold", "%v is negative", c.RelayHold)
	case c.Attack && !c.Link:
		return homemesh.Invalid("attack", "needs --link: the attacks are on the link layer")
	case c.TTL < 0 || c.TTL > 255:
		return homemesh.Invalid("ttl", "%d is not between 0 and 255", c.TTL)
	case c.Settle < 0:
		return homemesh.Invalid("settle", "%v is negative", c.Settle)
	case c.Steady <= 0:
		return homemesh.Invalid("steady", "%v is not positive", c.Steady)
	case c.Timeout <= 0:
		return homemesh.Invalid("timeout", "%v is not positive", c.Timeout)
	case c.ReachDests < 1:
		return homemesh.Invalid("reach-dests", "%d is not positive", c.ReachDests)
	case c.StretchSources < 1:
		return homemesh.Invalid("stretch-sources", "%d is not positive", c.StretchSources)
	}
	return nil
}

// ParseLoss parses a loss probability: a fraction ("0.01") or a
// percentage ("1%").
func ParseLoss(s string) (float64, error) {
	t := strings.TrimSpace(s)
	scale := 1.0
	if rest, ok := strings.CutSuffix(t, "%"); ok {
		t, scale = strings.TrimSpace(rest), 0.01
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a fraction such as 0.01 or a percentage such as 1%%", s)
	}
	v *= scale
	if v < 0 || v >= 1 {
		return 0, fmt.Errorf("%q is not a loss in [0, 1) (a fraction such as 0.01 or a percentage such as 1%%)", s)
	}
	return v, nil
}

// ParseLatency parses a latency range "10ms-20ms" or a single latency
// "15ms".
func ParseLatency(s string) (lo, hi time.Duration, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if lo, err = time.ParseDuration(strings.TrimSpace(a)); err != nil {
		return 0, 0, fmt.Errorf("%q is not a duration range such as 10ms-20ms", s)
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(strings.TrimSpace(b)); err != nil {
			return 0, 0, fmt.Errorf("%q is not a duration range such as 10ms-20ms", s)
		}
	}
	if lo <= 0 || hi < lo {
		return 0, 0, fmt.Errorf("%q is not a positive range with min ≤ max", s)
	}
	return lo, hi, nil
}
