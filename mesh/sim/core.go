package sim

import (
	"math"
	"time"

	"github.com/homemesh/homemesh/mesh/route"
)

// The adapters below are the only places that know the shapes of the
// routing core's results beyond the calls themselves.

type action uint8

const (
	actDrop action = iota
	actDeliver
	actForward
	actDropTTL
)

// decide asks r what to do with a data packet received on from, or held
// here for want of a route when resumed is set.
func decide(r *route.Router, now time.Time, from route.LinkID, pkt []byte, resumed bool) (action, route.LinkID, []byte, error) {
	var d route.Decision
	var err error
	if resumed {
		d, err = r.Reroute(now, pkt)
	} else {
		d, err = r.Forward(now, from, pkt)
	}
	if err != nil {
		return actDrop, 0, nil, err
	}
	switch {
	case d.Action == route.ActionDeliver:
		return actDeliver, 0, nil, nil
	case d.Action == route.ActionForward:
		return actForward, d.Link, d.Packet, nil
	case d.Reason == route.DropTTLExpired:
		return actDropTTL, 0, nil, nil
	}
	return actDrop, 0, nil, nil
}

func linkID(port int) route.LinkID { return route.LinkID(port + 1) }

// neighbourGone reports whether r no longer counts the neighbour on link l
// as up: it declared it dead, or forgot it.
func neighbourGone(r *route.Router, l route.LinkID) bool {
	for _, n := range r.Neighbours() {
		if n.Link == l {
			return n.Dead
		}
	}
	return true
}

// trueCost is a link's cost on the routing's scale had the routers
// measured its loss exactly: the expected transmission count (ETX) of RFC
// 8966 Appendix A, HopCost / ((1 − loss)² ), for a Hello lost in either
// direction with probability loss.
func trueCost(loss float64) int64 {
	return int64(math.Round(route.HopCost / ((1 - loss) * (1 - loss))))
}

// routeMetric returns a usable route's metric; false for a route the
// router holds but may not use.
func routeMetric(ri route.RouteInfo) (int64, bool) {
	return int64(ri.Metric), ri.Feasible && ri.Metric != route.MetricInfinity
}

// addCounters adds r's control bytes sent by message type to into.
func addCounters(into map[string]uint64, r *route.Router) {
	c := r.Counters()
	for t := range route.NumMsgTypes {
		into[t.String()] += c.Sent[t].Bytes
	}
}

// routerTotals sums routers' own counters.
type routerTotals struct {
	// Rejected counts refused control packets and messages by reason.
	Rejected       map[string]uint64 `json:"rejected"`
	RouteChanges   uint64            `json:"route_changes"`
	SeqnoBumps     uint64            `json:"seqno_bumps"`
	Retransmits    uint64            `json:"retransmits"`
	NeighboursLost uint64            `json:"neighbours_lost"`
	Probes         uint64            `json:"probes"`
	DeliveryFails  uint64            `json:"delivery_failures"`
	DataTTLExpired uint64            `json:"data_ttl_expired"`
	DataNoRoute    uint64            `json:"data_no_route"`
}

func (t *routerTotals) add(r *route.Router) {
	c := r.Counters()
	if t.Rejected == nil {
		t.Rejected = map[string]uint64{}
	}
	for why := range route.NumRejectReasons {
		t.Rejected[why.String()] += c.Rejected[why]
	}
	t.RouteChanges += c.RouteChanges
	t.SeqnoBumps += c.SeqnoBumps
	t.Retransmits += c.Retransmits
	t.NeighboursLost += c.NeighboursLost
	t.Probes += c.Probes
	t.DeliveryFails += c.DeliveryFailures
	t.DataTTLExpired += c.DataTTLExpired
	t.DataNoRoute += c.DataNoRoute
}
