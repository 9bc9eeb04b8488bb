package auth

import (
	"context"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
)

func TestRevokeUserTokens(t *testing.T) {
	s, in, tok := onboarded(t)
	ctx := context.Background()
	// A verifier in another process, already holding the token as valid.
	other := NewClient(bustest.Conn(t, s))
	if _, err := other.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
		t.Fatalf("verify before revocation: %v", err)
	}

	if _, err := in.svc.RevokeUserTokens(ctx, testOwner); err != nil {
		t.Fatal(err)
	}
	// The event reaches the verifier; its cached verdict no longer counts.
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err = other.VerifyAccessToken(ctx, tok.AccessToken); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantKind(t, err, homemesh.KindUnauthenticated)
	// A verifier that starts after the revocation learns it from the list.
	late := NewClient(bustest.Conn(t, s))
	_, err = late.VerifyAccessToken(ctx, tok.AccessToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	// The service itself refuses the old token for privileged calls, and the
	// old refresh token is void too.
	_, err = in.client.ListCredentials(ctx, tok.AccessToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.Refresh(ctx, tok.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)

	// Logging in again at once gives tokens that work everywhere.
	fresh, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Client{other, late, in.client} {
		if _, err := c.VerifyAccessToken(ctx, fresh.AccessToken); err != nil {
			t.Fatalf("fresh token refused: %v", err)
		}
	}
	if _, err := in.client.ListCredentials(ctx, fresh.AccessToken); err != nil {
		t.Fatalf("fresh token refused by the service: %v", err)
	}
	if _, err := in.client.Refresh(ctx, fresh.RefreshToken); err != nil {
		t.Fatalf("fresh refresh token refused: %v", err)
	}

	_, err = in.svc.RevokeUserTokens(ctx, "nobody")
	wantKind(t, err, homemesh.KindNotFound)
}
