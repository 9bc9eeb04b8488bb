package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"slices"
	"strconv"
	"time"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters: what every authenticator app accepts (RFC 6238 with
// SHA-1, six digits, 30-second steps).
const (
	totpIssuer = "homemesh"
	totpPeriod = 30 // seconds
	totpDigits = otp.DigitsSix
	// totpSkew is how many steps before and after the current one a code
	// may come from, for phones whose clocks drift.
	totpSkew = 1
	// totpSecretSize is the HMAC key length, 160 bits as RFC 4226 advises.
	totpSecretSize = 20
	// qrSize is the width and height of the enrolment QR code in pixels.
	qrSize = 256
)

// RecoveryCodes is how many recovery codes enabling TOTP issues.
const RecoveryCodes = 10

// maxCodeLen bounds an entered one-time or recovery code before parsing.
const maxCodeLen = 64

// recoveryCodeLen is the number of base32 characters of a recovery code,
// 100 random bits.
const recoveryCodeLen = 20

var (
	errTOTPRequired = &homemesh.Error{Kind: homemesh.KindUnauthenticated, Field: "totp",
		Message: "a one-time code from your authenticator app is required"}
	errTOTPEnabled    = homemesh.Errorf(homemesh.KindConflict, "TOTP is already enabled; disable it before enrolling again")
	errTOTPNotEnabled = homemesh.Errorf(homemesh.KindConflict, "TOTP is not enabled")
	errNoPendingTOTP  = homemesh.Errorf(homemesh.KindConflict, "no TOTP enrolment is in progress; begin one first")
)

// wrongCode is the answer to a one-time code that does not match or was
// already used. Both look the same, so a replay teaches nothing.
func wrongCode(field string) error {
	return &homemesh.Error{Kind: homemesh.KindUnauthenticated, Field: field,
		Message: "wrong or already used one-time code"}
}

// totpPurpose binds a sealed TOTP secret to its user, so that one user's
// sealed secret copied into another's record does not open.
func totpPurpose(userID string) string { return "totp." + userID }

// oneTimeCode is a parsed second factor: exactly one of its fields is set.
type oneTimeCode struct {
	totp     string // six ASCII digits
	recovery string // recoveryCodeLen upper-case base32 characters
}

// parseOneTimeCode reads what a person typed as a second factor: a six-digit
// TOTP code ("123456", "123 456") or a recovery code in any case, with or
// without its dashes ("abcde-fghij-klmno-pqrst"). Errors name field.
func parseOneTimeCode(field, entered string) (oneTimeCode, error) {
	if entered == "" {
		return oneTimeCode{}, homemesh.Invalid(field, "is required")
	}
	if len(entered) > maxCodeLen {
		return oneTimeCode{}, homemesh.Invalid(field, "must be at most %d characters", maxCodeLen)
	}
	norm := make([]byte, 0, len(entered))
	digits := true
	for i := 0; i < len(entered); i++ {
		c := entered[i]
		switch {
		case c == ' ' || c == '-':
			continue
		case c >= '0' && c <= '9':
			// Only 2-7 occur in base32; the rest can only be TOTP digits.
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
			digits = false
		case c >= 'A' && c <= 'Z':
			digits = false
		default:
			return oneTimeCode{}, badCode(field)
		}
		norm = append(norm, c)
	}
	switch {
	case digits && len(norm) == totpDigits.Length():
		return oneTimeCode{totp: string(norm)}, nil
	case len(norm) == recoveryCodeLen && isBase32(norm):
		return oneTimeCode{recovery: string(norm)}, nil
	}
	return oneTimeCode{}, badCode(field)
}

func badCode(field string) error {
	return homemesh.Invalid(field, "must be the %d-digit code from your authenticator app or a recovery code (abcde-fghij-klmno-pqrst)", totpDigits.Length())
}

func isBase32(b []byte) bool {
	for _, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// newRecoveryCode returns 100 random bits as four dash-separated groups of
// five lower-case base32 characters, easy to write down and type.
func newRecoveryCode() string {
	b := make([]byte, 13)
	rand.Read(b)
	raw := bytes.ToLower([]byte(codeEncoding.EncodeToString(b)[:recoveryCodeLen]))
	return string(raw[0:5]) + "-" + string(raw[5:10]) + "-" + string(raw[10:15]) + "-" + string(raw[15:20])
}

// recoveryHash is what is stored of a recovery code. The code has 100
// random bits, so a fast hash suffices: there is no dictionary to try.
func recoveryHash(normalized string) []byte {
	sum := sha256.Sum256([]byte(normalized))
	return sum[:]
}

// totpStep is the number of the 30-second step that t falls in.
func totpStep(t time.Time) int64 { return t.Unix() / totpPeriod }

// matchTOTP returns the step, within the allowed skew of now and after
// lastStep, for which code is right. Steps up to lastStep were spent
// already, which makes every code single-use.
func matchTOTP(secret, code string, now time.Time, lastStep int64) (int64, bool) {
	opts := hotp.ValidateOpts{Digits: totpDigits, Algorithm: otp.AlgorithmSHA1}
	step := totpStep(now)
	for s := step - totpSkew; s <= step+totpSkew; s++ {
		if s <= lastStep || s < 0 {
			continue
		}
		if ok, err := hotp.ValidateCustom(code, uint64(s), secret, opts); err == nil && ok {
			return s, true
		}
	}
	return 0, false
}

// spendCode checks code against u's second factors and, when it is right,
// spends it in u: a TOTP code moves TOTPLastStep forward, a recovery code
// loses its hash. The caller stores u with compare-and-set, so a code is
// spent at most once however many requests present it at the same time.
func (s *Service) spendCode(u *user, field string, code oneTimeCode, now time.Time) (usedRecovery bool, err error) {
	if len(u.TOTPSecret) == 0 {
		return false, errTOTPNotEnabled
	}
	if code.totp != "" {
		secret, err := s.seal.open(totpPurpose(u.ID), u.TOTPSecret)
		if err != nil {
			return false, err
		}
		step, ok := matchTOTP(string(secret), code.totp, now, u.TOTPLastStep)
		if !ok {
			return false, wrongCode(field)
		}
		u.TOTPLastStep = step
		return false, nil
	}
	want := recoveryHash(code.recovery)
	found := -1
	for i, h := range u.RecoveryHashes {
		if subtle.ConstantTimeCompare(h, want) == 1 {
			found = i
		}
	}
	if found < 0 {
		return false, wrongCode(field)
	}
	u.RecoveryHashes = slices.Delete(u.RecoveryHashes, found, found+1)
	return true, nil
}

func (s *Service) handleMFAStatus(ctx context.Context, msg *nats.Msg) (any, error) {
	_, c, err := decodeAuthorized[mfaRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	u, err := s.actorRecord(ctx, c)
	if err != nil {
		return nil, err
	}
	st := MFAStatus{TOTPEnabled: len(u.TOTPSecret) > 0}
	if st.TOTPEnabled {
		st.RecoveryCodesLeft = len(u.RecoveryHashes)
	}
	return st, nil
}

func (s *Service) handleMFATOTPBegin(ctx context.Context, msg *nats.Msg) (any, error) {
	_, c, err := decodeAuthorized[mfaRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	key, err := totp.Generate(totp.GenerateOpts{
		Issuer: totpIssuer, AccountName: c.Username + "@" + s.cfg.Home,
		Period: totpPeriod, SecretSize: totpSecretSize, Digits: totpDigits, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		return nil, fmt.Errorf("generate TOTP key: %w", err)
	}
	img, err := key.Image(qrSize, qrSize)
	if err != nil {
		return nil, fmt.Errorf("draw TOTP QR code: %w", err)
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return nil, fmt.Errorf("encode TOTP QR code: %w", err)
	}
	// A pending secret replaces any earlier one: only the enrolment the
	// person finishes counts, and an abandoned one leaves nothing usable.
	_, err = s.updateUser(ctx, c.Username, c.UserID, func(u *user) error {
		if len(u.TOTPSecret) > 0 {
			return errTOTPEnabled
		}
		u.TOTPPending = s.seal.seal(totpPurpose(u.ID), []byte(key.Secret()))
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("TOTP enrolment begun", "username", c.Username, "user_id", c.UserID)
	return TOTPEnrollment{Secret: key.Secret(), OTPAuthURI: key.URL(), QRPNG: qr.Bytes()}, nil
}

func (s *Service) handleMFATOTPConfirm(ctx context.Context, msg *nats.Msg) (any, error) {
	req, c, err := decodeAuthorized[mfaConfirmRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	code, err := parseOneTimeCode("code", req.Code)
	if err != nil {
		return nil, err
	}
	if code.totp == "" {
		return nil, homemesh.Invalid("code", "must be the %d-digit code your authenticator app shows for the new key", totpDigits.Length())
	}
	codes := make([]string, RecoveryCodes)
	hashes := make([][]byte, RecoveryCodes)
	for i := range codes {
		codes[i] = newRecoveryCode()
		norm, _ := parseOneTimeCode("code", codes[i])
		hashes[i] = recoveryHash(norm.recovery)
	}
	now := time.Now()
	_, err = s.updateUser(ctx, c.Username, c.UserID, func(u *user) error {
		switch {
		case len(u.TOTPSecret) > 0:
			return errTOTPEnabled
		case len(u.TOTPPending) == 0:
			return errNoPendingTOTP
		}
		secret, err := s.seal.open(totpPurpose(u.ID), u.TOTPPending)
		if err != nil {
			return err
		}
		step, ok := matchTOTP(string(secret), code.totp, now, 0)
		if !ok {
			return homemesh.Invalid("code", "does not match the new key; check that your phone's clock is right and enter the current code")
		}
		u.TOTPSecret, u.TOTPPending = u.TOTPPending, nil
		// The confirming code is spent like any other, so it cannot log in.
		u.TOTPLastStep = step
		u.RecoveryHashes = hashes
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("TOTP enabled", "username", c.Username, "user_id", c.UserID)
	s.Audit(ctx, AuditEntry{Action: AuditMFAEnrolled, Outcome: OutcomeSuccess, Actor: c.Username, ActorID: c.UserID,
		Target: c.Username, Details: map[string]string{"method": "totp"}})
	return mfaConfirmReply{RecoveryCodes: codes}, nil
}

func (s *Service) handleMFATOTPDisable(ctx context.Context, msg *nats.Msg) (any, error) {
	req, c, err := decodeAuthorized[mfaDisableRequest](s, ctx, msg, everyRole...)
	if err != nil {
		return nil, err
	}
	if req.Password == "" {
		return nil, homemesh.Invalid("password", "is required")
	}
	code, err := parseOneTimeCode("code", req.Code)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	// Disabling is what a thief holding a stolen access token wants most, so
	// it takes both factors, and wrong guesses count towards the same lock
	// as failed logins of the user name.
	if err := s.checkNameThrottle(ctx, c.Username, now); err != nil {
		return nil, err
	}
	u, err := s.actorRecord(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(u.TOTPSecret) == 0 {
		return nil, errTOTPNotEnabled
	}
	release, err := s.hashLimit(ctx)
	if err != nil {
		return nil, err
	}
	ok := len(req.Password) <= MaxPasswordLen && verifyPassword(u.PasswordHash, req.Password)
	release()
	if !ok {
		s.manageFailed(ctx, c.Username, "wrong password", now)
		return nil, &homemesh.Error{Kind: homemesh.KindUnauthenticated, Field: "password", Message: "wrong password"}
	}
	var usedRecovery bool
	_, err = s.updateUser(ctx, c.Username, c.UserID, func(u *user) error {
		var err error
		if usedRecovery, err = s.spendCode(u, "code", code, now); err != nil {
			return err
		}
		u.TOTPSecret, u.TOTPPending, u.TOTPLastStep, u.RecoveryHashes = nil, nil, 0, nil
		return nil
	})
	if err != nil {
		if homemesh.ErrorField(err) == "code" {
			s.manageFailed(ctx, c.Username, "wrong one-time code", now)
		}
		return nil, err
	}
	if usedRecovery {
		s.auditRecoveryCode(ctx, u, 0)
	}
	s.log.Info("TOTP disabled", "username", c.Username, "user_id", c.UserID)
	s.Audit(ctx, AuditEntry{Action: AuditMFADisabled, Outcome: OutcomeSuccess, Actor: c.Username, ActorID: c.UserID,
		Target: c.Username, Details: map[string]string{"method": "totp"}})
	return struct{}{}, nil
}

// checkLoginCode asks for and spends the second factor of a login whose
// password was right. It reveals that a code is needed only then, so it
// tells nothing to someone without the password. A wrong code counts as a
// failed login of u's name from source.
func (s *Service) checkLoginCode(ctx context.Context, u user, entered, source string) error {
	if len(u.TOTPSecret) == 0 {
		return nil
	}
	if entered == "" {
		return errTOTPRequired
	}
	code, err := parseOneTimeCode("totp", entered)
	if err != nil {
		return err
	}
	now := time.Now()
	var usedRecovery bool
	fresh, err := s.updateUser(ctx, u.Username, u.ID, func(u *user) error {
		var err error
		usedRecovery, err = s.spendCode(u, "totp", code, now)
		return err
	})
	switch {
	case errors.Is(err, errUserChanged):
		return errLogin
	case errors.Is(err, errTOTPNotEnabled):
		// MFA was reset or disabled while this login ran: the password
		// alone is what the account asks for now.
		return nil
	case homemesh.ErrorField(err) == "totp":
		s.log.Warn("second factor refused", "username", u.Username, "user_id", u.ID, "reason", "wrong one-time code")
		s.recordLoginFailure(ctx, u.Username, source)
		return err
	case err != nil:
		return err
	}
	if usedRecovery {
		s.auditRecoveryCode(ctx, fresh, len(fresh.RecoveryHashes))
	}
	return nil
}

// checkNameThrottle refuses, while the login counter of the user name is
// locked, a request that checks the user's password or second factor.
func (s *Service) checkNameThrottle(ctx context.Context, name string, now time.Time) error {
	e, err := s.throttleKV.Get(ctx, nameThrottleKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return unavailable("read throttle", err)
	}
	var r throttleRecord
	if json.Unmarshal(e.Value(), &r) != nil || !now.Before(r.Until) {
		return nil
	}
	s.log.Warn("second factor change refused: throttled", "username", name)
	return errThrottled(r.Until.Sub(now))
}

// manageFailed counts a wrong password or code, presented to manage a
// second factor, as a failed login of the user name. Such requests carry a
// valid access token rather than arrive from an address of their own, so
// only the name's counter counts them.
func (s *Service) manageFailed(ctx context.Context, name, reason string, now time.Time) {
	r, err := s.countFailure(ctx, nameLimit, nameThrottleKey(name), now)
	if err != nil {
		s.log.Error("cannot record a failed login", "username", name, "err", err)
	}
	s.log.Warn("second factor refused", "username", name, "reason", reason, "failures", r.Failures)
	s.Audit(ctx, AuditEntry{Action: AuditLoginFailed, Outcome: OutcomeFailure, Actor: name, Target: name,
		Details: map[string]string{"reason": reason, "failures": strconv.Itoa(r.Failures)}})
}

func (s *Service) auditRecoveryCode(ctx context.Context, u user, left int) {
	s.log.Warn("recovery code used", "username", u.Username, "user_id", u.ID, "codes_left", left)
	s.Audit(ctx, AuditEntry{Action: AuditRecoveryCodeUsed, Outcome: OutcomeSuccess, Actor: u.Username, ActorID: u.ID,
		Target: u.Username, Details: map[string]string{"codes_left": strconv.Itoa(left)}})
}

// ResetMFA removes every second factor of the user username, enrolled or
// pending, and their recovery codes, so that they can log in with their
// password alone and enrol again. It is the owner's way back in after
// losing their phone, run from the command line on the hub while its
// services are stopped. An unknown user is KindNotFound naming "username".
func (s *Service) ResetMFA(ctx context.Context, username string) error {
	name, err := normalizeUsername("username", username)
	if err != nil {
		return err
	}
	u, found, err := s.getUser(ctx, name)
	if err != nil {
		return err
	}
	if found {
		u, err = s.updateUser(ctx, name, u.ID, func(u *user) error {
			u.TOTPSecret, u.TOTPPending, u.TOTPLastStep, u.RecoveryHashes = nil, nil, 0, nil
			return nil
		})
	}
	if !found || errors.Is(err, errUserChanged) {
		return &homemesh.Error{Kind: homemesh.KindNotFound, Field: "username", Message: fmt.Sprintf("no user named %q", name)}
	}
	if err != nil {
		return err
	}
	// A reset means a lost or stolen second factor; whoever holds it may
	// also hold a session, so every session of the user ends too.
	if _, err := s.RevokeUserTokens(ctx, name); err != nil {
		return err
	}
	s.log.Warn("MFA reset; every session of the user ended", "username", name, "user_id", u.ID)
	s.Audit(ctx, AuditEntry{Action: AuditMFAReset, Outcome: OutcomeSuccess, Actor: "system", Source: "cli",
		Target: name, Details: map[string]string{"user_id": u.ID}})
	return nil
}
