package auth

import (
	"context"
	"testing"

	"github.com/homemesh/homemesh"
)

// TestLogout ends one session: its refresh token and every one refreshed
// from it die; another session of the same user lives on.
func TestLogout(t *testing.T) {
	_, in, first := onboarded(t)
	ctx := context.Background()
	other, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	next, err := in.client.Refresh(ctx, first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.client.Logout(ctx, "192.0.2.1", first.RefreshToken); err != nil {
		t.Fatalf("Logout with a spent token of the session: %v", err)
	}
	_, err = in.client.Refresh(ctx, next.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)

	// Idempotent, and silent about tokens it does not know.
	for _, tc := range []struct{ name, token string }{
		{"again", next.RefreshToken},
		{"unknown", "hmr_unknown"},
		{"garbage", "garbage"},
		{"empty", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := in.client.Logout(ctx, "", tc.token); err != nil {
				t.Errorf("Logout: %v", err)
			}
		})
	}
	err = in.client.Logout(ctx, "not an address", other.RefreshToken)
	wantKind(t, err, homemesh.KindInvalid)
	if homemesh.ErrorField(err) != "source" {
		t.Errorf("field = %q", homemesh.ErrorField(err))
	}
	if _, err := in.client.Refresh(ctx, other.RefreshToken); err != nil {
		t.Errorf("the other session ended too: %v", err)
	}
}

// TestRevokeAll logs a user out everywhere through the bus verb.
func TestRevokeAll(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	other, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, in.client.RevokeAll(ctx, "", "forged"), homemesh.KindUnauthenticated)
	if err := in.client.RevokeAll(ctx, "192.0.2.1", tok.AccessToken); err != nil {
		t.Fatalf("RevokeAll: %v", err)
	}
	for _, access := range []string{tok.AccessToken, other.AccessToken} {
		_, err := in.client.VerifyAccessToken(ctx, access)
		wantKind(t, err, homemesh.KindUnauthenticated)
	}
	for _, refresh := range []string{tok.RefreshToken, other.RefreshToken} {
		_, err := in.client.Refresh(ctx, refresh)
		wantKind(t, err, homemesh.KindUnauthenticated)
	}
	// The revoked token cannot revoke again.
	wantKind(t, in.client.RevokeAll(ctx, "", tok.AccessToken), homemesh.KindUnauthenticated)
}
