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
}
