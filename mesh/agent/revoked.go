package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/homemesh/homemesh/mesh/meshapp"
	"github.com/homemesh/homemesh/mesh/route"
)

// RevokedFile is the file of a state directory that lists the nodes the
// home revoked, as its hubs told the agent: one node id (16 lower-case hex
// digits) per line, sorted.
const RevokedFile = "revoked-nodes"

// maxRevokedKept bounds the revoked nodes an agent remembers: far more
// than a home pairs in its life, about 1 MiB of file.
const maxRevokedKept = 1 << 16

// loadRevoked reads the revoked nodes kept in dir; none when the file does
// not exist.
func loadRevoked(dir string) ([]route.NodeID, error) {
	path := filepath.Join(dir, RevokedFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the revoked nodes: %w", err)
	}
	ids, err := parseRevoked(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ids, nil
}

// parseRevoked parses what formatRevoked writes, strictly: a file that
// says anything else was not written by the agent.
func parseRevoked(b []byte) ([]route.NodeID, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > maxRevokedKept*17 {
		return nil, fmt.Errorf("%d bytes, more than %d node ids", len(b), maxRevokedKept)
	}
	if b[len(b)-1] != '\n' {
		return nil, errors.New("the last line does not end with a newline")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	ids := make([]route.NodeID, len(lines))
	for i, line := range lines {
		id, err := route.ParseNodeID(line)
		if err != nil || id.String() != line {
			return nil, fmt.Errorf("line %d: %q is not a node id of 16 lower-case hex digits", i+1, truncate(line))
		}
		if i > 0 && bytes.Compare(ids[i-1][:], id[:]) >= 0 {
			return nil, fmt.Errorf("line %d: node ids must be sorted and listed once", i+1)
		}
		ids[i] = id
	}
	return ids, nil
}

// formatRevoked writes ids, sorted, one per line.
func formatRevoked(ids []route.NodeID) []byte {
	sorted := slices.Clone(ids)
	slices.SortFunc(sorted, func(a, b route.NodeID) int { return bytes.Compare(a[:], b[:]) })
	sorted = slices.Compact(sorted)
	var buf bytes.Buffer
	for _, id := range sorted {
		buf.WriteString(id.String())
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

func truncate(s string) string {
	if len(s) > 32 {
		return strings.ToValidUTF8(s[:32], "") + "…"
	}
	return s
}

// revoke obeys a hub's revoked message: the node refuses the nodes it
// names from now on, and the state directory keeps them for the next
// start.
func (l *loop) revoke(from route.NodeID, m *meshapp.Revoked) {
	var added []route.NodeID
	for _, id := range m.Nodes {
		if l.revoked[id] {
			continue
		}
		if len(l.revoked) >= maxRevokedKept {
			l.log.Error("too many revoked nodes to remember; the rest are ignored", "hub", from.String(), "kept", len(l.revoked))
			break
		}
		l.revoked[id] = true
		added = append(added, id)
		if id == l.node.ID() {
			l.log.Error("the home revoked this node: it must be paired again with a new key (remove the state directory first)",
				"node", id.String())
		}
	}
	if len(added) == 0 {
		return
	}
	l.node.Revoke(added)
	l.count(func(c *Counters) { c.Revoked = uint64(len(l.revoked)) })
	l.log.Info("nodes revoked by the home", "hub", from.String(), "new", len(added), "revoked", len(l.revoked))
	if l.cfg.StateDir == "" {
		return
	}
	all := make([]route.NodeID, 0, len(l.revoked))
	for id := range l.revoked {
		all = append(all, id)
	}
	if err := writeFileAtomic(filepath.Join(l.cfg.StateDir, RevokedFile), formatRevoked(all), 0o644); err != nil {
		// The node refuses them now; after a restart it does again once a
		// hub repeats the list, which it does at every announcement.
		l.log.Error("revoked nodes not kept", "err", err)
	}
}
