package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "homemesh-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "homemesh")
	build := exec.Command("go", "build", "-o", binary, "../cmd/homemesh")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build homemesh:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is one running homemesh process.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer // stdout: the banner
	errBuf bytes.Buffer // stderr: JSON logs
	done   chan struct{}
}

var (
	apiLine  = regexp.MustCompile(`API:\s+(https?://\S+)/api/v1`)
	mqttLine = regexp.MustCompile(`MQTT:\s+(\S+)`)
	tlsLine  = regexp.MustCompile(`MQTTS:\s+(\S+)`)
	codeLine = regexp.MustCompile(`Onboarding code:\s+(\S+)`)
	homeLine = regexp.MustCompile(`homemesh: home (\S+)`)
	natsLine = regexp.MustCompile(`NATS:\s+(\S+)`)
)

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(binary, args...), args)
}

// startCmd starts cmd, a homemesh process run with args (which name it in
// logs), possibly wrapped (in a network namespace, say).
func startCmd(t *testing.T, cmd *exec.Cmd, args []string) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	// Debug level, so that the secret check covers every log line there is.
	p.cmd.Env = append(os.Environ(), "HOMEMESH_LOG_LEVEL=debug")
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = &lockedWriter{p: p, buf: &p.errBuf}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		checkLogs(t, strings.Join(args, " "), p)
		if t.Failed() {
			p.mu.Lock()
			t.Logf("homemesh %s stdout:\n%s\nstderr (last 4 KiB):\n%s", strings.Join(args, " "), p.out.String(), tail(p.errBuf.String(), 4096))
			p.mu.Unlock()
		}
	})
	return p
}

type lockedWriter struct {
	p   *proc
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.buf.Write(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// await returns the first submatch of re in the banner, waiting for it.
func (p *proc) await(t *testing.T, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		p.mu.Lock()
		m := re.FindStringSubmatch(p.out.String())
		p.mu.Unlock()
		if m != nil {
			return m[1]
		}
		select {
		case <-p.done:
			p.mu.Lock()
			defer p.mu.Unlock()
			t.Fatalf("homemesh exited early: %s\n%s", p.out.String(), tail(p.errBuf.String(), 4096))
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("banner line %s never appeared", re)
	return ""
}

// stop asks the process to shut down gracefully and waits for it.
func (p *proc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("homemesh did not stop within 20s of SIGTERM")
	}
}

// hub is a running deployment as its users see it.
type hub struct {
	api, mqtt, code string
	mqtts, caFile   string // the TLS listener and the home CA certificate
	restart         func(t *testing.T)

	// In split mode: the NATS URL, the CA its certificate chains to, and
	// the directory of the services' bus credentials (<service>.cred).
	natsURL, natsCA, credDir string
}

func allInOne(t *testing.T) *hub {
	data := t.TempDir()
	h := &hub{}
	var p *proc
	launch := func(t *testing.T) {
		p = start(t, "up", "--data", data, "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0")
		h.api = p.await(t, apiLine) + "/api/v1"
		h.mqtt = p.await(t, mqttLine)
		h.mqtts = p.await(t, tlsLine)
		// The banner comes once everything listens; requests are answered
		// once every service runs, which /readyz tells.
		base := strings.TrimSuffix(h.api, "/api/v1")
		waitUntil(t, "the hub to be ready", func() bool { return call(t, "GET", base+"/readyz", "", nil, nil) == http.StatusOK })
	}
	h.caFile = filepath.Join(data, "ca.crt")
	launch(t)
	h.code = p.await(t, codeLine)
	seen.add(h.code)
	h.restart = func(t *testing.T) {
		p.stop(t)
		launch(t)
	}
	return h
}

func split(t *testing.T) *hub {
	authData, edgeData, historyData, gwData, creds := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	// As docs/operations.md tells an operator: the authorization block the
	// hub prints, the server's TLS files, and a credential per service
	// process that does not host auth.
	natsConf := filepath.Join(creds, "nats.conf")
	authConf := run(t, "nats-config", "--data", authData, "--home", "e2e")
	natsCA, natsCert, natsKey := writeTestPKI(t, creds)
	conf := fmt.Sprintf("%s\ntls {\n  cert_file: %q\n  key_file: %q\n}\n", authConf, natsCert, natsKey)
	if err := os.WriteFile(natsConf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, service := range []string{"edge", "history", "gateway"} {
		run(t, "nats-credential", service, "--data", authData, "--home", "e2e", "--out", filepath.Join(creds, service+".cred"))
	}
	// The external NATS: a real server in its own right, which the split
	// processes reach over TCP like any NATS deployment.
	srv, err := natsbus.StartServer(natsbus.ServerConfig{Name: "e2e", StoreDir: t.TempDir(), Listen: "127.0.0.1:0", ConfigFile: natsConf}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	h := &hub{caFile: filepath.Join(authData, "ca.crt"), natsURL: url, natsCA: natsCA, credDir: creds}
	var procs []*proc
	launch := func(t *testing.T) {
		core := start(t, "serve", "auth", "registry", "--nats", url, "--nats-ca", natsCA, "--home", "e2e", "--data", authData, "--ops", "127.0.0.1:0")
		core.await(t, homeLine)
		edge := start(t, "serve", "edge", "--nats", url, "--nats-ca", natsCA, "--nats-credential", filepath.Join(creds, "edge.cred"),
			"--home", "e2e", "--data", edgeData, "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0")
		hist := start(t, "serve", "history", "--nats", url, "--nats-ca", natsCA, "--nats-credential", filepath.Join(creds, "history.cred"),
			"--home", "e2e", "--data", historyData, "--ops", "127.0.0.1:0")
		hist.await(t, homeLine)
		gw := start(t, "serve", "gateway", "--nats", url, "--nats-ca", natsCA, "--nats-credential", filepath.Join(creds, "gateway.cred"),
			"--home", "e2e", "--data", gwData, "--http", "127.0.0.1:0")
		h.mqtt = edge.await(t, mqttLine)
		h.mqtts = edge.await(t, tlsLine)
		h.api = gw.await(t, apiLine) + "/api/v1"
		procs = []*proc{core, edge, hist, gw}
		// A service that steps outside its bus permissions fails the test
		// even when nothing visible broke: the tables must match the code.
		t.Cleanup(func() {
			for _, p := range []*proc{core, edge, hist, gw} {
				p.mu.Lock()
				logs := p.errBuf.String()
				p.mu.Unlock()
				for _, line := range strings.Split(logs, "\n") {
					if strings.Contains(strings.ToLower(line), "permissions violation") {
						t.Errorf("%s stepped outside its bus permissions: %s", strings.Join(p.cmd.Args[1:3], " "), line)
					}
				}
			}
		})
		if h.code == "" {
			h.code = core.await(t, codeLine)
			seen.add(h.code)
		}
	}
	launch(t)
	h.restart = func(t *testing.T) {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(t)
		}
		launch(t)
	}
	return h
}

// run runs a short homemesh command and returns its standard output.
func run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("homemesh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// writeTestPKI writes a CA and a server certificate for 127.0.0.1 it
// issued, as an operator's own PKI would provide, and returns the files.
func writeTestPKI(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	ca := hmtest.NewCA(t, "e2e NATS CA")
	leaf := ca.Issue(t, "nats", x509.ExtKeyUsageServerAuth)
	caDER, leafDER := ca.Cert.Raw, leaf.Certificate[0]
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "nats-ca.pem"), filepath.Join(dir, "nats.pem"), filepath.Join(dir, "nats-key.pem")
	for path, block := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: leafDER},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caFile, certFile, keyFile
}

// call makes an API request and decodes the JSON answer into out (if not
// nil). It returns the status code.
func call(t *testing.T, method, url, token string, body any, out any) int {
	t.Helper()
	code, err := request(t, http.DefaultClient, method, url, token, body, out)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// request is call over client, returning the error of a request that got
// no answer. Every body and answer is collected for the secret check.
func request(t *testing.T, client *http.Client, method, url, token string, body any, out any) (int, error) {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		seen.collect(data)
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
		seen.add(token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	seen.collect(data)
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, url, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode, nil
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func needMosquitto(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"mosquitto_pub", "mosquitto_sub"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package mosquitto-clients); skipping the MQTT end-to-end suite", tool)
		}
	}
}

// mqttArgs returns the connection arguments for the mosquitto clients.
func mqttArgs(addr, user, pass string) []string {
	host, port, _ := strings.Cut(addr, ":")
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	if host == "" || host == "::" || host == "0.0.0.0" || host == "[::]" {
		host = "127.0.0.1"
	}
	args := []string{"-h", host, "-p", port}
	if user != "" {
		args = append(args, "-u", user, "-P", pass)
	}
	return args
}

func pub(t *testing.T, addr, user, pass string, extra ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mosquitto_pub", append(mqttArgs(addr, user, pass), extra...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mosquitto_pub %v: %w: %s", extra, err, out)
	}
	return nil
}

// sub runs mosquitto_sub until it has count messages or the timeout, and
// returns what it printed and its error.
func sub(addr, user, pass string, timeout time.Duration, extra ...string) *exec.Cmd {
	args := append(mqttArgs(addr, user, pass), extra...)
	return exec.Command("mosquitto_sub", args...)
}

// lines is the output of a long-running client, line by line.
type lines struct{ ch chan string }

// stream starts cmd and delivers its output lines; it is killed when the
// test ends.
func stream(t *testing.T, cmd *exec.Cmd) *lines {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &lines{ch: make(chan string, 1024)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return l
}

// ready proves the subscriber is in place: it sends probes until one
// arrives, since mosquitto_sub does not say when its subscription is
// acknowledged.
func (l *lines) ready(t *testing.T, probe func() error, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := probe(); err != nil {
			t.Fatal(err)
		}
		wait := time.After(200 * time.Millisecond)
	drain:
		for {
			select {
			case line, ok := <-l.ch:
				if !ok {
					t.Fatal("subscriber exited")
				}
				if line == want {
					return
				}
			case <-wait:
				break drain
			}
		}
	}
	t.Fatalf("subscriber never received %q", want)
}

// next returns the first line for which match is true.
func (l *lines) next(t *testing.T, match func(string) bool) string {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-l.ch:
			if !ok {
				t.Fatal("subscriber exited")
			}
			if match(line) {
				return line
			}
		case <-timeout:
			t.Fatal("timed out waiting for a message")
		}
	}
}
