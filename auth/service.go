package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/audit"
	"github.com/homemesh/homemesh/bus/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures the auth service.
type Config struct {
	// DataDir holds the secret key (unless SecretKey is given), the home CA
	// certificate (public) and, until the owner exists, the onboarding code.
	DataDir string
	// Home is the ID of the home this service secures.
	Home string
	// AccessTokenTTL is how long an access token lives (default 15m).
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long an unused refresh token lives (default
	// 30 days). Each refresh issues a new one with a fresh lifetime.
	RefreshTokenTTL time.Duration
	// SecretKey is the 32-byte key that seals key material at rest. When
	// nil it is read from DataDir/secret.key, which is created (mode 0600)
	// on first start. Every auth process of a home needs the same key.
	SecretKey []byte
	// WebAuthnRPID is the relying party ID passkeys are bound to, a domain
	// (default DefaultWebAuthnRPID).
	WebAuthnRPID string
	// WebAuthnOrigins are the origins passkeys are accepted from
	// (scheme://host[:port]). Empty leaves passkeys off until
	// SetWebAuthnOrigins names some.
	WebAuthnOrigins []string
	// PreviousSecretKeys are keys that sealed key material before
	// SecretKey, while a rotation is under way: what they sealed still
	// opens, and everything written is sealed with SecretKey. ResealAll
	// ends the need for them.
	PreviousSecretKeys [][]byte
}

// Deps are what the service runs on.
type Deps struct {
	Bus     *natsbus.Conn
	Log     *slog.Logger
	Metrics prometheus.Registerer // may be nil
}

// Default lifetimes.
const (
	// maxAccessTokenTTL bounds the access token lifetime and so how long a
	// revocation must be remembered.
	maxAccessTokenTTL      = 24 * time.Hour
	DefaultAccessTokenTTL  = 15 * time.Minute
	DefaultRefreshTokenTTL = 30 * 24 * time.Hour
)

// onboardingFile is the name of the onboarding code file in DataDir.
const onboardingFile = "onboarding-code"

// caFile is where the (public) CA certificate is written for convenience.
const caFile = "ca.crt"

// Service is the auth service. Create it with New and serve with Run.
type Service struct {
	ready chan struct{}
	cfg   Config
	bus   *natsbus.Conn
	log   *slog.Logger
	seal  sealer
	keys  signingKeys // the token signing key set; see signing.go
	ca    *homeCA
	// busKeys admit the other services to the bus (auth callout).
	busKeys *BusKeys

	keysKV, usersKV, refreshKV, credsKV, throttleKV, revocationsKV jetstream.KeyValue
	webauthnKV                                                     jetstream.KeyValue

	rpID         string
	relyingParty atomic.Pointer[webauthn.WebAuthn] // nil while passkeys are off
	decoyKey     []byte                            // derives decoy passkeys for user names without any
	pairKV       jetstream.KeyValue
	meshKV       jetstream.KeyValue // mesh hubs and paired mesh nodes
	tokensKV     jetstream.KeyValue // integration tokens, hashed

	audit *audit.Log // the home's audit log, which this service appends to

	code      string      // the onboarding code, "" when an owner existed at start
	onboarded atomic.Bool // set once an owner is known to exist
	dummyHash string      // verified against when a user is unknown, to equalise timing
	hashSem   chan struct{}
}

// bucket names a KV bucket of the home, so that homes sharing one NATS
// cluster never share state.
func bucket(home, name string) string { return "auth-" + home + "-" + name }

// New opens the service's buckets and loads its key material, creating the
// signing key, the home CA and the onboarding code on the very first start.
// Key material is created with KV Create, so processes starting together
// agree on one set.
func New(cfg Config, deps Deps) (*Service, error) {
	if err := homemesh.CheckID("home", cfg.Home); err != nil {
		return nil, err
	}
	if deps.Bus == nil {
		return nil, homemesh.Invalid("bus", "required")
	}
	if cfg.DataDir == "" {
		return nil, homemesh.Invalid("data_dir", "required")
	}
	if cfg.AccessTokenTTL == 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL == 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	if cfg.AccessTokenTTL < time.Second || cfg.AccessTokenTTL > maxAccessTokenTTL {
		return nil, homemesh.Invalid("access_token_ttl", "must be between 1s and 24h")
	}
	if cfg.RefreshTokenTTL < cfg.AccessTokenTTL || cfg.RefreshTokenTTL > 365*24*time.Hour {
		return nil, homemesh.Invalid("refresh_token_ttl", "must be between the access token TTL and 365 days")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("service", ServiceName, "home_id", cfg.Home)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	key := cfg.SecretKey
	if key == nil {
		var err error
		if key, err = loadSecretKey(cfg.DataDir); err != nil {
			return nil, err
		}
	} else if len(key) != SecretKeySize {
		return nil, homemesh.Invalid("secret_key", "must be exactly %d bytes", SecretKeySize)
	}
	if cfg.WebAuthnRPID == "" {
		cfg.WebAuthnRPID = DefaultWebAuthnRPID
	}
	wa, rpErr := newRelyingParty(cfg.WebAuthnRPID, cfg.WebAuthnOrigins)
	if rpErr != nil {
		return nil, rpErr
	}
	decoyKey := sha256.Sum256(append([]byte("homemesh passkey decoy\x00"), key...))
	seal, sealErr := newSealer(key, cfg.PreviousSecretKeys...)
	if sealErr != nil {
		return nil, sealErr
	}
	s := &Service{
		ready: make(chan struct{}),
		cfg:   cfg, bus: deps.Bus, log: log, seal: seal,
		hashSem: make(chan struct{}, runtime.GOMAXPROCS(0)),
		rpID:    cfg.WebAuthnRPID, decoyKey: decoyKey[:],
	}
	s.relyingParty.Store(wa)
	var err error
	if s.busKeys, err = NewBusKeys(key, cfg.Home); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.openBuckets(ctx); err != nil {
		return nil, err
	}
	if err := s.openCeremonyBucket(ctx); err != nil {
		return nil, err
	}
	if s.audit, err = audit.Open(ctx, s.bus, cfg.Home, audit.Options{Log: log, Metrics: deps.Metrics}); err != nil {
		return nil, err
	}
	if err := s.loadSigner(ctx); err != nil {
		return nil, err
	}
	if err := s.loadCA(ctx); err != nil {
		return nil, err
	}
	if err := s.loadOnboarding(ctx); err != nil {
		return nil, err
	}
	s.dummyHash = hashPassword(homemesh.RandomID(24))
	return s, nil
}

func (s *Service) openBuckets(ctx context.Context) error {
	open := func(dst *jetstream.KeyValue, name, desc string, ttl time.Duration) error {
		kv, err := s.bus.KeyValue(ctx, jetstream.KeyValueConfig{
			Bucket: bucket(s.cfg.Home, name), Description: desc, TTL: ttl, History: 1,
		})
		*dst = kv
		return err
	}
	for _, b := range []struct {
		dst        *jetstream.KeyValue
		name, desc string
		ttl        time.Duration
	}{
		{&s.keysKV, "keys", "auth key material, sealed", 0},
		{&s.usersKV, "users", "auth users", 0},
		// Records expire one refresh lifetime after their last write, which
		// outlives every token of a family revoked at that time.
		{&s.refreshKV, "refresh", "auth refresh tokens, hashed", s.cfg.RefreshTokenTTL},
		{&s.credsKV, "credentials", "auth MQTT credentials, hashed", 0},
		{&s.throttleKV, "throttle", "auth login throttling", throttleTTL},
		{&s.tokensKV, "tokens", "auth integration tokens, hashed", 0},
		// A revocation matters while tokens issued before it may live.
		{&s.revocationsKV, "revocations", "auth per-user token revocations", maxAccessTokenTTL + clockSkew},
		// Setup codes, hashed; the TTL removes unclaimed ones.
		{&s.pairKV, "pairings", "auth device setup codes, hashed", PairingTTL},
		{&s.meshKV, "mesh", "auth mesh hubs and paired mesh nodes", 0},
	} {
		if err := open(b.dst, b.name, b.desc, b.ttl); err != nil {
			return err
		}
	}
	return nil
}

// loadShared returns the sealed record key of the keys bucket, creating it
// with create when absent. Create fails for all but one of several
// processes racing on first start; the losers read the winner's record.
func (s *Service) loadShared(ctx context.Context, key string, create func() ([]byte, error)) ([]byte, error) {
	for range 3 {
		e, err := s.keysKV.Get(ctx, key)
		if err == nil {
			return s.seal.open(key, e.Value())
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, unavailable("read "+key, err)
		}
		plain, err := create()
		if err != nil {
			return nil, err
		}
		_, err = s.keysKV.Create(ctx, key, s.seal.seal(key, plain))
		if err == nil {
			return plain, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, unavailable("store "+key, err)
		}
	}
	return nil, fmt.Errorf("load %s: lost the creation race three times", key)
}

func unavailable(what string, err error) error {
	return &homemesh.Error{Op: "auth", Kind: homemesh.KindUnavailable, Message: "auth storage unavailable", Err: fmt.Errorf("%s: %w", what, err)}
}

func (s *Service) loadCA(ctx context.Context) error {
	raw, err := s.loadShared(ctx, "ca", func() ([]byte, error) {
		certDER, keyDER, err := newCA(s.cfg.Home, time.Now())
		if err != nil {
			return nil, err
		}
		return json.Marshal(caRecord{Cert: certDER, Key: keyDER})
	})
	if err != nil {
		return err
	}
	var rec caRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return fmt.Errorf("decode CA record: %w", err)
	}
	if s.ca, err = loadCA(rec.Cert, rec.Key); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(s.cfg.DataDir, caFile), s.ca.certPEM)
}

type caRecord struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// codeEncoding spells onboarding codes without padding; base32 avoids
// letters that look alike in lower and upper case.
var codeEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newOnboardingCode returns 100 random bits as four dash-separated groups
// of five base32 characters, easy to read out and type.
func newOnboardingCode() string {
	b := make([]byte, 13)
	rand.Read(b)
	raw := codeEncoding.EncodeToString(b)[:20]
	return raw[0:5] + "-" + raw[5:10] + "-" + raw[10:15] + "-" + raw[15:20]
}

// ownerKey marks, in the users bucket, that onboarding has happened. It is
// created with KV Create, so exactly one onboarding can win.
const ownerKey = "owner"

func (s *Service) loadOnboarding(ctx context.Context) error {
	_, err := s.usersKV.Get(ctx, ownerKey)
	switch {
	case err == nil:
		s.onboarded.Store(true)
		s.removeCodeFile()
		return nil
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return unavailable("read owner", err)
	}
	code, err := s.loadShared(ctx, "onboarding", func() ([]byte, error) { return []byte(newOnboardingCode()), nil })
	if err != nil {
		return err
	}
	s.code = string(code)
	if err := writeFileAtomic(filepath.Join(s.cfg.DataDir, onboardingFile), append(code, '\n')); err != nil {
		return err
	}
	s.log.Info("waiting for onboarding: the one-time code is in the data directory", "file", onboardingFile)
	return nil
}

func (s *Service) removeCodeFile() {
	err := os.Remove(filepath.Join(s.cfg.DataDir, onboardingFile))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cannot remove the onboarding code file", "err", err)
	}
}

// writeFileAtomic writes data to path with mode 0600 via a temporary file,
// so readers never see a partial file and the mode is never wider.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	return os.Rename(f.Name(), path)
}

// OnboardingCode returns the one-time onboarding code while the home has no
// owner, and "" once it has one (onboarded through any auth process).
func (s *Service) OnboardingCode() string {
	if s.onboarded.Load() || s.code == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := s.usersKV.Get(ctx, ownerKey); err == nil {
		s.onboarded.Store(true)
		s.removeCodeFile()
		return ""
	}
	return s.code
}

// CACertPEM returns the home CA certificate in PEM. Clients trust it to
// reach the hub's HTTPS and MQTTS listeners.
func (s *Service) CACertPEM() []byte { return bytes.Clone(s.ca.certPEM) }

// ServerTLSConfig returns a TLS 1.2+ server configuration whose certificate,
// issued by the home CA, names hosts (DNS names or IP addresses) plus
// localhost, 127.0.0.1 and ::1. Certificates are cached per host set and
// renewed a month before they expire.
func (s *Service) ServerTLSConfig(hosts []string) (*tls.Config, error) {
	hosts, err := normalizeHosts(hosts)
	if err != nil {
		return nil, err
	}
	if _, err := s.ca.leaf(hosts, time.Now()); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.ca.leaf(hosts, time.Now())
		},
	}, nil
}

// workers is how many subscriptions serve each verb per process; the bus
// runs one handler at a time per subscription.
func workers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// Ready is closed once the service answers requests.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run serves the service's verbs until ctx ends, then drains in-flight
// requests and returns nil.
func (s *Service) Run(ctx context.Context) error {
	// Watch the signing keys before serving, so that no rotation by
	// another process goes unseen once requests arrive.
	watchCtx, stopWatch := context.WithCancel(ctx)
	waitWatch := s.watchKeys(watchCtx)
	defer func() {
		stopWatch()
		waitWatch()
	}()
	handlers := map[string]natsbus.Handler{
		VerbOnboard:          s.handleOnboard,
		VerbLogin:            s.handleLogin,
		VerbRefresh:          s.handleRefresh,
		VerbKeys:             s.handleKeys,
		VerbCreateCredential: s.handleCreateCredential,
		VerbDeleteCredential: s.handleDeleteCredential,
		VerbListCredentials:  s.handleListCredentials,
		VerbAuthenticateMQTT: s.handleAuthenticateMQTT,
		VerbServerCert:       s.handleServerCert,
		VerbAuditAppend:      s.handleAuditAppend,
		VerbRevocations:      s.handleRevocations,
		VerbAuditList:        s.handleAuditList,
		VerbLogout:           s.handleLogout,
		VerbRevokeAll:        s.handleRevokeAll,
		VerbMFAStatus:        s.handleMFAStatus,
		VerbMFATOTPBegin:     s.handleMFATOTPBegin,
		VerbMFATOTPConfirm:   s.handleMFATOTPConfirm,
		VerbMFATOTPDisable:   s.handleMFATOTPDisable,

		VerbPasskeyRegisterBegin:  s.handlePasskeyRegisterBegin,
		VerbPasskeyRegisterFinish: s.handlePasskeyRegisterFinish,
		VerbPasskeyLoginBegin:     s.handlePasskeyLoginBegin,
		VerbPasskeyLoginFinish:    s.handlePasskeyLoginFinish,
		VerbPasskeyList:           s.handlePasskeyList,
		VerbPasskeyRemove:         s.handlePasskeyRemove,
		VerbCreatePairing:         s.handleCreatePairing,
		VerbClaimPairing:          s.handleClaimPairing,
		VerbAuthenticateCert:      s.handleAuthenticateCert,
		VerbMeshHubCert:           s.handleMeshHubCert,
		VerbMeshNodes:             s.handleMeshNodes,
		VerbMeshRevokeNode:        s.handleMeshRevokeNode,
		VerbMeshRevoked:           s.handleMeshRevoked,
		VerbCreateToken:           s.handleCreateToken,
		VerbListTokens:            s.handleListTokens,
		VerbDeleteToken:           s.handleDeleteToken,
		VerbVerifyToken:           s.handleVerifyToken,
		VerbCreateUser:            s.handleCreateUser,
		VerbListUsers:             s.handleListUsers,
		VerbGetUser:               s.handleGetUser,
		VerbUpdateUser:            s.handleUpdateUser,
		VerbDeleteUser:            s.handleDeleteUser,
		VerbChangePassword:        s.handleChangePassword,
		VerbRotateKeys:            s.handleRotateKeys,
	}
	var subs []*nats.Subscription
	drain := func() {
		for _, sub := range subs {
			sub.Drain()
		}
		deadline := time.Now().Add(30 * time.Second)
		for _, sub := range subs {
			for sub.IsValid() && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	for verb, h := range handlers {
		for range workers() {
			sub, err := s.bus.Handle(subject(verb), Queue, h)
			if err != nil {
				drain()
				return unavailable("subscribe "+verb, err)
			}
			subs = append(subs, sub)
		}
	}
	if err := s.bus.Flush(); err != nil {
		drain()
		return unavailable("flush subscriptions", err)
	}
	s.log.Info("auth serving", "kid", s.signing().kid)
	close(s.ready)
	<-ctx.Done()
	drain()
	s.log.Info("auth stopped")
	return nil
}

// decode parses a request body strictly: bounded, JSON, no unknown fields.
func decode(msg *nats.Msg, v any) error {
	if len(msg.Data) > maxRequest {
		return homemesh.Invalid("body", "request larger than %d bytes", maxRequest)
	}
	dec := json.NewDecoder(bytes.NewReader(msg.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return homemesh.Invalid("body", "not a valid request: %v", err)
	}
	if dec.More() {
		return homemesh.Invalid("body", "trailing data after the request")
	}
	return nil
}

func (s *Service) handleServerCert(ctx context.Context, msg *nats.Msg) (any, error) {
	var req serverCertRequest
	if err := decode(msg, &req); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(req.CSR)
	if err != nil {
		return nil, homemesh.Invalid("csr", "not a PKCS #10 certificate request: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, homemesh.Invalid("csr", "signature does not match its key")
	}
	if k, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return nil, homemesh.Invalid("csr", "key must be ECDSA P-256")
	}
	hosts, err := normalizeHosts(req.Hosts)
	if err != nil {
		return nil, err
	}
	der, _, err := s.ca.sign(csr.PublicKey, hosts, time.Now())
	if err != nil {
		return nil, err
	}
	s.log.Info("server certificate issued", "hosts", strings.Join(hosts, ","))
	return serverCertReply{Chain: [][]byte{der, s.ca.cert.Raw}}, nil
}

// hashLimit bounds how many argon2 hashes run at once (19 MiB each).
func (s *Service) hashLimit(ctx context.Context) (release func(), err error) {
	select {
	case s.hashSem <- struct{}{}:
		return func() { <-s.hashSem }, nil
	case <-ctx.Done():
		return nil, homemesh.Errorf(homemesh.KindUnavailable, "auth is busy; try again")
	}
}
