package node_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/history"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
	"github.com/homemesh/homemesh/registry"
	"github.com/jackc/pgx/v5"
)

// checkHistoryStored reports a state of a new sensor through the hub and
// waits until its history and the sensor's entity_added event can be
// queried back: the whole path from the registry's stream through the
// history service to the configured store.
func checkHistoryStored(t *testing.T, n *node.Node) {
	t.Helper()
	conn, err := n.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	ctx := context.Background()
	home := n.Home().ID
	reg := registry.NewClient(conn, home)
	if _, err := reg.PutDevice(ctx, homemesh.Device{ID: "probe", Name: "Probe", Source: "demo"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.PutEntity(ctx, homemesh.Entity{ID: "probe_temperature", DeviceID: "probe", UniqueID: "probe-t",
		Kind: homemesh.KindSensor, Name: "Temperature", Source: "demo"}); err != nil {
		t.Fatal(err)
	}
	at, available := time.Now().UTC().Truncate(time.Millisecond), true
	if err := reg.Report(homemesh.StateUpdate{HomeID: home, DeviceID: "probe", EntityID: "probe_temperature", Value: 21.5, HasValue: true, Available: &available, Time: at}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	hc := history.NewClient(conn, home)
	from, to := at.Add(-time.Hour), at.Add(time.Hour)
	var last error
	hmtest.WaitFor(t, 20*time.Second, "the reported state in the history", func() bool {
		reply, err := hc.History(ctx, history.HistoryRequest{EntityID: "probe_temperature", From: from, To: to, Resolution: history.Raw})
		last = err
		for _, p := range reply.Points {
			if p.Value == 21.5 && p.Time.Equal(at) {
				return true
			}
		}
		return false
	})
	hmtest.WaitFor(t, 20*time.Second, "the entity_added event in the history", func() bool {
		reply, err := hc.Events(ctx, history.EventsRequest{Kind: registry.EventEntityAdded, From: from, To: to})
		last = err
		for _, e := range reply.Events {
			if e.EntityID == "probe_temperature" || strings.Contains(string(e.Data), "probe_temperature") {
				return true
			}
		}
		return false
	})
	if last != nil {
		t.Logf("last query error: %v", last)
	}
}

func TestHubKeepsHistoryInSQLiteByDefault(t *testing.T) {
	data := t.TempDir()
	n, _ := nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	checkHistoryStored(t, n)
	if _, err := os.Stat(filepath.Join(data, "history.db")); err != nil {
		t.Errorf("no SQLite history in the data directory: %v", err)
	}
}

// TestHistoryWorksWithinItsBusPermissions runs the hub with a NATS
// listener, where every service, history included, connects as itself
// and may use only what auth.ServiceBusPermissions grants it.
func TestHistoryWorksWithinItsBusPermissions(t *testing.T) {
	c := nodetest.Config(t.TempDir())
	c.NATSListen = "127.0.0.1:0"
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	base := "http://" + n.Gateway().Addr().String() + "/api/v1"
	call := func(method, path, token string, body any, out any) int {
		t.Helper()
		data, _ := json.Marshal(body)
		req, err := http.NewRequest(method, base+path, bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			_ = json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}
	creds := map[string]string{"username": "owner", "password": "correct horse battery"}
	if s := call("POST", "/onboard", "", map[string]string{"code": n.Auth().OnboardingCode(), "username": "owner", "password": creds["password"]}, nil); s != http.StatusCreated {
		t.Fatalf("onboard: %d", s)
	}
	var tokens struct {
		AccessToken string `json:"access_token"`
	}
	if s := call("POST", "/auth/login", "", creds, &tokens); s != http.StatusOK {
		t.Fatalf("login: %d", s)
	}
	if s := call("POST", "/rooms", tokens.AccessToken, map[string]string{"name": "Attic"}, nil); s != http.StatusCreated {
		t.Fatalf("create a room: %d", s)
	}
	// The registry's room_added event reaches the history, which the
	// gateway may ask.
	hmtest.WaitFor(t, 20*time.Second, "the room_added event in the history", func() bool {
		var page history.EventsReply
		status := call("GET", "/history/events?kind=room_added", tokens.AccessToken, nil, &page)
		return status == http.StatusOK && len(page.Events) == 1 && strings.Contains(string(page.Events[0].Data), "attic")
	})
}

// TestSQLiteHistoryHasOneWriter starts a second history on the SQLite
// file of a running hub: it must refuse, saying why.
func TestSQLiteHistoryHasOneWriter(t *testing.T) {
	data := t.TempDir()
	nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})

	c := nodetest.Config(t.TempDir())
	c.HistoryStore = "sqlite:" + filepath.Join(data, "history.db")
	second, err := node.New(c, node.Options{Services: []string{"history"}, CreateHome: true}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start(context.Background())
	if homemesh.ErrorKind(err) != homemesh.KindConflict || !strings.Contains(err.Error(), "another homemesh process writes the SQLite history") {
		t.Fatalf("a second writer of one SQLite history: %v", err)
	}
}

func TestHubKeepsHistoryInPostgreSQL(t *testing.T) {
	c := nodetest.Config(t.TempDir())
	c.HistoryStore = freshDatabase(t)
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	checkHistoryStored(t, n)
}

func TestHubKeepsHistoryInShards(t *testing.T) {
	c := nodetest.Config(t.TempDir())
	c.HistoryShards = []string{"one=" + freshDatabase(t), "two=" + freshDatabase(t)}
	n, _ := nodetest.Start(t, c, node.Options{CreateHome: true})
	checkHistoryStored(t, n)
}

// freshDatabase creates an empty database on the server at
// HOMEMESH_TEST_POSTGRES_DSN, dropped when the test ends, and returns its
// URL; it skips the test when the variable is unset.
func freshDatabase(t *testing.T) string {
	t.Helper()
	base := os.Getenv("HOMEMESH_TEST_POSTGRES_DSN")
	if base == "" {
		t.Skip("HOMEMESH_TEST_POSTGRES_DSN is unset: no PostgreSQL server to test against")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatal("HOMEMESH_TEST_POSTGRES_DSN is not a postgres:// URL")
	}
	b := make([]byte, 6)
	rand.Read(b)
	name := "hm_node_" + hex.EncodeToString(b)
	exec := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE DATABASE " + name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	// Registered before the node starts, so it runs after the node stopped.
	t.Cleanup(func() {
		if err := exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
