package gateway

import (
	"net/http"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
)

// The user routes hand the caller's token to the auth service, which
// decides again, on the stored user rather than the token, who may manage
// whom.

// createUserRequest is the body of POST /api/v1/users. The scope may be
// sent as "scope" or, as the interface contract spells it, "scopes".
type createUserRequest struct {
	Username string      `json:"username"`
	Password string      `json:"password"`
	Role     string      `json:"role"`
	Scope    *auth.Scope `json:"scope,omitempty"`
	Scopes   *auth.Scope `json:"scopes,omitempty"`
}

func (q *createUserRequest) validate() error {
	if err := firstErr(required("username", q.Username), required("password", q.Password), required("role", q.Role)); err != nil {
		return err
	}
	_, err := eitherScope(q.Scope, q.Scopes)
	return err
}

// eitherScope returns the one scope given, checked, under the name it was
// given.
func eitherScope(scope, scopes *auth.Scope) (*auth.Scope, error) {
	switch {
	case scope != nil && scopes != nil:
		return nil, homemesh.Invalid("scopes", "give scope or scopes, not both")
	case scope != nil:
		return scope, auth.ValidateScope("scope", *scope)
	case scopes != nil:
		return scopes, auth.ValidateScope("scopes", *scopes)
	}
	return nil, nil
}

// patchUserRequest is the body of PATCH /api/v1/users/{username}.
type patchUserRequest struct {
	Role     *string     `json:"role,omitempty"`
	Scope    *auth.Scope `json:"scope,omitempty"`
	Scopes   *auth.Scope `json:"scopes,omitempty"`
	Password *string     `json:"password,omitempty"`
}

func (q *patchUserRequest) validate() error {
	if q.Role == nil && q.Scope == nil && q.Scopes == nil && q.Password == nil {
		return homemesh.Invalid("body", "nothing to change: give role, scope or password")
	}
	if q.Role != nil && *q.Role == "" {
		return homemesh.Invalid("role", "must not be empty")
	}
	_, err := eitherScope(q.Scope, q.Scopes)
	return err
}

// passwordRequest is the body of POST /api/v1/auth/password.
type passwordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

func (q *passwordRequest) validate() error {
	return firstErr(required("current_password", q.CurrentPassword), required("new_password", q.NewPassword))
}

// pathUsername returns the {username} path value, bounded; the auth
// service checks its alphabet.
func pathUsername(r *http.Request) (string, error) {
	name := r.PathValue("username")
	if name == "" || len(name) > auth.MaxUsernameLen {
		return "", homemesh.Invalid("username", "must be 1 to %d characters", auth.MaxUsernameLen)
	}
	return name, nil
}

func (g *Gateway) createUser(w http.ResponseWriter, r *http.Request, c caller) {
	var q createUserRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	scope, _ := eitherScope(q.Scope, q.Scopes)
	u, err := g.auth.CreateUser(r.Context(), c.token, auth.NewUser{Username: q.Username, Password: q.Password, Role: q.Role, Scope: scope})
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}

func (g *Gateway) listUsers(w http.ResponseWriter, r *http.Request, c caller) {
	us, err := g.auth.ListUsers(r.Context(), c.token)
	g.reply(w, r, us, err)
}

func (g *Gateway) getUser(w http.ResponseWriter, r *http.Request, c caller) {
	name, err := pathUsername(r)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	u, err := g.auth.GetUser(r.Context(), c.token, name)
	g.reply(w, r, u, err)
}

func (g *Gateway) patchUser(w http.ResponseWriter, r *http.Request, c caller) {
	name, err := pathUsername(r)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	var q patchUserRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	scope, _ := eitherScope(q.Scope, q.Scopes)
	u, err := g.auth.UpdateUser(r.Context(), c.token, name, auth.UserUpdate{Role: q.Role, Scope: scope, Password: q.Password})
	g.reply(w, r, u, err)
}

func (g *Gateway) deleteUser(w http.ResponseWriter, r *http.Request, c caller) {
	name, err := pathUsername(r)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.auth.DeleteUser(r.Context(), c.token, name); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// me answers with the caller's own profile as the auth service stores it
// now, not as the token remembers it.
func (g *Gateway) me(w http.ResponseWriter, r *http.Request, c caller) {
	u, err := g.auth.GetUser(r.Context(), c.token, c.claims.Username)
	g.reply(w, r, u, err)
}

func (g *Gateway) changePassword(w http.ResponseWriter, r *http.Request, c caller) {
	var q passwordRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	t, err := g.auth.ChangePasswordFrom(r.Context(), remoteIP(r), c.token, q.CurrentPassword, q.NewPassword)
	g.reply(w, r, t, err)
}
