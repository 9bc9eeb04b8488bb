package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestRequestReplyCarriesKinds(t *testing.T) {
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	_, err := conn.Handle("hm.svc.test.echo", "test", func(ctx context.Context, msg *nats.Msg) (any, error) {
		if string(msg.Data) == `"bad"` {
			return nil, homemesh.Invalid("name", "must not be bad")
		}
		return map[string]string{"got": string(msg.Data)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var resp map[string]string
	if err := conn.Request(ctx, "hm.svc.test.echo", "hi", &resp); err != nil || resp["got"] != `"hi"` {
		t.Fatalf("echo: %v %v", resp, err)
	}
	err = conn.Request(ctx, "hm.svc.test.echo", "bad", &resp)
	if homemesh.ErrorKind(err) != homemesh.KindInvalid || homemesh.ErrorField(err) != "name" {
		t.Fatalf("error reply: %v", err)
	}
	err = conn.Request(ctx, "hm.svc.test.nobody", "x", nil)
	if homemesh.ErrorKind(err) != homemesh.KindUnavailable {
		t.Fatalf("no responder: %v", err)
	}
}

// A reply the handler encoded itself travels byte for byte, and a caller
// may take it undecoded or decode it.
func TestEncodedJSONRepliesPassThrough(t *testing.T) {
	srv := bustest.Server(t)
	conn := bustest.Conn(t, srv)
	body := `{ "points" : [1, 2] }`
	if _, err := conn.Handle("hm.svc.test.raw", "test", func(ctx context.Context, msg *nats.Msg) (any, error) {
		return natsbus.EncodedJSON(body), nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var raw natsbus.EncodedJSON
	if err := conn.Request(ctx, "hm.svc.test.raw", nil, &raw); err != nil || string(raw) != body {
		t.Fatalf("raw reply = %q, %v; want %q", raw, err, body)
	}
	var decoded struct{ Points []int }
	if err := conn.Request(ctx, "hm.svc.test.raw", nil, &decoded); err != nil || len(decoded.Points) != 2 {
		t.Fatalf("decoded reply = %+v, %v", decoded, err)
	}
}

func TestRemoteDialAndTokens(t *testing.T) {
	srv, err := natsbus.StartServer(natsbus.ServerConfig{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Token: "s3cret-token"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	if c, err := natsbus.Dial(srv.ClientURL(), "no-token", nil); err == nil {
		c.Close()
		t.Fatal("a client without the token connected")
	}
	url := "nats://s3cret-token@" + srv.ClientURL()[len("nats://"):]
	c, err := natsbus.Dial(url, "with-token", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := c.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	in, err := srv.Connect("in-process")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	kv2, err := in.KeyValue(ctx, jetstream.KeyValueConfig{Bucket: "t"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv2.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v" {
		t.Fatalf("value through the in-process connection: %v", err)
	}
}
