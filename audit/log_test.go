package audit_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/minio/highwayhash"
	"github.com/prometheus/client_golang/prometheus"
)

const home = "home1"

func open(t testing.TB, conn *natsbus.Conn) *audit.Log {
	t.Helper()
	l, err := audit.Open(context.Background(), conn, home, audit.Options{Log: hmtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func entry(i int) audit.Entry {
	return audit.Entry{Action: "login", Outcome: "success", Actor: fmt.Sprintf("user-%04d", i), Source: "test"}
}

func TestAppendListVerify(t *testing.T) {
	ctx := context.Background()
	l := open(t, bustest.Conn(t, bustest.Server(t)))
	res, err := l.Verify(ctx)
	if err != nil || res.Records != 0 {
		t.Fatalf("empty log: %+v %v", res, err)
	}
	var last audit.Record
	for i := range 12 {
		e := entry(i)
		if i%3 == 0 {
			e.Action = "login_failed"
		}
		r, err := l.Append(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq != uint64(i+1) || r.Home != home || r.Hash != r.ComputeHash() {
			t.Fatalf("record %d: %+v", i+1, r)
		}
		last = r
	}
	res, err = l.Verify(ctx)
	if err != nil || res.Records != 12 || res.Head != last.Head() || res.Anchor == nil || *res.Anchor != last.Head() {
		t.Fatalf("verify: %+v %v", res, err)
	}

	t.Run("pages in sequence order", func(t *testing.T) {
		var seqs []uint64
		q := audit.Query{Limit: 5}
		for pages := 0; ; pages++ {
			p, err := l.List(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Records {
				seqs = append(seqs, r.Seq)
			}
			if p.Next == 0 {
				if pages != 2 {
					t.Errorf("%d pages, want 3", pages+1)
				}
				break
			}
			q.AfterSeq = p.Next
		}
		if len(seqs) != 12 || seqs[0] != 1 || seqs[11] != 12 {
			t.Fatalf("paged sequence numbers %v", seqs)
		}
	})
	t.Run("filters", func(t *testing.T) {
		p, err := l.List(ctx, audit.Query{Action: "login_failed"})
		if err != nil || len(p.Records) != 4 || p.Next != 0 {
			t.Fatalf("login_failed: %d records, next %d, %v", len(p.Records), p.Next, err)
		}
		p, err = l.List(ctx, audit.Query{From: last.Time})
		if err != nil || len(p.Records) == 0 || p.Records[len(p.Records)-1].Seq != 12 {
			t.Fatalf("from the last record's time: %+v %v", p, err)
		}
		p, err = l.List(ctx, audit.Query{To: time.Now().Add(-time.Hour)})
		if err != nil || len(p.Records) != 0 {
			t.Fatalf("to an hour ago: %+v %v", p, err)
		}
		p, err = l.List(ctx, audit.Query{AfterSeq: 12})
		if err != nil || len(p.Records) != 0 || p.Next != 0 {
			t.Fatalf("after the end: %+v %v", p, err)
		}
		for _, q := range []struct {
			q     audit.Query
			field string
		}{
			{audit.Query{Limit: audit.MaxLimit + 1}, "limit"},
			{audit.Query{Action: "Login"}, "action"},
			{audit.Query{From: time.Now(), To: time.Now().Add(-time.Second)}, "to"},
		} {
			if _, err := l.List(ctx, q.q); homemesh.ErrorField(err) != q.field {
				t.Errorf("%+v: %v, want a complaint about %s", q.q, err, q.field)
			}
		}
	})
	t.Run("the stream refuses deletes and purges", func(t *testing.T) {
		conn := bustest.Conn(t, bustest.Server(t))
		l := open(t, conn)
		if _, err := l.Append(ctx, entry(1)); err != nil {
			t.Fatal(err)
		}
		s, err := conn.JetStream().Stream(ctx, audit.StreamName(home))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteMsg(ctx, 1); err == nil {
			t.Error("a record was deleted")
		}
		if err := s.Purge(ctx); err == nil {
			t.Error("the log was purged")
		}
	})
}

// Two processes appending at once keep one chain: each append that loses
// the race re-reads the end and links onto the winner's record.
func TestConcurrentAppendersKeepOneChain(t *testing.T) {
	ctx := context.Background()
	srv := bustest.Server(t)
	// Both processes' metrics land in one registry, as in a test binary.
	reg := prometheus.NewRegistry()
	var logs []*audit.Log
	for range 2 {
		l, err := audit.Open(ctx, bustest.Conn(t, srv), home, audit.Options{Log: hmtest.Logger(t), Metrics: reg})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, l)
	}
	const perWriter, goroutines = 40, 3
	var wg sync.WaitGroup
	errs := make(chan error, len(logs)*goroutines*perWriter)
	for w, l := range logs {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					if _, err := l.Append(ctx, entry(w*1000+g*100+i)); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := logs[1].Verify(ctx)
	want := uint64(len(logs) * goroutines * perWriter)
	if err != nil || res.Records != want || res.Anchor == nil || *res.Anchor != res.Head {
		t.Fatalf("verify: %+v %v; want %d records and the anchor at the head", res, err, want)
	}
	if n := counter(t, reg, "homemesh_audit_appends_total"); n != float64(want) {
		t.Fatalf("homemesh_audit_appends_total = %v, want %d", n, want)
	}
	t.Logf("%v appends lost a race and were retried", counter(t, reg, "homemesh_audit_append_conflicts_total"))
	// Every appended entry is there exactly once.
	seen := map[string]bool{}
	for q := (audit.Query{Limit: audit.MaxLimit}); ; {
		p, err := logs[0].List(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Records {
			if seen[r.Actor] {
				t.Fatalf("%s recorded twice", r.Actor)
			}
			seen[r.Actor] = true
		}
		if p.Next == 0 {
			break
		}
		q.AfterSeq = p.Next
	}
	if len(seen) != int(want) {
		t.Fatalf("%d distinct entries, want %d", len(seen), want)
	}
}

// connectStored starts a server on the files a hub left in dir and
// connects to it as name. stop closes both, so that the files can be
// edited or served again.
func connectStored(t *testing.T, dir, name string) (conn *natsbus.Conn, stop func()) {
	t.Helper()
	srv, err := natsbus.StartServer(natsbus.ServerConfig{StoreDir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err = srv.Connect(name)
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	return conn, func() {
		conn.Close()
		srv.Shutdown()
	}
}

// storedLog appends n records to a log kept in dir and shuts the server
// down, leaving the files as a hub would.
func storedLog(t *testing.T, dir string, n int) []audit.Record {
	t.Helper()
	conn, stop := connectStored(t, dir, "writer")
	defer stop()
	l := open(t, conn)
	var out []audit.Record
	for i := range n {
		r, err := l.Append(context.Background(), entry(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// verifyStored restarts a server on dir and verifies the log there.
func verifyStored(t *testing.T, dir string) (audit.Result, error) {
	t.Helper()
	conn, stop := connectStored(t, dir, "verifier")
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return open(t, conn).Verify(ctx)
}

// editStored changes one byte of the first occurrence of old in the
// stream's block files: what an attacker with the disk does.
func editStored(t *testing.T, dir string, old, repl []byte) {
	t.Helper()
	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", audit.StreamName(home), "msgs", "*.blk"))
	for _, f := range blocks {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(data, old); i >= 0 {
			copy(data[i:], repl)
			if err := os.WriteFile(f, data, 0o600); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("%q not found in %d block files", old, len(blocks))
}

// TestTamperingOnDisk edits the files JetStream keeps and checks that
// Verify fails naming the edited record, whatever the server then does with
// the damaged block (serve the edited bytes, skip the message, or stop at
// it).
func TestTamperingOnDisk(t *testing.T) {
	t.Run("edit one record", func(t *testing.T) {
		dir := t.TempDir()
		storedLog(t, dir, 10)
		if res, err := verifyStored(t, dir); err != nil || res.Records != 10 {
			t.Fatalf("before tampering: %+v %v", res, err)
		}
		editStored(t, dir, []byte("user-0006"), []byte("user-0009"))
		res, err := verifyStored(t, dir)
		var p *audit.Problem
		if !errors.As(err, &p) || p.Seq != 7 {
			t.Fatalf("after editing record 7: %+v %v; want a problem at record 7", res, err)
		}
		t.Logf("edited record: %v", p)
	})
	t.Run("edit the last record", func(t *testing.T) {
		dir := t.TempDir()
		storedLog(t, dir, 5)
		editStored(t, dir, []byte("user-0004"), []byte("user-0001"))
		_, err := verifyStored(t, dir)
		var p *audit.Problem
		if !errors.As(err, &p) || p.Seq != 5 {
			t.Fatalf("after editing the last record: %v; want a problem at record 5", err)
		}
		t.Logf("edited last record: %v", p)
	})
	for _, dropIndex := range []bool{false, true} {
		// Without its index the server rebuilds its state from the cut
		// block and believes the stream ends at record 7; then only the
		// head anchor knows better.
		t.Run(fmt.Sprintf("cut the block file short, drop the index %v", dropIndex), func(t *testing.T) {
			dir := t.TempDir()
			storedLog(t, dir, 10)
			msgs := filepath.Join(dir, "jetstream", "$G", "streams", audit.StreamName(home), "msgs")
			blocks, _ := filepath.Glob(filepath.Join(msgs, "*.blk"))
			if len(blocks) != 1 {
				t.Fatalf("%d block files", len(blocks))
			}
			data, err := os.ReadFile(blocks[0])
			if err != nil {
				t.Fatal(err)
			}
			// Cut inside record 8: it and everything after it are gone.
			i := bytes.Index(data, []byte("user-0007"))
			if i < 0 {
				t.Fatal("record 8 not found")
			}
			if err := os.WriteFile(blocks[0], data[:i], 0o600); err != nil {
				t.Fatal(err)
			}
			if dropIndex {
				if err := os.Remove(filepath.Join(msgs, "index.db")); err != nil {
					t.Fatal(err)
				}
			}
			res, err := verifyStored(t, dir)
			var p *audit.Problem
			if !errors.As(err, &p) || p.Seq != 8 || (p.Reason != audit.ReasonTruncated && p.Reason != audit.ReasonMissing) {
				t.Fatalf("after cutting the tail: %+v %v; want record 8 truncated or missing", res, err)
			}
			t.Logf("cut tail: %v", p)
		})
	}
	t.Run("remove the anchor", func(t *testing.T) {
		dir := t.TempDir()
		storedLog(t, dir, 3)
		conn, stop := connectStored(t, dir, "attacker")
		kv, err := conn.JetStream().KeyValue(context.Background(), audit.AnchorBucket(home))
		if err == nil {
			err = kv.Purge(context.Background(), audit.AnchorKey)
		}
		stop()
		if err != nil {
			t.Fatal(err)
		}
		_, err = verifyStored(t, dir)
		var p *audit.Problem
		if !errors.As(err, &p) || p.Reason != audit.ReasonNoAnchor {
			t.Fatalf("without the anchor: %v", err)
		}
	})
}

// Appending to a log whose last record was tampered with refuses, rather
// than chaining onto (and so blessing) the damage.
func TestAppendRefusesADamagedTail(t *testing.T) {
	dir := t.TempDir()
	storedLog(t, dir, 3)
	editStored(t, dir, []byte("user-0002"), []byte("user-0000"))
	conn, stop := connectStored(t, dir, "writer")
	defer stop()
	reg := prometheus.NewRegistry()
	l, err := audit.Open(context.Background(), conn, home, audit.Options{Log: hmtest.Logger(t), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.Append(context.Background(), entry(9))
	if err == nil || !strings.Contains(homemesh.ErrorMessage(err), "audit verify") {
		t.Fatalf("append after a damaged tail: %v", err)
	}
	if v := counter(t, reg, "homemesh_audit_append_failures_total"); v != 1 {
		t.Fatalf("homemesh_audit_append_failures_total = %v, want 1", v)
	}
	s, _ := conn.JetStream().Stream(context.Background(), audit.StreamName(home))
	if info, err := s.Info(context.Background()); err == nil && info.State.LastSeq > 3 {
		t.Fatalf("a record was appended after the damaged tail")
	}
}

// forgeStored changes old to repl (of the same length) inside a stored
// message and recomputes the block's per-message checksum, as an attacker
// who knows the file format would: storage then serves the edited record
// as if nothing happened, and only the hash chain can tell.
func forgeStored(t *testing.T, dir string, old, repl []byte) {
	t.Helper()
	const (
		msgHdrSize = 22
		hbit       = 1 << 31
		checksum   = 8
	)
	le := binary.LittleEndian
	blocks, _ := filepath.Glob(filepath.Join(dir, "jetstream", "*", "streams", audit.StreamName(home), "msgs", "*.blk"))
	for _, f := range blocks {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		index, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(f), ".blk"))
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+msgHdrSize <= len(data); {
			rl := int(le.Uint32(data[off:]) &^ hbit)
			hasHeaders := le.Uint32(data[off:])&hbit != 0
			if rl < msgHdrSize+checksum || off+rl > len(data) {
				t.Fatalf("%s: cannot parse the record at %d", f, off)
			}
			rec := data[off : off+rl]
			if i := bytes.Index(rec, old); i >= 0 {
				copy(rec[i:], repl)
				key := sha256.Sum256([]byte(fmt.Sprintf("%s-%d", audit.StreamName(home), index)))
				hh, err := highwayhash.New64(key[:])
				if err != nil {
					t.Fatal(err)
				}
				slen := int(le.Uint16(rec[20:]))
				body := rec[msgHdrSize+slen : rl-checksum]
				hh.Write(rec[4:20])
				hh.Write(rec[msgHdrSize : msgHdrSize+slen])
				if hasHeaders {
					hlen := int(le.Uint32(body))
					hh.Write(body[4 : 4+hlen])
					body = body[4+hlen:]
				}
				hh.Write(body)
				copy(rec[rl-checksum:], hh.Sum(nil))
				if err := os.WriteFile(f, data, 0o600); err != nil {
					t.Fatal(err)
				}
				return
			}
			off += rl
		}
	}
	t.Fatalf("%q not found in %d block files", old, len(blocks))
}

func TestForgedChecksumStillFailsVerify(t *testing.T) {
	dir := t.TempDir()
	storedLog(t, dir, 10)
	forgeStored(t, dir, []byte("user-0003"), []byte("user-0005"))
	res, err := verifyStored(t, dir)
	var p *audit.Problem
	if !errors.As(err, &p) || p.Seq != 4 || p.Reason != audit.ReasonEdited {
		t.Fatalf("after forging record 4 with a valid block checksum: %+v %v; want record 4 edited", res, err)
	}
	t.Logf("forged record: %v", p)
}

// counter reads the value of the counter name from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}
