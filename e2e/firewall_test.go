package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// claim is what the pairing API hands a device.
type claim struct {
	Identity, Username, Password string
	Certificate                  string `json:"certificate"`
	CACertificate                string `json:"ca_certificate"`
	Allow                        []string
}

// pair creates a setup code as the owner and claims it as a device would,
// with a certificate request when csr is not empty.
func pair(t *testing.T, api, tok, name, csr string) claim {
	t.Helper()
	var p struct{ Code string }
	if code := call(t, "POST", api+"/pairings", tok, map[string]any{"name": name}, &p); code != http.StatusCreated || p.Code == "" {
		t.Fatalf("create pairing %s = %d", name, code)
	}
	body := map[string]string{"code": p.Code}
	if csr != "" {
		body["csr"] = csr
	}
	var c claim
	if code := call(t, "POST", api+"/pairings/claim", "", body, &c); code != http.StatusCreated || c.Identity == "" {
		t.Fatalf("claim pairing %s = %d", name, code)
	}
	return c
}

// announceSwitch publishes, as the device itself, a retained discovery
// config for a switch on the device's own topics.
func announceSwitch(t *testing.T, addr string, c claim) {
	t.Helper()
	topic := "homeassistant/switch/" + c.Identity + "/plug/config"
	cfg := `{"name":"plug","unique_id":"` + c.Identity + `_plug","state_topic":"homemesh/` + c.Identity + `/state",` +
		`"command_topic":"homemesh/` + c.Identity + `/set","device":{"identifiers":["` + c.Identity + `"],"name":"plug ` + c.Identity + `"}}`
	if err := pub(t, addr, c.Username, c.Password, "-r", "-q", "1", "-t", topic, "-m", cfg); err != nil {
		t.Fatal(err)
	}
}

func TestFirewallAllInOne(t *testing.T) { firewall(t, allInOne(t)) }

func TestFirewallSplit(t *testing.T) { firewall(t, split(t)) }

// firewall checks, with the reference MQTT clients, that a paired device
// can neither publish another device's state nor read its commands, that
// a paired certificate is accepted on MQTTS, and that revocation drops a
// connected device for good.
func firewall(t *testing.T, h *hub) {
	needMosquitto(t)
	api := h.api
	tok := onboardOwner(t, h).AccessToken

	a := pair(t, api, tok, "plug a", "")
	b := pair(t, api, tok, "plug b", "")
	for _, c := range []claim{a, b} {
		if len(c.Allow) != 2 || c.Allow[0] != "homemesh/"+c.Identity+"/#" {
			t.Fatalf("default allow list of %s = %v", c.Identity, c.Allow)
		}
		announceSwitch(t, h.mqtt, c)
	}
	plugA := findEntity(t, api, tok, a.Identity+"_plug")
	plugB := findEntity(t, api, tok, b.Identity+"_plug")
	if err := pub(t, h.mqtt, b.Username, b.Password, "-q", "1", "-t", "homemesh/"+b.Identity+"/state", "-m", "ON"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "plug b on", func() bool { return getEntity(t, api, tok, plugB.ID).State.Value == "on" })

	// A forges B's state. The broker drops it (a QoS 1 forgery also costs
	// A its connection, so the error is expected); A's own state, sent
	// after it on a new connection, proves the forgery had its chance.
	_ = pub(t, h.mqtt, a.Username, a.Password, "-q", "0", "-t", "homemesh/"+b.Identity+"/state", "-m", "OFF")
	_ = pub(t, h.mqtt, a.Username, a.Password, "-q", "1", "-t", "homemesh/"+b.Identity+"/state", "-m", "OFF")
	if err := pub(t, h.mqtt, a.Username, a.Password, "-q", "1", "-t", "homemesh/"+a.Identity+"/state", "-m", "ON"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "plug a on", func() bool { return getEntity(t, api, tok, plugA.ID).State.Value == "on" })
	if got := getEntity(t, api, tok, plugB.ID).State.Value; got != "on" {
		t.Fatalf("plug b's state = %v after device a forged it, want on", got)
	}

	// A asks for B's commands beside its own: only its own are granted.
	aCmds := stream(t, sub(h.mqtt, a.Username, a.Password, 0, "-v", "-q", "1",
		"-t", "homemesh/"+a.Identity+"/set", "-t", "homemesh/"+b.Identity+"/set"))
	aCmds.ready(t, func() error {
		return pub(t, h.mqtt, a.Username, a.Password, "-t", "homemesh/"+a.Identity+"/set", "-m", "probe")
	}, "homemesh/"+a.Identity+"/set probe")
	bCmds := stream(t, sub(h.mqtt, b.Username, b.Password, 0, "-v", "-q", "1", "-t", "homemesh/"+b.Identity+"/set"))
	bCmds.ready(t, func() error {
		return pub(t, h.mqtt, b.Username, b.Password, "-t", "homemesh/"+b.Identity+"/set", "-m", "probe")
	}, "homemesh/"+b.Identity+"/set probe")
	if code := call(t, "POST", api+"/entities/"+plugB.ID+"/commands", tok, map[string]any{"command": "turn_off"}, nil); code != http.StatusAccepted {
		t.Fatalf("turn_off b = %d", code)
	}
	bCmds.next(t, func(line string) bool { return line == "homemesh/"+b.Identity+"/set OFF" })
	if code := call(t, "POST", api+"/entities/"+plugA.ID+"/commands", tok, map[string]any{"command": "turn_off"}, nil); code != http.StatusAccepted {
		t.Fatalf("turn_off a = %d", code)
	}
	aCmds.next(t, func(line string) bool {
		if strings.HasPrefix(line, "homemesh/"+b.Identity+"/") {
			t.Fatalf("device a read device b's command: %q", line)
		}
		return line == "homemesh/"+a.Identity+"/set OFF"
	})
	denied := sub(h.mqtt, a.Username, a.Password, 0, "-t", "homemesh/"+b.Identity+"/set", "-C", "1", "-W", "5")
	if outp, err := denied.CombinedOutput(); err == nil && !strings.Contains(string(outp), "denied") {
		t.Fatalf("a subscription to another device's commands was granted: %s", outp)
	}

	// A paired certificate: mosquitto_pub presents it on MQTTS.
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	c := pair(t, api, tok, "plug c", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})))
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile, caFile := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key"), filepath.Join(dir, "ca.crt")
	for file, data := range map[string]string{
		certFile: c.Certificate, caFile: c.CACertificate,
		keyFile: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
	} {
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tlsArgs := []string{"--cafile", caFile, "--cert", certFile, "--key", keyFile}
	own := "homemesh/" + c.Identity + "/hello"
	if err := pub(t, h.mqtts, "", "", append(tlsArgs, "-q", "1", "-r", "-t", own, "-m", "by certificate")...); err != nil {
		t.Fatalf("mosquitto_pub with a paired certificate: %v", err)
	}
	certSub := stream(t, sub(h.mqtts, "", "", 0, append(tlsArgs, "-q", "1", "-t", own)...))
	certSub.next(t, func(line string) bool { return line == "by certificate" })
	if err := pub(t, h.mqtts, "", "", "--cafile", h.caFile, "-t", own, "-m", "no certificate, no password"); err == nil {
		t.Fatal("an anonymous TLS client was accepted")
	}

	// Revocation drops connected clients at once, and they stay out.
	aCmdsAgain := stream(t, sub(h.mqtt, a.Username, a.Password, 0, "-q", "1", "-t", "homemesh/"+a.Identity+"/set"))
	aCmdsAgain.ready(t, func() error {
		return pub(t, h.mqtt, a.Username, a.Password, "-t", "homemesh/"+a.Identity+"/set", "-m", "again")
	}, "again")
	for _, id := range []string{a.Identity, c.Identity} {
		if code := call(t, "DELETE", api+"/credentials/"+id, tok, nil, nil); code != http.StatusNoContent {
			t.Fatalf("revoke %s = %d", id, code)
		}
	}
	for name, l := range map[string]*lines{"password client": aCmdsAgain, "certificate client": certSub} {
		l.closed(t, name)
	}
	if err := pub(t, h.mqtt, a.Username, a.Password, "-t", "homemesh/"+a.Identity+"/state", "-m", "x"); err == nil {
		t.Error("a revoked credential connected again")
	}
	if err := pub(t, h.mqtts, "", "", append(tlsArgs, "-t", own, "-m", "x")...); err == nil {
		t.Error("a revoked certificate connected again")
	}
}

// closed waits until the client behind l has exited, which the mosquitto
// clients do when the broker drops them and refuses their reconnection.
func (l *lines) closed(t *testing.T, name string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case _, ok := <-l.ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("%s still connected after revocation", name)
		}
	}
}

// TestThrottleAllInOne floods from one paired device with mosquitto_pub at
// full speed: the hub throttles and disconnects it and audits that, while
// another device's messages all arrive.
func TestThrottleAllInOne(t *testing.T) {
	needMosquitto(t)
	h := allInOne(t)
	api := h.api
	tok := onboardOwner(t, h).AccessToken
	flooder := pair(t, api, tok, "flooder", "")
	calm := pair(t, api, tok, "calm", "")

	calmTopic := "homemesh/" + calm.Identity + "/state"
	got := stream(t, sub(h.mqtt, calm.Username, calm.Password, 0, "-q", "1", "-t", calmTopic))
	got.ready(t, func() error {
		return pub(t, h.mqtt, calm.Username, calm.Password, "-t", calmTopic, "-m", "probe")
	}, "probe")

	var flood strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&flood, "%d\n", i)
	}
	cmd := exec.Command("mosquitto_pub", append(mqttArgs(h.mqtt, flooder.Username, flooder.Password),
		"-l", "-q", "0", "-t", "homemesh/"+flooder.Identity+"/flood")...)
	cmd.Stdin = strings.NewReader(flood.String())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Once dropped, mosquitto_pub keeps trying to reconnect with the rest
	// of its input; it is stopped when the test ends.
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var calmLines strings.Builder
	for i := range 50 {
		fmt.Fprintf(&calmLines, "calm %d\n", i)
	}
	calmPub := exec.Command("mosquitto_pub", append(mqttArgs(h.mqtt, calm.Username, calm.Password), "-l", "-q", "1", "-t", calmTopic)...)
	calmPub.Stdin = strings.NewReader(calmLines.String())
	if out, err := calmPub.CombinedOutput(); err != nil {
		t.Fatalf("the calm device's publish failed: %v: %s", err, out)
	}
	for i := range 50 {
		want := fmt.Sprintf("calm %d", i)
		got.next(t, func(line string) bool { return line == want })
	}

	waitUntil(t, "the throttled device in the audit log", func() bool {
		var page struct {
			Records []struct {
				Action, Actor string
				Details       map[string]string
			}
		}
		if call(t, "GET", api+"/audit?action=device_throttled", tok, nil, &page) != http.StatusOK {
			return false
		}
		for _, r := range page.Records {
			if r.Actor == flooder.Username && r.Details["disconnected"] == "true" {
				return true
			}
		}
		return false
	})
}
