package gateway

import "net/http"

// The MFA routes act on the caller's own account. Replies that carry a
// TOTP secret or recovery codes are never cached: writeJSON sends
// Cache-Control: no-store with every response.

func (g *Gateway) mfaStatus(w http.ResponseWriter, r *http.Request, c caller) {
	st, err := g.auth.MFAStatus(r.Context(), c.token)
	g.reply(w, r, st, err)
}

func (g *Gateway) beginTOTP(w http.ResponseWriter, r *http.Request, c caller) {
	e, err := g.auth.BeginTOTP(r.Context(), c.token)
	g.reply(w, r, e, err)
}

// recoveryCodesResponse is the reply to a confirmed TOTP enrolment.
type recoveryCodesResponse struct {
	RecoveryCodes []string `json:"recovery_codes"`
}

func (g *Gateway) confirmTOTP(w http.ResponseWriter, r *http.Request, c caller) {
	var q totpConfirmRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	codes, err := g.auth.ConfirmTOTP(r.Context(), c.token, q.Code)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("TOTP enabled", "user", c.claims.Username)
	writeJSON(w, http.StatusOK, recoveryCodesResponse{RecoveryCodes: codes})
}

func (g *Gateway) disableTOTP(w http.ResponseWriter, r *http.Request, c caller) {
	var q totpDisableRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.auth.DisableTOTP(r.Context(), c.token, q.Password, q.Code); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("TOTP disabled", "user", c.claims.Username)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}
