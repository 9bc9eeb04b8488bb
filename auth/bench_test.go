package auth

import (
	"context"
	"testing"
)

// BenchmarkLogin measures a whole successful login over the bus: the
// throttle check, the argon2id verification (m = 19 MiB, t = 2, p = 1),
// signing the access token and storing the refresh token.
func BenchmarkLogin(b *testing.B) {
	_, in, _ := onboarded(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.client.Login(ctx, testOwner, testPassword, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPasswordVerify measures the argon2id verification alone.
func BenchmarkPasswordVerify(b *testing.B) {
	hash := hashPassword(testPassword)
	b.ReportAllocs()
	for b.Loop() {
		if !verifyPassword(hash, testPassword) {
			b.Fatal("password refused")
		}
	}
}

// BenchmarkVerifyIntegrationToken measures what a gateway pays per request
// with an integration token: after the first call, a cache hit.
func BenchmarkVerifyIntegrationToken(b *testing.B) {
	in, it := integrationToken(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := in.client.VerifyAccessToken(ctx, it.Token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyIntegrationTokenUncached measures the answer from the auth
// service: a bus round trip, two KV reads and a SHA-256.
func BenchmarkVerifyIntegrationTokenUncached(b *testing.B) {
	in, it := integrationToken(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		var c Claims
		if err := in.conn.Request(ctx, subject(VerbVerifyToken), verifyTokenRequest{Token: it.Token}, &c); err != nil {
			b.Fatal(err)
		}
	}
}
