package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
)

// auditActions lists the actions of every record in the log, in order,
// read page by page through the client as an owner would.
func auditActions(t *testing.T, c *Client, token string, q AuditQuery) []string {
	t.Helper()
	var out []string
	for {
		p, err := c.ListAudit(context.Background(), token, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Records {
			out = append(out, r.Action+"/"+r.Outcome)
		}
		if p.Next == 0 {
			return out
		}
		q.AfterSeq = p.Next
	}
}

func TestAuditRecordsSecurityActions(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	if _, err := in.client.Login(ctx, testOwner, "wrong password!", ""); err == nil {
		t.Fatal("a wrong password logged in")
	}
	cred, err := in.client.CreateCredential(ctx, tok.AccessToken, "porch sensor", []string{"porch/#"})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.client.DeleteCredential(ctx, tok.AccessToken, cred.Username); err != nil {
		t.Fatal(err)
	}
	// Another service reports what it witnessed.
	if err := in.client.Audit(ctx, AuditEntry{Action: AuditCommand, Outcome: OutcomeSuccess, Actor: testOwner,
		Source: "gateway", Target: "front_door_lock", Details: map[string]string{"command": "unlock"}}); err != nil {
		t.Fatal(err)
	}

	want := []string{"onboarded/success", "login/success", "login_failed/failure",
		"credential_created/success", "credential_revoked/success", "command/success"}
	if diff := cmp.Diff(want, auditActions(t, in.client, tok.AccessToken, AuditQuery{Limit: 2})); diff != "" {
		t.Errorf("audit actions (-want +got):\n%s", diff)
	}
	res, err := in.svc.AuditLog().Verify(ctx)
	if err != nil || res.Records != uint64(len(want)) {
		t.Fatalf("verify: %+v %v", res, err)
	}

	p, err := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{Action: AuditCredentialCreated})
	if err != nil || len(p.Records) != 1 {
		t.Fatalf("credential_created records: %+v %v", p, err)
	}
	r := p.Records[0]
	if r.Actor != testOwner || r.ActorID == "" || r.Target != cred.Username || r.Details["name"] != "porch sensor" {
		t.Errorf("credential record: %+v", r)
	}
	// Nothing secret reaches the log.
	all, _ := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{})
	raw, _ := json.Marshal(all)
	for _, secret := range []string{testPassword, "wrong password!", cred.Password, tok.AccessToken, tok.RefreshToken} {
		if secret != "" && strings.Contains(string(raw), secret) {
			t.Errorf("the audit log holds a secret")
		}
	}

	t.Run("bad reports are refused by field", func(t *testing.T) {
		err := in.client.Audit(ctx, AuditEntry{Action: "Unlock Door", Outcome: OutcomeSuccess})
		if homemesh.ErrorField(err) != "action" {
			t.Fatalf("bad action: %v", err)
		}
		_, err = in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{Limit: 10000})
		if homemesh.ErrorField(err) != "limit" {
			t.Fatalf("bad limit: %v", err)
		}
	})
}

func TestAuditListNeedsOwnerOrAdmin(t *testing.T) {
	_, in, _ := onboarded(t)
	ctx := context.Background()
	for _, role := range []string{RoleMember, RoleGuest} {
		name := "user-" + role
		tok := addUser(t, in, name, role, Scope{})
		_, err := in.client.ListAudit(ctx, tok.AccessToken, AuditQuery{})
		wantKind(t, err, homemesh.KindPermission)
		// A token claiming admin is refused: the stored role wins.
		forged, _, _ := signAccess(in.svc.signing().signer, in.svc.signing().kid, testHome, user{ID: "id-" + name, Username: name, Role: RoleAdmin}, time.Now(), time.Minute)
		_, err = in.client.ListAudit(ctx, forged, AuditQuery{})
		wantKind(t, err, homemesh.KindPermission)
	}
	_, err := in.client.ListAudit(ctx, "not a token", AuditQuery{})
	wantKind(t, err, homemesh.KindUnauthenticated)
}

// Two auth processes auditing at once keep one chain.
func TestAuditAcrossInstances(t *testing.T) {
	s, first, tok := onboarded(t)
	second := startPeer(t, s, first)
	ctx := context.Background()
	const each = 30
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for i, in := range []*instance{first, second} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				err := in.svc.Audit(ctx, AuditEntry{Action: AuditCommand, Outcome: OutcomeSuccess, Actor: fmt.Sprintf("p%d-%d", i, j)})
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	res, err := second.svc.AuditLog().Verify(ctx)
	// onboarded + login, then the concurrent ones.
	if err != nil || res.Records != 2+2*each {
		t.Fatalf("verify: %+v %v", res, err)
	}
	if got := len(auditActions(t, second.client, tok.AccessToken, AuditQuery{Action: AuditCommand, Limit: audit.MaxLimit})); got != 2*each {
		t.Fatalf("%d command records, want %d", got, 2*each)
	}
}
