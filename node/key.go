package node

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/auth"
)

// Environment variables carrying secret keys themselves rather than the
// name of a file. They are not configuration fields: a key never belongs
// in a configuration file.
const (
	envSecretKey         = "HOMEMESH_SECRET_KEY"
	envPreviousSecretKey = "HOMEMESH_PREVIOUS_SECRET_KEY"
)

// secretKeys returns the key sealing secrets at rest and the keys that
// sealed them before (during a rotation). A nil current key means the data
// directory's, which auth reads or creates.
func (n *Node) secretKeys() (current []byte, previous [][]byte, err error) {
	if v := os.Getenv(envSecretKey); v != "" {
		if current, err = decodeKey([]byte(v), envSecretKey); err != nil {
			return nil, nil, err
		}
	} else if n.cfg.SecretKeyFile != "" {
		if current, err = readKeyFile(n.cfg.SecretKeyFile, "secret-key-file"); err != nil {
			return nil, nil, err
		}
	}
	if v := os.Getenv(envPreviousSecretKey); v != "" {
		k, err := decodeKey([]byte(v), envPreviousSecretKey)
		if err != nil {
			return nil, nil, err
		}
		previous = append(previous, k)
	}
	if n.cfg.PreviousSecretKeyFile != "" {
		k, err := readKeyFile(n.cfg.PreviousSecretKeyFile, "previous-secret-key-file")
		if err != nil {
			return nil, nil, err
		}
		previous = append(previous, k)
	}
	return current, previous, nil
}

// currentSecretKey is secretKeys' current key, read from the data
// directory when neither the environment nor a flag gives it; maintenance
// never creates a key. fromDataDir says where it came from.
func (n *Node) currentSecretKey() (key []byte, previous [][]byte, fromDataDir bool, err error) {
	key, previous, err = n.secretKeys()
	if err != nil || key != nil {
		return key, previous, false, err
	}
	path := auth.SecretKeyPath(n.cfg.Data)
	key, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, false, homemesh.Invalid("secret-key-file",
			"%s does not exist: give the current key with --secret-key-file or %s", path, envSecretKey)
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("read the secret key: %w", err)
	}
	if len(key) != auth.SecretKeySize {
		return nil, nil, false, homemesh.Invalid("secret-key-file", "%s must hold exactly %d bytes", path, auth.SecretKeySize)
	}
	return key, previous, true, nil
}

// readKeyFile reads a key file named by flag.
func readKeyFile(path, flag string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, homemesh.Invalid(flag, "%v", err)
	}
	return decodeKey(data, flag)
}

// decodeKey accepts a 32-byte key as raw bytes, hex or base64, so the
// output of `openssl rand -hex 32` or `head -c32 /dev/urandom` both work.
func decodeKey(data []byte, field string) ([]byte, error) {
	s := bytes.TrimSpace(data)
	if len(s) == 32 {
		return s, nil
	}
	if k, err := hex.DecodeString(string(s)); err == nil && len(k) == 32 {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(string(s)); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	if len(data) == 32 {
		return data, nil
	}
	return nil, homemesh.Invalid(field, "must hold a 32-byte key (raw, hex or base64)")
}
