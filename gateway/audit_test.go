package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/homemesh/homemesh/auth"
	"golang.org/x/crypto/argon2"
)

// addUser stores a user with role straight into the auth service's users
// bucket, as a user-management call would, and logs them in.
func addUser(t *testing.T, e *env, name, role string) string {
	t.Helper()
	ctx := context.Background()
	kv, err := e.conn.JetStream().KeyValue(ctx, "auth-"+testHome+"-users")
	if err != nil {
		t.Fatal(err)
	}
	salt := []byte("0123456789abcdef")
	b64 := base64.RawStdEncoding
	hash := fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, 19456, 2, 1,
		b64.EncodeToString(salt), b64.EncodeToString(argon2.IDKey([]byte(testPassword), salt, 2, 19456, 1, 32)))
	rec, _ := json.Marshal(map[string]any{"id": "id-" + name, "username": name, "role": role, "password_hash": hash, "created_at": time.Now()})
	if _, err := kv.Put(ctx, "u."+hex.EncodeToString([]byte(name)), rec); err != nil {
		t.Fatal(err)
	}
	r := e.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": name, "password": testPassword})
	return decode[auth.Tokens](t, r, 200).AccessToken
}

func TestAuditAPI(t *testing.T) {
	e := newEnv(t, envOptions{})
	owner := e.onboard(t).AccessToken
	// Failed logins, then a credential created and revoked: five more records.
	for range 2 {
		e.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": testOwner, "password": "wrong password!"}).wantError(t, 401, "unauthenticated", "")
	}
	cred := decode[auth.Credential](t, e.do(t, "POST", "/api/v1/credentials", owner, map[string]any{"name": "porch", "allow": []string{"porch/#"}}), 201)
	if r := e.do(t, "DELETE", "/api/v1/credentials/"+cred.Username, owner, nil); r.status != 204 {
		t.Fatalf("delete credential: %d %s", r.status, r.body)
	}

	t.Run("pages in sequence order", func(t *testing.T) {
		var actions []string
		var seqs []uint64
		path := "/api/v1/audit?limit=2"
		for pages := 1; ; pages++ {
			p := decode[auth.AuditPage](t, e.do(t, "GET", path, owner, nil), 200)
			for _, r := range p.Records {
				actions = append(actions, r.Action)
				seqs = append(seqs, r.Seq)
			}
			if p.Next == 0 {
				break
			}
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			path = fmt.Sprintf("/api/v1/audit?limit=2&after=%d", p.Next)
		}
		want := []string{"onboarded", "login", "login_failed", "login_failed", "credential_created", "credential_revoked"}
		if fmt.Sprint(actions) != fmt.Sprint(want) {
			t.Fatalf("actions %v, want %v", actions, want)
		}
		for i, s := range seqs {
			if s != uint64(i+1) {
				t.Fatalf("sequence numbers %v", seqs)
			}
		}
	})
	t.Run("filters", func(t *testing.T) {
		p := decode[auth.AuditPage](t, e.do(t, "GET", "/api/v1/audit?action=login_failed", owner, nil), 200)
		if len(p.Records) != 2 || p.Records[0].Actor != testOwner {
			t.Fatalf("login_failed records: %+v", p.Records)
		}
		from := url.QueryEscape(p.Records[1].Time.Format(time.RFC3339Nano))
		p = decode[auth.AuditPage](t, e.do(t, "GET", "/api/v1/audit?from="+from, owner, nil), 200)
		if len(p.Records) != 3 || p.Records[0].Action != "login_failed" {
			t.Fatalf("from the second failure: %+v", p.Records)
		}
		to := url.QueryEscape(p.Records[0].Time.Format(time.RFC3339Nano))
		p = decode[auth.AuditPage](t, e.do(t, "GET", "/api/v1/audit?to="+to, owner, nil), 200)
		if len(p.Records) != 3 {
			t.Fatalf("to the second failure: %+v", p.Records)
		}
	})
	t.Run("strict query", func(t *testing.T) {
		for _, tt := range []struct{ query, field string }{
			{"sort=seq", "sort"},
			{"limit=0", "limit"},
			{"limit=501", "limit"},
			{"limit=ten", "limit"},
			{"limit=5&limit=6", "limit"},
			{"after=-1", "after"},
			{"after=", "after"},
			{"from=yesterday", "from"},
			{"from=2026-01-02", "from"},
			{"to=2026-01-02T15:04:05", "to"},
			{"from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "to"},
			{"action=Login", "action"},
		} {
			t.Run(tt.query, func(t *testing.T) {
				e.do(t, "GET", "/api/v1/audit?"+tt.query, owner, nil).wantError(t, 400, "invalid", tt.field)
			})
		}
	})
	t.Run("owners and admins only", func(t *testing.T) {
		admin := addUser(t, e, "ada", auth.RoleAdmin)
		if r := e.do(t, "GET", "/api/v1/audit", admin, nil); r.status != 200 {
			t.Fatalf("admin: %d %s", r.status, r.body)
		}
		for _, role := range []string{auth.RoleMember, auth.RoleGuest} {
			tok := addUser(t, e, "user-"+role, role)
			e.do(t, "GET", "/api/v1/audit", tok, nil).wantError(t, 403, "permission", "")
		}
	})
}
