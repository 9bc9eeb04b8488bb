// Package netns builds throwaway Linux network namespaces joined by veth
// links, so that a test can run real processes on a multi-host topology
// (the mesh agents and the hub, each on its own "machine") and cut links
// or kill hosts. It drives the ip(8) command and needs root; Available
// says why it cannot run elsewhere, so tests can skip with that message.
package netns

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Lab is a set of namespaces and the links between them. Every name it
// creates starts with its prefix, so one run never touches another's and
// Close (or the next New with the same prefix) removes them all.
type Lab struct {
	prefix string
	net    byte // the second octet of the lab's addresses, 10.net.0.0/16

	mu    sync.Mutex
	hosts []*Host
	links int
}

// Host is one namespace.
type Host struct {
	lab  *Lab
	Name string // the namespace's name, as ip netns knows it; "" for the root one
	ifs  int    // interfaces made in it, to name the next one
}

// Link is a veth pair between two hosts, a point-to-point /30.
type Link struct {
	A, B           *Host
	AIface, BIface string     // interface names inside each namespace
	AAddr, BAddr   netip.Addr // each end's address
}

// maxLinks bounds the links of a lab: each takes one /30 of the lab's
// /16, counted in the third octet.
const maxLinks = 255

// Available reports nil when this process can build namespaces: it runs
// as root on Linux and ip(8) manages namespaces. Otherwise the error says
// what is missing.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("network namespaces need root (run as root, as CI does)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return errors.New("ip(8) from iproute2 is not installed")
	}
	probe := fmt.Sprintf("hmprobe%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		return fmt.Errorf("cannot create a network namespace: %s", strings.TrimSpace(string(out)))
	}
	_ = exec.Command("ip", "netns", "del", probe).Run()
	return nil
}

// New starts a lab whose names begin with prefix (letters and digits, at
// most 8 characters, so interface names fit Linux's 15). Namespaces left
// by an earlier lab with the same prefix are removed first.
func New(prefix string) (*Lab, error) {
	if prefix == "" || len(prefix) > 8 {
		return nil, fmt.Errorf("netns: prefix %q: want 1 to 8 letters or digits", prefix)
	}
	for _, r := range prefix {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return nil, fmt.Errorf("netns: prefix %q: want lower-case letters or digits", prefix)
		}
	}
	// Labs with different prefixes (tests running at once) mostly get
	// different /16s out of 10.128.0.0/10, so that the addresses of links
	// to the root namespace do not clash.
	h := fnv.New32a()
	h.Write([]byte(prefix))
	l := &Lab{prefix: prefix, net: byte(128 + h.Sum32()%64)}
	if err := l.removeStale(); err != nil {
		return nil, err
	}
	return l, nil
}

// removeStale deletes namespaces of an earlier lab with the same prefix,
// such as one whose test was killed before it could clean up.
func (l *Lab) removeStale() error {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("netns: list namespaces: %w", err)
	}
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if strings.HasPrefix(name, l.prefix+"-") {
			if err := ip("netns", "del", name); err != nil {
				return err
			}
		}
	}
	return nil
}

// Add creates the namespace prefix-name with its loopback up.
func (l *Lab) Add(name string) (*Host, error) {
	h := &Host{lab: l, Name: l.prefix + "-" + name}
	if err := ip("netns", "add", h.Name); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.hosts = append(l.hosts, h)
	l.mu.Unlock()
	if err := ip("-n", h.Name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return h, nil
}

// Root is the namespace this process runs in, so that a test can reach a
// host of the lab over a link of its own (its HTTP API, say). Links to it
// are removed with the other end's namespace; their interfaces here are
// named after the lab, never veth<n>.
func (l *Lab) Root() *Host { return &Host{lab: l} }

// ipIn returns ip(8) arguments that act inside h.
func (h *Host) ipIn(args ...string) []string {
	if h.Name == "" {
		return args
	}
	return append([]string{"-n", h.Name}, args...)
}

// Connect joins a and b by a veth pair with addresses 10.x.n.1 (a) and
// 10.x.n.2 (b) on a /30, x the lab's and n counting its links from 0, and
// brings both ends up.
func (l *Lab) Connect(a, b *Host) (Link, error) {
	if a.Name == b.Name {
		return Link{}, fmt.Errorf("netns: a link from %q to itself", a.Name)
	}
	l.mu.Lock()
	n := l.links
	if n >= maxLinks {
		l.mu.Unlock()
		return Link{}, fmt.Errorf("netns: at most %d links in a lab", maxLinks)
	}
	l.links++
	ai, bi := a.ifs, b.ifs
	a.ifs++
	b.ifs++
	l.mu.Unlock()

	// Made under a temporary name in the root namespace and then moved,
	// since the final names repeat across namespaces. An end in the root
	// namespace keeps its temporary name.
	tmpA, tmpB := fmt.Sprintf("%s%da", l.prefix, n), fmt.Sprintf("%s%db", l.prefix, n)
	lk := Link{A: a, B: b, AIface: fmt.Sprintf("veth%d", ai), BIface: fmt.Sprintf("veth%d", bi),
		AAddr: netip.AddrFrom4([4]byte{10, l.net, byte(n), 1}), BAddr: netip.AddrFrom4([4]byte{10, l.net, byte(n), 2})}
	if a.Name == "" {
		lk.AIface = tmpA
	}
	if b.Name == "" {
		lk.BIface = tmpB
	}
	if err := ip("link", "add", tmpA, "type", "veth", "peer", "name", tmpB); err != nil {
		return Link{}, err
	}
	for _, end := range []struct {
		tmp, iface string
		host       *Host
		addr       netip.Addr
	}{{tmpA, lk.AIface, a, lk.AAddr}, {tmpB, lk.BIface, b, lk.BAddr}} {
		var steps [][]string
		if end.host.Name != "" {
			steps = append(steps, []string{"link", "set", end.tmp, "netns", end.host.Name},
				end.host.ipIn("link", "set", end.tmp, "name", end.iface))
		}
		steps = append(steps, end.host.ipIn("addr", "add", end.addr.String()+"/30", "dev", end.iface),
			end.host.ipIn("link", "set", end.iface, "up"))
		for _, s := range steps {
			if err := ip(s...); err != nil {
				return Link{}, err
			}
		}
	}
	return lk, nil
}

// SetUp brings the link's two ends up or down, to cut it without killing
// either host.
func (lk Link) SetUp(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	if err := ip(lk.A.ipIn("link", "set", lk.AIface, state)...); err != nil {
		return err
	}
	return ip(lk.B.ipIn("link", "set", lk.BIface, state)...)
}

// Command returns a command that runs name with args inside the host's
// namespace. ip netns exec replaces itself with the program, so the
// command's process is the program's and killing it kills the program.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	if h.Name == "" {
		return exec.Command(name, args...)
	}
	return exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// Close removes every namespace of the lab; their veth ends go with them.
func (l *Lab) Close() error {
	l.mu.Lock()
	hosts := l.hosts
	l.hosts = nil
	l.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		if err := ip("netns", "del", h.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ip runs ip(8) and turns a failure into an error quoting its message.
func ip(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command("ip", args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
