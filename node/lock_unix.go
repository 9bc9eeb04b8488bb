//go:build unix

package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFileName is the data directory's lock: whoever holds it owns the
// embedded NATS store inside, which two processes must never open at once.
const lockFileName = "lock"

// errDataLocked reports a data directory another process holds.
var errDataLocked = errors.New("another homemesh process is using this data directory")

// lockData takes the data directory's lock without waiting. The lock dies
// with the process, so a crash never leaves a stale one.
func lockData(dir string) (release func(), err error) {
	release, err = lockFile(filepath.Join(dir, lockFileName))
	if errors.Is(err, errLocked) {
		return nil, fmt.Errorf("%s: %w (is the hub running? stop it first)", dir, errDataLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("lock the data directory %s: %w", dir, err)
	}
	return release, nil
}

// lockFile takes an exclusive lock on path, creating the file, without
// waiting: errLocked when another process holds it. The lock dies with
// the process.
func lockFile(path string) (release func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
