package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
)

const (
	testHome     = "home1"
	testOwner    = "alice"
	testPassword = "correct horse battery"
)

// instance is one running auth service with a client on its own connection.
type instance struct {
	svc    *Service
	client *Client
	conn   *natsbus.Conn
	stop   func()
}

// start runs an auth service on s with dataDir and waits until it answers.
func start(t testing.TB, s *natsbus.Server, dataDir string) *instance {
	t.Helper()
	return startWith(t, s, dataDir, hmtest.Logger(t))
}

func startWith(t testing.TB, s *natsbus.Server, dataDir string, log *slog.Logger) *instance {
	t.Helper()
	conn := bustest.Conn(t, s)
	svc, err := New(Config{DataDir: dataDir, Home: testHome}, Deps{Bus: conn, Log: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := hmtest.Run(t, "auth", svc.Run)
	client := NewClient(conn)
	// One verb answering does not mean every verb does: Run subscribes
	// them in map order and closes Ready after the last.
	select {
	case <-svc.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("auth not ready")
	}
	hmtest.WaitFor(t, 10*time.Second, "auth to answer", func() bool {
		var r keysReply
		return conn.Request(context.Background(), subject(VerbKeys), struct{}{}, &r) == nil
	})
	return &instance{svc: svc, client: client, conn: conn, stop: stop}
}

// onboarded starts a service, onboards the owner and logs in.
func onboarded(t testing.TB) (*natsbus.Server, *instance, Tokens) {
	t.Helper()
	s := bustest.Server(t)
	in := start(t, s, t.TempDir())
	ctx := context.Background()
	if err := in.client.Onboard(ctx, in.svc.OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatalf("Onboard: %v", err)
	}
	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	return s, in, tok
}

func wantKind(t testing.TB, err error, kind homemesh.Kind) {
	t.Helper()
	if got := homemesh.ErrorKind(err); err == nil || got != kind {
		t.Fatalf("error = %v (kind %q), want kind %q", err, got, kind)
	}
}

func TestOnboarding(t *testing.T) {
	s := bustest.Server(t)
	dir := t.TempDir()
	in := start(t, s, dir)
	ctx := context.Background()
	code := in.svc.OnboardingCode()
	if len(strings.ReplaceAll(code, "-", "")) < 16 {
		t.Fatalf("onboarding code %q too short", code)
	}
	path := filepath.Join(dir, onboardingFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("code file: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("code file mode = %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if strings.TrimSpace(string(data)) != code {
		t.Errorf("code file holds %q, want %q", data, code)
	}

	for _, tc := range []struct {
		name, code, user, pw string
		kind                 homemesh.Kind
		field                string
	}{
		{"wrong code", "AAAAA-AAAAA-AAAAA-AAAAA", testOwner, testPassword, homemesh.KindPermission, ""},
		{"empty code", "", testOwner, testPassword, homemesh.KindPermission, ""},
		{"short password", code, testOwner, "short", homemesh.KindInvalid, "password"},
		{"bad username", code, "al ice", testPassword, homemesh.KindInvalid, "username"},
		{"long username", code, strings.Repeat("a", 65), testPassword, homemesh.KindInvalid, "username"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := in.client.Onboard(ctx, tc.code, tc.user, tc.pw)
			wantKind(t, err, tc.kind)
			if got := homemesh.ErrorField(err); got != tc.field {
				t.Errorf("field = %q, want %q", got, tc.field)
			}
		})
	}

	// The code is accepted in lower case too; the user name is lower-cased.
	if err := in.client.Onboard(ctx, strings.ToLower(code), "Alice", testPassword); err != nil {
		t.Fatalf("Onboard: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("code file still there after onboarding: %v", err)
	}
	if got := in.svc.OnboardingCode(); got != "" {
		t.Errorf("OnboardingCode after onboarding = %q", got)
	}
	wantKind(t, in.client.Onboard(ctx, code, "bob", testPassword), homemesh.KindConflict)

	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	c, err := in.client.VerifyAccessToken(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("VerifyAccessToken: %v", err)
	}
	if c.Role != RoleOwner || c.Username != testOwner || c.Home != testHome {
		t.Errorf("claims = %+v", c)
	}
}

func TestLogin(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	tok, err := in.client.Login(ctx, "ALICE", testPassword, "")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.ExpiresIn != int(DefaultAccessTokenTTL/time.Second) || tok.RefreshToken == "" {
		t.Errorf("tokens = %+v", tok)
	}
	var msgs []string
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", testOwner, "wrong password!"},
		{"unknown user", "mallory", testPassword},
		{"malformed user", "a b", testPassword},
		{"empty", "", ""},
		{"huge password", "bob", strings.Repeat("x", 5000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.Login(ctx, tc.user, tc.pw, "")
			wantKind(t, err, homemesh.KindUnauthenticated)
			msgs = append(msgs, homemesh.ErrorMessage(err))
		})
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Errorf("login failures differ: %q vs %q", m, msgs[0])
		}
	}
}

func TestVerifyAccessToken(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	now := time.Now()
	u := user{ID: "someone", Username: testOwner, Role: RoleOwner}
	sign := func(key ed25519.PrivateKey, kid, home string, at time.Time, ttl time.Duration) string {
		s, _, err := signAccess(key, kid, home, u, at, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	parts := strings.Split(tok.AccessToken, ".")
	payload, _ := b64url(parts[1])
	tamperedPayload := strings.Replace(string(payload), `"role":"owner"`, `"role":"admin"`, 1)
	tampered := parts[0] + "." + encb64url([]byte(tamperedPayload)) + "." + parts[2]
	noneAlg := encb64url([]byte(`{"alg":"none","typ":"JWT","kid":"`+in.svc.signing().kid+`"}`)) + "." + parts[1] + "."

	if _, err := in.client.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	for _, tc := range []struct{ name, token string }{
		{"expired", sign(in.svc.signing().signer, in.svc.signing().kid, testHome, now.Add(-time.Hour), time.Minute)},
		{"other key same kid", sign(otherKey, in.svc.signing().kid, testHome, now, time.Minute)},
		{"other key other kid", sign(otherKey, "0123456789abcdef", testHome, now, time.Minute)},
		{"other home", sign(in.svc.signing().signer, in.svc.signing().kid, "home2", now, time.Minute)},
		{"tampered", tampered},
		{"alg none", noneAlg},
		{"garbage", "not.a.token"},
		{"empty", ""},
		{"huge", strings.Repeat("a", 10000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.VerifyAccessToken(ctx, tc.token)
			wantKind(t, err, homemesh.KindUnauthenticated)
		})
	}
}

func TestRefresh(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	t2, err := in.client.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if t2.RefreshToken == tok.RefreshToken || t2.AccessToken == "" {
		t.Fatalf("refresh did not rotate: %+v", t2)
	}
	if _, err := in.client.VerifyAccessToken(ctx, t2.AccessToken); err != nil {
		t.Fatalf("refreshed access token: %v", err)
	}
	// A second, independent login is a separate family.
	other, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	// Reusing the spent token revokes its family, including t2.
	_, err = in.client.Refresh(ctx, tok.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.Refresh(ctx, t2.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	if _, err := in.client.Refresh(ctx, other.RefreshToken); err != nil {
		t.Errorf("other family refused: %v", err)
	}
	for _, bad := range []string{"", "hmr_unknown", "x", strings.Repeat("a", 500)} {
		_, err := in.client.Refresh(ctx, bad)
		wantKind(t, err, homemesh.KindUnauthenticated)
	}
}

func TestCredentials(t *testing.T) {
	s, in, tok := onboarded(t)
	ctx := context.Background()
	sub := subscribe(t, s, EventCredentialRevoked)

	for _, tc := range []struct {
		name, field string
		cname       string
		allow       []string
	}{
		{"no name", "name", "", []string{"a/b"}},
		{"no allow", "allow", "x", nil},
		{"empty filter", "allow[1]", "x", []string{"a", ""}},
		{"bad hash", "allow[2]", "x", []string{"a", "b/+", "a/#/b"}},
		{"bad plus", "allow[0]", "x", []string{"a+/b"}},
		{"too many", "allow", "x", make([]string, MaxAllow+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.CreateCredential(ctx, tok.AccessToken, tc.cname, tc.allow)
			wantKind(t, err, homemesh.KindInvalid)
			if got := homemesh.ErrorField(err); got != tc.field {
				t.Errorf("field = %q, want %q (%v)", got, tc.field, err)
			}
		})
	}
	_, err := in.client.CreateCredential(ctx, "forged", "x", []string{"a"})
	wantKind(t, err, homemesh.KindUnauthenticated)

	cred, err := in.client.CreateCredential(ctx, tok.AccessToken, "kitchen plug", []string{"zigbee2mqtt/#", "tasmota/+/plug"})
	if err != nil {
		t.Fatalf("CreateCredential: %v", err)
	}
	if !strings.HasPrefix(cred.Username, "mqtt-") || len(cred.Password) < 43 {
		t.Fatalf("credential = %+v", cred)
	}
	list, err := in.client.ListCredentials(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("ListCredentials: %v", err)
	}
	want := []Credential{{Username: cred.Username, Kind: KindPassword, Name: "kitchen plug", Allow: cred.Allow, CreatedAt: cred.CreatedAt}}
	if diff := cmp.Diff(want, list); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}

	g, err := in.client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "plug-1")
	if err != nil {
		t.Fatalf("AuthenticateMQTT: %v", err)
	}
	if diff := cmp.Diff(Grant{Username: cred.Username, Allow: cred.Allow}, g); diff != "" {
		t.Errorf("grant (-want +got):\n%s", diff)
	}
	for _, tc := range []struct{ name, user, pw string }{
		{"wrong password", cred.Username, cred.Password + "x"},
		{"empty password", cred.Username, ""},
		{"unknown user", "mqtt-unknown", cred.Password},
		{"empty user", "", cred.Password},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.AuthenticateMQTT(ctx, tc.user, tc.pw, "c")
			wantKind(t, err, homemesh.KindUnauthenticated)
		})
	}

	if err := in.client.DeleteCredential(ctx, tok.AccessToken, cred.Username); err != nil {
		t.Fatalf("DeleteCredential: %v", err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no revoked event: %v", err)
	}
	var ev RevokedEvent
	if err := json.Unmarshal(msg.Data, &ev); err != nil {
		t.Fatal(err)
	}
	var payload struct{ Username string }
	json.Unmarshal(ev.Payload, &payload)
	if ev.Username != cred.Username || payload.Username != cred.Username || ev.Type != EventCredentialRevoked || ev.Home != testHome {
		t.Errorf("event = %s", msg.Data)
	}
	_, err = in.client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "plug-1")
	wantKind(t, err, homemesh.KindUnauthenticated)
	wantKind(t, in.client.DeleteCredential(ctx, tok.AccessToken, cred.Username), homemesh.KindNotFound)
	if list, err := in.client.ListCredentials(ctx, tok.AccessToken); err != nil || len(list) != 0 {
		t.Errorf("list after delete = %+v, %v", list, err)
	}
}

func TestCredentialsNeedAdmin(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	tok := addUser(t, in, "bob", RoleMember, Scope{})
	_, err := in.client.CreateCredential(ctx, tok.AccessToken, "x", []string{"a"})
	wantKind(t, err, homemesh.KindPermission)
	_, err = in.client.ListCredentials(ctx, tok.AccessToken)
	wantKind(t, err, homemesh.KindPermission)
	wantKind(t, in.client.DeleteCredential(ctx, tok.AccessToken, "mqtt-x"), homemesh.KindPermission)
	// A token claiming admin for the member is refused: the stored role wins.
	forged, _, _ := signAccess(in.svc.signing().signer, in.svc.signing().kid, testHome, user{ID: "id-bob", Username: "bob", Role: RoleAdmin}, time.Now(), time.Minute)
	_, err = in.client.CreateCredential(ctx, forged, "x", []string{"a"})
	wantKind(t, err, homemesh.KindPermission)
}

// TestSecondInstance runs two auth processes on one bus: the second serves
// the users, keys and credentials the first created.
func TestSecondInstance(t *testing.T) {
	s, a, tok := onboarded(t)
	ctx := context.Background()
	cred, err := a.client.CreateCredential(ctx, tok.AccessToken, "x", []string{"a/#"})
	if err != nil {
		t.Fatal(err)
	}
	b := startPeer(t, s, a)
	if b.svc.signing().kid != a.svc.signing().kid || string(b.svc.CACertPEM()) != string(a.svc.CACertPEM()) {
		t.Fatal("second instance has other key material")
	}
	if b.svc.OnboardingCode() != "" {
		t.Error("second instance offers onboarding")
	}
	a.stop()
	if _, err := b.client.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
		t.Errorf("token from a, verified via b: %v", err)
	}
	if _, err := b.client.Login(ctx, testOwner, testPassword, ""); err != nil {
		t.Errorf("login via b: %v", err)
	}
	if _, err := b.client.Refresh(ctx, tok.RefreshToken); err != nil {
		t.Errorf("refresh via b: %v", err)
	}
	if _, err := b.client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "c"); err != nil {
		t.Errorf("mqtt via b: %v", err)
	}
}

func TestWrongSecretKey(t *testing.T) {
	s := bustest.Server(t)
	start(t, s, t.TempDir())
	conn := bustest.Conn(t, s)
	_, err := New(Config{DataDir: t.TempDir(), Home: testHome, SecretKey: make([]byte, SecretKeySize)}, Deps{Bus: conn})
	wantKind(t, err, homemesh.KindInvalid)
	if homemesh.ErrorField(err) != "secret_key" {
		t.Errorf("field = %q", homemesh.ErrorField(err))
	}
	_, err = New(Config{DataDir: t.TempDir(), Home: "Bad Home"}, Deps{Bus: conn})
	wantKind(t, err, homemesh.KindInvalid)
}

// TestRestart stops the bus and the service and starts both again on the
// same directories: nothing is lost.
func TestRestart(t *testing.T) {
	natsDir, dataDir := t.TempDir(), t.TempDir()
	startAll := func() (*natsbus.Server, *instance) {
		s, err := natsbus.StartServer(natsbus.ServerConfig{Name: "restart", StoreDir: natsDir, Listen: "127.0.0.1:0"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return s, start(t, s, dataDir)
	}
	ctx := context.Background()
	s, in := startAll()
	code := in.svc.OnboardingCode()
	if err := in.client.Onboard(ctx, code, testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := in.client.CreateCredential(ctx, tok.AccessToken, "x", []string{"a/#"})
	if err != nil {
		t.Fatal(err)
	}
	caPEM := in.svc.CACertPEM()
	in.stop()
	in.conn.Close()
	s.Shutdown()

	s, in = startAll()
	defer s.Shutdown()
	defer in.stop()
	if in.svc.OnboardingCode() != "" {
		t.Error("onboarding offered again after restart")
	}
	if string(in.svc.CACertPEM()) != string(caPEM) {
		t.Error("CA changed across restart")
	}
	if _, err := in.client.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
		t.Errorf("old access token: %v", err)
	}
	if _, err := in.client.Refresh(ctx, tok.RefreshToken); err != nil {
		t.Errorf("old refresh token: %v", err)
	}
	if _, err := in.client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "c"); err != nil {
		t.Errorf("old credential: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dataDir, secretKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v %v", fi, err)
	}
}

func TestServerTLSConfig(t *testing.T) {
	s := bustest.Server(t)
	in := start(t, s, t.TempDir())
	if _, err := in.svc.ServerTLSConfig([]string{"bad_host!"}); homemesh.ErrorField(err) != "hosts[0]" {
		t.Errorf("bad host: %v", err)
	}
	cfg, err := in.svc.ServerTLSConfig([]string{"hub.local", "192.168.1.10"})
	if err != nil {
		t.Fatal(err)
	}
	checkTLSNames(t, cfg, in.svc.CACertPEM(), []string{"hub.local", "localhost", "127.0.0.1", "192.168.1.10"}, "evil.example")
}

// checkTLSNames serves TLS with cfg and checks that clients trusting caPEM
// accept every name in good and refuse bad.
func checkTLSNames(t *testing.T, cfg *tls.Config, caPEM []byte, good []string, bad string) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for _, name := range good {
		t.Run(name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			c.Close()
		})
	}
	if _, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: bad}); err == nil {
		t.Errorf("certificate accepted for %s, a host it does not name", bad)
	}
}

// TestLogsHoldNoSecrets drives every verb, failures included, and checks
// that no password, code or token reaches the log.
func TestLogsHoldNoSecrets(t *testing.T) {
	in, logs := startLogged(t)
	ctx := context.Background()
	code := in.svc.OnboardingCode()
	in.client.Onboard(ctx, "WRONG-CODE", testOwner, testPassword)
	if err := in.client.Onboard(ctx, code, testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	in.client.Login(ctx, testOwner, "wrong password!", "")
	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := in.client.CreateCredential(ctx, tok.AccessToken, "x", []string{"a"})
	if err != nil {
		t.Fatal(err)
	}
	in.client.AuthenticateMQTT(ctx, cred.Username, "wrong", "c")
	in.client.DeleteCredential(ctx, tok.AccessToken, cred.Username)
	t2, _ := in.client.Refresh(ctx, tok.RefreshToken)
	in.client.Refresh(ctx, tok.RefreshToken) // reuse
	checkLogs(t, in, logs, []string{"login failed", "refresh token reuse"}, map[string]string{
		"password": testPassword, "wrong password": "wrong password!", "code": code,
		"access token": tok.AccessToken, "refresh token": tok.RefreshToken, "new refresh token": t2.RefreshToken,
		"mqtt password": cred.Password,
	})
}

// TestRefreshRace spends one refresh token from many goroutines at once:
// exactly one gets a new pair.
func TestRefreshRace(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	ok, lost := race(8, func(int) error {
		_, err := in.client.Refresh(ctx, tok.RefreshToken)
		return err
	})
	for _, err := range lost {
		if homemesh.ErrorKind(err) != homemesh.KindUnauthenticated {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d refreshes succeeded, want 1", ok)
	}
}

func TestIssueCredentialReplacesItsPredecessor(t *testing.T) {
	ctx := context.Background()
	in := start(t, bustest.Server(t), t.TempDir())
	svc, client := in.svc, in.client
	first, err := svc.IssueCredential(ctx, "demo light", []string{"hmsim/demo-1/#"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.AuthenticateMQTT(ctx, first.Username, first.Password, "c1"); err != nil {
		t.Fatal(err)
	}
	second, err := svc.IssueCredential(ctx, "demo light", []string{"hmsim/demo-1/#"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.AuthenticateMQTT(ctx, first.Username, first.Password, "c1"); homemesh.ErrorKind(err) != homemesh.KindUnauthenticated {
		t.Fatalf("the replaced credential still works: %v", err)
	}
	g, err := client.AuthenticateMQTT(ctx, second.Username, second.Password, "c1")
	if err != nil || len(g.Allow) != 1 {
		t.Fatalf("new credential: %+v %v", g, err)
	}
	if _, err := svc.IssueCredential(ctx, "demo", []string{"a/#/b"}); homemesh.ErrorKind(err) != homemesh.KindInvalid {
		t.Fatalf("bad allow list accepted: %v", err)
	}
}

func TestServerCertificateOverTheBus(t *testing.T) {
	ctx := context.Background()
	srv := bustest.Server(t)
	in := start(t, srv, t.TempDir())
	client := NewClient(bustest.Conn(t, srv))
	cfg, err := client.ServerTLSConfig(ctx, []string{"hub.local"})
	if err != nil {
		t.Fatal(err)
	}
	checkTLSNames(t, cfg, in.svc.CACertPEM(), []string{"hub.local", "localhost"}, "other.local")

	var reply serverCertReply
	err = client.conn.Request(ctx, subject(VerbServerCert), serverCertRequest{CSR: []byte("junk"), Hosts: []string{"x"}}, &reply)
	if homemesh.ErrorField(err) != "csr" {
		t.Fatalf("junk CSR: %v", err)
	}
}

// A home with a credential per device lists them all, one bus page at a
// time, each page under the bus's message size.
func TestCredentialListIsPaged(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	const n = credentialPage*2 + 3
	long := []string{strings.Repeat("a", 200) + "/#", strings.Repeat("b", 200) + "/#"}
	for i := range n {
		if _, err := in.client.CreateCredential(ctx, tok.AccessToken, fmt.Sprintf("device %d", i), long); err != nil {
			t.Fatal(err)
		}
	}
	list, err := in.client.ListCredentials(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != n {
		t.Fatalf("listed %d of %d", len(list), n)
	}
	for i := 1; i < n; i++ {
		if list[i-1].Username >= list[i].Username {
			t.Fatalf("not in user-name order at %d", i)
		}
	}
}
