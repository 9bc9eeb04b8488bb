package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The security suite: black-box checks against a running hub, each one a
// line of the security service's acceptance list.

// onboardOwner creates the owner of a fresh hub and returns its tokens.
// The banner can come a moment before auth answers, so a 503 is retried.
func onboardOwner(t *testing.T, h *hub) tokenPair {
	t.Helper()
	owner := map[string]string{"code": h.code, "username": "owner", "password": "correct horse battery"}
	status := 0
	waitUntil(t, "onboarding", func() bool {
		status = call(t, "POST", h.api+"/onboard", "", owner, nil)
		return status != http.StatusServiceUnavailable
	})
	if status != http.StatusCreated {
		t.Fatalf("onboard = %d", status)
	}
	return loginAs(t, h.api, "owner", "correct horse battery")
}

type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// loginAs logs user in through the API at api, which need not be a hub's:
// a split gateway serves it too.
func loginAs(t *testing.T, api, user, password string) tokenPair {
	t.Helper()
	var tp tokenPair
	if code := call(t, "POST", api+"/auth/login", "", map[string]string{"username": user, "password": password}, &tp); code != http.StatusOK {
		t.Fatalf("login %s = %d", user, code)
	}
	return tp
}

func TestForgedTokensAreRejected(t *testing.T) {
	h := allInOne(t)
	good := onboardOwner(t, h).AccessToken
	if code := call(t, "GET", h.api+"/devices", good, nil, nil); code != http.StatusOK {
		t.Fatalf("a genuine token = %d", code)
	}
	parts := strings.Split(good, ".")
	if len(parts) != 3 {
		t.Fatalf("access token is not a JWS: %d parts", len(parts))
	}
	header, claims := decodeSegment(t, parts[0]), decodeSegment(t, parts[1])

	// The same claims, re-encoded with one change.
	withClaims := func(change func(map[string]any)) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		change(c)
		return encodeSegment(t, c)
	}
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)
	signWith := func(key ed25519.PrivateKey, kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims(claims))
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noneHeader := encodeSegment(t, map[string]any{"alg": "none", "typ": "JWT", "kid": header["kid"]})
	hsToken := func() string {
		// HS256 keyed with something public: the classic algorithm confusion.
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims))
		tok.Header["kid"] = header["kid"]
		s, err := tok.SignedString([]byte(header["kid"].(string)))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	flipped := []byte(parts[2])
	flipped[5] ^= 0x01

	for name, token := range map[string]string{
		"tampered role":          parts[0] + "." + withClaims(func(c map[string]any) { c["role"] = "guest" }) + "." + parts[2],
		"tampered expiry":        parts[0] + "." + withClaims(func(c map[string]any) { c["exp"] = time.Now().Add(time.Hour * 24 * 365).Unix() }) + "." + parts[2],
		"tampered signature":     parts[0] + "." + parts[1] + "." + string(flipped),
		"expired claims":         parts[0] + "." + withClaims(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() }) + "." + parts[2],
		"wrong key, genuine kid": signWith(strangerKey, header["kid"].(string)),
		"wrong key, unknown kid": signWith(strangerKey, "stranger"),
		"alg none":               noneHeader + "." + parts[1] + ".",
		"alg none with sig":      noneHeader + "." + parts[1] + "." + parts[2],
		"HS256 confusion":        hsToken,
		"truncated":              parts[0] + "." + parts[1],
		"garbage":                "not-a-token",
	} {
		t.Run(name, func(t *testing.T) {
			if code := call(t, "GET", h.api+"/devices", token, nil, nil); code != http.StatusUnauthorized {
				t.Fatalf("GET /devices with a %s token = %d, want 401", name, code)
			}
		})
	}
}

func TestReusedRefreshTokenRevokesItsFamily(t *testing.T) {
	h := allInOne(t)
	first := onboardOwner(t, h)
	var second, third tokenPair
	if code := call(t, "POST", h.api+"/auth/refresh", "", map[string]string{"refresh_token": first.RefreshToken}, &second); code != http.StatusOK {
		t.Fatalf("refresh = %d", code)
	}
	if code := call(t, "POST", h.api+"/auth/refresh", "", map[string]string{"refresh_token": second.RefreshToken}, &third); code != http.StatusOK {
		t.Fatalf("second refresh = %d", code)
	}
	// The first token was spent: presenting it again means it was copied.
	if code := call(t, "POST", h.api+"/auth/refresh", "", map[string]string{"refresh_token": first.RefreshToken}, nil); code != http.StatusUnauthorized {
		t.Fatalf("reused refresh token = %d, want 401", code)
	}
	// The whole family is gone, including the newest descendant.
	if code := call(t, "POST", h.api+"/auth/refresh", "", map[string]string{"refresh_token": third.RefreshToken}, nil); code != http.StatusUnauthorized {
		t.Fatalf("descendant after reuse = %d, want 401", code)
	}
	// Another login is a new family and unaffected.
	other := loginAs(t, h.api, "owner", "correct horse battery")
	if code := call(t, "POST", h.api+"/auth/refresh", "", map[string]string{"refresh_token": other.RefreshToken}, nil); code != http.StatusOK {
		t.Fatalf("an unrelated session's refresh = %d", code)
	}
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func encodeSegment(t *testing.T, v any) string {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(raw)
}

func TestExpiredAccessTokenIsRejected(t *testing.T) {
	data := t.TempDir()
	p := start(t, "up", "--data", data, "--mesh", "127.0.0.1:0", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--mqtts", "", "--access-token-ttl", "1s")
	h := &hub{api: p.await(t, apiLine) + "/api/v1", code: p.await(t, codeLine)}
	seen.add(h.code)
	tp := onboardOwner(t, h)
	if code := call(t, "GET", h.api+"/devices", tp.AccessToken, nil, nil); code != http.StatusOK {
		t.Fatalf("a fresh token = %d", code)
	}
	// One second of life plus the verifiers' clock leeway of five.
	waitUntil(t, "the access token to expire", func() bool {
		return call(t, "GET", h.api+"/devices", tp.AccessToken, nil, nil) == http.StatusUnauthorized
	})
	// The refresh token still gives a fresh one.
	var fresh tokenPair
	if code := call(t, "POST", h.api+"/auth/refresh", "", map[string]string{"refresh_token": tp.RefreshToken}, &fresh); code != http.StatusOK {
		t.Fatalf("refresh after expiry = %d", code)
	}
	if code := call(t, "GET", h.api+"/devices", fresh.AccessToken, nil, nil); code != http.StatusOK {
		t.Fatalf("the refreshed token = %d", code)
	}
}

func TestSixthWrongPasswordIsThrottled(t *testing.T) {
	h := allInOne(t)
	onboardOwner(t, h)
	wrong := map[string]string{"username": "owner", "password": "not the password"}
	for i := 1; i <= 5; i++ {
		if code := call(t, "POST", h.api+"/auth/login", "", wrong, nil); code != http.StatusUnauthorized {
			t.Fatalf("wrong password #%d = %d, want 401", i, code)
		}
	}
	resp := rawCall(t, "POST", h.api+"/auth/login", wrong)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("wrong password #6 = %d, Retry-After %q; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Even the right password waits now: the lock is on the name, and
	// whether a guess was right must not leak while it holds.
	right := map[string]string{"username": "owner", "password": "correct horse battery"}
	if resp := rawCall(t, "POST", h.api+"/auth/login", right); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("right password while throttled = %d, want 429", resp.StatusCode)
	}
	// An unknown user name is throttled exactly like a known one.
	ghost := map[string]string{"username": "nobody", "password": "not the password"}
	for i := 1; i <= 5; i++ {
		call(t, "POST", h.api+"/auth/login", "", ghost, nil)
	}
	if resp := rawCall(t, "POST", h.api+"/auth/login", ghost); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th try on an unknown user = %d, want 429 like a known one", resp.StatusCode)
	}
}

// rawCall posts body and returns the response with its headers.
func rawCall(t *testing.T, method, url string, body any) *http.Response {
	t.Helper()
	data, _ := json.Marshal(body)
	seen.collect(data)
	req, err := http.NewRequest(method, url, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestGuestCannotUnlockOrDisarm(t *testing.T) {
	needMosquitto(t)
	h := allInOne(t)
	owner := onboardOwner(t, h).AccessToken

	// A lock and an alarm panel, announced by a device over MQTT.
	var cred struct{ Username, Password string }
	if code := call(t, "POST", h.api+"/credentials", owner, map[string]any{"name": "door and alarm", "allow": []string{"homeassistant/#", "house/#"}}, &cred); code != http.StatusCreated {
		t.Fatalf("create credential = %d", code)
	}
	for topic, config := range map[string]string{
		"homeassistant/lock/front/door/config":           `{"name":"Front door","unique_id":"front-door","command_topic":"house/door/set","state_topic":"house/door/state"}`,
		"homeassistant/alarm_control_panel/house/config": `{"name":"Alarm","unique_id":"house-alarm","command_topic":"house/alarm/set","state_topic":"house/alarm/state","code":"REMOTE_CODE"}`,
	} {
		if err := pub(t, h.mqtt, cred.Username, cred.Password, "-t", topic, "-m", config, "-r", "-q", "1"); err != nil {
			t.Fatal(err)
		}
	}
	door := findEntity(t, h.api, owner, "front-door")
	alarm := findEntity(t, h.api, owner, "house-alarm")

	guest := map[string]any{"username": "visitor", "password": "a guest's own password", "role": "guest"}
	if code := call(t, "POST", h.api+"/users", owner, guest, nil); code != http.StatusCreated {
		t.Fatalf("create guest = %d", code)
	}
	visitor := loginAs(t, h.api, "visitor", "a guest's own password").AccessToken
	for _, c := range []struct {
		entity  entity
		command map[string]any
	}{
		{door, map[string]any{"command": "unlock"}},
		{door, map[string]any{"command": "open"}},
		{alarm, map[string]any{"command": "alarm_disarm", "params": map[string]any{"code": "2468"}}},
	} {
		if code := call(t, "POST", h.api+"/entities/"+c.entity.ID+"/commands", visitor, c.command, nil); code != http.StatusForbidden {
			t.Fatalf("guest %v on %s = %d, want 403", c.command["command"], c.entity.UniqueID, code)
		}
	}

	// Each refusal is in the audit log, with who and what, never the code.
	var page struct {
		Records []struct {
			Action, Outcome, Actor, Target string
			Details                        map[string]string
		} `json:"records"`
	}
	if code := call(t, "GET", h.api+"/audit?action=command_denied", owner, nil, &page); code != http.StatusOK {
		t.Fatalf("GET /audit = %d", code)
	}
	denied := map[string]bool{}
	for _, r := range page.Records {
		if r.Actor != "visitor" || r.Outcome != "denied" {
			t.Fatalf("unexpected audit record %+v", r)
		}
		for _, v := range r.Details {
			if strings.Contains(v, "2468") {
				t.Fatalf("the alarm code reached the audit log: %+v", r)
			}
		}
		denied[r.Target+" "+r.Details["command"]] = true
	}
	for _, want := range []string{door.ID + " unlock", door.ID + " open", alarm.ID + " alarm_disarm"} {
		if !denied[want] {
			t.Errorf("no audit record for the refused %q; have %v", want, denied)
		}
	}
	// The owner may unlock; that too is audited.
	if code := call(t, "POST", h.api+"/entities/"+door.ID+"/commands", owner, map[string]any{"command": "unlock"}, nil); code >= 300 {
		t.Fatalf("owner unlock = %d", code)
	}
	if code := call(t, "GET", h.api+"/audit?action=command", owner, nil, &page); code != http.StatusOK || len(page.Records) == 0 {
		t.Fatalf("GET /audit?action=command = %d with %d records, want the owner's unlock", code, len(page.Records))
	}
}
