package e2e

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// Every process of the end-to-end suite logs at debug level, and every
// secret the suite sees — passwords it sends, tokens, credentials, codes and
// keys the hub returns — is collected here. When a process ends, its logs
// are searched for every secret known so far: nothing secret may appear in
// any log line at any level.
var seen = &secretSet{values: map[string]bool{}}

type secretSet struct {
	mu     sync.Mutex
	values map[string]bool
}

// secretKeys are the JSON field names whose string values are secrets,
// wherever they appear in a request or a response.
var secretKeys = map[string]bool{
	"password": true, "new_password": true, "current_password": true,
	"access_token": true, "refresh_token": true, "token": true,
	"code": true, "totp": true, "secret": true, "otpauth_uri": true,
	"recovery_codes": true, "private_key": true,
}

// minSecretLen keeps short values (a 6-digit TOTP is still searched for,
// a two-letter word is not) from matching by accident.
const minSecretLen = 6

// add records s as a secret.
func (ss *secretSet) add(s string) {
	if len(s) < minSecretLen {
		return
	}
	ss.mu.Lock()
	ss.values[s] = true
	ss.mu.Unlock()
}

// collect records the secrets inside a JSON document.
func (ss *secretSet) collect(doc []byte) {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return
	}
	ss.walk(v, false)
}

func (ss *secretSet) walk(v any, secret bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			ss.walk(x, secret || secretKeys[k])
		}
	case []any:
		for _, x := range v {
			ss.walk(x, secret)
		}
	case string:
		if secret {
			ss.add(v)
		}
	}
}

// leaks returns the secrets found in logs, shortened so the failure does
// not print them either.
func (ss *secretSet) leaks(logs string) []string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []string
	for s := range ss.values {
		if containsSecret(logs, s) {
			out = append(out, s[:3]+"…")
		}
	}
	return out
}

// containsSecret reports whether logs hold s. A secret of digits alone (a
// TOTP code) also turns up inside timestamps and counters by chance, so it
// counts only as a number of its own.
func containsSecret(logs, s string) bool {
	if strings.Trim(s, "0123456789") != "" {
		return strings.Contains(logs, s)
	}
	digit := func(i int) bool { return i >= 0 && i < len(logs) && logs[i] >= '0' && logs[i] <= '9' }
	for from := 0; ; {
		i := strings.Index(logs[from:], s)
		if i < 0 {
			return false
		}
		i += from
		if !digit(i-1) && !digit(i+len(s)) {
			return true
		}
		from = i + 1
	}
}

// checkLogs fails t when p's logs contain a known secret.
func checkLogs(t *testing.T, name string, p *proc) {
	p.mu.Lock()
	logs := p.errBuf.String()
	p.mu.Unlock()
	if leaked := seen.leaks(logs); len(leaked) > 0 {
		t.Errorf("the logs of homemesh %s contain %d secret(s) (shown truncated): %v", name, len(leaked), leaked)
	}
}

func TestSecretCollector(t *testing.T) {
	ss := &secretSet{values: map[string]bool{}}
	ss.collect([]byte(`{"username":"alice","password":"hunter2-long","tokens":[{"access_token":"eyJabc.def"}],"nested":{"recovery_codes":["abcde-fghij"]},"name":"lamp-1"}`))
	for _, want := range []string{"hunter2-long", "eyJabc.def", "abcde-fghij"} {
		if !ss.values[want] {
			t.Errorf("%q not collected", want)
		}
	}
	if ss.values["alice"] || ss.values["lamp-1"] {
		t.Error("non-secret fields collected")
	}
	if got := ss.leaks(`{"msg":"login","username":"alice"}`); len(got) != 0 {
		t.Errorf("false leak %v", got)
	}
	if got := ss.leaks(`{"msg":"oops","token":"eyJabc.def"}`); len(got) != 1 {
		t.Errorf("leak not found: %v", got)
	}
	codes := &secretSet{values: map[string]bool{"123456": true}}
	if got := codes.leaks(`{"time":"2026-01-02T03:04:05.9123456789Z","n":91234567}`); len(got) != 0 {
		t.Errorf("a code found inside other numbers: %v", got)
	}
	if got := codes.leaks(`{"msg":"oops","totp":"123456"}`); len(got) != 1 {
		t.Errorf("code leak not found: %v", got)
	}
}
