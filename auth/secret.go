package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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

// sealer encrypts key material at rest with XChaCha20-Poly1305. Its random
// 192-bit nonces never repeat in practice, and the purpose of each record is
// bound as additional data, so a sealed signing key cannot be passed off as
// the CA key.
type sealer struct{ key []byte }

func (s sealer) seal(purpose string, plain []byte) []byte {
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		panic(err) // key length checked in New
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plain, []byte(purpose))
}

var errWrongSecret = &homemesh.Error{Kind: homemesh.KindInvalid, Field: "secret_key",
	Message: "the secret key does not open the stored key material (it was sealed with another secret key)"}

func (s sealer) open(purpose string, sealed []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(s.key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errWrongSecret
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(purpose))
	if err != nil {
		return nil, errWrongSecret
	}
	return plain, nil
}
