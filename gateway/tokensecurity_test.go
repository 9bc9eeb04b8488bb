package gateway_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/gateway"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/homemesh/homemesh/registry"
	"github.com/nats-io/nats.go"
)

// testKID names the key the stand-in auth service publishes.
const testKID = "0011223344556677"

// newKeyEnv is a gateway whose auth service is a stand-in that publishes
// pub as the home's only signing key and no revocations, so the test can
// sign tokens of any shape with the matching private key. The gateway and
// its auth.Client are the real ones.
func newKeyEnv(t *testing.T, pub ed25519.PublicKey) *env {
	t.Helper()
	s := bustest.Server(t)
	runRegistry(t, s, hmtest.Logger(t))
	conn := bustest.Conn(t, s)
	answers := map[string]any{
		auth.VerbKeys:        map[string]any{"home": testHome, "keys": []map[string]any{{"kid": testKID, "key": []byte(pub)}}},
		auth.VerbRevocations: map[string]any{"revocations": []any{}},
	}
	for verb, answer := range answers {
		if _, err := conn.Handle(bus.ServiceSubject(auth.ServiceName, verb), auth.Queue, func(context.Context, *nats.Msg) (any, error) {
			return answer, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	conn.Flush()
	gwConn := bustest.Conn(t, s)
	gw, srv := serveGateway(t, gateway.Config{Home: testHome}, gatewayDeps(gwConn, hmtest.Logger(t)))
	e := &env{srv: srv, gw: gw, nats: s, conn: conn, registry: registry.NewClient(conn, testHome)}
	e.waitForRegistry(t)
	return e
}

// signed signs claims with method and key, naming kid in the header
// unless kid is "".
func signed(t *testing.T, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// withClaims returns a copy of c with the given changes; a nil value deletes.
func withClaims(c jwt.MapClaims, changes map[string]any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// retouch replaces the payload of token, keeping its header and signature.
func retouch(t *testing.T, token string, edit func(map[string]any)) string {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var payload map[string]any
	if err := json.Unmarshal(raw, &payload); err != nil {
		t.Fatal(err)
	}
	edit(payload)
	data, _ := json.Marshal(payload)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(data) + "." + parts[2]
}

// flipJWTSignature changes one byte of the signature.
func flipJWTSignature(token string) string {
	i := strings.LastIndex(token, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(token[i+1:])
	sig[0] ^= 1
	return token[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

// TestForgedAccessTokens signs tokens of every wrong shape and sends each
// through the gateway: only the well-formed one, signed by the home's key,
// gets in; everything else is 401.
func TestForgedAccessTokens(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	e := newKeyEnv(t, pub)
	now := time.Now()
	good := jwt.MapClaims{
		"username": testOwner, "role": "owner", "home": testHome, "iss": "homemesh-auth", "sub": "u1", "jti": "j1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	valid := signed(t, jwt.SigningMethodEdDSA, priv, testKID, good)
	header := func(h string) string { return b64(h) }
	tests := []struct {
		name  string
		token string
	}{
		{"tampered payload", retouch(t, valid, func(p map[string]any) { p["role"] = "admin"; p["sub"] = "u2" })},
		{"tampered signature", flipJWTSignature(valid)},
		{"expired", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()}))},
		{"missing exp", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"exp": nil}))},
		{"issued in the future", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"iat": now.Add(time.Hour).Unix(), "exp": now.Add(2 * time.Hour).Unix()}))},
		{"wrong issuer", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"iss": "someone-else"}))},
		{"no issuer", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"iss": nil}))},
		{"wrong home", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"home": "home2"}))},
		{"no subject", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"sub": nil}))},
		{"unknown role", signed(t, jwt.SigningMethodEdDSA, priv, testKID, withClaims(good, map[string]any{"role": "root"}))},
		{"wrong key, known kid", signed(t, jwt.SigningMethodEdDSA, otherKey, testKID, good)},
		{"wrong key, unknown kid", signed(t, jwt.SigningMethodEdDSA, otherKey, "ffeeddccbbaa9988", good)},
		{"no kid", signed(t, jwt.SigningMethodEdDSA, priv, "", good)},
		{"alg none", header(`{"alg":"none","typ":"JWT","kid":"`+testKID+`"}`) + "." + strings.Split(valid, ".")[1] + "."},
		{"alg none, signature kept", header(`{"alg":"none","typ":"JWT","kid":"`+testKID+`"}`) + "." + strings.SplitN(valid, ".", 2)[1]},
		{"HS256 with the public key as secret", signed(t, jwt.SigningMethodHS256, []byte(pub), testKID, good)},
		{"HS256 with the public key in base64 as secret", signed(t, jwt.SigningMethodHS256, []byte(base64.StdEncoding.EncodeToString(pub)), testKID, good)},
		{"two dots only", ".."},
	}
	if r := e.do(t, "GET", "/api/v1/devices", valid, nil); r.status != http.StatusOK {
		t.Fatalf("the well-formed token is refused: %d %s", r.status, r.body)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, "GET", "/api/v1/devices", tt.token, nil)
			r.wantError(t, http.StatusUnauthorized, "unauthenticated", "")
			if r.header.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate header")
			}
		})
	}
}

// TestForgedTokensAgainstRealAuth forges what can be forged without the
// home's private key against the real auth service: its public key is no
// use as an HMAC secret, alg none is refused, and changing a signed token
// breaks it.
func TestForgedTokensAgainstRealAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	tok := e.onboard(t).AccessToken
	var keys struct {
		Keys []struct {
			KID string `json:"kid"`
			Key []byte `json:"key"`
		} `json:"keys"`
	}
	if err := e.conn.Request(context.Background(), bus.ServiceSubject(auth.ServiceName, auth.VerbKeys), struct{}{}, &keys); err != nil || len(keys.Keys) == 0 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	kid, pub := keys.Keys[0].KID, keys.Keys[0].Key
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	var claims jwt.MapClaims
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	json.Unmarshal(raw, &claims)
	tests := []struct {
		name  string
		token string
	}{
		{"tampered payload", retouch(t, tok, func(p map[string]any) { p["exp"] = time.Now().Add(24 * time.Hour).Unix() })},
		{"tampered signature", flipJWTSignature(tok)},
		{"foreign key, the home's kid", signed(t, jwt.SigningMethodEdDSA, otherKey, kid, claims)},
		{"foreign key, unknown kid", signed(t, jwt.SigningMethodEdDSA, otherKey, "ffeeddccbbaa9988", claims)},
		{"alg none", b64(`{"alg":"none","typ":"JWT","kid":"`+kid+`"}`) + "." + strings.Split(tok, ".")[1] + "."},
		{"HS256 with the public key as secret", signed(t, jwt.SigningMethodHS256, pub, kid, claims)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, "GET", "/api/v1/devices", tt.token, nil).wantError(t, http.StatusUnauthorized, "unauthenticated", "")
		})
	}
	if r := e.do(t, "GET", "/api/v1/devices", tok, nil); r.status != http.StatusOK {
		t.Fatalf("the genuine token is refused: %d %s", r.status, r.body)
	}
}
