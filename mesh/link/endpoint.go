package link

import (
	"crypto/ecdh"
	"crypto/rand"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/flynn/noise"
	"github.com/homemesh/homemesh"
	"github.com/homemesh/homemesh/mesh/route"
)

// Errors that Endpoint, Session and E2E return; match them with errors.Is.
var (
	// ErrBadCert: a certificate that is malformed, expired, not signed by
	// the home CA, of the wrong key usage or of a key other than the
	// handshake's.
	ErrBadCert = homemesh.Errorf(homemesh.KindUnauthenticated, "node certificate refused")
	// ErrForeignHome: a valid-looking certificate of another home.
	ErrForeignHome = homemesh.Errorf(homemesh.KindPermission, "node of another home")
	// ErrRevoked: a valid certificate of a node the home revoked
	// (Verifier.Revoke), or an end-to-end message to or from one.
	ErrRevoked = homemesh.Errorf(homemesh.KindPermission, "node revoked")
	// ErrPeerChanged: a handshake on an existing session or E2E channel
	// with a static key other than the peer's.
	ErrPeerChanged = homemesh.Errorf(homemesh.KindUnauthenticated, "handshake from a key other than the peer's")
	// ErrMalformed: bytes that are not a frame of this protocol.
	ErrMalformed = homemesh.Errorf(homemesh.KindInvalid, "malformed frame")
	// ErrForged: a frame or handshake message that failed authentication.
	ErrForged = homemesh.Errorf(homemesh.KindUnauthenticated, "frame failed authentication")
	// ErrReplayed: a transport frame whose counter was already seen or
	// fell behind the replay window.
	ErrReplayed = homemesh.Errorf(homemesh.KindUnauthenticated, "replayed frame")
	// ErrUnknownKey: a transport frame for a key this side does not hold
	// (expired, or from a handshake it never completed).
	ErrUnknownKey = homemesh.Errorf(homemesh.KindUnauthenticated, "frame for an unknown key")
	// ErrNotEstablished: Seal before the handshake completed.
	ErrNotEstablished = homemesh.Errorf(homemesh.KindUnavailable, "link not established")
	// ErrClosed: the session is dead (handshake timed out, keys expired
	// without a successful rekey, or the peer's certificate was refused);
	// the host takes the link down and starts a new session to retry.
	ErrClosed = homemesh.Errorf(homemesh.KindUnavailable, "link session closed")
	// ErrTooLarge: a payload above MaxPayload (or E2E MaxE2EPayload).
	ErrTooLarge = homemesh.Errorf(homemesh.KindInvalid, "payload too large")
	// ErrUnknownPeer: E2E to a node whose certificate the lookup does not
	// know.
	ErrUnknownPeer = homemesh.Errorf(homemesh.KindNotFound, "no certificate for the destination")
)

// Limits and defaults.
const (
	// MaxPayload is the largest payload a Session carries (fragmented).
	MaxPayload = 64 << 10
	// DefaultMTU is the default largest frame: fits an IPv6 minimum MTU
	// of 1280 after IP and UDP headers, with room to spare.
	DefaultMTU = 1200
	// MinMTU is the smallest MTU a Config may set: a handshake is never
	// fragmented, and MaxPayload must fit in 255 fragments.
	MinMTU = 576
)

// Identity is a node's own credentials.
type Identity struct {
	Key  *ecdh.PrivateKey // the static X25519 key
	Cert []byte           // DER node certificate for Key's public key, from IssueNodeCert
}

// GenerateKey returns a new static X25519 key drawn from r. Unlike
// ecdh.X25519().GenerateKey, it reads exactly 32 bytes of r, so a seeded
// reader gives the same key every time (as the simulator needs).
func GenerateKey(r io.Reader) (*ecdh.PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("generate X25519 key: %w", err)
	}
	return ecdh.X25519().NewPrivateKey(b[:])
}

// Config configures an Endpoint. Zero durations and sizes take the
// defaults in their comments.
type Config struct {
	Identity Identity
	Verifier *Verifier // accepts the peers of this node's home
	// Rand is the source of ephemeral keys; crypto/rand.Reader when nil.
	// A seeded reader makes handshakes reproducible in the simulator.
	Rand io.Reader
	// MTU is the largest frame a Session emits (default DefaultMTU, at
	// least MinMTU). Handshake frames are never fragmented and must fit.
	MTU int

	// RekeyAfter is the key age at which the side that initiated the
	// current keys starts a new handshake (default 2 min); the other side
	// does so at RekeyAfter plus half the gap to RejectAfter, in case the
	// first one cannot.
	RekeyAfter time.Duration
	// RejectAfter is the age at which keys are no longer used in either
	// direction (default 3 min).
	RejectAfter time.Duration
	// RekeyAfterMessages is the number of frames sent with one key after
	// which a new handshake starts (default 2^60).
	RekeyAfterMessages uint64
	// HandshakeRetry is how long an initiator waits for an answer before
	// starting the handshake again with a fresh ephemeral key, and how
	// often it repeats an unanswered key confirmation (default 1 s).
	HandshakeRetry time.Duration
	// HandshakeTimeout is how long a session may go without usable keys
	// before it is closed (default 10 s).
	HandshakeTimeout time.Duration
	// KeepPrevious is how long the keys a rekey replaced are still
	// accepted for frames in flight, counted from when the new keys were
	// first heard from the peer (default 10 s).
	KeepPrevious time.Duration

	// MaxReassemblies bounds the payloads a Session reassembles at once
	// (default 8); the oldest is dropped to make room.
	MaxReassemblies int
	// MaxReassemblyBytes bounds the bytes a Session holds for reassembly
	// (default 256 KiB); the oldest reassemblies are dropped to make room.
	MaxReassemblyBytes int
	// ReassemblyTimeout drops a payload whose fragments have not all
	// arrived in time (default 5 s).
	ReassemblyTimeout time.Duration

	// MaxE2EPeers bounds the end-to-end channels an E2E keeps (default
	// 1024); the least recently used is dropped to make room.
	MaxE2EPeers int
	// MaxE2EQueue bounds the payloads an E2E holds per destination while
	// its handshake runs (default 16); the oldest is dropped.
	MaxE2EQueue int
}

func (c *Config) setDefaults() {
	setDefault := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	setInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	setInt(&c.MTU, DefaultMTU)
	setDefault(&c.RekeyAfter, 2*time.Minute)
	setDefault(&c.RejectAfter, 3*time.Minute)
	if c.RekeyAfterMessages == 0 {
		c.RekeyAfterMessages = 1 << 60
	}
	setDefault(&c.HandshakeRetry, time.Second)
	setDefault(&c.HandshakeTimeout, 10*time.Second)
	setDefault(&c.KeepPrevious, 10*time.Second)
	setInt(&c.MaxReassemblies, 8)
	setInt(&c.MaxReassemblyBytes, 256<<10)
	setDefault(&c.ReassemblyTimeout, 5*time.Second)
	setInt(&c.MaxE2EPeers, 1024)
	setInt(&c.MaxE2EQueue, 16)
}

// Endpoint is one node's side of the link layer: its identity and
// settings, the factory of its Sessions and E2E, and the totals of their
// counters. Sessions and E2E are not safe for concurrent use (each is
// driven by one goroutine of the host); an Endpoint's counters are.
type Endpoint struct {
	cfg    Config
	self   Peer        // what this node's own certificate says
	static noise.DHKey // the identity's key as Noise wants it
	total  [numCounters]atomic.Uint64
}

// New checks cfg and returns an Endpoint. The identity's certificate must
// be one that the Verifier accepts at now, for the identity's key.
func New(cfg Config, now time.Time) (*Endpoint, error) {
	cfg.setDefaults()
	if cfg.Verifier == nil {
		return nil, homemesh.Invalid("verifier", "is required")
	}
	if cfg.Identity.Key == nil || cfg.Identity.Key.Curve() != ecdh.X25519() {
		return nil, homemesh.Invalid("identity.key", "must be an X25519 private key")
	}
	self, err := cfg.Verifier.Verify(cfg.Identity.Cert, now)
	if err != nil {
		return nil, fmt.Errorf("link: own certificate: %w", err)
	}
	if !sameKey(self.Key, cfg.Identity.Key.PublicKey().Bytes()) {
		return nil, homemesh.Invalid("identity.cert", "is for another key")
	}
	if cfg.MTU < MinMTU {
		return nil, homemesh.Invalid("mtu", "must be at least %d", MinMTU)
	}
	if n := largestHandshake(len(cfg.Identity.Cert)); n > cfg.MTU {
		return nil, homemesh.Invalid("mtu", "a handshake with this certificate takes %d bytes", n)
	}
	if cfg.RejectAfter <= cfg.RekeyAfter {
		return nil, homemesh.Invalid("reject_after", "must be longer than rekey_after")
	}
	if cfg.MaxReassemblyBytes < MaxPayload {
		return nil, homemesh.Invalid("max_reassembly_bytes", "must hold at least one payload of %d bytes", MaxPayload)
	}
	static := noise.DHKey{Private: cfg.Identity.Key.Bytes(), Public: cfg.Identity.Key.PublicKey().Bytes()}
	return &Endpoint{cfg: cfg, self: self, static: static}, nil
}

// ID returns this node's id.
func (e *Endpoint) ID() route.NodeID { return e.self.ID }

// Self returns what this node's own certificate says.
func (e *Endpoint) Self() Peer { return e.self }

// Counters returns the totals over every Session and E2E of e, and the
// handshakes that Accept refused.
func (e *Endpoint) Counters() Counters {
	var a [numCounters]uint64
	for i := range a {
		a[i] = e.total[i].Load()
	}
	return countersOf(&a)
}

// counters is a Session's or E2E's own tally; each increment also goes to
// its Endpoint's totals.
type counters struct {
	ep    *Endpoint
	local [numCounters]uint64
}

func (c *counters) inc(i counter) { c.add(i, 1) }

func (c *counters) add(i counter, n uint64) {
	c.local[i] += n
	if c.ep != nil {
		c.ep.total[i].Add(n)
	}
}

type counter int

const (
	cFramesSent counter = iota
	cFramesReceived
	cBytesSent
	cBytesReceived
	cPayloadsSent
	cPayloadsDelivered
	cHandshakesStarted
	cHandshakesCompleted
	cRekeys
	cReplayed
	cForged
	cBadCert
	cForeignHome
	cRevoked
	cPeerChanged
	cUnknownKey
	cMalformed
	cStaleHandshake
	cReassemblyTimeouts
	cReassemblyEvicted
	cQueueDropped
	cClosed
	numCounters
)

// Counters tallies what a Session, an E2E or a whole Endpoint did and
// refused. Every refused frame is counted under exactly one reason.
type Counters struct {
	FramesSent, FramesReceived uint64 // frames (or E2E messages), whatever their fate
	BytesSent, BytesReceived   uint64
	PayloadsSent               uint64 // payloads passed to Seal
	PayloadsDelivered          uint64 // payloads returned to the host
	HandshakesStarted          uint64 // handshake first messages sent, retries included
	HandshakesCompleted        uint64 // key pairs derived, on either side
	Rekeys                     uint64 // key pairs that replaced an earlier one

	Replayed       uint64 // transport frames whose counter was seen or is behind the window
	Forged         uint64 // frames and handshake messages that failed authentication
	BadCert        uint64 // handshakes refused for their certificate
	ForeignHome    uint64 // handshakes refused because the node belongs to another home
	Revoked        uint64 // handshakes, and E2E messages and payloads, refused because the node was revoked
	PeerChanged    uint64 // handshakes from a key other than the session's peer
	UnknownKey     uint64 // transport frames for a key not (or no longer) held
	Malformed      uint64 // frames that do not parse
	StaleHandshake uint64 // handshake messages that match no handshake in progress, or replay an old one

	ReassemblyTimeouts uint64 // fragmented payloads dropped incomplete after ReassemblyTimeout
	ReassemblyEvicted  uint64 // fragmented payloads dropped incomplete to respect the bounds
	QueueDropped       uint64 // E2E payloads dropped from a full handshake queue
	Closed             uint64 // sessions closed (handshake timeout, keys expired, peer refused)
}

func countersOf(a *[numCounters]uint64) Counters {
	return Counters{
		FramesSent: a[cFramesSent], FramesReceived: a[cFramesReceived],
		BytesSent: a[cBytesSent], BytesReceived: a[cBytesReceived],
		PayloadsSent: a[cPayloadsSent], PayloadsDelivered: a[cPayloadsDelivered],
		HandshakesStarted: a[cHandshakesStarted], HandshakesCompleted: a[cHandshakesCompleted],
		Rekeys: a[cRekeys], Replayed: a[cReplayed], Forged: a[cForged],
		BadCert: a[cBadCert], ForeignHome: a[cForeignHome], Revoked: a[cRevoked], PeerChanged: a[cPeerChanged],
		UnknownKey: a[cUnknownKey], Malformed: a[cMalformed], StaleHandshake: a[cStaleHandshake],
		ReassemblyTimeouts: a[cReassemblyTimeouts], ReassemblyEvicted: a[cReassemblyEvicted],
		QueueDropped: a[cQueueDropped], Closed: a[cClosed],
	}
}
