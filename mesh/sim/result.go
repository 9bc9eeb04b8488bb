package sim

import (
	"maps"
	"math"
)

// metrics are the raw measurements of a run, turned into a Result at the
// end.
type metrics struct {
	err error

	coldStart, finalReach *float64
	reachableAtEnd        bool
	allPairs              *bool

	detection, recovery []float64
	undetected          int
	preempted           int // watches ended by a re-established link
	unrecovered         int
	abandoned           int
	broken              int // flows a failure broke
	failures            int // kills and cuts
	restarts            int
	merges              []float64
	mergeFailed         int

	sent, delivered uint64 // regular packets between connected ends
	dataDrops       [dropReasons]uint64
	ctrlDrops       [dropReasons]uint64
	loops           uint64 // TTL expiries
	tableLoops      uint64 // next-hop cycles met while walking the routes
	probes          uint64
	dataHops        uint64
	misdelivered    uint64
	rejected        uint64 // control packets a router returned an error for
	undelivered     uint64 // data frames the links reported undeliverable
	held            uint64 // packets a source held for want of a route
	relayHeld       uint64 // packets a relay held for want of a route
	salvaged        uint64 // packets the links gave back undelivered
	badLink         uint64 // sends on a link the router does not have
	timerSpins      uint64

	ctrlBytes, ctrlPackets uint64

	steadyFrom, steadyTo int64
	steadyStartCtrl      ctrlSnapshot
	steadyEndCtrl        ctrlSnapshot
	scenarioCtrl         ctrlSnapshot

	metricRatio, pathStretch Summary
	routesSampled            int
	routesMean               float64
	routesMin                int
	missingRoutes            int
	stateBytesMean           float64
	stateBytesMax            int
	heapBytes                uint64

	// routers sums the counters of routers that were killed; the live
	// ones are added at the end.
	routers routerTotals
}

// ctrlSnapshot is the control traffic sent up to a moment: on the wire as
// the simulator saw it, and by message type as the routers counted it.
type ctrlSnapshot struct {
	at             int64
	bytes, packets uint64
	byType         map[string]uint64
}

func (s *sim) snapshot() ctrlSnapshot {
	snap := ctrlSnapshot{at: s.now, bytes: s.m.ctrlBytes, packets: s.m.ctrlPackets, byType: map[string]uint64{}}
	if s.links != nil {
		// On the wire: the transport overhead of control packets and
		// the link layer's own frames too.
		snap.bytes += s.links.wireBytes
		snap.byType["link"] = s.links.wireBytes
	}
	for v := range s.nodes {
		if s.nodes[v].alive {
			addCounters(snap.byType, s.nodes[v].r)
		}
	}
	return snap
}

// Result is what `homemesh mesh sim` prints: the run's parameters and its
// measurements. Times are in seconds; a time that was never reached is
// null.
type Result struct {
	Params Params `json:"params"`

	Nodes      int     `json:"nodes"`
	Links      int     `json:"links"`
	MeanDegree float64 `json:"mean_degree"`
	// HubEccentricityHops is the largest hop count from a node to its
	// nearest hub.
	HubEccentricityHops int `json:"hub_eccentricity_hops"`

	ColdStartS *float64 `json:"cold_start_s"`

	DetectionS Summary `json:"detection_s"`
	// Undetected counts watched links whose neighbour did not notice the
	// failure within the timeout.
	Undetected int `json:"undetected"`
	// SpuriousDeaths counts neighbours declared dead that had not failed:
	// the routers' deaths beyond the detected failures (loss alone
	// silenced them).
	SpuriousDeaths int64   `json:"spurious_deaths"`
	RecoveryS      Summary `json:"recovery_s"`
	// Unrecovered counts broken flows with connected ends that had no
	// packet delivered within the timeout or by the end of the run.
	Unrecovered int `json:"unrecovered"`
	Failures    int `json:"failures"`
	BrokenFlows int `json:"broken_flows"`

	Loops      uint64 `json:"loops"`
	TableLoops uint64 `json:"table_loops"`

	DeliveryRatio float64           `json:"delivery_ratio"`
	Sent          uint64            `json:"sent"`
	Delivered     uint64            `json:"delivered"`
	Lost          map[string]uint64 `json:"lost"`
	// BlackholeS is the flow-seconds of regular traffic lost to routing:
	// to dead next hops, cut links, missing routes and loops.
	BlackholeS float64 `json:"blackhole_s"`

	OverheadBpsPerNode         float64            `json:"overhead_bps_per_node"`
	OverheadPpsPerNode         float64            `json:"overhead_pps_per_node"`
	OverheadByType             map[string]float64 `json:"overhead_bps_per_node_by_type"`
	OverheadScenarioBpsPerNode float64            `json:"overhead_scenario_bps_per_node"`

	// StretchP99 and Stretch are the route stretch: the true cost (the
	// oracle's metric) of the path packets take, hop by hop along the
	// routers' next hops, over the cheapest path's (Dijkstra); never below
	// 1. Sampled pairs of a sample of sources.
	StretchP99 float64 `json:"stretch_p99"`
	Stretch    Summary `json:"stretch"`
	// MetricRatioP99 and MetricRatio compare the metric the routers hold
	// with the cheapest path's true cost: stretch and the link cost
	// estimates' error together (below 1 where Hellos happened to get
	// through more often than the loss rate says), for every route of the
	// sampled sources.
	MetricRatioP99 float64 `json:"metric_ratio_p99"`
	MetricRatio    Summary `json:"metric_ratio"`
	// MissingRoutes counts (sampled source, reachable destination) pairs
	// without a route after convergence.
	MissingRoutes int `json:"missing_routes"`

	RouteBytesPerNode    float64 `json:"route_bytes_per_node"`
	RouteBytesMax        int     `json:"route_bytes_max"`
	RoutesPerNode        float64 `json:"routes_per_node"`
	RoutesMin            int     `json:"routes_min"`
	RoutesSampledSources int     `json:"routes_sampled_sources"`

	MergeS       *float64 `json:"merge_s"`
	Merges       Summary  `json:"merges"`
	MergesFailed int      `json:"merges_failed"`

	ReachableAtEnd    bool     `json:"reachable_at_end"`
	FinalReachS       *float64 `json:"final_reach_s"`
	AllPairsReachable *bool    `json:"all_pairs_reachable"`

	// Routers sums every router's own counters over the run.
	Routers routerTotals `json:"routers"`
	// Link is the link layer's account, with --link.
	Link *LinkResult `json:"link,omitempty"`
	// Attack is what the attacker tried and what got through, with
	// --attack.
	Attack *AttackResult `json:"attack,omitempty"`

	Restarts        int    `json:"restarts"`
	Probes          uint64 `json:"probes"`
	DataHops        uint64 `json:"data_hops"`
	Misdelivered    uint64 `json:"misdelivered"`
	RejectedControl uint64 `json:"rejected_control"`
	// UndeliveredFrames counts data frames the links reported to their
	// sender as unacknowledged after every retry (--link-feedback).
	UndeliveredFrames uint64 `json:"undelivered_frames"`
	// HeldPackets counts regular packets a source held for want of a
	// route (--hold); those not sent within the hold are lost as no_route.
	HeldPackets uint64 `json:"held_packets"`
	// RelayHeldPackets counts regular packets a relay held for want of a
	// route (--relay-hold); those not sent on within it are lost as
	// no_route.
	RelayHeldPackets uint64 `json:"relay_held_packets"`
	// SalvagedPackets counts regular packets the links gave back to their
	// sender's router undelivered (--salvage), to go again.
	SalvagedPackets uint64  `json:"salvaged_packets"`
	BadLinkSends    uint64  `json:"bad_link_sends"`
	TimerSpins      uint64  `json:"timer_spins"`
	Events          uint64  `json:"events"`
	VirtualS        float64 `json:"virtual_s"`

	// Host is what the run cost the simulator's process; it varies from
	// run to run.
	Host Host `json:"host"`
}

// Host is the simulator process's own cost. Run fills in HeapBytes, the
// live heap after a collection with every router up (at the end of the
// steady phase); the caller fills in the rest.
type Host struct {
	WallS       float64 `json:"wall_s"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
	HeapBytes   uint64  `json:"heap_bytes"`
}

// Params echoes the run's configuration.
type Params struct {
	Nodes         int     `json:"nodes"`
	Topology      string  `json:"topology"`
	Degree        float64 `json:"degree"`
	Hubs          int     `json:"hubs"`
	Loss          float64 `json:"loss"`
	Latency       string  `json:"latency"`
	Hello         string  `json:"hello"`
	Scenario      string  `json:"scenario"`
	Seed          uint64  `json:"seed"`
	Duration      string  `json:"duration"`
	KillInterval  string  `json:"kill_interval"`
	Downtime      string  `json:"downtime"`
	Churn         float64 `json:"churn_pct_per_min"`
	PartitionTime string  `json:"partition_time"`
	Flows         int     `json:"flows"`
	FlowInterval  string  `json:"flow_interval"`
	Payload       int     `json:"payload"`
	Probe         string  `json:"probe"`
	Retries       int     `json:"retries"`
	LinkFeedback  bool    `json:"link_feedback"`
	Salvage       bool    `json:"salvage"`
	Link          bool    `json:"link"`
	Attack        bool    `json:"attack"`
	Hold          string  `json:"hold"`
	RelayHold     string  `json:"relay_hold"`
	TTL           int     `json:"ttl"`
	Settle        string  `json:"settle"`
	Steady        string  `json:"steady"`
	Timeout       string  `json:"timeout"`
	ReachDests    int     `json:"reach_dests"`
}

// LinkResult is what the link layer did over the run, summed over the
// nodes: every refusal is counted under its reason.
type LinkResult struct {
	Handshakes        uint64 `json:"handshakes"`
	HandshakeFailures uint64 `json:"handshake_failures"`
	Rekeys            uint64 `json:"rekeys"`
	FramesSent        uint64 `json:"frames_sent"`
	BytesSent         uint64 `json:"bytes_sent"`
	// SessionsClosed counts sessions the link layer closed under a
	// running link (keys expired, a rekey that never completed).
	SessionsClosed uint64            `json:"sessions_closed"`
	Refused        map[string]uint64 `json:"refused"`
}

func (s *sim) linkResult() *LinkResult {
	if s.links == nil {
		return nil
	}
	c := s.linkCounters()
	return &LinkResult{
		Handshakes: c.HandshakesCompleted, HandshakeFailures: s.links.handshakeFailures, Rekeys: c.Rekeys,
		FramesSent: c.FramesSent, BytesSent: c.BytesSent, SessionsClosed: s.links.closed,
		Refused: map[string]uint64{"replayed": c.Replayed, "forged": c.Forged, "bad_cert": c.BadCert,
			"foreign_home": c.ForeignHome, "unknown_key": c.UnknownKey, "malformed": c.Malformed,
			"stale_handshake": c.StaleHandshake},
	}
}

func (s *sim) result() *Result {
	c, m := s.cfg, &s.m
	n := float64(len(s.nodes))
	res := &Result{
		Params: Params{
			Nodes: c.Nodes, Topology: c.Topology, Degree: c.Degree, Hubs: c.Hubs, Loss: c.Loss,
			Latency: c.LatencyMin.String() + "-" + c.LatencyMax.String(), Hello: c.Hello.String(),
			Scenario: c.Scenario, Seed: c.Seed, Duration: c.Duration.String(),
			KillInterval: c.KillInterval.String(), Downtime: c.Downtime.String(), Churn: c.Churn,
			PartitionTime: c.PartitionTime.String(), Flows: len(s.flows), FlowInterval: c.FlowInterval.String(),
			Payload: c.Payload, Probe: c.Probe.String(), Retries: c.Retries, LinkFeedback: c.LinkFeedback, Salvage: c.Salvage, Link: c.Link, Attack: c.Attack, Hold: c.Hold.String(), RelayHold: c.RelayHold.String(), TTL: int(s.ttl),
			Settle: c.Settle.String(), Steady: c.Steady.String(), Timeout: c.Timeout.String(),
			ReachDests: len(s.reach.dests),
		},
		Nodes:                len(s.nodes),
		Links:                len(s.topo.Links),
		MeanDegree:           round4(s.topo.MeanDegree()),
		ColdStartS:           m.coldStart,
		DetectionS:           Summarize(m.detection),
		Undetected:           m.undetected,
		RecoveryS:            Summarize(m.recovery),
		Unrecovered:          m.unrecovered,
		Failures:             m.failures,
		BrokenFlows:          m.broken,
		Loops:                m.loops,
		TableLoops:           m.tableLoops,
		Sent:                 m.sent,
		Delivered:            m.delivered,
		Lost:                 map[string]uint64{},
		Stretch:              m.pathStretch,
		StretchP99:           round4(m.pathStretch.P99),
		MetricRatio:          m.metricRatio,
		MetricRatioP99:       round4(m.metricRatio.P99),
		MissingRoutes:        m.missingRoutes,
		RouteBytesPerNode:    math.Round(m.stateBytesMean),
		RouteBytesMax:        m.stateBytesMax,
		RoutesPerNode:        round4(m.routesMean),
		RoutesMin:            m.routesMin,
		RoutesSampledSources: m.routesSampled,
		Merges:               Summarize(m.merges),
		MergesFailed:         m.mergeFailed,
		ReachableAtEnd:       m.reachableAtEnd,
		FinalReachS:          m.finalReach,
		AllPairsReachable:    m.allPairs,
		Restarts:             m.restarts,
		Probes:               m.probes,
		DataHops:             m.dataHops,
		Misdelivered:         m.misdelivered,
		RejectedControl:      m.rejected,
		UndeliveredFrames:    m.undelivered,
		HeldPackets:          m.held,
		RelayHeldPackets:     m.relayHeld,
		SalvagedPackets:      m.salvaged,
		Link:                 s.linkResult(),
		Attack:               s.attackResult(),
		BadLinkSends:         m.badLink,
		TimerSpins:           m.timerSpins,
		Events:               s.events,
		VirtualS:             round4(seconds(s.now)),
	}
	res.Host.HeapBytes = m.heapBytes
	res.Routers = m.routers
	res.Routers.Rejected = maps.Clone(m.routers.Rejected)
	for v := range s.nodes {
		if s.nodes[v].alive {
			res.Routers.add(s.nodes[v].r)
		}
	}
	res.SpuriousDeaths = int64(res.Routers.NeighboursLost) - int64(len(m.detection))
	ecc := 0
	for _, d := range s.topo.Hops(s.topo.Hubs...) {
		ecc = max(ecc, d)
	}
	res.HubEccentricityHops = ecc
	if m.sent > 0 {
		res.DeliveryRatio = float64(m.delivered) / float64(m.sent)
		res.DeliveryRatio = math.Round(res.DeliveryRatio*1e6) / 1e6
	}
	var routing uint64
	for why, count := range m.dataDrops {
		res.Lost[dropNames[why]] = count
		if r := dropReason(why); r != dropLoss && r != dropError && r != dropStale {
			routing += count
		}
	}
	res.BlackholeS = round4(float64(routing) * c.FlowInterval.Seconds())
	if len(m.merges) > 0 {
		res.MergeS = ptr(res.Merges.Max)
	}
	if span := m.steadyEndCtrl.at - m.steadyStartCtrl.at; span > 0 {
		secs := seconds(span)
		res.OverheadBpsPerNode = round4(float64(m.steadyEndCtrl.bytes-m.steadyStartCtrl.bytes) * 8 / secs / n)
		res.OverheadPpsPerNode = round4(float64(m.steadyEndCtrl.packets-m.steadyStartCtrl.packets) / secs / n)
		res.OverheadByType = map[string]float64{}
		for k, v := range m.steadyEndCtrl.byType {
			res.OverheadByType[k] = round4(float64(v-min(v, m.steadyStartCtrl.byType[k])) * 8 / secs / n)
		}
	}
	if span := m.scenarioCtrl.at - m.steadyEndCtrl.at; span > 0 {
		res.OverheadScenarioBpsPerNode = round4(float64(m.scenarioCtrl.bytes-m.steadyEndCtrl.bytes) * 8 / seconds(span) / n)
	}
	return res
}
