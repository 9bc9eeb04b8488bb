package meshnode

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// seqnoFileName is the file in Config.StateDir that holds the routing
// seqno, as decimal text and a newline.
const seqnoFileName = "mesh-seqno"

// seqnoFile persists the router's seqno, so that after a restart the
// node's announcements are newer than what the network remembers.
type seqnoFile struct {
	dir string
}

func (f *seqnoFile) path() string { return filepath.Join(f.dir, seqnoFileName) }

// load returns the persisted seqno: 0 when there is none, an error naming
// the file when it cannot be read or does not parse.
func (f *seqnoFile) load() (uint16, error) {
	b, err := os.ReadFile(f.path())
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", f.path(), err)
	}
	s, err := parseSeqno(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", f.path(), err)
	}
	return s, nil
}

// parseSeqno parses what store writes.
func parseSeqno(b []byte) (uint16, error) {
	if len(b) > 16 {
		return 0, fmt.Errorf("seqno: %d bytes, want a number of at most 5 digits", len(b))
	}
	text := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(text, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("seqno %q: want a decimal number from 0 to 65535", text)
	}
	return uint16(v), nil
}

// store writes s so that a crash leaves either the old or the new value:
// a temporary file, synced, renamed over the old one.
func (f *seqnoFile) store(s uint16) error {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	tmp, err := os.CreateTemp(f.dir, seqnoFileName+".*")
	if err != nil {
		return fmt.Errorf("write seqno: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.WriteString(strconv.Itoa(int(s)) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write seqno: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write seqno: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write seqno: %w", err)
	}
	if err := os.Rename(tmp.Name(), f.path()); err != nil {
		return fmt.Errorf("write seqno: %w", err)
	}
	return nil
}
