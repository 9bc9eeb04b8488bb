package gateway

import "net/http"

// logoutRequest is the body of POST /api/v1/auth/logout.
type logoutRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (q *logoutRequest) validate() error { return required("refresh_token", q.RefreshToken) }

// logout ends the session of a refresh token. It answers 204 whether or not
// the token was known, so it tells a caller nothing about tokens.
func (g *Gateway) logout(w http.ResponseWriter, r *http.Request) {
	var q logoutRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.auth.Logout(r.Context(), remoteIP(r), q.RefreshToken); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	noContent(w)
}

// revokeAll logs the caller out everywhere.
func (g *Gateway) revokeAll(w http.ResponseWriter, r *http.Request, c caller) {
	if err := g.auth.RevokeAll(r.Context(), remoteIP(r), c.token); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	noContent(w)
}

func noContent(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// rotateKeys makes a new key sign access tokens; tokens signed before stay
// valid until they expire.
func (g *Gateway) rotateKeys(w http.ResponseWriter, r *http.Request, c caller) {
	k, err := g.auth.RotateKeys(r.Context(), remoteIP(r), c.token)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}
