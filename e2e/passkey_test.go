package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/homemesh/homemesh/internal/webauthntest"
)

type passkeyCeremony struct {
	SessionID string          `json:"session_id"`
	Options   json.RawMessage `json:"options"`
}

// A passkey registered through the API of a running hub logs in with a
// software authenticator, with and without a user name, until it is
// removed. The authenticator claims the origin a browser on the hub
// reports, http://localhost:<port>, which the hub accepts by default.
func TestPasskeyLogin(t *testing.T) {
	h := allInOne(t)
	owner := onboardOwner(t, h).AccessToken
	u, err := url.Parse(h.api)
	if err != nil {
		t.Fatal(err)
	}
	origin := "http://localhost:" + u.Port()
	a := webauthntest.New()

	var reg passkeyCeremony
	if code := call(t, "POST", h.api+"/auth/passkeys/register/begin", owner, nil, &reg); code != http.StatusOK {
		t.Fatalf("register begin = %d", code)
	}
	cred, err := a.Create(reg.Options, origin)
	if err != nil {
		t.Fatal(err)
	}
	var pk struct{ ID, Name string }
	body := map[string]any{"session_id": reg.SessionID, "name": "laptop", "credential": cred}
	if code := call(t, "POST", h.api+"/auth/passkeys/register/finish", owner, body, &pk); code != http.StatusCreated || pk.ID == "" {
		t.Fatalf("register finish = %d, %+v", code, pk)
	}
	clone := a.Clone() // what someone who copied the key would hold

	login := func(t *testing.T, a *webauthntest.Authenticator, username string) (int, tokenPair) {
		t.Helper()
		var begin any
		if username != "" {
			begin = map[string]string{"username": username}
		}
		var c passkeyCeremony
		if code := call(t, "POST", h.api+"/auth/passkeys/login/begin", "", begin, &c); code != http.StatusOK {
			t.Fatalf("login begin = %d", code)
		}
		cred, err := a.Get(c.Options, origin)
		if err != nil {
			t.Fatal(err)
		}
		var tp tokenPair
		code := call(t, "POST", h.api+"/auth/passkeys/login/finish", "", map[string]any{"session_id": c.SessionID, "credential": cred}, &tp)
		return code, tp
	}
	for _, username := range []string{"owner", ""} {
		code, tp := login(t, a, username)
		if code != http.StatusOK || tp.AccessToken == "" {
			t.Fatalf("passkey login as %q = %d", username, code)
		}
		if code := call(t, "GET", h.api+"/devices", tp.AccessToken, nil, nil); code != http.StatusOK {
			t.Fatalf("the passkey login's access token = %d", code)
		}
	}

	// The copy falls behind the original's sign counter and is refused.
	if code, _ := login(t, clone, ""); code != http.StatusUnauthorized {
		t.Errorf("a cloned passkey = %d, want 401", code)
	}

	if code := call(t, "DELETE", h.api+"/auth/passkeys/"+pk.ID, owner, nil, nil); code != http.StatusNoContent {
		t.Fatalf("remove = %d", code)
	}
	var list []json.RawMessage
	if code := call(t, "GET", h.api+"/auth/passkeys", owner, nil, &list); code != http.StatusOK || len(list) != 0 {
		t.Fatalf("list after removal = %d, %d passkeys", code, len(list))
	}
	if code, _ := login(t, a, ""); code != http.StatusUnauthorized {
		t.Errorf("the removed passkey = %d, want 401", code)
	}
}
