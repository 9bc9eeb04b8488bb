package auth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/nats-io/nats.go"
)

func b64url(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func encb64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// startPeer starts a second auth process on s beside a, as a real
// deployment would: its own data dir holds only the shared secret key, and
// the rest of the state comes from the bus.
func startPeer(t testing.TB, s *natsbus.Server, a *instance) *instance {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(a.svc.cfg.DataDir, secretKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, secretKeyFile), key, 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, s, dir)
}

// startLogged starts a service that logs every level into the returned
// buffer, so that a test can look for secrets in all it wrote.
func startLogged(t testing.TB) (*instance, *hmtest.LogBuffer) {
	t.Helper()
	logs := &hmtest.LogBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return startWith(t, bustest.Server(t), t.TempDir(), log), logs
}

// onboardedLogged is onboarded on a service started by startLogged.
func onboardedLogged(t testing.TB) (*instance, Tokens, *hmtest.LogBuffer) {
	t.Helper()
	in, logs := startLogged(t)
	ctx := context.Background()
	if err := in.client.Onboard(ctx, in.svc.OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	return in, tok, logs
}

// checkLogs stops in, so that every line is written, and fails unless the
// log holds each of events and none of the named secrets.
func checkLogs(t *testing.T, in *instance, logs *hmtest.LogBuffer, events []string, secrets map[string]string) {
	t.Helper()
	in.stop()
	out := logs.String()
	for _, e := range events {
		if !strings.Contains(out, e) {
			t.Fatalf("%q not logged:\n%s", e, out)
		}
	}
	for name, secret := range secrets {
		if secret != "" && strings.Contains(out, secret) {
			t.Errorf("log holds the %s", name)
		}
	}
}

// race calls f n times at once and returns how many calls succeeded and
// the errors of the others.
func race(n int, f func(i int) error) (won int, lost []error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() { errs <- f(i) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			won++
		} else {
			lost = append(lost, err)
		}
	}
	return won, lost
}

// subscribe listens on s for the home's event named event, from before the
// test's next step, as a gateway or broker would.
func subscribe(t testing.TB, s *natsbus.Server, event string) *nats.Subscription {
	t.Helper()
	conn := bustest.Conn(t, s)
	sub, err := conn.NATS().SubscribeSync(bus.EventSubject(testHome, event))
	if err != nil {
		t.Fatal(err)
	}
	conn.Flush()
	return sub
}

// integrationToken onboards a service and creates an integration token on
// it, for the benchmarks of its verification.
func integrationToken(b *testing.B) (*instance, IntegrationToken) {
	b.Helper()
	_, in, tok := onboarded(b)
	it, err := in.client.CreateToken(context.Background(), tok.AccessToken, TokenRequest{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return in, it
}

// addUser stores a user directly (user management is another verb's job)
// and logs them in.
func addUser(t testing.TB, in *instance, name, role string, scope Scope) Tokens {
	t.Helper()
	ctx := context.Background()
	u := user{ID: "id-" + name, Username: name, Role: role, Scope: scope, PasswordHash: hashPassword(testPassword), CreatedAt: time.Now()}
	rec, _ := json.Marshal(u)
	if _, err := in.svc.usersKV.Put(ctx, userKey(name), rec); err != nil {
		t.Fatal(err)
	}
	tok, err := in.client.Login(ctx, name, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
