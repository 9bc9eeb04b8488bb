package sim

// event is one thing the simulator does at a virtual time: a frame
// arriving, a flow sending, or a scenario step. It holds no pointers, so
// the garbage collector never scans the queue however long it grows.
type event struct {
	at   int64 // virtual nanoseconds
	seq  uint64
	kind eventKind
	node int32
	port int32  // the receiving port, for frames
	arg  uint32 // a frame buffer, a flow or an action, by kind
	// epoch is the link session a frame was sent in: a frame from a
	// session since replaced is dropped, as a link layer drops what the
	// old session's keys sealed.
	epoch uint32
}

type eventKind uint8

const (
	evFrame  eventKind = iota // a frame arrives at node on port; arg is its buffer
	evSend                    // flow arg sends its next regular packet
	evProbe                   // flow arg sends a probe while its delivery is broken
	evAction                  // scenario action arg runs
)

// eventQueue is a binary min-heap of events ordered by (at, seq). seq is
// the order of scheduling, which makes equal times deterministic.
type eventQueue struct {
	h   []event
	seq uint64
}

func (q *eventQueue) len() int { return len(q.h) }

func (q *eventQueue) push(e event) {
	q.seq++
	e.seq = q.seq
	q.h = append(q.h, e)
	h := q.h
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].before(&h[p]) {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func (e *event) before(o *event) bool {
	return e.at < o.at || e.at == o.at && e.seq < o.seq
}

func (q *eventQueue) peek() *event { return &q.h[0] }

func (q *eventQueue) pop() event {
	h := q.h
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	h = h[:n]
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		if r := l + 1; r < n && h[r].before(&h[l]) {
			l = r
		}
		if !h[l].before(&h[i]) {
			break
		}
		h[i], h[l] = h[l], h[i]
		i = l
	}
	q.h = h
	return top
}

// timerHeap orders nodes by the time their router next wants a Tick. Each
// node is in it at most once; pos tracks where, so that a changed deadline
// moves the node in O(log n) instead of queueing stale timer events.
type timerHeap struct {
	nodes []int32
	at    []int64 // by node
	pos   []int32 // by node; -1 when not queued
}

func newTimerHeap(n int) *timerHeap {
	t := &timerHeap{at: make([]int64, n), pos: make([]int32, n)}
	for i := range t.pos {
		t.pos[i] = -1
	}
	return t
}

func (t *timerHeap) less(i, j int) bool {
	a, b := t.nodes[i], t.nodes[j]
	return t.at[a] < t.at[b] || t.at[a] == t.at[b] && a < b
}

func (t *timerHeap) swap(i, j int) {
	t.nodes[i], t.nodes[j] = t.nodes[j], t.nodes[i]
	t.pos[t.nodes[i]] = int32(i)
	t.pos[t.nodes[j]] = int32(j)
}

func (t *timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !t.less(i, p) {
			break
		}
		t.swap(i, p)
		i = p
	}
}

func (t *timerHeap) down(i int) {
	n := len(t.nodes)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		if r := l + 1; r < n && t.less(r, l) {
			l = r
		}
		if !t.less(l, i) {
			return
		}
		t.swap(i, l)
		i = l
	}
}

// set queues node at time at, or moves it there.
func (t *timerHeap) set(node int32, at int64) {
	t.at[node] = at
	if p := t.pos[node]; p >= 0 {
		t.up(int(p))
		t.down(int(t.pos[node]))
		return
	}
	t.nodes = append(t.nodes, node)
	t.pos[node] = int32(len(t.nodes) - 1)
	t.up(len(t.nodes) - 1)
}

// remove takes node out of the heap, if it is there.
func (t *timerHeap) remove(node int32) {
	p := int(t.pos[node])
	if p < 0 {
		return
	}
	last := len(t.nodes) - 1
	if p != last {
		t.swap(p, last)
	}
	t.nodes = t.nodes[:last]
	t.pos[node] = -1
	if p != last {
		moved := t.nodes[p]
		t.up(p)
		t.down(int(t.pos[moved]))
	}
}

// next returns the node due first and its time; ok is false when empty.
func (t *timerHeap) next() (node int32, at int64, ok bool) {
	if len(t.nodes) == 0 {
		return 0, 0, false
	}
	return t.nodes[0], t.at[t.nodes[0]], true
}
