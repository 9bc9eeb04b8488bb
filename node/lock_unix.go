//go:build unix

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFile is the data directory's lock: whoever holds it owns the embedded
// NATS store inside, which two processes must never open at once.
const lockFile = "lock"

// errDataLocked reports a data directory another process holds.
var errDataLocked = errors.New("another homemesh process is using this data directory")

// lockData takes the data directory's lock without waiting. The lock dies
// with the process, so a crash never leaves a stale one.
func lockData(dir string) (release func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w (is the hub running? stop it first)", dir, errDataLocked)
		}
		return nil, fmt.Errorf("lock the data directory %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}
