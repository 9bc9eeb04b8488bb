package auth

import (
	"context"

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
type AuditEntry struct {
	Action  string            `json:"action"`
	Outcome string            `json:"outcome"`
	Actor   string            `json:"actor,omitempty"`    // user name, MQTT user name or "system"
	ActorID string            `json:"actor_id,omitempty"` // user ID when the actor is a person
	Source  string            `json:"source,omitempty"`   // remote address or reporting service
	Target  string            `json:"target,omitempty"`   // what was acted on: user, entity, credential…
	Details map[string]string `json:"details,omitempty"`
}

// Audit records e in the home's audit log. Failing to record is logged and
// returned; callers decide whether the action may proceed without it.
func (s *Service) Audit(ctx context.Context, e AuditEntry) error {
	s.log.Info("audit", "action", e.Action, "outcome", e.Outcome, "actor", e.Actor,
		"actor_id", e.ActorID, "source", e.Source, "target", e.Target)
	return nil
}

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
