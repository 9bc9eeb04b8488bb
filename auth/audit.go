package auth

import (
	"context"

	"github.com/homemesh/homemesh/audit"
	"github.com/nats-io/nats.go"
)

// The audit log's vocabulary: every security-relevant action has one name.
const (
	AuditOnboarded          = "onboarded"
	AuditLogin              = "login"
	AuditLoginFailed        = "login_failed"
	AuditLoginThrottled     = "login_throttled"
	AuditLogout             = "logout"
	AuditSessionsRevoked    = "sessions_revoked"
	AuditRefreshReuse       = "refresh_token_reused"
	AuditMFAEnrolled        = "mfa_enrolled"
	AuditMFADisabled        = "mfa_disabled"
	AuditMFAReset           = "mfa_reset"
	AuditRecoveryCodeUsed   = "recovery_code_used"
	AuditPasskeyAdded       = "passkey_added"
	AuditPasskeyRemoved     = "passkey_removed"
	AuditUserCreated        = "user_created"
	AuditUserChanged        = "user_changed"
	AuditUserDeleted        = "user_deleted"
	AuditPairingCreated     = "pairing_created"
	AuditPairingClaimed     = "pairing_claimed"
	AuditCredentialCreated  = "credential_created"
	AuditCredentialRevoked  = "credential_revoked"
	AuditCertificateIssued  = "certificate_issued"
	AuditCertificateRevoked = "certificate_revoked"
	AuditTokenCreated       = "token_created"
	AuditTokenRevoked       = "token_revoked"
	AuditKeyRotated         = "key_rotated"
	AuditCommand            = "command"
	AuditCommandDenied      = "command_denied"
	AuditDeviceThrottled    = "device_throttled"
	AuditMeshNodeRevoked    = "mesh_node_revoked"
)

// Audit outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
	OutcomeDenied  = "denied"
)

// AuditEntry is one security-relevant action as its reporter describes it.
// The audit log adds the sequence number, time and hash chain. Nothing
// secret may go into an entry: no passwords, codes, tokens or keys.
type AuditEntry = audit.Entry

// AuditRecord is an entry as the audit log keeps it: numbered, timed and
// hash-chained.
type AuditRecord = audit.Record

// Audit records e in the home's audit log. Failing to record is logged and
// returned; callers decide whether the action may proceed without it.
func (s *Service) Audit(ctx context.Context, e AuditEntry) error {
	rec, err := s.audit.Append(ctx, e)
	if err != nil {
		s.log.Error("audit record lost", "action", e.Action, "outcome", e.Outcome, "actor", safeLogName(e.Actor),
			"target", safeLogName(e.Target), "err", err)
		return err
	}
	s.log.Debug("audit", "seq", rec.Seq, "action", rec.Action, "outcome", rec.Outcome)
	return nil
}

// AuditLog is the home's audit log, for maintenance (verification) in the
// process that owns this service.
func (s *Service) AuditLog() *audit.Log { return s.audit }

func (s *Service) handleAuditAppend(ctx context.Context, msg *nats.Msg) (any, error) {
	var e AuditEntry
	if err := decode(msg, &e); err != nil {
		return nil, err
	}
	return struct{}{}, s.Audit(ctx, e)
}

// Audit asks the auth service to record e in the audit log, for services
// that witness security-relevant actions (a command to a lock, a throttled
// device).
func (c *Client) Audit(ctx context.Context, e AuditEntry) error {
	return c.conn.Request(ctx, subject(VerbAuditAppend), e, nil)
}

// AuditQuery selects audit records; see ListAudit.
type AuditQuery = audit.Query

// AuditPage is one page of audit records in sequence order. Next, when not
// zero, is the AfterSeq of the following page.
type AuditPage = audit.Page

func (s *Service) handleAuditList(ctx context.Context, msg *nats.Msg) (any, error) {
	req, _, err := decodeAuthorized[auditListRequest](s, ctx, msg, RoleOwner, RoleAdmin)
	if err != nil {
		return nil, err
	}
	q := AuditQuery{Action: req.Action, AfterSeq: req.AfterSeq, Limit: req.Limit}
	if req.From != nil {
		q.From = *req.From
	}
	if req.To != nil {
		q.To = *req.To
	}
	return s.audit.List(ctx, q)
}

// ListAudit returns one page of the audit log, acting as the bearer of
// accessToken, who must be an owner or an admin. Bad query fields are
// KindInvalid naming the field (from, to, action, after_seq, limit).
func (c *Client) ListAudit(ctx context.Context, accessToken string, q AuditQuery) (AuditPage, error) {
	req := auditListRequest{bearer: bearer{accessToken}, Action: q.Action, AfterSeq: q.AfterSeq, Limit: q.Limit}
	if !q.From.IsZero() {
		req.From = &q.From
	}
	if !q.To.IsZero() {
		req.To = &q.To
	}
	var p AuditPage
	err := c.conn.Request(ctx, subject(VerbAuditList), req, &p)
	return p, err
}
