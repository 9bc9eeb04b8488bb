package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
)

// Passkey routes. Each ceremony has two halves: begin returns options for
// the browser's navigator.credentials.create or .get and a session_id;
// finish sends the browser's PublicKeyCredential back with that session_id.

// emptyRequest is a body that has no fields: absent, or {}.
type emptyRequest struct{}

func (*emptyRequest) validate() error { return nil }

// passkeyRegisterFinishRequest is the body of POST
// /api/v1/auth/passkeys/register/finish.
type passkeyRegisterFinishRequest struct {
	SessionID  string          `json:"session_id"`
	Name       string          `json:"name"`
	Credential json.RawMessage `json:"credential"`
}

func (q *passkeyRegisterFinishRequest) validate() error {
	return firstErr(required("session_id", q.SessionID), required("name", q.Name), normalizeCredential(&q.Credential))
}

// passkeyLoginBeginRequest is the body of POST
// /api/v1/auth/passkeys/login/begin. Without a user name the login is
// usernameless.
type passkeyLoginBeginRequest struct {
	Username string `json:"username,omitempty"`
}

func (*passkeyLoginBeginRequest) validate() error { return nil }

// passkeyLoginFinishRequest is the body of POST
// /api/v1/auth/passkeys/login/finish.
type passkeyLoginFinishRequest struct {
	SessionID  string          `json:"session_id"`
	Credential json.RawMessage `json:"credential"`
}

func (q *passkeyLoginFinishRequest) validate() error {
	return firstErr(required("session_id", q.SessionID), normalizeCredential(&q.Credential))
}

// normalizeCredential checks that c holds a JSON object, the browser's
// PublicKeyCredential, and rewrites it compactly: the auth service parses
// it, and the bus carries less.
func normalizeCredential(c *json.RawMessage) error {
	if t := bytes.TrimSpace(*c); len(t) == 0 || t[0] != '{' {
		return homemesh.Invalid("credential", "must be the PublicKeyCredential object the browser returned")
	}
	norm, err := json.Marshal(*c)
	if err != nil {
		return homemesh.Invalid("credential", "malformed JSON")
	}
	*c = norm
	return nil
}

// decodeOptionalBody is decodeBody for routes whose body may be left out
// entirely.
func decodeOptionalBody(w http.ResponseWriter, r *http.Request, v request) error {
	data, err := readBody(w, r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return v.validate()
	}
	return decodeBytes(data, v)
}

func (g *Gateway) passkeyRegisterBegin(w http.ResponseWriter, r *http.Request, c caller) {
	if err := decodeOptionalBody(w, r, &emptyRequest{}); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	cer, err := g.auth.BeginPasskeyRegistration(r.Context(), c.token)
	g.reply(w, r, cer, err)
}

func (g *Gateway) passkeyRegisterFinish(w http.ResponseWriter, r *http.Request, c caller) {
	var q passkeyRegisterFinishRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	pk, err := g.auth.FinishPasskeyRegistration(r.Context(), remoteIP(r), c.token, q.SessionID, q.Name, q.Credential)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, pk)
}

func (g *Gateway) passkeyLoginBegin(w http.ResponseWriter, r *http.Request) {
	var q passkeyLoginBeginRequest
	if err := decodeOptionalBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	cer, err := g.auth.BeginPasskeyLogin(r.Context(), q.Username)
	g.reply(w, r, cer, err)
}

func (g *Gateway) passkeyLoginFinish(w http.ResponseWriter, r *http.Request) {
	var q passkeyLoginFinishRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	t, err := g.auth.FinishPasskeyLoginFrom(r.Context(), remoteIP(r), q.SessionID, q.Credential)
	g.reply(w, r, t, err)
}

func (g *Gateway) listPasskeys(w http.ResponseWriter, r *http.Request, c caller) {
	pks, err := g.auth.ListPasskeys(r.Context(), c.token)
	if pks == nil {
		pks = []auth.Passkey{}
	}
	g.reply(w, r, pks, err)
}

func (g *Gateway) removePasskey(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r, "id")
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.auth.RemovePasskey(r.Context(), remoteIP(r), c.token, id); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	noContent(w)
}
