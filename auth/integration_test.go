package auth

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
)

func TestIntegrationTokenRequests(t *testing.T) {
	_, in, owner := onboarded(t)
	ctx := context.Background()
	kitchen := Scope{Rooms: []string{"kitchen"}}
	member := addUser(t, in, "bob", RoleMember, kitchen)
	guest := addUser(t, in, "gus", RoleGuest, Scope{})
	for _, tc := range []struct {
		name   string
		access string
		req    TokenRequest
		kind   homemesh.Kind
		field  string
	}{
		{"no name", owner.AccessToken, TokenRequest{}, homemesh.KindInvalid, "name"},
		{"unknown role", owner.AccessToken, TokenRequest{Name: "x", Role: "king"}, homemesh.KindInvalid, "role"},
		{"too long", owner.AccessToken, TokenRequest{Name: "x", ExpiresInDays: MaxIntegrationTokenDays + 1}, homemesh.KindInvalid, "expires_in_days"},
		{"negative lifetime", owner.AccessToken, TokenRequest{Name: "x", ExpiresInDays: -1}, homemesh.KindInvalid, "expires_in_days"},
		{"unknown kind", owner.AccessToken, TokenRequest{Name: "x", Scope: &Scope{Kinds: []string{"toaster"}}}, homemesh.KindInvalid, "scope.kinds[0]"},
		{"bad room", owner.AccessToken, TokenRequest{Name: "x", Scope: &Scope{Rooms: []string{"ok", "Not OK"}}}, homemesh.KindInvalid, "scope.rooms[1]"},
		{"role above the creator's", member.AccessToken, TokenRequest{Name: "x", Role: RoleAdmin}, homemesh.KindPermission, ""},
		{"scope beyond the creator's", member.AccessToken, TokenRequest{Name: "x", Scope: &Scope{Rooms: []string{"garage"}}}, homemesh.KindPermission, ""},
		{"unlimited scope for a limited creator", member.AccessToken, TokenRequest{Name: "x", Scope: &Scope{Kinds: []string{"light"}}}, homemesh.KindPermission, ""},
		{"a guest", guest.AccessToken, TokenRequest{Name: "x"}, homemesh.KindPermission, ""},
		{"forged access token", "forged", TokenRequest{Name: "x"}, homemesh.KindUnauthenticated, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := in.client.CreateToken(ctx, tc.access, tc.req)
			wantKind(t, err, tc.kind)
			if got := homemesh.ErrorField(err); got != tc.field {
				t.Errorf("field = %q, want %q", got, tc.field)
			}
		})
	}

	// Within the creator's limits: a member's token inherits the scope, or
	// narrows it.
	inherited, err := in.client.CreateToken(ctx, member.AccessToken, TokenRequest{Name: "kitchen display"})
	if err != nil {
		t.Fatal(err)
	}
	if inherited.Role != RoleMember || len(inherited.Scope.Rooms) != 1 || inherited.Scope.Rooms[0] != "kitchen" {
		t.Errorf("inherited token = %+v", inherited)
	}
	narrow := Scope{Rooms: []string{"kitchen"}, Kinds: []string{"light"}}
	lights, err := in.client.CreateToken(ctx, member.AccessToken, TokenRequest{Name: "lights", Role: RoleGuest, Scope: &narrow, ExpiresInDays: 7})
	if err != nil {
		t.Fatal(err)
	}
	if lights.Role != RoleGuest || !lights.ExpiresAt.Equal(lights.CreatedAt.Add(7*24*time.Hour)) {
		t.Errorf("narrow token = %+v", lights)
	}
	c, err := in.client.VerifyAccessToken(ctx, lights.Token)
	if err != nil {
		t.Fatal(err)
	}
	if c.Role != RoleGuest || c.Username != "bob" || c.UserID != "id-bob" || c.TokenID != lights.ID || c.Home != testHome ||
		len(c.Scope.Kinds) != 1 || len(c.Scope.Rooms) != 1 {
		t.Errorf("claims = %+v", c)
	}
	// An integration token cannot make tokens, list them, or log anyone out.
	_, err = in.client.CreateToken(ctx, lights.Token, TokenRequest{Name: "y"})
	wantKind(t, err, homemesh.KindPermission)
	_, err = in.client.ListTokens(ctx, lights.Token)
	wantKind(t, err, homemesh.KindPermission)
	wantKind(t, in.client.RevokeAll(ctx, "", lights.Token), homemesh.KindPermission)
}

func TestIntegrationTokenLifecycle(t *testing.T) {
	s, in, owner := onboarded(t)
	ctx := context.Background()
	member := addUser(t, in, "bob", RoleMember, Scope{})
	admin := addUser(t, in, "ada", RoleAdmin, Scope{})
	mine, err := in.client.CreateToken(ctx, owner.AccessToken, TokenRequest{Name: "home assistant"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(mine.Token, "hmi_") || len(mine.Token) != 47 || mine.Role != RoleOwner || mine.Username != testOwner {
		t.Fatalf("token = %+v", mine)
	}
	if d := mine.ExpiresAt.Sub(mine.CreatedAt); d != DefaultIntegrationTokenDays*24*time.Hour {
		t.Errorf("lifetime = %v", d)
	}
	bobs, err := in.client.CreateToken(ctx, member.AccessToken, TokenRequest{Name: "script"})
	if err != nil {
		t.Fatal(err)
	}

	// Lists: the owner sees all, others their own; never a secret.
	ids := func(access string) []string {
		t.Helper()
		list, err := in.client.ListTokens(ctx, access)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, tk := range list {
			if tk.Token != "" {
				t.Errorf("list shows the secret of %s", tk.ID)
			}
			out = append(out, tk.ID)
		}
		return out
	}
	if got := ids(owner.AccessToken); len(got) != 2 || got[0] != mine.ID || got[1] != bobs.ID {
		t.Errorf("owner lists %v", got)
	}
	if got := ids(member.AccessToken); len(got) != 1 || got[0] != bobs.ID {
		t.Errorf("member lists %v", got)
	}
	if got := ids(admin.AccessToken); len(got) != 0 {
		t.Errorf("admin lists %v", got)
	}

	// A verifier in another process caches the answer; deleting the token
	// reaches it at once through the event.
	other := NewClient(bustest.Conn(t, s))
	for range 2 {
		if _, err := other.VerifyAccessToken(ctx, mine.Token); err != nil {
			t.Fatalf("verify: %v", err)
		}
	}
	wantKind(t, in.client.DeleteToken(ctx, member.AccessToken, mine.ID), homemesh.KindNotFound)
	wantKind(t, in.client.DeleteToken(ctx, member.AccessToken, "nope"), homemesh.KindInvalid)
	if err := in.client.DeleteToken(ctx, owner.AccessToken, mine.ID); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the deletion to reach the other verifier", func() bool {
		_, err := other.VerifyAccessToken(ctx, mine.Token)
		return homemesh.ErrorKind(err) == homemesh.KindUnauthenticated
	})
	wantKind(t, in.client.DeleteToken(ctx, owner.AccessToken, mine.ID), homemesh.KindNotFound)
	// An admin may delete anyone's.
	if _, err := other.VerifyAccessToken(ctx, bobs.Token); err != nil {
		t.Fatal(err)
	}
	if err := in.client.DeleteToken(ctx, admin.AccessToken, bobs.ID); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the admin's deletion to reach the other verifier", func() bool {
		_, err := other.VerifyAccessToken(ctx, bobs.Token)
		return homemesh.ErrorKind(err) == homemesh.KindUnauthenticated
	})

	for _, bad := range []string{"hmi_", "hmi_" + strings.Repeat("A", 43), "hmi_" + strings.Repeat("A", 200), mine.Token + "x"} {
		_, err := other.VerifyAccessToken(ctx, bad)
		wantKind(t, err, homemesh.KindUnauthenticated)
	}
}

// TestIntegrationTokensDieWithTheirUser: logging out everywhere, deleting
// the user, a lower role and expiry all stop an integration token.
func TestIntegrationTokensDieWithTheirUser(t *testing.T) {
	s, in, _ := onboarded(t)
	ctx := context.Background()
	member := addUser(t, in, "bob", RoleMember, Scope{})
	create := func(name string) IntegrationToken {
		t.Helper()
		tk, err := in.client.CreateToken(ctx, member.AccessToken, TokenRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	other := NewClient(bustest.Conn(t, s))

	revoked := create("revoked")
	if _, err := other.VerifyAccessToken(ctx, revoked.Token); err != nil {
		t.Fatal(err)
	}
	if _, err := in.svc.RevokeUserTokens(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the revocation to reach the other verifier", func() bool {
		_, err := other.VerifyAccessToken(ctx, revoked.Token)
		return homemesh.ErrorKind(err) == homemesh.KindUnauthenticated
	})
	member, err := in.client.Login(ctx, "bob", testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	if list, err := in.client.ListTokens(ctx, member.AccessToken); err != nil || len(list) != 0 {
		t.Errorf("after revocation, bob lists %+v, %v", list, err)
	}

	setRole := func(role string) {
		t.Helper()
		u, _, err := in.svc.getUser(ctx, "bob")
		if err != nil {
			t.Fatal(err)
		}
		u.Role = role
		rec, _ := json.Marshal(u)
		if _, err := in.svc.usersKV.Put(ctx, userKey("bob"), rec); err != nil {
			t.Fatal(err)
		}
	}
	demoted := create("demoted")
	setRole(RoleGuest)
	if c, err := NewClient(bustest.Conn(t, s)).VerifyAccessToken(ctx, demoted.Token); err != nil || c.Role != RoleGuest {
		t.Errorf("after a demotion: %+v, %v; want role guest", c, err)
	}

	setRole(RoleMember)
	orphan := create("orphan")
	if err := in.svc.usersKV.Purge(ctx, userKey("bob")); err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(bustest.Conn(t, s)).VerifyAccessToken(ctx, orphan.Token)
	wantKind(t, err, homemesh.KindUnauthenticated)

	// A stored token past its expiry.
	member = addUser(t, in, "bob", RoleMember, Scope{})
	old := create("old")
	e, err := in.svc.tokensKV.Get(ctx, old.ID)
	if err != nil {
		t.Fatal(err)
	}
	var stored integrationRecord
	json.Unmarshal(e.Value(), &stored)
	stored.ExpiresAt = time.Now().Add(-time.Second)
	val, _ := json.Marshal(stored)
	if _, err := in.svc.tokensKV.Put(ctx, old.ID, val); err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(bustest.Conn(t, s)).VerifyAccessToken(ctx, old.Token)
	wantKind(t, err, homemesh.KindUnauthenticated)
}

func TestScopeWithin(t *testing.T) {
	kitchen := Scope{Rooms: []string{"kitchen"}}
	tests := []struct {
		name         string
		inner, outer Scope
		want         bool
	}{
		{"both unlimited", Scope{}, Scope{}, true},
		{"narrower than unlimited", kitchen, Scope{}, true},
		{"unlimited within a room", Scope{}, kitchen, false},
		{"same room", kitchen, kitchen, true},
		{"other room", Scope{Rooms: []string{"garage"}}, kitchen, false},
		{"room and kind within room", Scope{Rooms: []string{"kitchen"}, Kinds: []string{"light"}}, kitchen, true},
		{"kind only within room", Scope{Kinds: []string{"light"}}, kitchen, false},
		{"two rooms within one", Scope{Rooms: []string{"kitchen", "garage"}}, kitchen, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := scopeWithin(tt.inner, tt.outer); got != tt.want {
				t.Errorf("scopeWithin = %v, want %v", got, tt.want)
			}
		})
	}
}
