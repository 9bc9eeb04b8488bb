package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// verifyAudit runs `homemesh audit verify` on data and returns its exit code
// and output.
func verifyAudit(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"audit", "verify"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if exit, ok := err.(*exec.ExitError); ok {
		return exit.ExitCode(), out.String()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// TestAuditLog runs the hub, has it record what a home's first minutes
// bring, stops it, and checks the audit log with the command a suspicious
// owner would use: intact first, then, after one character of one record
// is changed in the data directory, refused with that record named.
func TestAuditLog(t *testing.T) {
	data := t.TempDir()
	p := start(t, "up", "--data", data, "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "127.0.0.1:0")
	api := p.await(t, apiLine) + "/api/v1"
	code := p.await(t, codeLine)
	seen.add(code)
	if got := call(t, "POST", api+"/onboard", "", map[string]string{"code": code, "username": "owner", "password": "correct horse battery"}, nil); got != 201 {
		t.Fatalf("onboard = %d", got)
	}
	tok := login(t, api)
	if got := call(t, "POST", api+"/auth/login", "", map[string]string{"username": "owner", "password": "wrong horse battery"}, nil); got != 401 {
		t.Fatalf("wrong password = %d", got)
	}
	var cred struct{ Username string }
	if got := call(t, "POST", api+"/credentials", tok, map[string]any{"name": "garage door", "allow": []string{"garage/#"}}, &cred); got != 201 {
		t.Fatalf("create credential = %d", got)
	}
	if got := call(t, "DELETE", api+"/credentials/"+cred.Username, tok, nil, nil); got != 204 {
		t.Fatalf("delete credential = %d", got)
	}
	var page struct {
		Records []struct {
			Seq    uint64
			Action string
		}
	}
	if got := call(t, "GET", api+"/audit?action=credential_created", tok, nil, &page); got != 200 || len(page.Records) != 1 {
		t.Fatalf("GET /audit = %d, %+v", got, page)
	}
	credSeq := page.Records[0].Seq
	p.stop(t)

	exit, out := verifyAudit(t, "--data", data)
	if exit != 0 || !regexp.MustCompile(`audit log intact: \d+ records, head \d+:[0-9a-f]{64}`).MatchString(out) {
		t.Fatalf("verify of the untouched log: exit %d\n%s", exit, out)
	}

	var edited bool
	filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil || edited || filepath.Ext(path) != ".blk" || !strings.HasPrefix(filepath.Base(filepath.Dir(filepath.Dir(path))), "AUDIT_") {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if i := bytes.Index(raw, []byte("garage door")); i >= 0 {
			raw[i] = 'G'
			edited = os.WriteFile(path, raw, 0o600) == nil
		}
		return nil
	})
	if !edited {
		t.Fatal("the credential's audit record was not found in the data directory")
	}
	exit, out = verifyAudit(t, "--data", data)
	want := "TAMPERED at record " + strconv.FormatUint(credSeq, 10) + " "
	if exit == 0 || !strings.Contains(out, want) {
		t.Fatalf("verify after editing record %d: exit %d, want non-zero and %q\n%s", credSeq, exit, want, out)
	}
}
