package gateway_test

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"testing"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/internal/webauthntest"
)

// passkeyEnv is a home whose owner is logged in, reached through a gateway
// that, like a browser on the hub, is at http://localhost:<port>.
type passkeyEnv struct {
	*env
	token  string
	origin string
}

func newPasskeyEnv(t *testing.T) *passkeyEnv {
	t.Helper()
	e := newEnv(t, envOptions{})
	tok := e.onboard(t)
	u, err := url.Parse(e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://localhost:" + u.Port()
	if err := e.authSvc.SetWebAuthnOrigins([]string{origin}); err != nil {
		t.Fatal(err)
	}
	return &passkeyEnv{env: e, token: tok.AccessToken, origin: origin}
}

// register registers a passkey of a through the API.
func (e *passkeyEnv) register(t *testing.T, a *webauthntest.Authenticator, name string) auth.Passkey {
	t.Helper()
	c := decode[auth.PasskeyCeremony](t, e.do(t, "POST", "/api/v1/auth/passkeys/register/begin", e.token, nil), 200)
	cred, err := a.Create(c.Options, e.origin)
	if err != nil {
		t.Fatalf("authenticator: %v", err)
	}
	r := e.do(t, "POST", "/api/v1/auth/passkeys/register/finish", e.token,
		map[string]any{"session_id": c.SessionID, "name": name, "credential": cred})
	return decode[auth.Passkey](t, r, 201)
}

// answer begins a login (usernameless without a user name) and returns
// the session and a's answer, claiming origin.
func (e *passkeyEnv) answer(t *testing.T, a *webauthntest.Authenticator, username, origin string, opts ...webauthntest.Option) (string, json.RawMessage) {
	t.Helper()
	var body any
	if username != "" {
		body = map[string]string{"username": username}
	}
	c := decode[auth.PasskeyCeremony](t, e.do(t, "POST", "/api/v1/auth/passkeys/login/begin", "", body), 200)
	cred, err := a.Get(c.Options, origin, opts...)
	if err != nil {
		t.Fatalf("authenticator: %v", err)
	}
	return c.SessionID, cred
}

// loginWith answers a login with a and sends the answer.
func (e *passkeyEnv) loginWith(t *testing.T, a *webauthntest.Authenticator, username, origin string, opts ...webauthntest.Option) response {
	t.Helper()
	id, cred := e.answer(t, a, username, origin, opts...)
	return e.finish(t, id, cred)
}

func (e *passkeyEnv) finish(t *testing.T, sessionID string, cred json.RawMessage) response {
	t.Helper()
	return e.do(t, "POST", "/api/v1/auth/passkeys/login/finish", "", map[string]any{"session_id": sessionID, "credential": cred})
}

func TestPasskeysThroughTheAPI(t *testing.T) {
	e := newPasskeyEnv(t)
	a := webauthntest.New()
	pk := e.register(t, a, "laptop")
	if pk.ID == "" || pk.Name != "laptop" || pk.CreatedAt.IsZero() {
		t.Fatalf("registered passkey = %+v", pk)
	}

	for _, username := range []string{testOwner, ""} {
		t.Run("log in as "+username, func(t *testing.T) {
			tok := decode[auth.Tokens](t, e.loginWith(t, a, username, e.origin), 200)
			if tok.TokenType != "Bearer" || tok.RefreshToken == "" {
				t.Fatalf("tokens = %+v", tok)
			}
			if r := e.do(t, "GET", "/api/v1/devices", tok.AccessToken, nil); r.status != 200 {
				t.Fatalf("access token of a passkey login refused: %d %s", r.status, r.body)
			}
		})
	}

	list := decode[[]auth.Passkey](t, e.do(t, "GET", "/api/v1/auth/passkeys", e.token, nil), 200)
	if len(list) != 1 || list[0].ID != pk.ID || list[0].LastUsedAt.IsZero() {
		t.Fatalf("list = %+v", list)
	}
	if r := e.do(t, "DELETE", "/api/v1/auth/passkeys/"+pk.ID, e.token, nil); r.status != 204 {
		t.Fatalf("remove: %d %s", r.status, r.body)
	}
	e.do(t, "DELETE", "/api/v1/auth/passkeys/"+pk.ID, e.token, nil).wantError(t, 404, "not_found", "")
	e.do(t, "DELETE", "/api/v1/auth/passkeys/Bad.ID", e.token, nil).wantError(t, 400, "invalid", "id")
	if r := e.do(t, "GET", "/api/v1/auth/passkeys", e.token, nil); string(r.body) != "[]\n" {
		t.Fatalf("list after removal: %d %s", r.status, r.body)
	}
	// The removed passkey, still held by the authenticator, no longer logs in.
	e.loginWith(t, a, "", e.origin).wantError(t, 401, "unauthenticated", "")

	// Each step is in the audit log with the caller's address.
	for _, action := range []string{auth.AuditPasskeyAdded, auth.AuditPasskeyRemoved, auth.AuditLogin, auth.AuditLoginFailed} {
		page := decode[auth.AuditPage](t, e.do(t, "GET", "/api/v1/audit?action="+action, e.token, nil), 200)
		found := false
		for _, r := range page.Records {
			if r.Source == "127.0.0.1" && (action != auth.AuditLogin || r.Details["method"] == "passkey") {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s record from 127.0.0.1 in %+v", action, page.Records)
		}
	}
}

// Forged, replayed and cloned answers are all refused with the same 401.
func TestPasskeyLoginRefusedThroughTheAPI(t *testing.T) {
	e := newPasskeyEnv(t)
	a := webauthntest.New()
	e.register(t, a, "laptop")
	clone := a.Clone()
	e.loginWith(t, a, testOwner, e.origin).wantError(t, 200, "", "")

	tests := []struct {
		name string
		run  func(t *testing.T) response
	}{
		{"wrong origin", func(t *testing.T) response {
			return e.loginWith(t, a, testOwner, "http://evil.localhost:1")
		}},
		{"replayed session", func(t *testing.T) response {
			id, cred := e.answer(t, a, "", e.origin)
			e.finish(t, id, cred).wantError(t, 200, "", "")
			return e.finish(t, id, cred)
		}},
		{"tampered signature", func(t *testing.T) response {
			id, cred := e.answer(t, a, testOwner, e.origin)
			return e.finish(t, id, flipSignature(t, cred))
		}},
		{"credential of another RP ID", func(t *testing.T) response {
			return e.loginWith(t, a, testOwner, e.origin, webauthntest.WithRPIDHash("example.com"))
		}},
		{"sign counter going backwards", func(t *testing.T) response {
			return e.loginWith(t, clone, "", e.origin)
		}},
	}
	var msgs []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.run(t)
			r.wantError(t, 401, "unauthenticated", "")
			msgs = append(msgs, r.apiError(t).Message)
		})
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Errorf("refusals differ: %q and %q", m, msgs[0])
		}
	}
}

func flipSignature(t *testing.T, cred json.RawMessage) json.RawMessage {
	t.Helper()
	var v struct {
		ID, RawID, Type string
		Response        map[string]string `json:"response"`
	}
	if err := json.Unmarshal(cred, &v); err != nil {
		t.Fatal(err)
	}
	sig, _ := base64.RawURLEncoding.DecodeString(v.Response["signature"])
	sig[len(sig)/2] ^= 0x80
	v.Response["signature"] = base64.RawURLEncoding.EncodeToString(sig)
	out, _ := json.Marshal(map[string]any{"id": v.ID, "rawId": v.RawID, "type": v.Type, "response": v.Response})
	return out
}

func TestPasskeyRequestsAreChecked(t *testing.T) {
	e := newPasskeyEnv(t)
	tests := []struct {
		name, path, token string
		body              any
		status            int
		kind, field       string
	}{
		{"register begin with a field", "/api/v1/auth/passkeys/register/begin", e.token, `{"name":"x"}`, 400, "invalid", "name"},
		{"register finish without a credential", "/api/v1/auth/passkeys/register/finish", e.token,
			map[string]any{"session_id": "s", "name": "laptop"}, 400, "invalid", "credential"},
		{"register finish with a string credential", "/api/v1/auth/passkeys/register/finish", e.token,
			map[string]any{"session_id": "s", "name": "laptop", "credential": "abc"}, 400, "invalid", "credential"},
		{"register finish with an unknown session", "/api/v1/auth/passkeys/register/finish", e.token,
			map[string]any{"session_id": "nosuch", "name": "laptop", "credential": map[string]any{"id": "x"}}, 400, "invalid", "session_id"},
		{"login begin with a bad user name", "/api/v1/auth/passkeys/login/begin", "", map[string]string{"username": "a b"}, 400, "invalid", "username"},
		{"login begin with an unknown field", "/api/v1/auth/passkeys/login/begin", "", `{"user":"alice"}`, 400, "invalid", "user"},
		{"login finish without a session", "/api/v1/auth/passkeys/login/finish", "", map[string]any{"credential": map[string]any{}}, 400, "invalid", "session_id"},
		{"login finish with an array", "/api/v1/auth/passkeys/login/finish", "", `{"session_id":"s","credential":[]}`, 400, "invalid", "credential"},
		{"login finish with an unknown session", "/api/v1/auth/passkeys/login/finish", "", map[string]any{"session_id": "s", "credential": map[string]any{"id": "x"}}, 401, "unauthenticated", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "POST", tt.path, tt.token, tt.body).wantError(t, tt.status, tt.kind, tt.field)
		})
	}
}
