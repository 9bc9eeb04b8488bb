package gateway_test

import (
	"bytes"
	"image/png"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh/auth"
	"github.com/homemesh/homemesh/internal/hmtest"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// totpCode returns the code of secret for the 30-second step.
func totpCode(t *testing.T, secret string, step int64) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, time.Unix(step*30, 0),
		totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func wantNoStore(t *testing.T, r response) {
	t.Helper()
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control = %q on a reply with secrets, want no-store", got)
	}
}

// TestMFAOverREST enrols TOTP through the API, logs in with a code and a
// recovery code, and turns TOTP off again.
func TestMFAOverREST(t *testing.T) {
	var logs hmtest.LogBuffer
	e := newEnv(t, envOptions{gwLog: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	tok := e.onboard(t).AccessToken
	login := func(code string) response {
		return e.do(t, "POST", "/api/v1/auth/login", "", map[string]string{"username": testOwner, "password": testPassword, "totp": code})
	}

	st := decode[auth.MFAStatus](t, e.do(t, "GET", "/api/v1/auth/mfa", tok, nil), 200)
	if st.TOTPEnabled || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status before enrolment = %+v", st)
	}
	e.do(t, "POST", "/api/v1/auth/mfa/totp/confirm", tok, map[string]string{"code": "123456"}).wantError(t, 409, "conflict", "")

	r := e.do(t, "POST", "/api/v1/auth/mfa/totp", tok, nil)
	wantNoStore(t, r)
	en := decode[auth.TOTPEnrollment](t, r, 200)
	if en.Secret == "" || !strings.HasPrefix(en.OTPAuthURI, "otpauth://totp/homemesh:alice@"+testHome+"?") {
		t.Fatalf("enrolment: secret %t, URI %q", en.Secret != "", en.OTPAuthURI)
	}
	if _, err := png.Decode(bytes.NewReader(en.QRPNG)); err != nil {
		t.Fatalf("qr_png is not a base64 PNG: %v", err)
	}

	for _, tt := range []struct {
		name, body, field string
	}{
		{"no code", `{}`, "code"},
		{"empty code", `{"code":""}`, "code"},
		{"unknown field", `{"code":"123456","totp":"1"}`, "totp"},
		{"letters", `{"code":"abcdef"}`, "code"},
	} {
		t.Run("confirm/"+tt.name, func(t *testing.T) {
			e.do(t, "POST", "/api/v1/auth/mfa/totp/confirm", tok, tt.body).wantError(t, 400, "invalid", tt.field)
		})
	}

	step := time.Now().Unix() / 30
	r = e.do(t, "POST", "/api/v1/auth/mfa/totp/confirm", tok, map[string]string{"code": totpCode(t, en.Secret, step)})
	wantNoStore(t, r)
	codes := decode[struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}](t, r, 200).RecoveryCodes
	if len(codes) != auth.RecoveryCodes {
		t.Fatalf("%d recovery codes", len(codes))
	}
	st = decode[auth.MFAStatus](t, e.do(t, "GET", "/api/v1/auth/mfa", tok, nil), 200)
	if !st.TOTPEnabled || st.RecoveryCodesLeft != auth.RecoveryCodes {
		t.Fatalf("status after enrolment = %+v", st)
	}
	e.do(t, "POST", "/api/v1/auth/mfa/totp", tok, nil).wantError(t, 409, "conflict", "")

	// MFA is required once enrolled.
	login("").wantError(t, 401, "unauthenticated", "totp")
	login(totpCode(t, en.Secret, step)).wantError(t, 401, "unauthenticated", "totp") // spent by the confirmation
	fresh := decode[auth.Tokens](t, login(totpCode(t, en.Secret, step+1)), 200)
	login(totpCode(t, en.Secret, step+1)).wantError(t, 401, "unauthenticated", "totp") // replayed
	decode[auth.Tokens](t, login(codes[0]), 200)
	login(codes[0]).wantError(t, 401, "unauthenticated", "totp")

	// Turning it off takes the password and a code.
	e.do(t, "DELETE", "/api/v1/auth/mfa/totp", fresh.AccessToken, map[string]string{"password": testPassword}).wantError(t, 400, "invalid", "code")
	e.do(t, "DELETE", "/api/v1/auth/mfa/totp", fresh.AccessToken, map[string]string{"password": "wrong password!", "code": codes[1]}).
		wantError(t, 401, "unauthenticated", "password")
	e.do(t, "DELETE", "/api/v1/auth/mfa/totp", "", map[string]string{"password": testPassword, "code": codes[1]}).
		wantError(t, 401, "unauthenticated", "")
	if r := e.do(t, "DELETE", "/api/v1/auth/mfa/totp", fresh.AccessToken, map[string]string{"password": testPassword, "code": codes[1]}); r.status != http.StatusNoContent {
		t.Fatalf("disable: status %d, body %s", r.status, r.body)
	}
	st = decode[auth.MFAStatus](t, e.do(t, "GET", "/api/v1/auth/mfa", tok, nil), 200)
	if st.TOTPEnabled || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status after disabling = %+v", st)
	}
	decode[auth.Tokens](t, login(""), 200)

	out := logs.String()
	for name, secret := range map[string]string{"TOTP secret": en.Secret, "otpauth URI": en.OTPAuthURI, "recovery code": codes[2]} {
		if strings.Contains(out, secret) {
			t.Errorf("the %s appears in the gateway's logs", name)
		}
	}
}
