package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
)

// hubActions runs a hub in data, performs the security-relevant actions a
// home sees in its first minutes through the HTTP API, and stops the hub.
// It returns the sequence number of the credential_created record.
func hubActions(t *testing.T, data string) (home string, credSeq uint64) {
	t.Helper()
	n, stop := nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	base := "http://" + n.Gateway().Addr().String() + "/api/v1"
	call := func(method, path, token string, body any, want int) []byte {
		t.Helper()
		data, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, bytes.NewReader(data))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, out, want)
		}
		return out
	}
	const owner, password = "alice", "correct horse battery"
	call("POST", "/onboard", "", map[string]string{"code": n.Auth().OnboardingCode(), "username": owner, "password": password}, 201)
	var tok auth.Tokens
	json.Unmarshal(call("POST", "/auth/login", "", map[string]string{"username": owner, "password": password}, 200), &tok)
	call("POST", "/auth/login", "", map[string]string{"username": owner, "password": "not the password"}, 401)
	var cred auth.Credential
	json.Unmarshal(call("POST", "/credentials", tok.AccessToken, map[string]any{"name": "porch sensor", "allow": []string{"porch/#"}}, 201), &cred)
	call("DELETE", "/credentials/"+cred.Username, tok.AccessToken, nil, 204)
	var page auth.AuditPage
	json.Unmarshal(call("GET", "/audit?action=credential_created", tok.AccessToken, nil, 200), &page)
	if len(page.Records) != 1 {
		t.Fatalf("credential_created records: %+v", page)
	}
	home = n.Home().ID
	stop()
	return home, page.Records[0].Seq
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestAuditVerifyDetectsAnEditOnDisk is the promise of the audit log: the
// hub's actions verify, and editing one character of one record in
// JetStream's files makes verify fail naming that record. nats-server keeps
// a checksum per message and refuses to serve the edited one; verify then
// finds its place empty. (A forger who also fixes that checksum gets the
// edited record served, and the record's own hash gives it away; the audit
// package's tests cover that case.)
func TestAuditVerifyDetectsAnEditOnDisk(t *testing.T) {
	data := t.TempDir()
	home, credSeq := hubActions(t, data)

	code, out, errOut := runCLI(t, "audit", "verify", "--data", data)
	if code != 0 || !strings.HasPrefix(out, "audit log intact: ") {
		t.Fatalf("verify of an untouched log: exit %d\n%s%s", code, out, errOut)
	}
	m := regexp.MustCompile(`intact: (\d+) records, head (\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no record count and head in %q", out)
	}
	head := m[2]
	var records uint64
	fmt.Sscan(m[1], &records)
	if records < 5 || credSeq > records {
		t.Fatalf("%d records, credential record %d", records, credSeq)
	}
	if code, out, errOut := runCLI(t, "audit", "verify", "--data", data, "--expect-head", head); code != 0 {
		t.Fatalf("verify against its own head: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := runCLI(t, "audit", "verify", "--data", data, "--expect-head", "nonsense"); code == 0 || !strings.Contains(errOut, "expect-head: ") {
		t.Fatalf("a malformed --expect-head: exit %d, %s", code, errOut)
	}

	// Change one character of the credential's name inside its record.
	var blocks []string
	filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err == nil && filepath.Ext(path) == ".blk" && filepath.Base(filepath.Dir(filepath.Dir(path))) == audit.StreamName(home) {
			blocks = append(blocks, path)
		}
		return err
	})
	edited := false
	for _, f := range blocks {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(raw, []byte(`"porch sensor"`)); i >= 0 {
			raw[i+1] = 'P'
			if err := os.WriteFile(f, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			edited = true
			break
		}
	}
	if !edited {
		t.Fatalf("the credential record is not in the %d block files of %s", len(blocks), audit.StreamName(home))
	}

	code, out, errOut = runCLI(t, "audit", "verify", "--data", data)
	want := fmt.Sprintf("TAMPERED at record %d ", credSeq)
	if code == 0 || !strings.Contains(out, want) {
		t.Fatalf("verify after the edit: exit %d, want non-zero and %q\n%s%s", code, want, out, errOut)
	}
	t.Logf("verify after the edit: %s", strings.TrimSpace(out))

	code, out, _ = runCLI(t, "audit", "verify", "--data", data, "--json")
	var report verifyReport
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	if code == 0 || report.Intact || report.Problem == nil || report.Problem.Seq != credSeq || report.Records != credSeq-1 {
		t.Fatalf("--json after the edit: exit %d, %+v", code, report)
	}
}

func TestAuditVerifyNeedsAHome(t *testing.T) {
	code, _, errOut := runCLI(t, "audit", "verify", "--data", filepath.Join(t.TempDir(), "none"))
	if code == 0 || !strings.Contains(errOut, "--data") {
		t.Fatalf("verify without a data directory: exit %d, %s", code, errOut)
	}
}

// With --nats, verify joins an external bus instead of opening a data
// directory: how a split deployment checks its log while running.
func TestAuditVerifyOverNATS(t *testing.T) {
	srv := bustest.Server(t)
	l, err := audit.Open(context.Background(), bustest.Conn(t, srv), "home1", audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := l.Append(context.Background(), audit.Entry{Action: "login", Outcome: "success", Actor: "alice"}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runCLI(t, "audit", "verify", "--nats", srv.ClientURL(), "--home", "home1", "--data", t.TempDir(), "--json")
	var report verifyReport
	if err := json.Unmarshal([]byte(out), &report); code != 0 || err != nil || !report.Intact || report.Records != 3 || report.Home != "home1" {
		t.Fatalf("verify over NATS: exit %d, %+v, %v\n%s%s", code, report, err, out, errOut)
	}
}
