package sim

import "math"

// Unreachable is the distance Dijkstra reports for a node no path reaches.
const Unreachable = math.MaxInt64

// Dijkstra returns the least total cost from src to every node over the
// links usable reports as up, each costing cost(link index); Unreachable
// for nodes with no such path. It is the oracle the routing's metrics are
// compared with.
func (t *Topology) Dijkstra(src int, cost func(link int) int64, usable func(link int) bool) []int64 {
	dist := make([]int64, len(t.Nodes))
	for i := range dist {
		dist[i] = Unreachable
	}
	dist[src] = 0
	h := distHeap{{node: src}}
	for len(h) > 0 {
		top := h.pop()
		if top.dist > dist[top.node] {
			continue
		}
		for _, p := range t.adj[top.node] {
			if usable != nil && !usable(p.Link) {
				continue
			}
			if d := top.dist + cost(p.Link); d < dist[p.Peer] {
				dist[p.Peer] = d
				h.push(distItem{node: p.Peer, dist: d})
			}
		}
	}
	return dist
}

type distItem struct {
	node int
	dist int64
}

// distHeap is a binary min-heap on dist, written out so that Dijkstra at
// 10,000 nodes allocates nothing per step.
type distHeap []distItem

func (h *distHeap) push(x distItem) {
	*h = append(*h, x)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].dist <= s[i].dist {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *distHeap) pop() distItem {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && s[r].dist < s[l].dist {
			l = r
		}
		if s[i].dist <= s[l].dist {
			break
		}
		s[i], s[l] = s[l], s[i]
		i = l
	}
	*h = s
	return top
}
