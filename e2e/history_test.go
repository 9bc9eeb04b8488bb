package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/postgres"
	"github.com/homemesh/homemesh/sqlite"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
)

// The durability tests of the history service. Each publishes telemetry
// from outside homemesh, as a device bridge would, with JetStream
// acknowledgements, so the test knows exactly which messages the bus
// accepted; it then breaks something in the middle of the ingest and
// checks that every accepted point is stored exactly once and nothing
// else is.

// loadMessage is one telemetry message of a load: points first..first+n-1.
type loadMessage struct {
	id       string // its Nats-Msg-Id, so a republish is recognised
	first, n int
	data     []byte
	acked    bool
}

// telemetryLoad publishes numbered telemetry points: point k belongs to
// entity k mod len(entities), is at base + k ms (unique times) and has the
// value k, so what is stored can be checked point by point.
type telemetryLoad struct {
	nc       *nats.Conn
	home     string
	device   string
	entities []string
	base     time.Time
	perMsg   int

	mu   sync.Mutex
	msgs []*loadMessage
}

func newTelemetryLoad(nc *nats.Conn, home string, entities, perMsg int) *telemetryLoad {
	l := &telemetryLoad{nc: nc, home: home, device: "e2e-meter", perMsg: perMsg,
		base: time.Now().UTC().Truncate(time.Second).Add(-time.Hour)}
	for i := range entities {
		l.entities = append(l.entities, fmt.Sprintf("e2e-power-%03d", i))
	}
	return l
}

func (l *telemetryLoad) pointTime(k int) time.Time {
	return l.base.Add(time.Duration(k) * time.Millisecond)
}

func (l *telemetryLoad) entityOf(k int) string { return l.entities[k%len(l.entities)] }

// next makes the next message of the load.
func (l *telemetryLoad) next(t *testing.T) *loadMessage {
	l.mu.Lock()
	defer l.mu.Unlock()
	first := 0
	if n := len(l.msgs); n > 0 {
		first = l.msgs[n-1].first + l.msgs[n-1].n
	}
	var tel history.Telemetry
	for k := first; k < first+l.perMsg; k++ {
		tel.Points = append(tel.Points, history.TelemetryPoint{EntityID: l.entityOf(k), Time: l.pointTime(k), Value: float64(k)})
	}
	data, err := bus.EncodeEnvelope(l.home, l.device, "telemetry", tel)
	if err != nil {
		t.Error(err)
	}
	m := &loadMessage{id: fmt.Sprintf("e2e-load-%d", len(l.msgs)), first: first, n: l.perMsg, data: data}
	l.msgs = append(l.msgs, m)
	return m
}

// publish sends m and waits for JetStream's acknowledgement.
func (l *telemetryLoad) publish(m *loadMessage) error {
	_, err := l.publishOnce(m)
	return err
}

// publishOnce is publish that also says whether JetStream had m already.
func (l *telemetryLoad) publishOnce(m *loadMessage) (duplicate bool, err error) {
	msg := &nats.Msg{Subject: bus.TelemetrySubject(l.home, l.device), Data: m.data, Header: nats.Header{}}
	msg.Header.Set(nats.MsgIdHdr, m.id)
	if _, duplicate, err = jsPublishOnce(l.nc, msg); err != nil {
		return false, err
	}
	l.mu.Lock()
	m.acked = true
	l.mu.Unlock()
	return duplicate, nil
}

// jsPublish publishes msg and returns its stream sequence once JetStream
// acknowledged it.
func jsPublish(nc *nats.Conn, msg *nats.Msg) (uint64, error) {
	seq, _, err := jsPublishOnce(nc, msg)
	return seq, err
}

// jsPublishOnce is jsPublish that also says whether JetStream had the
// message already (by its Nats-Msg-Id) and did not store it again.
func jsPublishOnce(nc *nats.Conn, msg *nats.Msg) (seq uint64, duplicate bool, err error) {
	reply, err := nc.RequestMsg(msg, 5*time.Second)
	if err != nil {
		return 0, false, err
	}
	var ack struct {
		Stream    string `json:"stream"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
		Error     *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &ack); err != nil {
		return 0, false, fmt.Errorf("acknowledgement %q: %w", reply.Data, err)
	}
	if ack.Error != nil {
		return 0, false, fmt.Errorf("JetStream refused the message: %d %s", ack.Error.Code, ack.Error.Description)
	}
	// Telemetry subjects are hm.<home>.telemetry.<device>.
	stream := history.TelemetryStream(strings.Split(msg.Subject, ".")[1])
	if ack.Stream != stream || ack.Seq == 0 {
		return 0, false, fmt.Errorf("acknowledgement without a %s sequence: %q", stream, reply.Data)
	}
	return ack.Seq, ack.Duplicate, nil
}

// run publishes a message every interval until stop is closed; done is
// closed when it has stopped. A publish that fails is left for settle.
func (l *telemetryLoad) run(t *testing.T, interval time.Duration, stop <-chan struct{}) (done <-chan struct{}) {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = l.publish(l.next(t))
			}
		}
	}()
	return ch
}

// burst publishes n messages back to back, as fast as JetStream
// acknowledges them, so that history has a backlog to work through.
func (l *telemetryLoad) burst(t *testing.T, n int) {
	t.Helper()
	for range n {
		if err := l.publish(l.next(t)); err != nil {
			t.Fatal(err)
		}
	}
}

// published returns the number of points made so far.
func (l *telemetryLoad) published() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.msgs) == 0 {
		return 0
	}
	last := l.msgs[len(l.msgs)-1]
	return last.first + last.n
}

// settle publishes again, with the same message IDs, every message whose
// acknowledgement never came, until JetStream acknowledges each one: a
// message the bus had stored is acknowledged as a duplicate and not stored
// twice, one it never received is stored now. Afterwards every point of
// the load was accepted exactly once.
func (l *telemetryLoad) settle(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	var pending []*loadMessage
	for _, m := range l.msgs {
		if !m.acked {
			pending = append(pending, m)
		}
	}
	l.mu.Unlock()
	deadline := time.Now().Add(60 * time.Second)
	duplicates := 0
	for _, m := range pending {
		for {
			dup, err := l.publishOnce(m)
			if err == nil {
				if dup {
					duplicates++
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("message %s never acknowledged: %v", m.id, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("load: %d messages, %d points; %d publishes unacknowledged at first and settled, %d of them stored by JetStream already",
		len(l.msgs), l.published(), len(pending), duplicates)
}

// storedPoint is what a store returned for one point of the load.
type storedPoint struct {
	value float64
	count int
}

// pointKey names a point by entity and microsecond.
type pointKey struct {
	entity string
	micros int64
}

// readAll returns every raw point of the load's entities in r, paging
// through each entity's history.
func (l *telemetryLoad) readAll(t *testing.T, r history.Reader) (map[pointKey]*storedPoint, error) {
	return l.read(t, r, l.entities)
}

func (l *telemetryLoad) read(t *testing.T, r history.Reader, entities []string) (map[pointKey]*storedPoint, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := map[pointKey]*storedPoint{}
	for _, e := range entities {
		q := history.HistoryQuery{Home: l.home, Entity: e, From: l.base.Add(-time.Minute), To: l.base.Add(24 * time.Hour),
			Resolution: history.Raw, Limit: history.MaxLimit}
		for {
			page, err := r.History(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("history of %s: %w", e, err)
			}
			for _, p := range page.Points {
				k := pointKey{p.Entity, p.Time.UnixMicro()}
				if got[k] == nil {
					got[k] = &storedPoint{value: p.Value}
				}
				got[k].count++
			}
			if !page.More || len(page.Points) == 0 {
				break
			}
			q.After = page.Points[len(page.Points)-1].Time
		}
	}
	return got, nil
}

// count returns how many raw points of the load's entities r holds.
func (l *telemetryLoad) count(t *testing.T, r history.Reader) (int, error) {
	got, err := l.readAll(t, r)
	if err != nil {
		return -1, err
	}
	n := 0
	for _, p := range got {
		n += p.count
	}
	return n, nil
}

// verify checks that r holds every point of the load exactly once, with
// its value, and nothing else, and that the statistics tiers counted each
// point once.
func (l *telemetryLoad) verify(t *testing.T, r history.Reader) {
	t.Helper()
	got, err := l.readAll(t, r)
	if err != nil {
		t.Fatal(err)
	}
	total := l.published()
	var missing, wrong, dup []int
	want := map[pointKey]bool{}
	perEntity := map[string]struct {
		n   int64
		sum float64
	}{}
	for k := 0; k < total; k++ {
		key := pointKey{l.entityOf(k), l.pointTime(k).UnixMicro()}
		want[key] = true
		s := perEntity[key.entity]
		s.n++
		s.sum += float64(k)
		perEntity[key.entity] = s
		p := got[key]
		switch {
		case p == nil:
			missing = append(missing, k)
		case p.count != 1:
			dup = append(dup, k)
		case p.value != float64(k):
			wrong = append(wrong, k)
		}
	}
	var extra []pointKey
	for key := range got {
		if !want[key] {
			extra = append(extra, key)
		}
	}
	if len(missing)+len(dup)+len(wrong)+len(extra) > 0 {
		t.Fatalf("of %d accepted points: %d missing (first %v), %d stored more than once (first %v), %d with a wrong value (first %v); %d stored points nobody published (first %v)",
			total, len(missing), head(missing), len(dup), head(dup), len(wrong), head(wrong), len(extra), head(extra))
	}

	// The statistics are merged as batches commit: a message stored twice
	// would count twice there even where the raw tier kept one row.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tier := range history.StatTiers {
		for _, e := range l.entities {
			q := history.HistoryQuery{Home: l.home, Entity: e, From: history.Truncate(l.base.Add(-time.Minute), history.Hourly), To: l.base.Add(24 * time.Hour),
				Resolution: tier, Limit: history.MaxLimit}
			page, err := r.History(ctx, q)
			if err != nil {
				t.Fatalf("%s statistics of %s: %v", tier, e, err)
			}
			var n int64
			var sum float64
			for _, s := range page.Stats {
				n += s.Count
				sum += s.Sum
			}
			if want := perEntity[e]; n != want.n || math.Abs(sum-want.sum) > 1e-6*math.Max(1, want.sum) {
				t.Fatalf("%s statistics of %s: %d points summing to %v, want %d summing to %v", tier, e, n, sum, want.n, want.sum)
			}
		}
	}
	t.Logf("stored exactly once: %d points of %d entities", total, len(l.entities))
}

func head[T any](s []T) []T {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// storeOpener opens the history store for one look at it.
type storeOpener func() (r history.Reader, closeIt func(), err error)

// sqliteStore opens the SQLite file a history process writes; WAL mode lets
// the test read it while the process writes.
func sqliteStore(path string) storeOpener {
	return func() (history.Reader, func(), error) {
		if _, err := os.Stat(path); err != nil {
			return nil, nil, err // not created yet: the test must not create it
		}
		s, err := sqlite.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
}

// postgresStore opens the PostgreSQL database a history process writes.
func postgresStore(dsn string) storeOpener {
	return func() (history.Reader, func(), error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := postgres.Open(ctx, dsn)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
}

// waitStored waits until the store holds as many of the load's points as
// were published, looking every few hundred milliseconds.
func (l *telemetryLoad) waitStored(t *testing.T, open storeOpener) {
	t.Helper()
	l.waitCount(t, open, l.published())
}

// waitCount waits until the store holds at least want of the load's
// points, and returns how many it holds.
func (l *telemetryLoad) waitCount(t *testing.T, open storeOpener, want int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	n, problem := -1, error(nil)
	for {
		if r, closeIt, err := open(); err != nil {
			problem = err
		} else {
			n, problem = l.count(t, r)
			closeIt()
		}
		if n >= want {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s the store holds %d of %d points (last error: %v)", n, want, problem)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// waitUnderway waits until the store holds about n of the load's points,
// reading only one entity's, with one store opened once, to notice
// quickly: the moment to break something in the middle of an ingest.
func (l *telemetryLoad) waitUnderway(t *testing.T, open storeOpener, n int) {
	t.Helper()
	var r history.Reader
	hmtest.WaitFor(t, 60*time.Second, fmt.Sprintf("about %d points stored", n), func() bool {
		if r == nil {
			reader, closeIt, err := open()
			if err != nil {
				return false
			}
			t.Cleanup(closeIt)
			r = reader
		}
		got, err := l.read(t, r, l.entities[:1])
		return err == nil && len(got)*len(l.entities) >= n
	})
}

// verifyStore opens the store once and verifies the load in it.
func (l *telemetryLoad) verifyStore(t *testing.T, open storeOpener) {
	t.Helper()
	r, closeIt, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer closeIt()
	l.verify(t, r)
}

// busCredentialConn connects to a hub's NATS with a service's credential
// file, as a program outside homemesh holding that credential would.
func busCredentialConn(t *testing.T, url, caFile, credFile string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	data, err := os.ReadFile(credFile)
	if err != nil {
		t.Fatal(err)
	}
	// hmbus1.<home>.<service>.<secret> (docs/security.md); the NATS user
	// is <service>@<home>.
	parts := strings.Split(strings.TrimSpace(string(data)), ".")
	if len(parts) != 4 {
		t.Fatalf("credential file %s: %d parts", credFile, len(parts))
	}
	home, service, secret := parts[1], parts[2], parts[3]
	opts = append([]nats.Option{nats.UserInfo(service+"@"+home, secret), nats.RootCAs(caFile),
		nats.CustomInboxPrefix(bus.InboxPrefix(home, service))}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect to %s as %s: %v", url, service, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// freeAddr returns a loopback address nothing listens on, for a process
// that must come back on the same address after a restart.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// tcpProxy forwards connections to a server and can cut them all.
type tcpProxy struct {
	addr, target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	p := &tcpProxy{addr: "127.0.0.1:0", target: target, conns: map[net.Conn]bool{}}
	p.listen(t)
	t.Cleanup(func() {
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) listen(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond) // the old listener's port is released asynchronously
		ln, err = net.Listen("tcp", p.addr)
	}
	if err != nil {
		t.Fatalf("proxy listen on %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.forward(c)
			}()
		}
	}()
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *tcpProxy) forward(client net.Conn) {
	server, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		client.Close()
		return
	}
	if !p.track(client) || !p.track(server) {
		client.Close()
		server.Close()
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	go pipe(server, client)
	go pipe(client, server)
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, client)
	delete(p.conns, server)
	p.mu.Unlock()
}

// cut closes the listener and every open connection: to its clients the
// server is gone, connections refused.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// restore listens again on the same address.
func (p *tcpProxy) restore(t *testing.T) { p.listen(t) }

// logLines returns p's JSON log lines.
func logLines(p *proc) []map[string]any {
	p.mu.Lock()
	text := p.errBuf.String()
	p.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(text, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// telemetryPublisher is the service whose bus identity may publish
// telemetry: the edge, which bridges devices.
const telemetryPublisher = "edge"

// historyHome is a home whose auth process admits other processes to its
// embedded bus, and the bus credentials of history and of the telemetry
// publisher, made offline from its data directory.
type historyHome struct {
	home, natsURL, caFile, credDir string
}

func startHistoryHome(t *testing.T) *historyHome {
	t.Helper()
	data, creds := t.TempDir(), t.TempDir()
	core := start(t, "serve", "auth", "--home", "e2e", "--data", data, "--nats-listen", "127.0.0.1:0")
	h := &historyHome{home: "e2e", natsURL: core.await(t, natsLine), caFile: filepath.Join(data, "ca.crt"), credDir: creds}
	seen.add(core.await(t, codeLine))
	for _, service := range []string{"history", telemetryPublisher} {
		h.credential(t, data, service)
	}
	return h
}

// credential writes service's bus credential and adds its secret to those
// no log may contain.
func (h *historyHome) credential(t *testing.T, data, service string) string {
	t.Helper()
	path := filepath.Join(h.credDir, service+".cred")
	run(t, "nats-credential", service, "--data", data, "--home", h.home, "--out", path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(string(b))
	seen.add(line)
	seen.add(line[strings.LastIndex(line, ".")+1:])
	return path
}

// serveHistory starts a split-mode history process storing into store.
func (h *historyHome) serveHistory(t *testing.T, data, store string) *proc {
	t.Helper()
	p := start(t, "serve", "history", "--nats", h.natsURL, "--nats-ca", h.caFile,
		"--nats-credential", filepath.Join(h.credDir, "history.cred"), "--home", h.home, "--data", data, "--history-store", store)
	p.await(t, homeLine)
	withinPermissions(t, p)
	return p
}

// publisher connects as the telemetry publisher.
func (h *historyHome) publisher(t *testing.T) *nats.Conn {
	return busCredentialConn(t, h.natsURL, h.caFile, filepath.Join(h.credDir, telemetryPublisher+".cred"))
}

// withinPermissions fails t, when it ends, if p stepped outside its bus
// permissions.
func withinPermissions(t *testing.T, p *proc) {
	t.Cleanup(func() {
		for _, line := range logLines(p) {
			if msg := fmt.Sprint(line["err"], line["msg"]); strings.Contains(strings.ToLower(msg), "permissions violation") {
				t.Errorf("%s stepped outside its bus permissions: %v", strings.Join(p.cmd.Args[1:3], " "), line)
			}
		}
	})
}

// kill ends p with SIGKILL, as a crash or the OOM killer would: nothing
// is flushed, acknowledged or closed.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// waitPublished waits until the load has made at least n points.
func (l *telemetryLoad) waitPublished(t *testing.T, n int) {
	t.Helper()
	hmtest.WaitFor(t, 60*time.Second, fmt.Sprintf("%d points published", n), func() bool { return l.published() >= n })
}

// Kill -9 the history process in the middle of a sustained ingest, start
// it again: every message JetStream accepted is stored exactly once.
func TestHistoryKillProcess(t *testing.T) {
	h := startHistoryHome(t)
	data := t.TempDir()
	db := filepath.Join(data, "history.db")
	store := sqliteStore(db)
	// History declares the stream it consumes; stopped, it lets a backlog
	// build up.
	h.serveHistory(t, data, "sqlite:"+db).stop(t)

	// 200 entities, 10 points a message, a message every 5 ms: 2,000
	// points/s, for about five seconds in all.
	load := newTelemetryLoad(h.publisher(t), h.home, 200, 10)
	stop := make(chan struct{})
	done := load.run(t, 5*time.Millisecond, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	// A backlog of 30,000 points waits when history starts, so it works
	// through full batches. Once some are stored, kill it: it holds the
	// next ones, pulled but not yet acknowledged, one possibly committed.
	load.burst(t, 3000)
	p := h.serveHistory(t, data, "sqlite:"+db)
	load.waitUnderway(t, store, 5000)
	p.kill(t)
	killed := load.published()
	stored := load.waitCount(t, store, 0)
	load.waitPublished(t, killed+2000)
	p = h.serveHistory(t, data, "sqlite:"+db)
	load.waitPublished(t, load.published()+3000)
	close(stop)
	<-done

	load.settle(t)
	t.Logf("killed with %d of %d points stored; %d published in all", stored, killed, load.published())
	// Messages the killed process had pulled come again once their ack
	// wait ends, so this takes up to that long.
	load.waitStored(t, store)
	p.stop(t)
	load.verifyStore(t, store)
}

// Kill -9 the whole hub (bus, JetStream and history in one process) in the
// middle of a sustained ingest, start it again on the same data: every
// message JetStream accepted is stored exactly once.
func TestHistoryKillHub(t *testing.T) {
	data := t.TempDir()
	// The hub comes back on the same NATS address, so the publisher's
	// client reconnects as a device bridge's would.
	args := []string{"up", "--data", data, "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "", "--nats-listen", freeAddr(t)}
	hub := start(t, args...)
	natsURL := hub.await(t, natsLine)
	home := hub.await(t, homeLine)
	seen.add(hub.await(t, codeLine))
	withinPermissions(t, hub)
	h := &historyHome{home: home, natsURL: natsURL, caFile: filepath.Join(data, "ca.crt"), credDir: t.TempDir()}
	// A credential is derived offline from the data directory, also while
	// the hub runs.
	h.credential(t, data, telemetryPublisher)
	nc := busCredentialConn(t, natsURL, h.caFile, filepath.Join(h.credDir, telemetryPublisher+".cred"),
		nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		// Without a reconnect buffer a publish while the hub is down fails
		// at once instead of waiting: it is then published again by settle.
		nats.ReconnectBufSize(-1))
	store := sqliteStore(filepath.Join(data, "history.db"))

	load := newTelemetryLoad(nc, home, 200, 10)
	stop := make(chan struct{})
	done := load.run(t, 5*time.Millisecond, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	load.burst(t, 3000)
	load.waitUnderway(t, store, 10000)
	hub.kill(t)
	killed := load.published()
	stored := load.waitCount(t, store, 0)
	load.waitPublished(t, killed+1000) // publishes fail while the hub is down
	hub = start(t, args...)
	hub.await(t, homeLine)
	withinPermissions(t, hub)
	waitUntil(t, "the publisher to reconnect", nc.IsConnected)
	load.waitPublished(t, load.published()+3000)
	close(stop)
	<-done

	load.settle(t)
	t.Logf("killed with %d of %d points stored; %d published in all", stored, killed, load.published())
	load.waitStored(t, store)
	hub.stop(t)
	load.verifyStore(t, store)
}

// Stop PostgreSQL for 30 s under load: ingest resumes when it returns,
// nothing lost, nothing duplicated, and the outage is logged once, not
// once a message.
//
// The machine's PostgreSQL serves other tests running meanwhile, so the
// test does not stop it: the history process reaches it through a TCP
// proxy in the test, and cutting the proxy (closing its listener and every
// open connection, refusing new ones) is what stopping the server looks
// like from the client's side: connections reset, new ones refused. The
// data lives in a database the test creates and drops.
func TestHistoryPostgresOutage(t *testing.T) {
	dsn := os.Getenv("HOMEMESH_TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("HOMEMESH_TEST_POSTGRES_DSN is unset; skipping the PostgreSQL outage test")
	}
	direct, proxied, proxy := freshDatabase(t, dsn)
	h := startHistoryHome(t)
	p := h.serveHistory(t, t.TempDir(), proxied)
	store := postgresStore(direct)

	// 1,000 points/s: 30,000 wait in JetStream during the outage.
	load := newTelemetryLoad(h.publisher(t), h.home, 200, 10)
	stop := make(chan struct{})
	done := load.run(t, 10*time.Millisecond, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()

	_ = load.waitCount(t, store, 2000)
	before := len(logLines(p))
	proxy.cut()
	cutAt := load.published()
	// The outage itself: 30 s by the definition, not a guess at
	// how long something takes.
	time.Sleep(30 * time.Second)
	during := load.published() - cutAt
	proxy.restore(t)
	load.waitPublished(t, load.published()+2000)
	close(stop)
	<-done
	load.settle(t)
	load.waitStored(t, store)

	lines := logLines(p)
	var outage, recovered []map[string]any
	for _, line := range lines[before:] {
		switch level := line["level"]; {
		case level == "ERROR" || level == "WARN":
			outage = append(outage, line)
		case strings.Contains(fmt.Sprint(line["msg"]), "writable again"):
			recovered = append(recovered, line)
		}
	}
	t.Logf("%d points published during the 30 s outage; %d warnings and errors logged; %d recoveries", during, len(outage), len(recovered))
	if len(outage) == 0 || len(outage) > 20 {
		t.Errorf("the outage was logged %d times while %d points waited; want once or a few times: %v", len(outage), during, head(outage))
	}
	if len(recovered) == 0 {
		t.Errorf("the recovery was not logged")
	}
	p.stop(t)
	load.verifyStore(t, store)
}

// freshDatabase creates a database for one test on the server of dsn and
// drops it when the test ends. It returns the database's DSN and a DSN
// for the history process, which reaches the server through the returned
// proxy and carries a password, so the secret check proves no DSN is
// logged (trust authentication accepts any password).
func freshDatabase(t *testing.T, dsn string) (direct, proxied string, proxy *tcpProxy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", "HOMEMESH_TEST_POSTGRES_DSN", err)
	}
	defer admin.Close(context.Background())
	name := "homemesh_e2e_" + strings.ToLower(rand.Text()[:12])
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
	})
	cfg := admin.Config()
	sslmode := "disable"
	if cfg.TLSConfig != nil {
		sslmode = "require"
	}
	server := net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	proxy = startProxy(t, server)
	password := "e2e-pg-" + rand.Text()
	seen.add(password)
	u := &url.URL{Scheme: "postgres", User: url.UserPassword(cfg.User, password), Host: proxy.addr, Path: "/" + name,
		RawQuery: "sslmode=" + sslmode}
	seen.add(u.String())
	d := *u
	d.Host = server
	d.User = url.User(cfg.User)
	if cfg.Password != "" {
		d.User = url.UserPassword(cfg.User, cfg.Password)
	}
	return d.String(), u.String(), proxy
}

// Malformed and oversized telemetry is rejected with a logged reason, once,
// and never holds up the good messages around it.
func TestHistoryRejectsMalformed(t *testing.T) {
	h := startHistoryHome(t)
	data := t.TempDir()
	db := filepath.Join(data, "history.db")
	store := sqliteStore(db)
	p := h.serveHistory(t, data, "sqlite:"+db)
	nc := h.publisher(t)
	load := newTelemetryLoad(nc, h.home, 20, 10)

	// Each bad message but the garbage carries otherwise valid points of
	// the load's entities at times the load does not use, so one stored by
	// mistake shows as a point nobody published.
	stray := func(k int) history.TelemetryPoint {
		return history.TelemetryPoint{EntityID: load.entityOf(k), Time: load.base.Add(-time.Duration(k+1) * time.Microsecond), Value: -1}
	}
	telemetry := func(points ...history.TelemetryPoint) []byte {
		b, err := bus.EncodeEnvelope(h.home, load.device, "telemetry", history.Telemetry{Points: points})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oversized := make([]history.TelemetryPoint, history.MaxTelemetryPoints+1)
	for i := range oversized {
		oversized[i] = stray(100 + i)
	}
	wrongVersion := strings.Replace(string(telemetry(stray(1))), `{"v":1,`, `{"v":2,`, 1)
	bad := []struct {
		name, reason string
		data         []byte
	}{
		{"garbage", "malformed", []byte(`{"v":1,"payload":{"points":[ e2e-garbage-marker`)},
		{"not JSON", "malformed", []byte("\x00\xffe2e-garbage-marker")},
		{"wrong envelope version", "malformed", []byte(wrongVersion)},
		{"too many points", "too_many_points", telemetry(oversized...)},
		{"bad entity id", "invalid_id", telemetry(stray(2), history.TelemetryPoint{EntityID: "Bad Entity!", Time: load.base, Value: 1})},
		{"wrong payload type", "malformed", []byte(strings.Replace(string(telemetry(stray(3))), `"points":[`, `"points":{"x":[`, 1))},
	}
	if len(bad[3].data) > int(nc.MaxPayload()) {
		t.Fatalf("the oversized message (%d bytes) exceeds the bus's limit %d: it would test the bus, not history", len(bad[3].data), nc.MaxPayload())
	}

	// Bad messages first, then each between good ones: none may hold up
	// what follows it.
	rejected := map[uint64]string{} // stream sequence → expected reason
	publishBad := func(i int) {
		msg := &nats.Msg{Subject: bus.TelemetrySubject(h.home, load.device), Data: bad[i].data}
		seq, err := jsPublish(nc, msg)
		if err != nil {
			t.Fatalf("publish %s: %v", bad[i].name, err)
		}
		rejected[seq] = bad[i].name + ": " + bad[i].reason
	}
	for i := range bad {
		publishBad(i)
	}
	for round := range 3 {
		for i := range bad {
			for range 5 {
				if err := load.publish(load.next(t)); err != nil {
					t.Fatal(err)
				}
			}
			if round < 2 {
				publishBad(i)
			}
		}
	}
	load.waitStored(t, store)

	// Each bad message is logged once with its reason, never with its
	// payload, and terminated: not delivered again.
	var logged map[uint64]int
	hmtest.WaitFor(t, 20*time.Second, "every bad message logged", func() bool {
		logged = map[uint64]int{}
		for _, line := range logLines(p) {
			if line["msg"] != "history message rejected" {
				continue
			}
			seq, _ := line["stream_seq"].(float64)
			want, ok := rejected[uint64(seq)]
			if !ok {
				t.Fatalf("a good message was rejected: %v", line)
			}
			if reason, _ := line["reason"].(string); !strings.HasSuffix(want, ": "+reason) || line["err"] == nil {
				t.Fatalf("%s rejected with %v", want, line)
			}
			logged[uint64(seq)]++
		}
		return len(logged) == len(rejected)
	})
	for seq, n := range logged {
		if n != 1 {
			t.Errorf("%s logged %d times", rejected[seq], n)
		}
	}
	for _, line := range logLines(p) {
		if strings.Contains(fmt.Sprint(line), "e2e-garbage-marker") {
			t.Errorf("a rejected payload was logged: %v", line)
		}
	}
	p.stop(t)
	load.verifyStore(t, store)
}
