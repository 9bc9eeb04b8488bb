package auth

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"github.com/homemesh/homemesh"
	"github.com/nats-io/nkeys"
)

// BusServices are the services that get an identity on the bus. The auth
// service's identity is the one the NATS server knows itself (it answers
// auth callout for everybody else); the others are admitted by auth.
var BusServices = []string{ServiceName, "registry", "edge", "history", "gateway", "border"}

// busCredentialPrefix starts the text form of a bus credential and names
// its version, so a later format can be told apart.
const busCredentialPrefix = "hmbus1"

// BusCredential is one service's identity on the bus of one home. Secret
// is what proves it; the credential file holds all three fields.
type BusCredential struct {
	Home    string
	Service string
	Secret  string
}

// User is the NATS user name the credential connects as:
// "<service>@<home>".
func (c BusCredential) User() string { return BusUser(c.Home, c.Service) }

// BusUser is the NATS user name of service in home.
func BusUser(home, service string) string { return service + "@" + home }

// Encode returns the credential's one-line text form,
// "hmbus1.<home>.<service>.<secret>", which is what a credential file holds.
// It contains the secret.
func (c BusCredential) Encode() string {
	return busCredentialPrefix + "." + c.Home + "." + c.Service + "." + c.Secret
}

// ParseBusCredential reads the text form of a bus credential (surrounding
// white space, such as a file's final newline, is ignored). The error names
// the part that is wrong and never contains the secret.
func ParseBusCredential(text string) (BusCredential, error) {
	parts := strings.Split(strings.TrimSpace(text), ".")
	if len(parts) != 4 || parts[0] != busCredentialPrefix {
		return BusCredential{}, homemesh.Invalid("nats-credential", "not a homemesh bus credential (want %s.<home>.<service>.<secret>)", busCredentialPrefix)
	}
	c := BusCredential{Home: parts[1], Service: parts[2], Secret: parts[3]}
	if !homemesh.ValidID(c.Home) {
		return BusCredential{}, homemesh.Invalid("nats-credential", "the home is not a valid ID")
	}
	if !slices.Contains(BusServices, c.Service) {
		return BusCredential{}, homemesh.Invalid("nats-credential", "unknown service %q (known: %s)", c.Service, strings.Join(BusServices, ", "))
	}
	raw, err := base64.RawURLEncoding.DecodeString(c.Secret)
	if err != nil || len(raw) != sha256.Size {
		return BusCredential{}, homemesh.Invalid("nats-credential", "the secret is not %d bytes of unpadded base64url", sha256.Size)
	}
	return c, nil
}

// BusKeys are the bus identities of one home, derived from its secret key:
// the secret of each service's credential and the account key that signs
// the NATS users auth admits. Deriving them, instead of storing them on the
// bus, lets an operator issue credentials and write the NATS server's
// configuration before any NATS server runs, and lets every auth process
// holding the secret key agree on them without coordination.
type BusKeys struct {
	home   string
	macKey []byte
	issuer nkeys.KeyPair
}

// NewBusKeys derives the bus identities of home from its secret key.
func NewBusKeys(secretKey []byte, home string) (*BusKeys, error) {
	if len(secretKey) != SecretKeySize {
		return nil, homemesh.Invalid("secret_key", "must be exactly %d bytes", SecretKeySize)
	}
	if err := homemesh.CheckID("home", home); err != nil {
		return nil, err
	}
	// Distinct labels keep the credential key and the issuer seed
	// independent of each other and of the sealing use of the same key.
	macKey, err := hkdf.Key(sha256.New, secretKey, nil, "homemesh bus credentials v1 "+home, 32)
	if err != nil {
		return nil, fmt.Errorf("derive bus credential key: %w", err)
	}
	seed, err := hkdf.Key(sha256.New, secretKey, nil, "homemesh bus issuer v1 "+home, 32)
	if err != nil {
		return nil, fmt.Errorf("derive bus issuer key: %w", err)
	}
	issuer, err := nkeys.FromRawSeed(nkeys.PrefixByteAccount, seed)
	if err != nil {
		return nil, fmt.Errorf("derive bus issuer key: %w", err)
	}
	return &BusKeys{home: home, macKey: macKey, issuer: issuer}, nil
}

// Credential returns the credential of service.
func (k *BusKeys) Credential(service string) (BusCredential, error) {
	if !slices.Contains(BusServices, service) {
		return BusCredential{}, homemesh.Invalid("service", "unknown service %q (known: %s)", service, strings.Join(BusServices, ", "))
	}
	return BusCredential{Home: k.home, Service: service, Secret: k.secret(service)}, nil
}

func (k *BusKeys) secret(service string) string {
	m := hmac.New(sha256.New, k.macKey)
	m.Write([]byte(service))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Issuer is the public account key (an "A…" nkey) that signs the NATS users
// auth admits: the NATS server's auth_callout issuer.
func (k *BusKeys) Issuer() string {
	pub, _ := k.issuer.PublicKey() // an account pair made from a seed always has one
	return pub
}

// verify returns the service a user name and password prove, and whether
// they do. The auth service itself never passes here: the NATS server admits
// it without asking.
func (k *BusKeys) verify(user, password string) (service string, ok bool) {
	service, home, found := strings.Cut(user, "@")
	if !found || home != k.home || service == ServiceName || !slices.Contains(BusServices, service) {
		// Still compare, so that an unknown user costs the same time.
		subtle.ConstantTimeCompare([]byte(password), []byte(k.secret("")))
		return "", false
	}
	return service, subtle.ConstantTimeCompare([]byte(password), []byte(k.secret(service))) == 1
}
