package storagetest

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
)

// memDB is a reference implementation of history.Store kept in memory. It
// exists only to prove the suite: that a correct store passes it and that
// stores with specific faults fail it.
type memDB struct {
	faults faults

	mu       sync.Mutex
	kinds    map[entityKey]homemesh.EntityKind
	points   map[entityKey]map[int64]history.Point // by time in µs
	stats    map[history.Resolution]map[entityKey]map[int64]*history.Stat
	events   map[string]map[string]history.Event // by home, then ID
	ledger   map[streamKey][]ledgerRange
	frozen   map[entityKey]map[int64]history.Stat // staleClosedDays: the hourly tier as Purge saw it
	written  func() time.Time
	closeCnt int
}

// faults are deliberate bugs, each of which some subtest must catch.
type faults struct {
	noDedupe          bool // stores redelivered messages again
	lastWins          bool // a point at a stored microsecond replaces it
	lastByArrival     bool // the statistics' Last is the last point written
	noOnTime          bool // never credits on-time
	onTimeAfterInsert bool // asks for on-time neighbours after inserting the whole batch
	unboundedPurge    bool // ignores the purge limit
	defaultKind       bool // purges every entity by the default retention
	lenientInput      bool // stores points without entity or time
	moreOnFull        bool // sets More when a page is exactly full
	afterInclusive    bool // history paging repeats the After row
	keepLedger        bool // never purges the ledger
	ledgerMinMax      bool // records a batch's sequences as one range, gaps included
	staleClosedDays   bool // Purge freezes closed days' hourly tier: later writes to them are not read
}

type entityKey struct{ home, entity string }

type streamKey struct{ home, stream string }

type ledgerRange struct {
	lo, hi  uint64
	written time.Time
}

func newMemDB(f faults) *memDB {
	db := &memDB{
		faults:  f,
		kinds:   map[entityKey]homemesh.EntityKind{},
		points:  map[entityKey]map[int64]history.Point{},
		stats:   map[history.Resolution]map[entityKey]map[int64]*history.Stat{},
		events:  map[string]map[string]history.Event{},
		ledger:  map[streamKey][]ledgerRange{},
		frozen:  map[entityKey]map[int64]history.Stat{},
		written: time.Now,
	}
	for _, r := range history.StatTiers {
		db.stats[r] = map[entityKey]map[int64]*history.Stat{}
	}
	return db
}

// memStore is one handle on a memDB.
type memStore struct{ db *memDB }

var _ history.Store = memStore{}

func (s memStore) Close() error {
	s.db.mu.Lock()
	defer s.db.mu.Unlock()
	s.db.closeCnt++
	return nil
}

func validate(b history.Batch, lenient bool) error {
	if b.Home == "" {
		return homemesh.Invalid("home", "is empty")
	}
	if b.Stream == "" {
		return homemesh.Invalid("stream", "is empty")
	}
	for i, m := range b.Messages {
		if m.Seq == 0 {
			return homemesh.Invalid(fmt.Sprintf("messages[%d].seq", i), "is 0")
		}
		if lenient {
			continue
		}
		for j, p := range m.Points {
			if p.Entity == "" {
				return homemesh.Invalid(fmt.Sprintf("messages[%d].points[%d].entity", i, j), "is empty")
			}
			if p.Time.IsZero() {
				return homemesh.Invalid(fmt.Sprintf("messages[%d].points[%d].time", i, j), "is zero")
			}
			if p.Numeric && (math.IsNaN(p.Value) || math.IsInf(p.Value, 0)) {
				return homemesh.Invalid(fmt.Sprintf("messages[%d].points[%d].value", i, j), "%v is not a finite number", p.Value)
			}
		}
		for j, e := range m.Events {
			field := fmt.Sprintf("messages[%d].events[%d]", i, j)
			switch {
			case e.ID == "":
				return homemesh.Invalid(field+".id", "is empty")
			case e.Time.IsZero():
				return homemesh.Invalid(field+".time", "is zero")
			case e.Kind == "":
				return homemesh.Invalid(field+".kind", "is empty")
			}
		}
	}
	return nil
}

func (db *memDB) stored(k streamKey, seq uint64) bool {
	for _, r := range db.ledger[k] {
		if r.lo <= seq && seq <= r.hi {
			return true
		}
	}
	return false
}

func (s memStore) Write(ctx context.Context, b history.Batch) (history.WriteResult, error) {
	db := s.db
	if err := validate(b, db.faults.lenientInput); err != nil {
		return history.WriteResult{}, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	var res history.WriteResult
	sk := streamKey{b.Home, b.Stream}
	var newSeqs []uint64
	var added []history.Point
	seen := map[rowKey]int{} // index in added of the batch's points
	for _, m := range b.Messages {
		if (!db.faults.noDedupe && db.stored(sk, m.Seq)) || slices.Contains(newSeqs, m.Seq) {
			res.Duplicates++
			continue
		}
		newSeqs = append(newSeqs, m.Seq)
		for _, p := range m.Points {
			p.Time = p.Time.UTC().Truncate(time.Microsecond)
			ek := entityKey{b.Home, p.Entity}
			if _, ok := db.kinds[ek]; !ok {
				db.kinds[ek] = p.Kind
				db.points[ek] = map[int64]history.Point{}
			}
			rk := rowKey{ek, p.Time.UnixMicro()}
			if old, ok := db.points[ek][rk.us]; ok {
				if db.faults.lastWins {
					db.uncount(b.Home, old)
					delete(db.points[ek], rk.us)
					seen[rk] = len(added)
					added = append(added, p)
				}
				continue
			}
			if i, ok := seen[rk]; ok {
				if db.faults.lastWins {
					added[i] = p
				}
				continue
			}
			seen[rk] = len(added)
			added = append(added, p)
			res.Points++
		}
		for _, e := range m.Events {
			if db.events[b.Home] == nil {
				db.events[b.Home] = map[string]history.Event{}
			}
			if _, ok := db.events[b.Home][e.ID]; ok {
				continue
			}
			e.Time = e.Time.UTC().Truncate(time.Microsecond)
			db.events[b.Home][e.ID] = e
			res.Events++
		}
	}
	for r, parts := range history.Summarize(added) {
		for _, p := range parts {
			db.merge(r, b.Home, p)
		}
	}
	// On-time: insert the points in time order, each binary one between
	// its stored neighbours (those of the batch stored before it
	// included).
	slices.SortStableFunc(added, func(a, b history.Point) int { return a.Time.Compare(b.Time) })
	if db.faults.onTimeAfterInsert {
		for _, x := range added {
			db.points[entityKey{b.Home, x.Entity}][x.Time.UnixMicro()] = x
		}
	}
	for _, x := range added {
		ek := entityKey{b.Home, x.Entity}
		if _, ok := history.Binary(x.State); ok && !x.Numeric && !db.faults.noOnTime {
			prev, next := db.neighbours(ek, x.Time)
			for r, deltas := range history.OnTime(prev, x, next) {
				for _, d := range deltas {
					db.merge(r, b.Home, d)
				}
			}
		}
		db.points[ek][x.Time.UnixMicro()] = x
	}
	if len(newSeqs) > 0 {
		slices.Sort(newSeqs)
		now := db.written()
		lo := newSeqs[0]
		for i := 1; i <= len(newSeqs); i++ {
			if i == len(newSeqs) || (newSeqs[i] != newSeqs[i-1]+1 && !db.faults.ledgerMinMax) {
				db.ledger[sk] = append(db.ledger[sk], ledgerRange{lo, newSeqs[i-1], now})
				if i < len(newSeqs) {
					lo = newSeqs[i]
				}
			}
		}
	}
	return res, nil
}

// uncount takes a replaced point out of the counts, so that the lastWins
// fault only shows in the raw rows.
func (db *memDB) uncount(home string, p history.Point) {
	for r, parts := range history.Summarize([]history.Point{p}) {
		for _, part := range parts {
			if st := db.stats[r][entityKey{home, p.Entity}][part.Start.UnixMicro()]; st != nil {
				st.Count--
			}
		}
	}
}

func (db *memDB) neighbours(ek entityKey, tm time.Time) (prev, next *history.Point) {
	for _, p := range db.points[ek] {
		switch {
		case p.Time.Before(tm) && (prev == nil || p.Time.After(prev.Time)):
			prev = &p
		case p.Time.After(tm) && (next == nil || p.Time.Before(next.Time)):
			next = &p
		}
	}
	return prev, next
}

func (db *memDB) merge(r history.Resolution, home string, p history.Stat) {
	ek := entityKey{home, p.Entity}
	if db.stats[r][ek] == nil {
		db.stats[r][ek] = map[int64]*history.Stat{}
	}
	st := db.stats[r][ek][p.Start.UnixMicro()]
	if st == nil {
		st = &history.Stat{Entity: p.Entity, Start: p.Start}
		db.stats[r][ek][p.Start.UnixMicro()] = st
	}
	if db.faults.lastByArrival && p.NumCount > 0 {
		last, lastTime := p.Last, p.LastTime
		st.Merge(p)
		st.Last, st.LastTime = last, lastTime
		return
	}
	st.Merge(p)
}

func checkRange(from, to time.Time) error {
	if to.Before(from) {
		return homemesh.Invalid("to", "is before from")
	}
	return nil
}

func limitOf(n int) int {
	switch {
	case n <= 0:
		return history.DefaultLimit
	case n > history.MaxLimit:
		return history.MaxLimit
	}
	return n
}

func (s memStore) History(ctx context.Context, q history.HistoryQuery) (history.HistoryPage, error) {
	db := s.db
	if err := checkRange(q.From, q.To); err != nil {
		return history.HistoryPage{}, err
	}
	if q.Resolution != history.Raw && q.Resolution.Bucket() == 0 {
		return history.HistoryPage{}, homemesh.Invalid("resolution", "must be raw, 5m or 1h, not %q", q.Resolution)
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	ek := entityKey{q.Home, q.Entity}
	keep := func(tm time.Time) bool {
		if tm.Before(q.From) || !tm.Before(q.To) {
			return false
		}
		if q.After.IsZero() {
			return true
		}
		if db.faults.afterInclusive {
			return !tm.Before(q.After)
		}
		return tm.After(q.After)
	}
	limit := limitOf(q.Limit)
	var page history.HistoryPage
	if q.Resolution == history.Raw {
		for _, p := range db.points[ek] {
			if keep(p.Time) {
				page.Points = append(page.Points, p)
			}
		}
		slices.SortFunc(page.Points, func(a, b history.Point) int { return a.Time.Compare(b.Time) })
		page.Points, page.More = cut(page.Points, limit, db.faults.moreOnFull)
		return page, nil
	}
	for _, st := range db.stats[q.Resolution][ek] {
		if keep(st.Start) {
			if old, ok := db.frozen[ek][st.Start.UnixMicro()]; ok && q.Resolution == history.Hourly {
				page.Stats = append(page.Stats, old)
				continue
			}
			page.Stats = append(page.Stats, *st)
		}
	}
	slices.SortFunc(page.Stats, func(a, b history.Stat) int { return a.Start.Compare(b.Start) })
	page.Stats, page.More = cut(page.Stats, limit, db.faults.moreOnFull)
	return page, nil
}

func cut[T any](rows []T, limit int, moreOnFull bool) ([]T, bool) {
	if len(rows) > limit {
		return rows[:limit], true
	}
	return rows, moreOnFull && len(rows) == limit
}

func (s memStore) Events(ctx context.Context, q history.EventQuery) (history.EventPage, error) {
	db := s.db
	if err := checkRange(q.From, q.To); err != nil {
		return history.EventPage{}, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	var page history.EventPage
	for _, e := range db.events[q.Home] {
		switch {
		case e.Time.Before(q.From) || !e.Time.Before(q.To):
		case q.Kind != "" && e.Kind != q.Kind:
		case q.Device != "" && e.Device != q.Device:
		case !q.AfterTime.IsZero() && compareEvent(e, q.AfterTime, q.AfterID) <= 0:
		default:
			page.Events = append(page.Events, e)
		}
	}
	slices.SortFunc(page.Events, func(a, b history.Event) int { return compareEvent(a, b.Time, b.ID) })
	page.Events, page.More = cut(page.Events, limitOf(q.Limit), db.faults.moreOnFull)
	return page, nil
}

func compareEvent(e history.Event, tm time.Time, id string) int {
	if c := e.Time.Compare(tm); c != 0 {
		return c
	}
	return strings.Compare(e.ID, id)
}

// expire deletes at most limit of the keys expired says are expired, in
// key order, and reports how many went and whether some remain.
func expire[K comparable, V any](m map[K]V, expired func(K, V) bool, less func(a, b K) int, limit int, unbounded bool) (n int64, more bool) {
	var keys []K
	for k, v := range m {
		if expired(k, v) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, less)
	if len(keys) > limit && !unbounded {
		keys, more = keys[:limit], true
	}
	for _, k := range keys {
		delete(m, k)
	}
	return int64(len(keys)), more
}

type rowKey struct {
	ek entityKey
	us int64
}

func compareRowKey(a, b rowKey) int {
	if c := strings.Compare(a.ek.home+"\x00"+a.ek.entity, b.ek.home+"\x00"+b.ek.entity); c != 0 {
		return c
	}
	return int(a.us - b.us)
}

func (s memStore) Purge(ctx context.Context, now time.Time, p history.RetentionPolicy, limit int) (history.PurgeResult, error) {
	db := s.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.faults.staleClosedDays {
		for ek, byStart := range db.stats[history.Hourly] {
			for us, st := range byStart {
				if _, ok := db.frozen[ek][us]; !ok && history.Day(st.Start).Add(24*time.Hour).Before(now) {
					if db.frozen[ek] == nil {
						db.frozen[ek] = map[int64]history.Stat{}
					}
					db.frozen[ek][us] = *st
				}
			}
		}
	}
	retention := func(ek entityKey) history.Retention {
		if db.faults.defaultKind {
			return p.Default
		}
		return p.For(db.kinds[ek])
	}
	cutoff := func(d time.Duration) int64 {
		if d == 0 {
			return -1 << 63
		}
		return now.Add(-d).UnixMicro()
	}
	var res history.PurgeResult
	var more bool

	// Flatten each table to one map so that the limit applies per table.
	rawRows := map[rowKey]bool{}
	for ek, pts := range db.points {
		for us := range pts {
			rawRows[rowKey{ek, us}] = true
		}
	}
	n, m := expire(rawRows, func(k rowKey, _ bool) bool { return k.us < cutoff(retention(k.ek).Raw) }, compareRowKey, limit, db.faults.unboundedPurge)
	res.Points, more = n, more || m
	for k := range db.allRaw() {
		if !rawRows[k] {
			delete(db.points[k.ek], k.us)
		}
	}

	for _, r := range history.StatTiers {
		rows := map[rowKey]bool{}
		for ek, sts := range db.stats[r] {
			for us := range sts {
				rows[rowKey{ek, us}] = true
			}
		}
		keepFor := func(ret history.Retention) time.Duration {
			if r == history.FiveMinutes {
				return ret.FiveMinutes
			}
			return ret.Hourly
		}
		before := maps(rows)
		n, m := expire(rows, func(k rowKey, _ bool) bool { return k.us < cutoff(keepFor(retention(k.ek))) }, compareRowKey, limit, db.faults.unboundedPurge)
		res.Stats += n
		more = more || m
		for k := range before {
			if !rows[k] {
				delete(db.stats[r][k.ek], k.us)
			}
		}
	}

	type eventKey struct{ home, id string }
	evRows := map[eventKey]int64{}
	for home, evs := range db.events {
		for id, e := range evs {
			evRows[eventKey{home, id}] = e.Time.UnixMicro()
		}
	}
	n, m = expire(evRows, func(_ eventKey, us int64) bool { return us < cutoff(p.Events) }, func(a, b eventKey) int {
		return strings.Compare(a.home+"\x00"+a.id, b.home+"\x00"+b.id)
	}, limit, db.faults.unboundedPurge)
	res.Events, more = n, more || m
	for home, evs := range db.events {
		for id := range evs {
			if _, ok := evRows[eventKey{home, id}]; !ok {
				delete(evs, id)
			}
		}
	}

	if !db.faults.keepLedger {
		type ledgerKey struct {
			sk streamKey
			i  int
		}
		rows := map[ledgerKey]time.Time{}
		for sk, ranges := range db.ledger {
			for i, r := range ranges {
				rows[ledgerKey{sk, i}] = r.written
			}
		}
		gone := maps(rows)
		n, m = expire(rows, func(_ ledgerKey, w time.Time) bool { return w.Before(now.Add(-history.LedgerRetention)) },
			func(a, b ledgerKey) int {
				if c := strings.Compare(a.sk.home+"\x00"+a.sk.stream, b.sk.home+"\x00"+b.sk.stream); c != 0 {
					return c
				}
				return a.i - b.i
			}, limit, db.faults.unboundedPurge)
		res.Ledger, more = n, more || m
		for k := range rows {
			delete(gone, k)
		}
		for sk, ranges := range db.ledger {
			var kept []ledgerRange
			for i, r := range ranges {
				if _, ok := gone[ledgerKey{sk, i}]; !ok {
					kept = append(kept, r)
				}
			}
			db.ledger[sk] = kept
		}
	}
	res.More = more
	return res, nil
}

func (db *memDB) allRaw() map[rowKey]bool {
	out := map[rowKey]bool{}
	for ek, pts := range db.points {
		for us := range pts {
			out[rowKey{ek, us}] = true
		}
	}
	return out
}

func maps[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func openMem(f faults) func(t *testing.T) history.Store {
	return func(t *testing.T) history.Store {
		s := memStore{newMemDB(f)}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestMemoryStorePassesTheSuite(t *testing.T) {
	Run(t, openMem(faults{}))
}

func TestMemoryStorePassesTheSharedSuite(t *testing.T) {
	RunShared(t, func(t *testing.T) (a, b history.Store) {
		db := newMemDB(faults{})
		return memStore{db}, memStore{db}
	})
}

// recorder stands in for a test's testing.TB, to run a subtest that must
// fail and see that it does. It records failures instead of reporting
// them; Fatal ends the goroutine like testing's does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	log    []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any)                 { r.Errorf("%s", fmt.Sprint(args...)) }
func (r *recorder) Fatalf(format string, args ...any) { r.Errorf(format, args...); runtime.Goexit() }
func (r *recorder) Fatal(args ...any)                 { r.Error(args...); runtime.Goexit() }
func (r *recorder) Fail()                             { r.Errorf("failed") }
func (r *recorder) FailNow()                          { r.Fail(); runtime.Goexit() }

func (r *recorder) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// runRecorded runs test against a fresh store with fault f and returns
// what it reported.
func runRecorded(t *testing.T, f faults, test func(testing.TB, history.Store)) *recorder {
	rec := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		test(rec, memStore{newMemDB(f)})
	}()
	<-done
	return rec
}

func storeTestNamed(t *testing.T, name string) func(testing.TB, history.Store) {
	for _, c := range storeTests {
		if c.name == name {
			return c.run
		}
	}
	t.Fatalf("no subtest %s", name)
	return nil
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	for _, c := range []struct {
		fault    string
		f        faults
		subtests []string
	}{
		{"no dedupe", faults{noDedupe: true}, []string{"DuplicateMessageSkipped", "MixedBatchStoresOnlyNew", "EventsDuplicatesSkipped", "PurgeLedger", "ConcurrentOverlappingWrites"}},
		{"last point wins", faults{lastWins: true}, []string{"SameMicrosecondFirstWins"}},
		{"last by arrival", faults{lastByArrival: true}, []string{"StatsNumeric"}},
		{"no on-time", faults{noOnTime: true}, []string{"StatsBinaryInOrder", "StatsBinaryOutOfOrder", "StatsBinaryAcrossBuckets", "SameMicrosecondFirstWins"}},
		{"on-time after inserting the batch", faults{onTimeAfterInsert: true}, []string{"StatsBinaryOutOfOrder", "StatsBinaryAcrossBuckets"}},
		{"unbounded purge", faults{unboundedPurge: true}, []string{"PurgeBounded"}},
		{"retention ignores kinds", faults{defaultKind: true}, []string{"PurgeRetention", "PurgeBounded"}},
		{"lenient input", faults{lenientInput: true}, []string{"InvalidBatch"}},
		{"More on a full page", faults{moreOnFull: true}, []string{"RawPaging", "EventsPaging"}},
		{"After inclusive", faults{afterInclusive: true}, []string{"RawPaging", "StatsPaging"}},
		{"ledger kept", faults{keepLedger: true}, []string{"PurgeLedger"}},
		{"ledger with gaps filled", faults{ledgerMinMax: true}, []string{"LedgerGaps"}},
		{"closed days frozen by Purge", faults{staleClosedDays: true}, []string{"HourlyClosedDaysLateWrites"}},
	} {
		for _, name := range c.subtests {
			t.Run(strings.ReplaceAll(c.fault, " ", "_")+"/"+name, func(t *testing.T) {
				rec := runRecorded(t, c.f, storeTestNamed(t, name))
				if !rec.Failed() {
					t.Errorf("%s passed on a store with fault %q", name, c.fault)
				}
				t.Logf("caught: %s", strings.Join(rec.log, "; "))
			})
		}
	}
}

func TestRecorderSeesPassingSubtests(t *testing.T) {
	// The same subtests pass through the recorder on a correct store, so
	// the failures above come from the faults, not from the recorder.
	for _, c := range storeTests {
		rec := runRecorded(t, faults{}, c.run)
		if rec.Failed() {
			t.Errorf("%s failed on the reference store: %s", c.name, strings.Join(rec.log, "; "))
		}
	}
}

func TestCloseTwiceOnReference(t *testing.T) {
	db := newMemDB(faults{})
	runRecorded(t, faults{}, func(tb testing.TB, _ history.Store) { testCloseTwice(tb, memStore{db}) })
	if db.closeCnt != 2 {
		t.Errorf("Close called %d times, want 2", db.closeCnt)
	}
}
