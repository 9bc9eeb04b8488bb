package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/homemesh/homemesh/internal/hmtest"
)

// newWithKeys builds (without running) an auth service on s sealing with
// key and opening with previous keys too.
func newWithKeys(t *testing.T, s *natsbus.Server, dir string, key []byte, previous ...[]byte) (*Service, error) {
	t.Helper()
	return New(Config{DataDir: dir, Home: testHome, SecretKey: key, PreviousSecretKeys: previous},
		Deps{Bus: bustest.Conn(t, s), Log: hmtest.Logger(t)})
}

// runWithKeys runs an auth service with the given keys until the test ends.
func runWithKeys(t *testing.T, s *natsbus.Server, dir string, key []byte, previous ...[]byte) *instance {
	t.Helper()
	svc, err := newWithKeys(t, s, dir, key, previous...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := hmtest.Run(t, "auth", svc.Run)
	<-svc.Ready()
	return &instance{svc: svc, client: NewClient(svc.bus), conn: svc.bus, stop: stop}
}

// rotatedTOTPSecret is a TOTP key (base32, as enrolment stores it) that
// must survive a master key rotation.
const rotatedTOTPSecret = "JBSWY3DPEHPK3PXPJBSWY3DP"

// addTOTP stores sealed TOTP secrets in a user record the way MFA
// enrolment does, through the generic record, so these tests hold whatever
// else the user record carries.
func addTOTP(t *testing.T, svc *Service, username string, secret, pending []byte) string {
	t.Helper()
	ctx := context.Background()
	e, err := svc.usersKV.Get(ctx, userKey(username))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(e.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	id := raw["id"].(string)
	raw["totp_secret"] = svc.seal.seal("totp."+id, secret)
	raw["totp_pending"] = svc.seal.seal("totp."+id, pending)
	rec, _ := json.Marshal(raw)
	if _, err := svc.usersKV.Put(ctx, userKey(username), rec); err != nil {
		t.Fatal(err)
	}
	return id
}

// openTOTP opens a user's sealed TOTP fields with svc's keys.
func openTOTP(t *testing.T, svc *Service, username, id string) (secret, pending []byte) {
	t.Helper()
	e, err := svc.usersKV.Get(context.Background(), userKey(username))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Secret  []byte `json:"totp_secret"`
		Pending []byte `json:"totp_pending"`
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	if secret, err = svc.seal.open("totp."+id, rec.Secret); err != nil {
		t.Fatalf("open totp_secret: %v", err)
	}
	if pending, err = svc.seal.open("totp."+id, rec.Pending); err != nil {
		t.Fatalf("open totp_pending: %v", err)
	}
	return secret, pending
}

// makeVersion0 rewrites a keys bucket record in the format homes stored
// before rotation existed.
func makeVersion0(t *testing.T, svc *Service, key []byte, name string) {
	t.Helper()
	ctx := context.Background()
	e, err := svc.keysKV.Get(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := svc.seal.open(name, e.Value())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.keysKV.Put(ctx, name, sealV0(t, key, name, plain)); err != nil {
		t.Fatal(err)
	}
}

func TestResealAll(t *testing.T) {
	ctx := context.Background()
	s := bustest.Server(t)
	dir := t.TempDir()
	keyA, keyB := randomKey(t), randomKey(t)

	a := runWithKeys(t, s, dir, keyA)
	if err := a.client.Onboard(ctx, a.svc.OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	tok, err := a.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	cred, err := a.client.CreateCredential(ctx, tok.AccessToken, "x", []string{"a/#"})
	if err != nil {
		t.Fatal(err)
	}
	id := addTOTP(t, a.svc, testOwner, []byte(rotatedTOTPSecret), []byte("pending secret"))
	makeVersion0(t, a.svc, keyA, "ca")
	caPEM, kid := a.svc.CACertPEM(), a.svc.signing().kid
	a.stop()

	rot, err := newWithKeys(t, s, dir, keyB, keyA)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rot.ResealAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ResealReport{KeyID: SecretKeyID(keyB), Resealed: []string{
		"keys/ca", "keys/signing", "users/" + testOwner + "/totp_secret", "users/" + testOwner + "/totp_pending",
	}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Fatalf("report (-want +got):\n%s", diff)
	}
	// Nothing is left for a second run: it is safe to repeat.
	again, err := rot.ResealAll(ctx)
	if err != nil || len(again.Resealed) != 0 || again.Current != 4 {
		t.Fatalf("second run: %+v, %v", again, err)
	}

	b := runWithKeys(t, s, dir, keyB)
	if string(b.svc.CACertPEM()) != string(caPEM) || b.svc.signing().kid != kid {
		t.Fatal("the CA or the signing key changed in the rotation")
	}
	// The TOTP key, re-sealed, still yields the codes the app shows.
	if _, err := b.client.Login(ctx, testOwner, testPassword, codeAt(t, rotatedTOTPSecret, totpStep(time.Now()))); err != nil {
		t.Fatalf("login after rotation: %v", err)
	}
	if _, err := b.client.AuthenticateMQTT(ctx, cred.Username, cred.Password, "c"); err != nil {
		t.Fatalf("MQTT credential after rotation: %v", err)
	}
	if secret, pending := openTOTP(t, b.svc, testOwner, id); string(secret) != rotatedTOTPSecret || string(pending) != "pending secret" {
		t.Fatalf("TOTP secrets after rotation: %q, %q", secret, pending)
	}
	b.stop()

	_, err = newWithKeys(t, s, dir, keyA)
	if homemesh.ErrorField(err) != "secret_key" || !bytes.Contains([]byte(err.Error()), []byte(SecretKeyID(keyB))) {
		t.Fatalf("starting with the old key only: %v, want an error naming the new key's ID", err)
	}
}

// A rotation that stopped midway leaves some records sealed with the new
// key and some with the old: both keys open them all, and running the
// rotation again finishes the rest.
func TestResealAllAfterACrash(t *testing.T) {
	ctx := context.Background()
	s := bustest.Server(t)
	dir := t.TempDir()
	keyA, keyB := randomKey(t), randomKey(t)
	a, err := newWithKeys(t, s, dir, keyA)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := a.CACertPEM()

	rot, err := newWithKeys(t, s, dir, keyB, keyA)
	if err != nil {
		t.Fatal(err)
	}
	changed, found, err := resealEntry(ctx, rot.keysKV, "ca", func(v []byte) ([]byte, bool, error) { return rot.resealValue("ca", v) })
	if err != nil || !changed || !found {
		t.Fatalf("re-seal one record: changed %v found %v: %v", changed, found, err)
	}

	if _, err := newWithKeys(t, s, dir, keyA); homemesh.ErrorField(err) != "secret_key" {
		t.Fatalf("old key only, midway: %v", err)
	}
	if _, err := newWithKeys(t, s, dir, keyB); homemesh.ErrorField(err) != "secret_key" {
		t.Fatalf("new key only, midway: %v", err)
	}
	both, err := newWithKeys(t, s, dir, keyB, keyA)
	if err != nil {
		t.Fatalf("both keys, midway: %v", err)
	}
	if string(both.CACertPEM()) != string(caPEM) {
		t.Fatal("CA changed")
	}
	rep, err := both.ResealAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rep.Resealed, "keys/ca") || !slices.Contains(rep.Resealed, "keys/signing") || rep.Current != 1 {
		t.Fatalf("finishing the rotation: %+v", rep)
	}
	if _, err := newWithKeys(t, s, dir, keyB); err != nil {
		t.Fatalf("new key only, after: %v", err)
	}
}

// A record written while it is being re-sealed is read again, never
// overwritten with the stale version.
func TestResealEntryComparesAndSets(t *testing.T) {
	ctx := context.Background()
	s := bustest.Server(t)
	keyA, keyB := randomKey(t), randomKey(t)
	svc, err := newWithKeys(t, s, t.TempDir(), keyB, keyA)
	if err != nil {
		t.Fatal(err)
	}
	old := mustSealer(t, keyA)
	if _, err := svc.keysKV.Put(ctx, "probe", old.seal("probe", []byte("first"))); err != nil {
		t.Fatal(err)
	}
	calls := 0
	changed, _, err := resealEntry(ctx, svc.keysKV, "probe", func(v []byte) ([]byte, bool, error) {
		calls++
		if calls == 1 {
			// Another process writes the record after it was read.
			if _, err := svc.keysKV.Put(ctx, "probe", old.seal("probe", []byte("second"))); err != nil {
				t.Fatal(err)
			}
		}
		return svc.resealValue("probe", v)
	})
	if err != nil || !changed || calls != 2 {
		t.Fatalf("changed %v after %d calls: %v", changed, calls, err)
	}
	e, err := svc.keysKV.Get(ctx, "probe")
	if err != nil {
		t.Fatal(err)
	}
	plain, stale, err := svc.seal.openStale("probe", e.Value())
	if err != nil || stale || string(plain) != "second" {
		t.Fatalf("stored %q (stale %v, %v), want the concurrent write re-sealed", plain, stale, err)
	}
}

func TestResealAllRefusesWhatItCannotOpen(t *testing.T) {
	ctx := context.Background()
	s := bustest.Server(t)
	dir := t.TempDir()
	keyA, keyB := randomKey(t), randomKey(t)
	if _, err := newWithKeys(t, s, dir, keyA); err != nil {
		t.Fatal(err)
	}
	svc, err := newWithKeys(t, s, dir, keyA)
	if err != nil {
		t.Fatal(err)
	}
	// A record sealed with a key the rotation was not given.
	if _, err := svc.keysKV.Put(ctx, "stray", mustSealer(t, keyB).seal("stray", []byte("x"))); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = svc.ResealAll(ctx)
	if homemesh.ErrorField(err) != "secret_key" || !bytes.Contains([]byte(err.Error()), []byte("keys/stray")) {
		t.Fatalf("re-sealing a record of an unknown key: %v, want an error naming the record and the key", err)
	}
}
