package auth

import "time"

// user is the stored record of a person.
type user struct {
	ID           string    `json:"id"`
	Username     string    `json:"username"`
	Role         string    `json:"role"`
	Scope        Scope     `json:"scope,omitzero"`
	PasswordHash string    `json:"password_hash"`
	CreatedAt    time.Time `json:"created_at"`
	// TokensNotBefore revokes every access and refresh token issued before
	// it (log out everywhere, a role change).
	TokensNotBefore time.Time `json:"tokens_not_before,omitzero"`
	// Passkeys are the person's WebAuthn credentials, oldest first.
	Passkeys []passkeyRecord `json:"passkeys,omitempty"`

	// TOTPSecret is the enabled TOTP key, sealed with the purpose
	// "totp.<ID>"; TOTPPending is one being enrolled, sealed the same way,
	// until its first code confirms it.
	TOTPSecret  []byte `json:"totp_secret,omitempty"`
	TOTPPending []byte `json:"totp_pending,omitempty"`
	// TOTPLastStep is the 30-second step of the last accepted code; codes
	// of that step or earlier are refused, so each works once.
	TOTPLastStep int64 `json:"totp_last_step,omitempty"`
	// RecoveryHashes are the SHA-256 hashes of the unused recovery codes.
	RecoveryHashes [][]byte `json:"recovery_hashes,omitempty"`
}
