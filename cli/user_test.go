package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
)

// authClient is a client of the hub's auth service on a connection of its
// own, closed when the test ends.
func authClient(t *testing.T, n *node.Node) *auth.Client {
	t.Helper()
	conn, err := n.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	return auth.NewClient(conn)
}

// homemeshCLI runs the command line args and returns its exit code and
// output.
func homemeshCLI(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestResetMFA is the owner who lost their phone: TOTP is enrolled, the hub
// is stopped, `homemesh user reset-mfa` clears it, and after a restart the
// password alone logs in.
func TestResetMFA(t *testing.T) {
	const owner, password = "alice", "correct horse battery"
	ctx := context.Background()
	data := t.TempDir()
	hub, stop := nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	client := authClient(t, hub)
	if err := client.Onboard(ctx, hub.Auth().OnboardingCode(), owner, password); err != nil {
		t.Fatal(err)
	}
	tok, err := client.Login(ctx, owner, password, "")
	if err != nil {
		t.Fatal(err)
	}
	en, err := client.BeginTOTP(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ConfirmTOTP(ctx, tok.AccessToken, totpCode(t, en.Secret, time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Login(ctx, owner, password, ""); homemesh.ErrorField(err) != "totp" {
		t.Fatalf("login without a code once enrolled: %v, want an error naming totp", err)
	}

	if exit, _, stderr := homemeshCLI("user", "reset-mfa", owner, "--data", data); exit == 0 || !strings.Contains(stderr, "hub running") {
		t.Fatalf("reset-mfa while the hub runs: exit %d, stderr %q; want a refusal naming the running hub", exit, stderr)
	}
	stop()

	if exit, _, stderr := homemeshCLI("user", "reset-mfa", "bob", "--data", data); exit == 0 || !strings.Contains(stderr, "username: ") {
		t.Fatalf("reset-mfa of an unknown user: exit %d, stderr %q; want an error naming username", exit, stderr)
	}
	if exit, _, stderr := homemeshCLI("user", "reset-mfa", "--data", data); exit == 0 || !strings.Contains(stderr, "arg") {
		t.Fatalf("reset-mfa without a user name: exit %d, stderr %q", exit, stderr)
	}
	exit, stdout, stderr := homemeshCLI("user", "reset-mfa", "Alice", "--data", data)
	if exit != 0 {
		t.Fatalf("reset-mfa: exit %d, stderr %s", exit, stderr)
	}
	if lines := strings.Split(strings.TrimSpace(stdout), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "MFA reset for Alice") {
		t.Errorf("reset-mfa printed %q, want one line of confirmation", stdout)
	}

	hub, _ = nodetest.Start(t, nodetest.Config(data), node.Options{CreateHome: true})
	client = authClient(t, hub)
	tok, err = client.Login(ctx, owner, password, "")
	if err != nil {
		t.Fatalf("login with the password alone after reset-mfa: %v", err)
	}
	if st, err := client.MFAStatus(ctx, tok.AccessToken); err != nil || st.TOTPEnabled || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status after reset-mfa = %+v, %v", st, err)
	}
}
