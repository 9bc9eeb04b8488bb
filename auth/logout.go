package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type logoutRequest struct {
	RefreshToken string `json:"refresh_token"`
	Source       string `json:"source,omitempty"` // for the audit log
}

type revokeAllRequest struct {
	bearer
	Source string `json:"source,omitempty"` // for the audit log
}

// auditSource checks a request's source address, which only goes into the
// audit log.
func auditSource(source string) (string, error) {
	if source == "" {
		return "", nil
	}
	addr, err := netip.ParseAddr(source)
	if err != nil || len(source) > 64 {
		return "", homemesh.Invalid("source", "must be an IP address")
	}
	return addr.WithZone("").Unmap().String(), nil
}

// handleLogout ends the session a refresh token belongs to: its family is
// revoked, so neither it nor any token refreshed from it works again. It is
// idempotent, and says nothing about tokens it does not know.
func (s *Service) handleLogout(ctx context.Context, msg *nats.Msg) (any, error) {
	var req logoutRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	source, err := auditSource(req.Source)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(req.RefreshToken, refreshPrefix) || len(req.RefreshToken) > 128 {
		return struct{}{}, nil
	}
	e, err := s.refreshKV.Get(ctx, refreshKey(req.RefreshToken))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return struct{}{}, nil
	}
	if err != nil {
		return nil, unavailable("read refresh token", err)
	}
	var rec refreshRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return nil, fmt.Errorf("decode refresh record: %w", err)
	}
	switch _, err := s.refreshKV.Get(ctx, familyKey(rec.Family)); {
	case err == nil:
		return struct{}{}, nil // logged out already
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, unavailable("read refresh family", err)
	}
	if err := s.markFamilyRevoked(ctx, rec.Family); err != nil {
		return nil, err
	}
	s.log.Info("logout", "username", rec.Username, "user_id", rec.UserID, "source", source)
	s.Audit(ctx, AuditEntry{Action: AuditLogout, Outcome: OutcomeSuccess, Actor: rec.Username, ActorID: rec.UserID, Source: source})
	return struct{}{}, nil
}

// handleRevokeAll logs the caller out everywhere: every access, refresh and
// integration token they hold stops working at once.
func (s *Service) handleRevokeAll(ctx context.Context, msg *nats.Msg) (any, error) {
	var req revokeAllRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	source, err := auditSource(req.Source)
	if err != nil {
		return nil, err
	}
	actor, err := s.authorize(ctx, req.AccessToken, everyRole...)
	if err != nil {
		return nil, err
	}
	notBefore, err := s.RevokeUserTokens(ctx, actor.Username)
	if err != nil {
		return nil, err
	}
	s.Audit(ctx, AuditEntry{Action: AuditSessionsRevoked, Outcome: OutcomeSuccess, Actor: actor.Username,
		ActorID: actor.UserID, Source: source, Target: actor.Username})
	// The revocation goes back to the caller too: its event may reach the
	// caller's subscription after this reply, and the caller's next
	// request must already be refused.
	return Revocation{UserID: actor.UserID, NotBefore: notBefore}, nil
}

// Logout ends the session refreshToken belongs to: it and every refresh
// token descended from the same login stop working. Access tokens already
// issued live on until they expire; RevokeAll ends those too. Unknown and
// already ended sessions are not an error. source is the caller's address,
// for the audit log ("" when unknown).
func (c *Client) Logout(ctx context.Context, source, refreshToken string) error {
	return c.conn.Request(ctx, subject(VerbLogout), logoutRequest{RefreshToken: refreshToken, Source: source}, nil)
}

// RevokeAll logs the bearer of accessToken out everywhere: every access,
// refresh and integration token they hold stops working at once, in every
// process. source is the caller's address, for the audit log.
func (c *Client) RevokeAll(ctx context.Context, source, accessToken string) error {
	var rev Revocation
	if err := c.conn.Request(ctx, subject(VerbRevokeAll), revokeAllRequest{bearer: bearer{accessToken}, Source: source}, &rev); err != nil {
		return err
	}
	if rev.UserID != "" {
		c.revoked.add(rev)
	}
	return nil
}
