package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// codeAt returns the TOTP code of secret for the 30-second step.
func codeAt(t testing.TB, secret string, step int64) string {
	t.Helper()
	code, err := totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0),
		totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return code
}

// wrongCodeFor returns six digits that are no valid code of secret near now.
func wrongCodeFor(t testing.TB, secret string) string {
	t.Helper()
	now := totpStep(time.Now())
	valid := map[string]bool{}
	for s := now - 3; s <= now+3; s++ {
		valid[codeAt(t, secret, s)] = true
	}
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if !valid[c] {
			return c
		}
	}
	t.Fatal("every candidate is a valid code")
	return ""
}

// enrolled is a user with TOTP enabled: its key, the step of the code that
// confirmed it, and its recovery codes.
type enrolled struct {
	secret   string
	step     int64
	recovery []string
}

// enrol begins and confirms TOTP for the bearer of tok.
func enrol(t testing.TB, in *instance, tok Tokens) enrolled {
	t.Helper()
	ctx := context.Background()
	e, err := in.client.BeginTOTP(ctx, tok.AccessToken)
	if err != nil {
		t.Fatalf("BeginTOTP: %v", err)
	}
	step := totpStep(time.Now())
	codes, err := in.client.ConfirmTOTP(ctx, tok.AccessToken, codeAt(t, e.Secret, step))
	if err != nil {
		t.Fatalf("ConfirmTOTP: %v", err)
	}
	return enrolled{secret: e.Secret, step: step, recovery: codes}
}

func wantField(t testing.TB, err error, kind homemesh.Kind, field string) {
	t.Helper()
	wantKind(t, err, kind)
	if got := homemesh.ErrorField(err); got != field {
		t.Fatalf("error %v names field %q, want %q", err, got, field)
	}
}

func TestTOTPEnrolment(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()

	if st, err := in.client.MFAStatus(ctx, tok.AccessToken); err != nil || st.TOTPEnabled || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status before enrolment = %+v, %v", st, err)
	}
	wantKind(t, func() error { _, err := in.client.ConfirmTOTP(ctx, tok.AccessToken, "123456"); return err }(), homemesh.KindConflict)

	first, err := in.client.BeginTOTP(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	key, err := otp.NewKeyFromURL(first.OTPAuthURI)
	if err != nil {
		t.Fatalf("otpauth URI %q: %v", first.OTPAuthURI, err)
	}
	if key.Type() != "totp" || key.Issuer() != "homemesh" || key.AccountName() != testOwner+"@"+testHome ||
		key.Secret() != first.Secret || key.Period() != 30 || key.Digits() != otp.DigitsSix || key.Algorithm() != otp.AlgorithmSHA1 {
		t.Errorf("otpauth URI %q does not describe a standard TOTP key for %s@%s", first.OTPAuthURI, testOwner, testHome)
	}
	img, err := png.Decode(bytes.NewReader(first.QRPNG))
	if err != nil {
		t.Fatalf("QR code is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != qrSize || b.Dy() != qrSize {
		t.Errorf("QR code is %v, want %dx%d", b, qrSize, qrSize)
	}

	// A pending key changes nothing for logins.
	if _, err := in.client.Login(ctx, testOwner, testPassword, ""); err != nil {
		t.Fatalf("login with a pending, unconfirmed key: %v", err)
	}
	// Beginning again replaces the pending key: codes of the first fail.
	second, err := in.client.BeginTOTP(ctx, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	if second.Secret == first.Secret {
		t.Fatal("a new enrolment reused the key")
	}
	now := totpStep(time.Now())
	if codeAt(t, first.Secret, now) != codeAt(t, second.Secret, now) {
		_, err = in.client.ConfirmTOTP(ctx, tok.AccessToken, codeAt(t, first.Secret, now))
		wantField(t, err, homemesh.KindInvalid, "code")
	}
	for _, bad := range []string{"", "12345", "abcdef", strings.Repeat("1", 65)} {
		_, err = in.client.ConfirmTOTP(ctx, tok.AccessToken, bad)
		wantField(t, err, homemesh.KindInvalid, "code")
	}

	// The stored record holds the key only sealed.
	raw := rawUser(t, in, testOwner)
	if strings.Contains(raw, second.Secret) {
		t.Error("the user record holds the TOTP secret in the clear")
	}

	codes, err := in.client.ConfirmTOTP(ctx, tok.AccessToken, codeAt(t, second.Secret, now))
	if err != nil {
		t.Fatal(err)
	}
	if len(codes) != RecoveryCodes {
		t.Fatalf("%d recovery codes, want %d", len(codes), RecoveryCodes)
	}
	format := regexp.MustCompile(`^[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}-[a-z2-7]{5}$`)
	seen := map[string]bool{}
	raw = rawUser(t, in, testOwner)
	for _, c := range codes {
		if !format.MatchString(c) || seen[c] {
			t.Errorf("recovery code %q is malformed or repeated", c)
		}
		seen[c] = true
		if strings.Contains(strings.ToUpper(raw), strings.ToUpper(strings.ReplaceAll(c, "-", ""))) || strings.Contains(raw, c) {
			t.Error("the user record holds a recovery code in the clear")
		}
	}
	if strings.Contains(raw, second.Secret) {
		t.Error("the user record holds the TOTP secret in the clear")
	}
	if st, err := in.client.MFAStatus(ctx, tok.AccessToken); err != nil || !st.TOTPEnabled || st.RecoveryCodesLeft != RecoveryCodes {
		t.Fatalf("status after enrolment = %+v, %v", st, err)
	}
	_, err = in.client.BeginTOTP(ctx, tok.AccessToken)
	wantKind(t, err, homemesh.KindConflict)
	_, err = in.client.ConfirmTOTP(ctx, tok.AccessToken, codeAt(t, second.Secret, now+1))
	wantKind(t, err, homemesh.KindConflict)

	for _, bad := range []string{"", "not a token"} {
		_, err := in.client.MFAStatus(ctx, bad)
		wantKind(t, err, homemesh.KindUnauthenticated)
		_, err = in.client.BeginTOTP(ctx, bad)
		wantKind(t, err, homemesh.KindUnauthenticated)
	}
}

// rawUser returns the stored record of name as the bucket holds it.
func rawUser(t testing.TB, in *instance, name string) string {
	t.Helper()
	e, err := in.svc.usersKV.Get(context.Background(), userKey(name))
	if err != nil {
		t.Fatal(err)
	}
	return string(e.Value())
}

func TestLoginRequiresTOTPOnceEnrolled(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	en := enrol(t, in, tok)

	_, err := in.client.Login(ctx, testOwner, testPassword, "")
	wantField(t, err, homemesh.KindUnauthenticated, "totp")
	if !strings.Contains(homemesh.ErrorMessage(err), "authenticator app") {
		t.Errorf("message %q does not say what is needed", homemesh.ErrorMessage(err))
	}
	// Without the password nothing reveals that the account has MFA.
	_, err = in.client.Login(ctx, testOwner, "wrong password!", "")
	wantField(t, err, homemesh.KindUnauthenticated, "")
	if homemesh.ErrorMessage(err) != errLogin.Message {
		t.Errorf("wrong password with MFA: %q, want the usual %q", homemesh.ErrorMessage(err), errLogin.Message)
	}
	_, err = in.client.Login(ctx, testOwner, "wrong password!", codeAt(t, en.secret, en.step+1))
	if homemesh.ErrorMessage(err) != errLogin.Message {
		t.Errorf("wrong password with a right code: %v", err)
	}
	_, err = in.client.Login(ctx, testOwner, testPassword, "12")
	wantField(t, err, homemesh.KindInvalid, "totp")

	// The confirming code was spent by the enrolment.
	_, err = in.client.Login(ctx, testOwner, testPassword, codeAt(t, en.secret, en.step))
	wantField(t, err, homemesh.KindUnauthenticated, "totp")

	next := codeAt(t, en.secret, en.step+1)
	got, err := in.client.Login(ctx, testOwner, testPassword, next[:3]+" "+next[3:])
	if err != nil {
		t.Fatalf("login with the next step's code: %v", err)
	}
	if _, err := in.client.VerifyAccessToken(ctx, got.AccessToken); err != nil {
		t.Fatal(err)
	}
	// Replayed: the same code, and any earlier one, is refused.
	_, err = in.client.Login(ctx, testOwner, testPassword, next)
	wantField(t, err, homemesh.KindUnauthenticated, "totp")
	_, err = in.client.Login(ctx, testOwner, testPassword, codeAt(t, en.secret, en.step))
	wantField(t, err, homemesh.KindUnauthenticated, "totp")
}

func TestWrongTOTPCodesAreThrottled(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	en := enrol(t, in, tok)
	wrong := wrongCodeFor(t, en.secret)
	for range nameLimit.failures {
		_, err := in.client.Login(ctx, testOwner, testPassword, wrong)
		wantField(t, err, homemesh.KindUnauthenticated, "totp")
	}
	_, err := in.client.Login(ctx, testOwner, testPassword, codeAt(t, en.secret, en.step+1))
	wantKind(t, err, homemesh.KindRateLimited)
	if homemesh.ErrorRetryAfter(err) <= 0 {
		t.Errorf("locked login without a RetryAfter: %v", err)
	}
	// The lock also guards turning TOTP off with a stolen token.
	wantKind(t, in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, en.recovery[0]), homemesh.KindRateLimited)
}

func TestRecoveryCodes(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	en := enrol(t, in, tok)

	// Typed in capitals without dashes, the code still works, once.
	typed := strings.ToUpper(strings.ReplaceAll(en.recovery[0], "-", " "))
	if _, err := in.client.Login(ctx, testOwner, testPassword, typed); err != nil {
		t.Fatalf("login with a recovery code: %v", err)
	}
	_, err := in.client.Login(ctx, testOwner, testPassword, en.recovery[0])
	wantField(t, err, homemesh.KindUnauthenticated, "totp")
	_, err = in.client.Login(ctx, testOwner, testPassword, "abcde-fghij-klmno-pqrst")
	wantField(t, err, homemesh.KindUnauthenticated, "totp")
	if st, err := in.client.MFAStatus(ctx, tok.AccessToken); err != nil || st.RecoveryCodesLeft != RecoveryCodes-1 {
		t.Fatalf("status after spending one code = %+v, %v", st, err)
	}

	// Many logins presenting one code at once: exactly one gets in.
	const n = 6
	ok, lost := race(n, func(int) error {
		_, err := in.client.Login(ctx, testOwner, testPassword, en.recovery[1])
		return err
	})
	for _, err := range lost {
		if homemesh.ErrorField(err) != "totp" {
			t.Errorf("concurrent recovery login: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d concurrent logins spent one recovery code, want 1", ok, n)
	}
	if st, _ := in.client.MFAStatus(ctx, tok.AccessToken); st.RecoveryCodesLeft != RecoveryCodes-2 {
		t.Fatalf("recovery codes left = %d, want %d", st.RecoveryCodesLeft, RecoveryCodes-2)
	}
}

func TestDisableTOTP(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	wantKind(t, in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, "123456"), homemesh.KindConflict)
	en := enrol(t, in, tok)
	next := codeAt(t, en.secret, en.step+1)

	wantField(t, in.client.DisableTOTP(ctx, tok.AccessToken, "", next), homemesh.KindInvalid, "password")
	wantField(t, in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, ""), homemesh.KindInvalid, "code")
	wantField(t, in.client.DisableTOTP(ctx, tok.AccessToken, "wrong password!", next), homemesh.KindUnauthenticated, "password")
	wantField(t, in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, wrongCodeFor(t, en.secret)), homemesh.KindUnauthenticated, "code")
	wantField(t, in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, codeAt(t, en.secret, en.step)), homemesh.KindUnauthenticated, "code")
	if st, _ := in.client.MFAStatus(ctx, tok.AccessToken); !st.TOTPEnabled {
		t.Fatal("failed attempts disabled TOTP")
	}
	if err := in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, next); err != nil {
		t.Fatalf("DisableTOTP: %v", err)
	}
	if st, err := in.client.MFAStatus(ctx, tok.AccessToken); err != nil || st.TOTPEnabled || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status after disabling = %+v, %v", st, err)
	}
	if _, err := in.client.Login(ctx, testOwner, testPassword, ""); err != nil {
		t.Fatalf("login after disabling TOTP: %v", err)
	}

	// A recovery code disables it too, for someone without their phone.
	tok, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	en = enrol(t, in, tok)
	if err := in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, en.recovery[3]); err != nil {
		t.Fatalf("DisableTOTP with a recovery code: %v", err)
	}
	if _, err := in.client.Login(ctx, testOwner, testPassword, ""); err != nil {
		t.Fatalf("login after disabling TOTP: %v", err)
	}
}

func TestResetMFA(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	enrol(t, in, tok)
	if err := in.svc.ResetMFA(ctx, "ALICE"); err != nil {
		t.Fatalf("ResetMFA: %v", err)
	}
	// Sessions from before the reset end with it: whoever holds the lost
	// phone may hold one.
	_, err := in.client.Refresh(ctx, tok.RefreshToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	_, err = in.client.MFAStatus(ctx, tok.AccessToken)
	wantKind(t, err, homemesh.KindUnauthenticated)
	got, err := in.client.Login(ctx, testOwner, testPassword, "")
	if err != nil {
		t.Fatalf("login after ResetMFA: %v", err)
	}
	if st, err := in.client.MFAStatus(ctx, got.AccessToken); err != nil || st.TOTPEnabled || st.RecoveryCodesLeft != 0 {
		t.Fatalf("status after ResetMFA = %+v, %v", st, err)
	}
	if raw := rawUser(t, in, testOwner); strings.Contains(raw, "totp") || strings.Contains(raw, "recovery") {
		t.Errorf("ResetMFA left second factors in the record: %s", raw)
	}
	// The person enrols again as usual.
	enrol(t, in, got)

	wantField(t, in.svc.ResetMFA(ctx, "bob"), homemesh.KindNotFound, "username")
	wantField(t, in.svc.ResetMFA(ctx, "b o b"), homemesh.KindInvalid, "username")
}

// TestMFALogsHoldNoSecrets walks through enrolment, logins with codes and
// recovery codes, failures and disabling, and checks that no key, code or
// recovery code reaches the log.
func TestMFALogsHoldNoSecrets(t *testing.T) {
	in, tok, logs := onboardedLogged(t)
	ctx := context.Background()
	en := enrol(t, in, tok)
	next := codeAt(t, en.secret, en.step+1)
	wrong := wrongCodeFor(t, en.secret)
	in.client.Login(ctx, testOwner, testPassword, wrong)
	if _, err := in.client.Login(ctx, testOwner, testPassword, next); err != nil {
		t.Fatal(err)
	}
	in.client.Login(ctx, testOwner, testPassword, next)
	if _, err := in.client.Login(ctx, testOwner, testPassword, en.recovery[0]); err != nil {
		t.Fatal(err)
	}
	in.client.DisableTOTP(ctx, tok.AccessToken, "wrong password!", en.recovery[1])
	if err := in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, en.recovery[1]); err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"TOTP secret": en.secret, "password": testPassword}
	for i, c := range en.recovery {
		secrets[fmt.Sprintf("recovery code %d", i)] = c
		secrets[fmt.Sprintf("recovery code %d, normalised", i)] = strings.ToUpper(strings.ReplaceAll(c, "-", ""))
	}
	checkLogs(t, in, logs, []string{"TOTP enabled", "recovery code used", "second factor refused"}, secrets)
	// Six digits occur in timestamps too; a code is a number of its own.
	for name, code := range map[string]string{"code": next, "wrong code": wrong} {
		if regexp.MustCompile(`(^|[^0-9])` + code + `([^0-9]|$)`).MatchString(logs.String()) {
			t.Errorf("log holds the %s", name)
		}
	}
}

// TestMFAIsAudited checks that enrolling, using a recovery code, disabling
// and resetting each leave a record in the audit log, and that no record
// holds a key or a code.
func TestMFAIsAudited(t *testing.T) {
	_, in, tok := onboarded(t)
	ctx := context.Background()
	en := enrol(t, in, tok)
	if _, err := in.client.Login(ctx, testOwner, testPassword, en.recovery[0]); err != nil {
		t.Fatal(err)
	}
	next := codeAt(t, en.secret, en.step+1)
	if err := in.client.DisableTOTP(ctx, tok.AccessToken, testPassword, next); err != nil {
		t.Fatal(err)
	}
	if err := in.svc.ResetMFA(ctx, testOwner); err != nil {
		t.Fatal(err)
	}

	page, err := in.svc.AuditLog().List(ctx, AuditQuery{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ action, actor, source, target string }
	got := map[key]bool{}
	for _, r := range page.Records {
		got[key{r.Action, r.Actor, r.Source, r.Target}] = true
	}
	for _, want := range []key{
		{AuditMFAEnrolled, testOwner, "", testOwner},
		{AuditRecoveryCodeUsed, testOwner, "", testOwner},
		{AuditMFADisabled, testOwner, "", testOwner},
		{AuditMFAReset, "system", "cli", testOwner},
	} {
		if !got[want] {
			t.Errorf("no audit record %+v among %d records", want, len(page.Records))
		}
	}
	raw, _ := json.Marshal(page.Records)
	for _, secret := range append([]string{en.secret, testPassword}, en.recovery...) {
		if strings.Contains(string(raw), secret) || strings.Contains(string(raw), strings.ToUpper(strings.ReplaceAll(secret, "-", ""))) {
			t.Error("an audit record holds a secret")
		}
	}
	if regexp.MustCompile(`(^|[^0-9])` + next + `([^0-9]|$)`).Match(raw) {
		t.Error("an audit record holds a TOTP code")
	}
}
