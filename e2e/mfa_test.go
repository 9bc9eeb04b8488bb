package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpCode is what an authenticator app shows for secret at the 30-second
// step.
func totpCode(t *testing.T, secret string, step int64) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, time.Unix(step*30, 0),
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// TestMFAIsRequiredOnceEnrolled enrols TOTP through the API, in both
// deployment modes, and checks that from then on the password alone is not
// enough, that each code and recovery code works once, and that this
// survives a restart.
func TestMFAIsRequiredOnceEnrolled(t *testing.T) {
	for _, mode := range []struct {
		name  string
		start func(*testing.T) *hub
	}{{"all-in-one", allInOne}, {"split", split}} {
		t.Run(mode.name, func(t *testing.T) {
			h := mode.start(t)
			tok := onboardOwner(t, h).AccessToken
			login := func(code string) int {
				return call(t, "POST", h.api+"/auth/login", "", map[string]string{
					"username": "owner", "password": "correct horse battery", "totp": code}, nil)
			}

			var en struct {
				Secret     string `json:"secret"`
				OTPAuthURI string `json:"otpauth_uri"`
			}
			if code := call(t, "POST", h.api+"/auth/mfa/totp", tok, nil, &en); code != http.StatusOK || en.Secret == "" {
				t.Fatalf("begin TOTP = %d", code)
			}
			step := time.Now().Unix() / 30
			var confirmed struct {
				RecoveryCodes []string `json:"recovery_codes"`
			}
			if code := call(t, "POST", h.api+"/auth/mfa/totp/confirm", tok, map[string]string{"code": totpCode(t, en.Secret, step)}, &confirmed); code != http.StatusOK || len(confirmed.RecoveryCodes) != 10 {
				t.Fatalf("confirm TOTP = %d with %d recovery codes", code, len(confirmed.RecoveryCodes))
			}

			var refusal struct {
				Error struct{ Kind, Field string }
			}
			if code := call(t, "POST", h.api+"/auth/login", "", map[string]string{"username": "owner", "password": "correct horse battery"}, &refusal); code != http.StatusUnauthorized || refusal.Error.Field != "totp" {
				t.Fatalf("the password alone = %d %+v, want 401 naming totp", code, refusal.Error)
			}
			if code := login(totpCode(t, en.Secret, step+1)); code != http.StatusOK {
				t.Fatalf("password and code = %d", code)
			}
			if code := login(totpCode(t, en.Secret, step+1)); code != http.StatusUnauthorized {
				t.Fatalf("the same code again = %d, want 401", code)
			}

			h.restart(t)
			if code := login(""); code != http.StatusUnauthorized {
				t.Fatalf("the password alone after a restart = %d, want 401", code)
			}
			if code := login(confirmed.RecoveryCodes[0]); code != http.StatusOK {
				t.Fatalf("a recovery code = %d", code)
			}
			if code := login(confirmed.RecoveryCodes[0]); code != http.StatusUnauthorized {
				t.Fatalf("the same recovery code again = %d, want 401", code)
			}
		})
	}
}
