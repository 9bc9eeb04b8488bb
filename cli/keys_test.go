package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/config"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/node"
	"github.com/homemesh/homemesh/node/nodetest"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

const (
	testOwner    = "alice"
	testPassword = "correct horse battery"
)

// hubConfig is nodetest.Config without the MQTTS listener: the key tests
// never connect over MQTTS, so they do not open it.
func hubConfig(data string) config.Config {
	c := nodetest.Config(data)
	c.MQTTS = ""
	return c
}

// startHub runs a hub in this process until stop or the end of the test,
// with an auth client on a connection of its own that stop closes first.
func startHub(t *testing.T, c config.Config) (n *node.Node, client *auth.Client, stop func()) {
	t.Helper()
	n, stopNode := nodetest.Start(t, c, node.Options{CreateHome: true})
	conn, err := n.Connect("test")
	if err != nil {
		t.Fatal(err)
	}
	stop = func() {
		conn.Close()
		stopNode()
	}
	return n, auth.NewClient(conn), stop
}

// startHubFails starts a hub that must refuse to start, and returns why.
func startHubFails(t *testing.T, c config.Config) error {
	t.Helper()
	n, err := node.New(c, node.Options{CreateHome: true}, hmtest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	err = n.Start(context.Background())
	if err == nil {
		hmtest.Run(t, "hub", n.Run)()
		t.Fatal("the hub started")
	}
	return err
}

// writeKey writes a fresh random key in hex to a file and returns both.
func writeKey(t *testing.T, name string) (key []byte, file string) {
	t.Helper()
	key = make([]byte, auth.SecretKeySize)
	rand.Read(key)
	file = filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return key, file
}

// totpCode is what an authenticator app shows for secret at when.
func totpCode(t *testing.T, secret string, when time.Time) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, when, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func rotate(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), append([]string{"keys", "rotate-master"}, args...), &out, &errOut); code != 0 {
		t.Fatalf("keys rotate-master %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

// TestRotateMasterKey rotates the key of a hub that keeps it in its data
// directory: everything still works with the new key alone, and the old
// key alone no longer opens anything.
func TestRotateMasterKey(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	n, client, stop := startHub(t, hubConfig(data))
	if err := client.Onboard(ctx, n.Auth().OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	tok, err := client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := client.CreateCredential(ctx, tok.AccessToken, "sensor", []string{"sensors/#"})
	if err != nil {
		t.Fatal(err)
	}
	// TOTP, whose secret is sealed in the user record.
	enrolment, err := client.BeginTOTP(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.ConfirmTOTP(ctx, tok.AccessToken, totpCode(t, enrolment.Secret, time.Now())); err != nil {
		t.Fatal(err)
	}
	caPEM := n.Auth().CACertPEM()
	stop()

	keyA, err := os.ReadFile(filepath.Join(data, "secret.key"))
	if err != nil {
		t.Fatal(err)
	}
	fileA := filepath.Join(t.TempDir(), "a.key")
	if err := os.WriteFile(fileA, keyA, 0o600); err != nil {
		t.Fatal(err)
	}
	keyB, fileB := writeKey(t, "b.key")

	out := rotate(t, "--data", data, "--new-key-file", fileB)
	for _, want := range []string{"re-sealed 3 records", "keys/ca", "keys/signing", "users/" + testOwner + "/totp_secret", auth.SecretKeyID(keyA), auth.SecretKeyID(keyB), "secret.key now holds the new key"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(data, "secret.key")); !bytes.Equal(got, keyB) {
		t.Fatal("DATA/secret.key does not hold the new key")
	}
	if fi, err := os.Stat(filepath.Join(data, "secret.key")); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Fatalf("DATA/secret.key has mode %v, want 0600", fi.Mode().Perm())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(data, ".tmp-*")); len(leftovers) != 0 {
		t.Fatalf("temporary files left behind: %v", leftovers)
	}

	// Only key B, from the data directory.
	n, client, stop = startHub(t, hubConfig(data))
	// The code of the next 30-second step: the one at enrolment is spent.
	if _, err := client.Login(ctx, testOwner, testPassword, totpCode(t, enrolment.Secret, time.Now().Add(30*time.Second))); err != nil {
		t.Fatalf("owner login with TOTP after rotation: %v", err)
	}
	if !bytes.Equal(n.Auth().CACertPEM(), caPEM) {
		t.Fatal("the CA certificate changed in the rotation")
	}
	if _, err := client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "sensor-1"); err != nil {
		t.Fatalf("MQTT credential after rotation: %v", err)
	}
	page, err := n.Auth().AuditLog().List(ctx, audit.Query{Action: auth.AuditKeyRotated})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Records) != 1 || page.Records[0].Target != "master_key" || page.Records[0].Actor != "system" || page.Records[0].Outcome != auth.OutcomeSuccess {
		t.Fatalf("audit records of the rotation: %+v", page.Records)
	}
	stop()

	// Only key A: a clear refusal naming the key the data needs.
	onlyA := hubConfig(data)
	onlyA.SecretKeyFile = fileA
	err = startHubFails(t, onlyA)
	if homemesh.ErrorField(err) != "secret_key" || !strings.Contains(err.Error(), auth.SecretKeyID(keyB)) {
		t.Fatalf("starting with the old key: %v, want an error naming the new key's ID", err)
	}

	// Rotating to the key in use is refused.
	var errOut bytes.Buffer
	if code := Main(ctx, []string{"keys", "rotate-master", "--data", data, "--new-key-file", fileB}, &bytes.Buffer{}, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "new-key-file: holds the current secret key") {
		t.Fatalf("rotating to the current key: exit %d: %s", code, errOut.String())
	}
}

// A key given by flag stays where the operator keeps it: the rotation
// re-seals, leaves the data directory without a key file, and tells the
// operator to switch.
func TestRotateMasterKeyFromAFlag(t *testing.T) {
	ctx := context.Background()
	data := t.TempDir()
	_, fileA := writeKey(t, "a.key")
	_, fileB := writeKey(t, "b.key")
	c := hubConfig(data)
	c.SecretKeyFile = fileA
	n, client, stop := startHub(t, c)
	if err := client.Onboard(ctx, n.Auth().OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	stop()

	out := rotate(t, "--data", data, "--secret-key-file", fileA, "--new-key-file", fileB)
	if !strings.Contains(out, "Start every auth process with the new key") {
		t.Fatalf("output does not tell the operator to switch keys:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(data, "secret.key")); err == nil {
		t.Fatal("the rotation wrote a key into the data directory")
	}

	c.SecretKeyFile = fileB
	_, client, stop = startHub(t, c)
	if _, err := client.Login(ctx, testOwner, testPassword, ""); err != nil {
		t.Fatalf("owner login with the new key: %v", err)
	}
	stop()
	c.SecretKeyFile = fileA
	if err := startHubFails(t, c); homemesh.ErrorField(err) != "secret_key" {
		t.Fatalf("starting with the old key: %v", err)
	}
}

func TestRotateMasterKeyRefusesBadInput(t *testing.T) {
	data := t.TempDir()
	_, _, stop := startHub(t, hubConfig(data))
	_, fileB := writeKey(t, "b.key")
	short := filepath.Join(t.TempDir(), "short.key")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"hub running", []string{"--data", data, "--new-key-file", fileB}, "hub running"},
		{"no new key", []string{"--data", data}, "new-key-file: is required"},
		{"short new key", []string{"--data", data, "--new-key-file", short}, "new-key-file: must hold a 32-byte key"},
		{"missing new key", []string{"--data", data, "--new-key-file", filepath.Join(data, "none")}, "new-key-file: "},
		{"no home", []string{"--data", filepath.Join(data, "none"), "--new-key-file", fileB}, "--data"},
	}
	for i, tt := range tests {
		if i == 1 {
			stop() // the first case needs the hub running, the others not
		}
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := Main(context.Background(), append([]string{"keys", "rotate-master"}, tt.args...), &out, &errOut)
			if code == 0 || !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("exit %d, stderr %q, want it to contain %q", code, errOut.String(), tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(data, "secret.key")); err != nil {
		t.Fatal(err)
	}
}
