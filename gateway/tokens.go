package gateway

import (
	"net/http"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
)

// tokenRequest is the body of POST /api/v1/tokens.
type tokenRequest struct {
	Name          string      `json:"name"`
	Role          string      `json:"role,omitempty"`
	Scope         *auth.Scope `json:"scope,omitempty"`
	ExpiresInDays int         `json:"expires_in_days,omitempty"`
}

func (q *tokenRequest) validate() error {
	if err := required("name", q.Name); err != nil {
		return err
	}
	if q.ExpiresInDays < 0 || q.ExpiresInDays > auth.MaxIntegrationTokenDays {
		return homemesh.Invalid("expires_in_days", "must be 1 to %d", auth.MaxIntegrationTokenDays)
	}
	return nil
}

func (g *Gateway) createToken(w http.ResponseWriter, r *http.Request, c caller) {
	var q tokenRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	t, err := g.auth.CreateToken(r.Context(), c.token, auth.TokenRequest{
		Name: q.Name, Role: q.Role, Scope: q.Scope, ExpiresInDays: q.ExpiresInDays,
	})
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (g *Gateway) listTokens(w http.ResponseWriter, r *http.Request, c caller) {
	ts, err := g.auth.ListTokens(r.Context(), c.token)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if ts == nil {
		ts = []auth.IntegrationToken{}
	}
	for i := range ts {
		ts[i].Token = "" // never listed, whatever the service sends
	}
	writeJSON(w, http.StatusOK, ts)
}

func (g *Gateway) deleteToken(w http.ResponseWriter, r *http.Request, c caller) {
	id := r.PathValue("id")
	if id == "" || len(id) > 64 {
		writeError(w, r, g.log, homemesh.Invalid("id", "not a token ID"))
		return
	}
	if err := g.auth.DeleteToken(r.Context(), c.token, id); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	noContent(w)
}
