package gateway

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/bus"
	"github.com/homemesh/homemesh/registry"
)

// routesTable registers every route. The OpenAPI test compares this table
// with openapi.json.
func (g *Gateway) routesTable(ops http.Handler) {
	// Public: nothing here needs, or could have, an access token.
	g.handle("POST /api/v1/onboard", http.HandlerFunc(g.onboard))
	g.handle("POST /api/v1/auth/login", http.HandlerFunc(g.login))
	g.handle("POST /api/v1/auth/refresh", http.HandlerFunc(g.refresh))
	g.handle("POST /api/v1/auth/logout", http.HandlerFunc(g.logout)) // the refresh token is the credential
	g.handle("POST /api/v1/auth/passkeys/login/begin", http.HandlerFunc(g.passkeyLoginBegin))
	g.handle("POST /api/v1/auth/passkeys/login/finish", http.HandlerFunc(g.passkeyLoginFinish))
	g.handle("GET /api/v1/openapi.json", http.HandlerFunc(serveOpenAPI))
	// A device being paired has no token: the setup code is its proof.
	g.handle("POST /api/v1/pairings/claim", http.HandlerFunc(g.claimPairing))

	// Everything else requires a valid access token and a role that the
	// policy table (authz.go) grants the action.
	g.handle("GET /api/v1/devices", g.authed(actRead, g.listDevices))
	g.handle("GET /api/v1/devices/{id}", g.authed(actRead, g.getDevice))
	g.handle("PATCH /api/v1/devices/{id}", g.authed(actManageDevices, g.patchDevice))
	g.handle("GET /api/v1/entities", g.authed(actRead, g.listEntities))
	g.handle("GET /api/v1/entities/{id}", g.authed(actRead, g.getEntity))
	g.handle("POST /api/v1/entities/{id}/commands", g.authed(actCommand, g.command))
	g.handle("GET /api/v1/entities/{id}/history", g.authed(actRead, g.entityHistory))
	g.handle("GET /api/v1/history/events", g.authed(actRead, g.historyEvents))
	g.handle("GET /api/v1/mesh/topology", g.authed(actRead, g.meshTopology))
	g.handle("GET /api/v1/mesh/nodes", g.authed(actManageMeshNodes, g.listMeshNodes))
	g.handle("DELETE /api/v1/mesh/nodes/{id}", g.authed(actManageMeshNodes, g.revokeMeshNode))
	g.handle("GET /api/v1/rooms", g.authed(actRead, g.listRooms))
	g.handle("POST /api/v1/rooms", g.authed(actManageRooms, g.createRoom))
	g.handle("DELETE /api/v1/rooms/{id}", g.authed(actManageRooms, g.deleteRoom))
	g.handle("POST /api/v1/credentials", g.authed(actManageCredentials, g.createCredential))
	g.handle("GET /api/v1/credentials", g.authed(actManageCredentials, g.listCredentials))
	g.handle("DELETE /api/v1/credentials/{username}", g.authed(actManageCredentials, g.deleteCredential))
	g.handle("POST /api/v1/users", g.authed(actManageUsers, g.createUser))
	g.handle("GET /api/v1/users", g.authed(actManageUsers, g.listUsers))
	g.handle("GET /api/v1/users/{username}", g.authed(actManageUsers, g.getUser))
	g.handle("PATCH /api/v1/users/{username}", g.authed(actManageUsers, g.patchUser))
	g.handle("DELETE /api/v1/users/{username}", g.authed(actManageUsers, g.deleteUser))
	g.handle("GET /api/v1/me", g.authed(actOwnAccount, g.me))
	g.handle("POST /api/v1/auth/password", g.authed(actOwnAccount, g.changePassword))
	g.handle("POST /api/v1/auth/revoke-all", g.authed(actOwnAccount, g.revokeAll))
	g.handle("POST /api/v1/auth/keys/rotate", g.authed(actRotateKeys, g.rotateKeys))
	g.handle("POST /api/v1/pairings", g.authed(actManagePairings, g.createPairing))
	// Auth decides whose integration tokens a caller may list and delete.
	g.handle("POST /api/v1/tokens", g.authed(actCreateTokens, g.createToken))
	g.handle("GET /api/v1/tokens", g.authed(actOwnTokens, g.listTokens))
	g.handle("DELETE /api/v1/tokens/{id}", g.authed(actOwnTokens, g.deleteToken))
	g.handle("GET /api/v1/audit", g.authed(actReadAudit, g.listAudit))
	g.handle("POST /api/v1/auth/passkeys/register/begin", g.authed(actOwnAccount, g.passkeyRegisterBegin))
	g.handle("POST /api/v1/auth/passkeys/register/finish", g.authed(actOwnAccount, g.passkeyRegisterFinish))
	g.handle("GET /api/v1/auth/passkeys", g.authed(actOwnAccount, g.listPasskeys))
	g.handle("DELETE /api/v1/auth/passkeys/{id}", g.authed(actOwnAccount, g.removePasskey))
	g.handle("GET /api/v1/events", http.HandlerFunc(g.serveEvents)) // authenticates itself, see events.go
	// The auth service checks the token again and acts only on its
	// bearer's own second factors.
	g.handle("GET /api/v1/auth/mfa", g.authed(actOwnAccount, g.mfaStatus))
	g.handle("POST /api/v1/auth/mfa/totp", g.authed(actOwnAccount, g.beginTOTP))
	g.handle("POST /api/v1/auth/mfa/totp/confirm", g.authed(actOwnAccount, g.confirmTOTP))
	g.handle("DELETE /api/v1/auth/mfa/totp", g.authed(actOwnAccount, g.disableTOTP))

	for _, p := range []string{"GET /healthz", "GET /readyz", "GET /metrics"} {
		g.handle(p, ops)
	}
}

// serve routes r, answering unknown routes and wrong methods with JSON
// errors rather than the mux's plain text.
func (g *Gateway) serve(w http.ResponseWriter, r *http.Request) {
	if _, pattern := g.mux.Handler(r); pattern == "" {
		if allow := g.allowed(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, r, g.log, &homemesh.Error{Kind: homemesh.KindInvalid,
				Message: "method " + r.Method + " not allowed here", Err: errMethodNotAllowed})
			return
		}
		writeError(w, r, g.log, homemesh.Errorf(homemesh.KindNotFound, "no such route"))
		return
	}
	g.mux.ServeHTTP(w, r)
}

// allowed lists the methods that some route accepts for r's path.
func (g *Gateway) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := g.mux.Handler(probe); pattern != "" {
			out = append(out, m)
		}
	}
	return out
}

// caller is who made an authenticated request.
type caller struct {
	claims auth.Claims
	token  string // the bearer's access token, handed on to services that act for them
}

type authedFunc func(w http.ResponseWriter, r *http.Request, c caller)

// authed requires a valid access token for this home whose role the policy
// table allows act, then calls h. Services that act for the caller (auth)
// check the caller's token again themselves.
func (g *Gateway) authed(act action, h authedFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, err := bearer(r)
		if err != nil {
			writeError(w, r, g.log, err)
			return
		}
		claims, err := g.verify(r.Context(), token)
		if err != nil {
			writeError(w, r, g.log, err)
			return
		}
		if !allows(claims.Role, act) {
			writeError(w, r, g.log, homemesh.Errorf(homemesh.KindPermission, "your role may not do this"))
			return
		}
		h(w, r, caller{claims: claims, token: token})
	})
}

// bearer extracts the access token from the Authorization header.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", homemesh.Errorf(homemesh.KindUnauthenticated, "an access token is required")
	}
	scheme, token, ok := strings.Cut(h, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", homemesh.Errorf(homemesh.KindUnauthenticated, "the Authorization header must be \"Bearer <access token>\"")
	}
	return token, nil
}

// verify checks token and that it was issued for this gateway's home.
func (g *Gateway) verify(ctx context.Context, token string) (auth.Claims, error) {
	if len(token) > 8<<10 {
		return auth.Claims{}, homemesh.Errorf(homemesh.KindUnauthenticated, "invalid access token")
	}
	claims, err := g.auth.VerifyAccessToken(ctx, token)
	if err != nil {
		return auth.Claims{}, err
	}
	if claims.Home != g.cfg.Home {
		return auth.Claims{}, homemesh.Errorf(homemesh.KindUnauthenticated, "invalid access token")
	}
	return claims, nil
}

// pathID returns the path value name, checked to be a valid identifier.
func pathID(r *http.Request, name string) (string, error) {
	id := r.PathValue(name)
	if err := homemesh.CheckID(name, id); err != nil {
		return "", err
	}
	return id, nil
}

func (g *Gateway) onboard(w http.ResponseWriter, r *http.Request) {
	var q onboardRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if err := g.auth.Onboard(r.Context(), q.Code, q.Username, q.Password); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("owner onboarded")
	writeJSON(w, http.StatusCreated, onboardResponse{Username: q.Username, Role: auth.RoleOwner})
}

type onboardResponse struct {
	Username string `json:"username"`
	Role     string `json:"role"`
}

func (g *Gateway) login(w http.ResponseWriter, r *http.Request) {
	var q loginRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	t, err := g.auth.LoginFrom(r.Context(), remoteIP(r), q.Username, q.Password, q.TOTP)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// remoteIP is the address a request came from, for login throttling: the
// peer of the connection. X-Forwarded-For is not read, because any client
// can send it; behind a reverse proxy every login shares the proxy's
// address. A peer that is not an IP address (a Unix socket) gives "",
// which auth counts as one shared source.
func remoteIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return ""
	}
	return ap.Addr().String()
}

func (g *Gateway) refresh(w http.ResponseWriter, r *http.Request) {
	var q refreshRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	t, err := g.auth.Refresh(r.Context(), q.RefreshToken)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (g *Gateway) listDevices(w http.ResponseWriter, r *http.Request, c caller) {
	ds, err := g.reg.Devices(r.Context())
	if err == nil {
		ds, err = g.visibleDevices(r.Context(), c, ds)
	}
	g.reply(w, r, ds, err)
}

func (g *Gateway) getDevice(w http.ResponseWriter, r *http.Request, c caller) {
	getByID(g, w, r, func(ctx context.Context, id string) (homemesh.Device, error) { return g.visibleDevice(ctx, c, id) })
}

// reply writes v as JSON with 200, or err as the error document. Lists
// from the registry client are never nil, so they encode as [].
func (g *Gateway) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// getByID answers GET …/{id} with what fetch returns for the path's ID.
func getByID[T any](g *Gateway, w http.ResponseWriter, r *http.Request, fetch func(context.Context, string) (T, error)) {
	id, err := pathID(r, "id")
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	v, err := fetch(r.Context(), id)
	g.reply(w, r, v, err)
}

func (g *Gateway) listEntities(w http.ResponseWriter, r *http.Request, c caller) {
	q := r.URL.Query()
	for k := range q {
		if k != "device_id" && k != "kind" {
			writeError(w, r, g.log, homemesh.Invalid(k, "unknown query parameter"))
			return
		}
	}
	var f registry.EntityFilter
	if v := q.Get("device_id"); v != "" {
		if err := homemesh.CheckID("device_id", v); err != nil {
			writeError(w, r, g.log, err)
			return
		}
		f.DeviceID = v
	}
	if v := q.Get("kind"); v != "" {
		if !homemesh.EntityKind(v).Valid() {
			writeError(w, r, g.log, homemesh.Invalid("kind", "unknown entity kind"))
			return
		}
		f.Kind = homemesh.EntityKind(v)
	}
	es, err := g.reg.Entities(r.Context(), f)
	if err == nil && !c.claims.Scope.IsZero() {
		var v *scopeView
		if v, err = g.scopeView(r.Context(), c.claims.Scope); err == nil {
			es = v.entities(es)
		}
	}
	g.reply(w, r, es, err)
}

func (g *Gateway) getEntity(w http.ResponseWriter, r *http.Request, c caller) {
	getByID(g, w, r, func(ctx context.Context, id string) (homemesh.Entity, error) { return g.visibleEntity(ctx, c, id) })
}

type commandResponse struct {
	Status string `json:"status"`
}

func (g *Gateway) command(w http.ResponseWriter, r *http.Request, c caller) {
	id, err := pathID(r, "id")
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	var q commandRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	e, err := g.reg.Entity(r.Context(), id)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if ok, err := g.callerSees(r.Context(), c, e); err != nil || !ok {
		if err == nil {
			// Refused as if it did not exist, and audited as what it is.
			g.auditCommand(r, c, e, q.Command, auth.AuditCommandDenied, auth.OutcomeDenied, "out of scope")
			err = errNoEntity(id)
		}
		writeError(w, r, g.log, err)
		return
	}
	if !mayCommand(c.claims.Role, e) {
		g.auditCommand(r, c, e, q.Command, auth.AuditCommandDenied, auth.OutcomeDenied, "role")
		g.log.Warn("command refused", "entity_id", e.ID, "command", q.Command, "user", c.claims.Username, "role", c.claims.Role)
		writeError(w, r, g.log, homemesh.Errorf(homemesh.KindPermission, "your role may not command a %s", e.Kind))
		return
	}
	cmd := homemesh.Command{HomeID: g.cfg.Home, EntityID: e.ID, Name: q.Command, Params: q.Params}
	ctx, cancel := context.WithTimeout(r.Context(), commandTimeout)
	defer cancel()
	err = g.bus.Request(ctx, bus.CommandSubject(g.cfg.Home, e.DeviceID, e.ID), cmd, nil)
	if isSecurity(e) {
		outcome, reason := auth.OutcomeSuccess, ""
		if err != nil {
			outcome, reason = auth.OutcomeFailure, string(homemesh.ErrorKind(err))
		}
		g.auditCommand(r, c, e, q.Command, auth.AuditCommand, outcome, reason)
	}
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("command sent", "entity_id", e.ID, "device_id", e.DeviceID, "command", q.Command, "user", c.claims.Username)
	writeJSON(w, http.StatusAccepted, commandResponse{Status: "sent"})
}

func (g *Gateway) createCredential(w http.ResponseWriter, r *http.Request, c caller) {
	var q credentialRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	cred, err := g.auth.CreateCredential(r.Context(), c.token, q.Name, q.Allow)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, cred)
}

func (g *Gateway) listCredentials(w http.ResponseWriter, r *http.Request, c caller) {
	creds, err := g.auth.ListCredentials(r.Context(), c.token)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	if creds == nil {
		creds = []auth.Credential{}
	}
	for i := range creds {
		creds[i].Password = "" // never listed, whatever the service sends
	}
	writeJSON(w, http.StatusOK, creds)
}

func (g *Gateway) deleteCredential(w http.ResponseWriter, r *http.Request, c caller) {
	username := r.PathValue("username")
	if username == "" || len(username) > 128 {
		writeError(w, r, g.log, homemesh.Invalid("username", "is required"))
		return
	}
	if err := g.auth.DeleteCredential(r.Context(), c.token, username); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) createPairing(w http.ResponseWriter, r *http.Request, c caller) {
	var q pairingRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	p, err := g.auth.CreatePairing(r.Context(), c.token, q.Name, q.Allow)
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (g *Gateway) claimPairing(w http.ResponseWriter, r *http.Request) {
	var q pairingClaimRequest
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, r, g.log, err)
		return
	}
	// The source address bounds how often codes may be tried from it.
	source, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		source = r.RemoteAddr
	}
	claim, err := g.auth.Claim(r.Context(), auth.ClaimRequest{Code: q.Code, CSR: q.CSR, MeshKey: q.MeshKey, MeshRole: q.MeshRole, Source: source})
	if err != nil {
		writeError(w, r, g.log, err)
		return
	}
	g.log.Info("device paired", "identity", claim.Identity)
	writeJSON(w, http.StatusCreated, claim)
}
