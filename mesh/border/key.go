package border

import (
	"crypto/ecdh"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/homemesh/homemesh/mesh/link"
)

// KeyFile is the name of the hub's static X25519 key in the data
// directory: 32 raw bytes, mode 0600. The hub's node id derives from it,
// so agents keep reaching the same hub across restarts.
const KeyFile = "mesh-hub.key"

// loadKey reads the hub's static key from dir, creating it on first start.
func loadKey(dir string) (*ecdh.PrivateKey, error) {
	path := filepath.Join(dir, KeyFile)
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if len(raw) != 32 {
			return nil, fmt.Errorf("border: %s holds %d bytes, not a 32-byte X25519 key; restore it from a backup or delete it to make the hub a new mesh node", path, len(raw))
		}
		// The key is a secret: whatever loosened its mode, tighten it.
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(path, 0o600); err != nil {
				return nil, fmt.Errorf("border: restrict %s to its owner: %w", path, err)
			}
		}
		return ecdh.X25519().NewPrivateKey(raw)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("border: read %s: %w", path, err)
	}
	key, err := link.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("border: create %s: %w", dir, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(dir) // another process made it first
		}
		return nil, fmt.Errorf("border: create %s: %w", path, err)
	}
	if _, err := f.Write(key.Bytes()); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("border: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("border: write %s: %w", path, err)
	}
	return key, nil
}
