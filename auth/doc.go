// Package auth is the homemesh security service and the only holder of
// secrets: user passwords, the token signing keys, the home CA and the MQTT
// device credentials.
//
// The service answers request/reply calls on hm.svc.auth.<verb> (queue group
// "auth"); other services use Client. All shared state lives in JetStream
// key-value buckets, and key material is sealed with the secret key
// (XChaCha20-Poly1305) before it is stored, so any number of auth processes
// holding the same secret key serve the same users, tokens and CA, in the
// all-in-one hub and in split mode alike.
//
// Guarantees:
//   - Passwords are stored as argon2id hashes (at least OWASP parameters);
//     login failures are indistinguishable for unknown users and wrong
//     passwords, and are throttled per user name across processes.
//   - Access tokens are short-lived EdDSA JWTs that anyone can verify
//     locally with the public keys from the "keys" verb; refresh tokens are
//     opaque, stored hashed, rotate on use, and a reused one revokes its
//     whole family.
//   - Calls acting for a person carry that person's access token, which the
//     service verifies itself: nothing trusts claims relayed over the bus.
//   - Secrets are never logged.
package auth
