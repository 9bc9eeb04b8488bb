package node_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
)

func TestOnlyAuthAdmitsProcessesToItsListener(t *testing.T) {
	c := nodetest.Config(t.TempDir())
	c.NATSListen = "127.0.0.1:0"
	_, err := node.New(c, node.Options{Services: []string{"registry"}}, nil)
	if homemesh.ErrorField(err) != "nats-listen" {
		t.Fatalf("a listener without auth: %v", err)
	}
}

func TestBusCredentialsFollowTheSecretKey(t *testing.T) {
	data := t.TempDir()
	c := config.Default()
	c.Data, c.Home = data, "home1"
	edge, err := node.BusCredential(c, "edge")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(data, "secret.key")); err != nil {
		t.Fatalf("the secret key was not created as the hub would: %v", err)
	}
	again, _ := node.BusCredential(c, "edge")
	gateway, _ := node.BusCredential(c, "gateway")
	if edge != again || edge.Secret == gateway.Secret || edge.Home != "home1" {
		t.Fatalf("credentials: %+v %+v %+v", edge, again, gateway)
	}
	if _, err := node.BusCredential(c, "root"); homemesh.ErrorField(err) != "service" {
		t.Fatalf("unknown service: %v", err)
	}
	conf, err := node.NATSServerConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	authCred, _ := node.BusCredential(c, auth.ServiceName)
	for _, want := range []string{"auth_callout", `"auth@home1"`, "issuer:", "$2a$", `"hm.svc.auth.>"`} {
		if !strings.Contains(conf, want) {
			t.Errorf("nats-config lacks %s:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, authCred.Secret) {
		t.Fatal("nats-config prints the auth secret in the clear")
	}
}
