package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/bus/bustest"
	"github.com/homemesh/homemesh/internal/hmtest"
)

func ptr[T any](v T) *T { return &v }

// loginAs logs name in and returns the access token.
func loginAs(t *testing.T, in *instance, name, password string) Tokens {
	t.Helper()
	tok, err := in.client.Login(context.Background(), name, password, "")
	if err != nil {
		t.Fatalf("login %s: %v", name, err)
	}
	return tok
}

// people creates an admin, a member and a guest as the owner and returns
// their access tokens by role.
func people(t *testing.T, in *instance, owner string) map[string]string {
	t.Helper()
	ctx := context.Background()
	toks := map[string]string{RoleOwner: owner}
	for _, role := range []string{RoleAdmin, RoleMember, RoleGuest} {
		if _, err := in.client.CreateUser(ctx, owner, NewUser{Username: role + "1", Password: testPassword, Role: role}); err != nil {
			t.Fatalf("create %s: %v", role, err)
		}
		toks[role] = loginAs(t, in, role+"1", testPassword).AccessToken
	}
	return toks
}

func TestUserManagementRules(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	toks := people(t, in, tok.AccessToken)
	// Targets for every role, created fresh for each case that changes
	// them, so cases do not depend on one another.
	n := 0
	fresh := func(role string) string {
		n++
		name := fmt.Sprintf("target%d-%s", n, role)
		if _, err := in.client.CreateUser(ctx, tok.AccessToken, NewUser{Username: name, Password: testPassword, Role: role}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		return name
	}
	roles := []string{RoleOwner, RoleAdmin, RoleMember, RoleGuest}
	for _, actor := range roles {
		for _, target := range roles {
			allowed := mayManage(actor, target)
			want := homemesh.Kind("")
			if !allowed {
				want = homemesh.KindPermission
			}
			t.Run(actor+" creates "+target, func(t *testing.T) {
				_, err := in.client.CreateUser(ctx, toks[actor], NewUser{Username: "new-" + actor + "-" + target, Password: testPassword, Role: target})
				checkKind(t, err, want)
			})
			t.Run(actor+" changes the scope of "+target, func(t *testing.T) {
				_, err := in.client.UpdateUser(ctx, toks[actor], fresh(target), UserUpdate{Scope: &Scope{Kinds: []string{"light"}}})
				checkKind(t, err, want)
			})
			t.Run(actor+" deletes "+target, func(t *testing.T) {
				checkKind(t, in.client.DeleteUser(ctx, toks[actor], fresh(target)), want)
			})
			t.Run(actor+" promotes a guest to "+target, func(t *testing.T) {
				_, err := in.client.UpdateUser(ctx, toks[actor], fresh(RoleGuest), UserUpdate{Role: ptr(target)})
				checkKind(t, err, want)
			})
		}
		t.Run(actor+" lists users", func(t *testing.T) {
			_, err := in.client.ListUsers(ctx, toks[actor])
			checkKind(t, err, map[bool]homemesh.Kind{true: "", false: homemesh.KindPermission}[actor == RoleOwner || actor == RoleAdmin])
		})
		t.Run(actor+" reads their own profile", func(t *testing.T) {
			name := testOwner
			if actor != RoleOwner {
				name = actor + "1"
			}
			u, err := in.client.GetUser(ctx, toks[actor], name)
			if err != nil || u.Role != actor || u.Username != name {
				t.Fatalf("GetUser = %+v, %v", u, err)
			}
		})
		t.Run(actor+" reads the owner's profile", func(t *testing.T) {
			_, err := in.client.GetUser(ctx, toks[actor], testOwner)
			checkKind(t, err, map[bool]homemesh.Kind{true: "", false: homemesh.KindPermission}[actor == RoleOwner || actor == RoleAdmin])
		})
	}
}

func checkKind(t *testing.T, err error, want homemesh.Kind) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("error = %v, want none", err)
		}
		return
	}
	wantKind(t, err, want)
}

func TestUserLifecycle(t *testing.T) {
	var logs hmtest.LogBuffer
	s := bustest.Server(t)
	in := startWith(t, s, t.TempDir(), slog.New(slog.NewJSONHandler(&logs, nil)))
	ctx := context.Background()
	if err := in.client.Onboard(ctx, in.svc.OnboardingCode(), testOwner, testPassword); err != nil {
		t.Fatal(err)
	}
	owner := loginAs(t, in, testOwner, testPassword).AccessToken

	scope := Scope{Rooms: []string{"living_room"}, Kinds: []string{"light"}}
	created, err := in.client.CreateUser(ctx, owner, NewUser{Username: "Bob", Password: testPassword, Role: RoleGuest, Scope: &scope})
	if err != nil {
		t.Fatal(err)
	}
	want := User{ID: created.ID, Username: "bob", Role: RoleGuest, Scope: scope, CreatedAt: created.CreatedAt}
	if diff := cmp.Diff(want, created); diff != "" || created.ID == "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	_, err = in.client.CreateUser(ctx, owner, NewUser{Username: "bob", Password: testPassword, Role: RoleGuest})
	wantKind(t, err, homemesh.KindConflict)

	// The guest's token carries the scope; the list never carries a hash.
	bob := loginAs(t, in, "bob", testPassword)
	claims, err := in.client.VerifyAccessToken(ctx, bob.AccessToken)
	if err != nil || !cmp.Equal(claims.Scope, scope) || claims.Role != RoleGuest {
		t.Fatalf("claims = %+v, %v", claims, err)
	}
	list, err := in.client.ListUsers(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), "argon2") || strings.Contains(string(raw), "password") {
		t.Fatalf("the user list shows a secret: %s", raw)
	}
	if len(list) != 2 || list[0].Username != testOwner || list[1].Username != "bob" {
		t.Fatalf("list = %+v", list)
	}

	// A role change voids the old token at once; the next login carries
	// the new role and scope.
	up, err := in.client.UpdateUser(ctx, owner, "bob", UserUpdate{Role: ptr(RoleMember), Scope: &Scope{}})
	if err != nil || up.Role != RoleMember || !up.Scope.IsZero() {
		t.Fatalf("update = %+v, %v", up, err)
	}
	hmtest.WaitFor(t, 5*time.Second, "the old token to be refused", func() bool {
		_, err := in.client.VerifyAccessToken(ctx, bob.AccessToken)
		return err != nil
	})
	bob = loginAs(t, in, "bob", testPassword)
	if claims, _ := in.client.VerifyAccessToken(ctx, bob.AccessToken); claims.Role != RoleMember || !claims.Scope.IsZero() {
		t.Fatalf("claims after the change = %+v", claims)
	}

	// A password reset by the owner: the old password and every session end.
	const reset = "a brand new password"
	if _, err := in.client.UpdateUser(ctx, owner, "bob", UserUpdate{Password: ptr(reset)}); err != nil {
		t.Fatal(err)
	}
	_, err = in.client.Login(ctx, "bob", testPassword, "")
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.Refresh(ctx, bob.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	bob = loginAs(t, in, "bob", reset)

	// Bob changes his own password: a wrong current one is refused; the
	// right one ends his other sessions and continues this one.
	other := loginAs(t, in, "bob", reset)
	_, err = in.client.ChangePassword(ctx, bob.AccessToken, "not the password", testPassword+"!")
	wantKind(t, err, homemesh.KindPermission)
	if homemesh.ErrorField(err) != "current_password" {
		t.Errorf("field = %q, want current_password", homemesh.ErrorField(err))
	}
	_, err = in.client.ChangePassword(ctx, bob.AccessToken, reset, "short")
	wantKind(t, err, homemesh.KindInvalid)
	next, err := in.client.ChangePassword(ctx, bob.AccessToken, reset, testPassword+"!")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.client.GetUser(ctx, next.AccessToken, "bob"); err != nil {
		t.Fatalf("the continued session is refused: %v", err)
	}
	_, err = in.client.GetUser(ctx, other.AccessToken, "bob")
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.Refresh(ctx, other.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	loginAs(t, in, "bob", testPassword+"!")

	// Deleted: no login, no token.
	if err := in.client.DeleteUser(ctx, owner, "bob"); err != nil {
		t.Fatal(err)
	}
	_, err = in.client.GetUser(ctx, next.AccessToken, "bob")
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.Login(ctx, "bob", testPassword+"!", "")
	wantKind(t, err, homemesh.KindUnauthenticated)
	wantKind(t, in.client.DeleteUser(ctx, owner, "bob"), homemesh.KindNotFound)
	_, err = in.client.GetUser(ctx, owner, "bob")
	wantKind(t, err, homemesh.KindNotFound)

	// Every change is in the audit log, with the role and scope it set and
	// never a password.
	var got []string
	var records []audit.Record
	for q := (AuditQuery{}); ; {
		p, err := in.client.ListAudit(ctx, owner, q)
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, p.Records...)
		if p.Next == 0 {
			break
		}
		q.AfterSeq = p.Next
	}
	for _, r := range records {
		if strings.HasPrefix(r.Action, "user_") {
			got = append(got, r.Action+"/"+r.Outcome+"/"+r.Actor+"/"+r.Target+"/"+r.Details["role"]+"/"+r.Details["scope"]+"/"+r.Details["password"])
		}
	}
	wantAudit := []string{
		"user_created/success/alice/bob/guest/" + `{"rooms":["living_room"],"kinds":["light"]}` + "/",
		"user_changed/success/alice/bob/member/unrestricted/",
		"user_changed/success/alice/bob///reset",
		"user_changed/failure/bob/bob///wrong current password",
		"user_changed/success/bob/bob///changed",
		"user_deleted/success/alice/bob/member//",
	}
	if diff := cmp.Diff(wantAudit, got); diff != "" {
		t.Errorf("audit records (-want +got):\n%s", diff)
	}
	raw, _ = json.Marshal(records)
	out := logs.String() + string(raw)
	for _, secret := range []string{testPassword, reset, bob.AccessToken, next.RefreshToken} {
		if strings.Contains(out, secret) {
			t.Errorf("a secret appears in the logs or the audit log")
		}
	}
}

func TestUserRequestsAreValidated(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		user  NewUser
		field string
	}{
		{"bad name", NewUser{Username: "b b", Password: testPassword, Role: RoleGuest}, "username"},
		{"no role", NewUser{Username: "b", Password: testPassword}, "role"},
		{"unknown role", NewUser{Username: "b", Password: testPassword, Role: "root"}, "role"},
		{"short password", NewUser{Username: "b", Password: "short", Role: RoleGuest}, "password"},
		{"bad kind", NewUser{Username: "b", Password: testPassword, Role: RoleGuest, Scope: &Scope{Kinds: []string{"light", "toaster"}}}, "scope.kinds[1]"},
		{"bad room", NewUser{Username: "b", Password: testPassword, Role: RoleGuest, Scope: &Scope{Rooms: []string{"Living Room"}}}, "scope.rooms[0]"},
		{"repeated entity", NewUser{Username: "b", Password: testPassword, Role: RoleGuest, Scope: &Scope{Entities: []string{"a", "a"}}}, "scope.entities[1]"},
		{"too many entities", NewUser{Username: "b", Password: testPassword, Role: RoleGuest, Scope: &Scope{Entities: make([]string, MaxScopeItems+1)}}, "scope.entities"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := in.client.CreateUser(ctx, tok.AccessToken, tt.user)
			wantKind(t, err, homemesh.KindInvalid)
			if got := homemesh.ErrorField(err); got != tt.field {
				t.Errorf("field = %q, want %q", got, tt.field)
			}
		})
	}
	_, err := in.client.UpdateUser(ctx, tok.AccessToken, testOwner, UserUpdate{})
	wantKind(t, err, homemesh.KindInvalid)
	_, err = in.client.UpdateUser(ctx, tok.AccessToken, testOwner, UserUpdate{Scope: &Scope{Kinds: []string{"x"}}})
	wantKind(t, err, homemesh.KindInvalid)
	_, err = in.client.UpdateUser(ctx, tok.AccessToken, "nobody", UserUpdate{Role: ptr(RoleGuest)})
	wantKind(t, err, homemesh.KindNotFound)
	_, err = in.client.CreateUser(ctx, "not-a-token", NewUser{Username: "b", Password: testPassword, Role: RoleGuest})
	wantKind(t, err, homemesh.KindUnauthenticated)
}

func TestTheLastOwnerStays(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	owner := tok.AccessToken
	_, err := in.client.UpdateUser(ctx, owner, testOwner, UserUpdate{Role: ptr(RoleAdmin)})
	wantKind(t, err, homemesh.KindConflict)
	wantKind(t, in.client.DeleteUser(ctx, owner, testOwner), homemesh.KindConflict)

	// Two owners demote each other at once: exactly one demotion wins.
	if _, err := in.client.CreateUser(ctx, owner, NewUser{Username: "carol", Password: testPassword, Role: RoleOwner}); err != nil {
		t.Fatal(err)
	}
	carol := loginAs(t, in, "carol", testPassword).AccessToken
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { _, errs[0] = in.client.UpdateUser(ctx, owner, "carol", UserUpdate{Role: ptr(RoleMember)}) })
	wg.Go(func() { _, errs[1] = in.client.UpdateUser(ctx, carol, testOwner, UserUpdate{Role: ptr(RoleMember)}) })
	wg.Wait()
	won := 0
	for _, err := range errs {
		switch homemesh.ErrorKind(err) {
		case homemesh.KindConflict, homemesh.KindUnauthenticated, homemesh.KindPermission:
			// lost: the last owner, or the loser was demoted first
		default:
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d demotions succeeded (%v), want exactly 1", won, errs)
	}
	owners, err := in.svc.scanOwners(ctx)
	if err != nil || len(owners) != 1 {
		t.Fatalf("owners = %v, %v; want exactly one", owners, err)
	}
}

func FuzzValidateScope(f *testing.F) {
	f.Add(`{"rooms":["living_room"],"kinds":["light"],"entities":["lamp1_light"]}`)
	f.Add(`{"kinds":["light","toaster"]}`)
	f.Add(`{"rooms":["a","a"]}`)
	f.Add(`{"entities":[""]}`)
	f.Fuzz(func(t *testing.T, raw string) {
		var sc Scope
		if json.Unmarshal([]byte(raw), &sc) != nil {
			return
		}
		err := ValidateScope("scope", sc)
		if err != nil {
			if homemesh.ErrorKind(err) != homemesh.KindInvalid || !strings.HasPrefix(homemesh.ErrorField(err), "scope.") {
				t.Fatalf("error without kind or field: %v", err)
			}
			return
		}
		for _, l := range [][]string{sc.Rooms, sc.Kinds, sc.Entities} {
			if len(l) > MaxScopeItems {
				t.Fatalf("accepted %d entries", len(l))
			}
			seen := map[string]bool{}
			for _, v := range l {
				if !homemesh.ValidID(v) || seen[v] {
					t.Fatalf("accepted %q", v)
				}
				seen[v] = true
			}
		}
		for _, k := range sc.Kinds {
			if !homemesh.EntityKind(k).Valid() {
				t.Fatalf("accepted kind %q", k)
			}
		}
	})
}
