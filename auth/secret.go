package auth

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/homemesh/homemesh"
	"golang.org/x/crypto/chacha20poly1305"
)

// SecretKeySize is the length of Config.SecretKey.
const SecretKeySize = chacha20poly1305.KeySize

// secretKeyFile is the name of the secret key in the data directory.
const secretKeyFile = "secret.key"

// loadSecretKey reads the secret key from dir, creating it on first start.
// O_EXCL makes two processes starting together agree on one key.
func loadSecretKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, secretKeyFile)
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, SecretKeySize)
		rand.Read(key)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			return loadSecretKey(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("create secret key: %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("write secret key: %w", err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("write secret key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read secret key: %w", err)
	}
	if len(key) != SecretKeySize {
		return nil, &homemesh.Error{Kind: homemesh.KindInvalid, Field: "secret_key",
			Message: fmt.Sprintf("%s must hold exactly %d bytes", secretKeyFile, SecretKeySize)}
	}
	return key, nil
}

// SecretKeyPath is where a hub keeps its secret key when none is given by
// flag or environment: in the data directory, mode 0600.
func SecretKeyPath(dataDir string) string { return filepath.Join(dataDir, secretKeyFile) }

// WriteSecretKey replaces the secret key in dataDir atomically: readers see
// the old key or the new one, never a mix, and the file is never readable
// by others.
//
// Unlike other files it is flushed to disk before it replaces the old key
// and the directory after, so a power cut cannot leave the home with a
// key file that opens nothing.
func WriteSecretKey(dataDir string, key []byte) error {
	if len(key) != SecretKeySize {
		return homemesh.Invalid("secret_key", "must be exactly %d bytes", SecretKeySize)
	}
	f, err := os.CreateTemp(dataDir, ".tmp-"+secretKeyFile+"-*")
	if err != nil {
		return fmt.Errorf("write the secret key: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		err = os.Rename(f.Name(), SecretKeyPath(dataDir))
	}
	if err != nil {
		return fmt.Errorf("write the secret key: %w", err)
	}
	if dir, err := os.Open(dataDir); err == nil {
		// Not every platform can sync a directory; the rename is done.
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

// SecretKeyID returns the public fingerprint of a secret key, the ID that
// sealed records carry. It identifies the key in messages and reports
// without revealing anything about it.
func SecretKeyID(key []byte) string {
	id := secretKeyID(key)
	return hex.EncodeToString(id[:])
}

func secretKeyID(key []byte) [keyIDSize]byte {
	// Domain-separated, so the fingerprint is no hash an attacker could
	// meet elsewhere.
	sum := sha256.Sum256(append([]byte("homemesh secret key id\x00"), key...))
	return [keyIDSize]byte(sum[:keyIDSize])
}

// Sealed records come in two formats.
//
// Version 0, written before secret keys could be rotated, is
//
//	nonce (24 bytes) || XChaCha20-Poly1305 ciphertext and tag
//
// with the record's purpose as additional data. It does not say which key
// sealed it, so opening tries every key held.
//
// Version 1 is
//
//	"hms" || 0x01 || key ID (8 bytes) || nonce (24 bytes) || ciphertext and tag
//
// with the 12-byte header followed by the purpose as additional data, so
// neither the version nor the key ID can be changed unnoticed. The key ID
// (SecretKeyID) picks the key, which lets a sealer hold the new key and the
// old ones during a rotation. Only version 1 is written.
const (
	sealMagic     = "hms"
	sealVersion1  = 1
	keyIDSize     = 8
	sealHeaderLen = len(sealMagic) + 1 + keyIDSize
	sealNonceLen  = chacha20poly1305.NonceSizeX
	sealTagLen    = chacha20poly1305.Overhead
)

// sealedRecord is a sealed record taken apart; its slices alias the input.
type sealedRecord struct {
	version    byte
	keyID      [keyIDSize]byte // zero in version 0
	nonce      []byte
	ciphertext []byte // with the tag
}

// parseSealed splits a stored record into its parts. A record that begins
// like version 1 is read as version 1; open falls back to version 0 for
// the one in four billion version 0 records whose random nonce begins so.
func parseSealed(b []byte) (sealedRecord, error) {
	if len(b) >= sealHeaderLen+sealNonceLen+sealTagLen && string(b[:len(sealMagic)]) == sealMagic && b[len(sealMagic)] == sealVersion1 {
		r := sealedRecord{version: sealVersion1}
		copy(r.keyID[:], b[len(sealMagic)+1:sealHeaderLen])
		r.nonce = b[sealHeaderLen : sealHeaderLen+sealNonceLen]
		r.ciphertext = b[sealHeaderLen+sealNonceLen:]
		return r, nil
	}
	return parseSealedV0(b)
}

func parseSealedV0(b []byte) (sealedRecord, error) {
	if len(b) < sealNonceLen+sealTagLen {
		return sealedRecord{}, errors.New("sealed record too short")
	}
	return sealedRecord{version: 0, nonce: b[:sealNonceLen], ciphertext: b[sealNonceLen:]}, nil
}

// header returns the bytes before the nonce: none in version 0.
func (r sealedRecord) header() []byte {
	if r.version == 0 {
		return nil
	}
	h := make([]byte, 0, sealHeaderLen)
	h = append(h, sealMagic...)
	h = append(h, r.version)
	return append(h, r.keyID[:]...)
}

// bytes is the stored form of r, the inverse of parseSealed.
func (r sealedRecord) bytes() []byte {
	out := r.header()
	out = append(out, r.nonce...)
	return append(out, r.ciphertext...)
}

// additionalData binds the header and the record's purpose to the
// ciphertext: a sealed signing key cannot be passed off as the CA key.
func (r sealedRecord) additionalData(purpose string) []byte {
	return append(r.header(), purpose...)
}

// sealKey is one secret key ready for use.
type sealKey struct {
	id   [keyIDSize]byte
	aead cipher.AEAD
}

func newSealKey(key []byte) (sealKey, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return sealKey{}, homemesh.Invalid("secret_key", "must be exactly %d bytes", SecretKeySize)
	}
	return sealKey{id: secretKeyID(key), aead: aead}, nil
}

// sealer encrypts key material at rest with XChaCha20-Poly1305 under the
// current secret key, and opens what the current key or any previous key
// sealed. Its random 192-bit nonces never repeat in practice.
type sealer struct {
	current  sealKey
	previous []sealKey
}

// newSealer returns a sealer that seals with current and also opens what
// the previous keys sealed.
func newSealer(current []byte, previous ...[]byte) (sealer, error) {
	cur, err := newSealKey(current)
	if err != nil {
		return sealer{}, err
	}
	s := sealer{current: cur}
	for _, p := range previous {
		k, err := newSealKey(p)
		if err != nil {
			return sealer{}, homemesh.Invalid("previous_secret_key", "must be exactly %d bytes", SecretKeySize)
		}
		if k.id != cur.id {
			s.previous = append(s.previous, k)
		}
	}
	return s, nil
}

// seal returns plain sealed for purpose in the current format with the
// current key.
func (s sealer) seal(purpose string, plain []byte) []byte {
	r := sealedRecord{version: sealVersion1, keyID: s.current.id, nonce: make([]byte, sealNonceLen)}
	rand.Read(r.nonce)
	out := r.header()
	out = append(out, r.nonce...)
	return s.current.aead.Seal(out, r.nonce, plain, r.additionalData(purpose))
}

// open returns what sealed holds for purpose.
func (s sealer) open(purpose string, sealed []byte) ([]byte, error) {
	plain, _, err := s.openStale(purpose, sealed)
	return plain, err
}

// openStale is open that also reports whether the record should be sealed
// again: it is in version 0 or sealed with a previous key.
func (s sealer) openStale(purpose string, sealed []byte) (plain []byte, stale bool, err error) {
	r, err := parseSealed(sealed)
	if err != nil {
		return nil, false, errDamaged(purpose)
	}
	if r.version == sealVersion1 {
		key, ok := s.key(r.keyID)
		if ok {
			plain, err := key.aead.Open(nil, r.nonce, r.ciphertext, r.additionalData(purpose))
			if err == nil {
				return plain, key.id != s.current.id, nil
			}
		}
		// A version 0 record whose nonce happens to begin like a header.
		if v0, err := parseSealedV0(sealed); err == nil {
			if plain, ok := s.openV0(purpose, v0); ok {
				return plain, true, nil
			}
		}
		if !ok {
			return nil, false, s.errUnknownKey(r.keyID)
		}
		return nil, false, errDamaged(purpose)
	}
	if plain, ok := s.openV0(purpose, r); ok {
		return plain, true, nil
	}
	return nil, false, errWrongSecret
}

func (s sealer) openV0(purpose string, r sealedRecord) ([]byte, bool) {
	for _, k := range append([]sealKey{s.current}, s.previous...) {
		if plain, err := k.aead.Open(nil, r.nonce, r.ciphertext, []byte(purpose)); err == nil {
			return plain, true
		}
	}
	return nil, false
}

func (s sealer) key(id [keyIDSize]byte) (sealKey, bool) {
	if id == s.current.id {
		return s.current, true
	}
	for _, k := range s.previous {
		if k.id == id {
			return k, true
		}
	}
	return sealKey{}, false
}

// errWrongSecret is the answer when no key held opens a version 0 record:
// it cannot say which key sealed it.
var errWrongSecret = &homemesh.Error{Kind: homemesh.KindInvalid, Field: "secret_key",
	Message: "the secret key does not open the stored key material (it was sealed with another secret key)"}

func (s sealer) errUnknownKey(id [keyIDSize]byte) error {
	held := []string{hex.EncodeToString(s.current.id[:])}
	for _, k := range s.previous {
		held = append(held, hex.EncodeToString(k.id[:]))
	}
	return &homemesh.Error{Kind: homemesh.KindInvalid, Field: "secret_key",
		Message: fmt.Sprintf("the stored key material was sealed with secret key %x, which this process was not given (it holds %s)",
			id, strings.Join(held, ", "))}
}

// errDamaged reports a record that names a key held but fails to
// authenticate: it was altered or damaged in storage.
func errDamaged(purpose string) error {
	return &homemesh.Error{Kind: homemesh.KindInternal,
		Message: fmt.Sprintf("the sealed record %q is damaged or was altered; restore it from a backup", purpose)}
}

// LoadSecretKey returns the secret key kept in the data directory dir,
// creating it (mode 0600) when absent, exactly as the service does when
// Config.SecretKey is nil. Processes that derive bus identities without
// running the service (the hub's other services, `homemesh
// nats-credential`) read the key through it.
func LoadSecretKey(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	return loadSecretKey(dir)
}
