package link

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/flynn/noise"
	"github.com/homemesh/homemesh/mesh/route"
)

// cipherSuite is Noise_*_25519_ChaChaPoly_SHA256. SHA-256 rather than
// BLAKE2s: the hash runs only in handshakes (HKDF), where X25519 dominates
// the cost; SHA-256 is in the standard library's validated module, has
// instructions on the CPUs hubs use (SHA-NI, ARMv8), and is already the
// hash of NodeIDs and of the CA's signatures, so the mesh depends on one
// hash function instead of two.
var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

// Prologues bind every handshake to its layer, so that a hop-by-hop
// handshake can never be completed as an end-to-end one or the other way.
var (
	linkPrologue = []byte("homemesh link v1")
	e2ePrologue  = []byte("homemesh e2e v1")
)

// rejectAfterMessages is where a key pair stops being used whatever
// RekeyAfterMessages says: far below the nonce Noise reserves.
const rejectAfterMessages = math.MaxUint64 - 1<<16

// keypair is one pair of transport keys with its counters.
type keypair struct {
	send, recv  noise.Cipher
	sendCounter uint64
	window      replayWindow
	localIndex  uint8 // the id the peer puts in frames it sends with these keys
	remoteIndex uint8 // the id this side puts in frames it sends
	created     time.Time
	initiator   bool // this side started the handshake

	heard   bool // a frame authenticated with these keys arrived
	heardAt time.Time
	retired time.Time // when newer keys replaced these

	// An initiator repeats its key confirmation (a keepalive, or for XX
	// the last handshake message, finish) until it hears the peer.
	confirmAt time.Time
	finish    []byte
}

// handshake is a handshake in progress.
type handshake struct {
	state       *noise.HandshakeState
	pattern     byte
	localIndex  uint8
	remoteIndex uint8  // a responder's: the initiator's index
	ephemeral   []byte // an initiator's: its ephemeral key, to settle crossed handshakes
	started     time.Time
	sent        time.Time
}

// channel is one Noise secure channel with one peer: the handshakes
// (first contact and rekeys, from either side), the key pairs and their
// replay windows. A link Session is a channel plus fragmentation; an E2E
// is a set of channels keyed by node id.
type channel struct {
	ep       *Endpoint
	cfg      *Config
	c        *counters
	prologue []byte
	allowXX  bool
	// Associated data appended to transport headers: the end-to-end
	// layer binds the source and destination ids so that a relay cannot
	// redirect or re-attribute a message.
	sendAD, recvAD []byte
	rekeyOnTick    bool

	peer         Peer
	hasPeer      bool // peer.Key is known
	peerVerified bool // peer came from a verified certificate
	wantID       route.NodeID
	hasWantID    bool

	current, previous, next *keypair
	pending                 *handshake // one this side initiated
	responding              *handshake // an XX handshake this side answers, waiting for finish
	indexSeq                uint8
	lastInitTimestamp       uint64 // newest IK first message accepted
	lastTimestamp           uint64 // newest timestamp this side sent
	lastFinish              [32]byte
	lastFinishKeys          *keypair

	created    time.Time
	confirmed  bool      // the peer has been proven to hold keys at least once
	lastUsable time.Time // when keys were last installed or lost (or the channel was made)
	closeErr   error
}

func newChannel(ep *Endpoint, c *counters, prologue []byte, now time.Time) *channel {
	return &channel{
		ep: ep, cfg: &ep.cfg, c: c, prologue: prologue,
		created: now, lastUsable: now,
	}
}

// fatal closes ch for good and returns the error the host sees.
func (ch *channel) fatal(reason error) error {
	if ch.closeErr == nil {
		ch.c.inc(cClosed)
		ch.closeErr = fmt.Errorf("%w: %w", ErrClosed, reason)
		ch.current, ch.previous, ch.next, ch.pending, ch.responding = nil, nil, nil, nil, nil
	}
	return ch.closeErr
}

// established reports whether ch can send.
func (ch *channel) established() bool {
	return ch.closeErr == nil && ch.current != nil && ch.peerVerified
}

func (ch *channel) expired(kp *keypair, now time.Time) bool {
	return now.Sub(kp.created) >= ch.cfg.RejectAfter || kp.sendCounter >= rejectAfterMessages
}

func (ch *channel) allocIndex() uint8 {
	for {
		ch.indexSeq++
		i := ch.indexSeq
		inUse := func(kp *keypair) bool { return kp != nil && kp.localIndex == i }
		busy := func(hs *handshake) bool { return hs != nil && hs.localIndex == i }
		if !inUse(ch.current) && !inUse(ch.previous) && !inUse(ch.next) && !busy(ch.pending) && !busy(ch.responding) {
			return i
		}
	}
}

func (ch *channel) timestamp(now time.Time) uint64 {
	ts := uint64(max(now.UnixNano(), 0))
	if ts <= ch.lastTimestamp {
		ts = ch.lastTimestamp + 1
	}
	ch.lastTimestamp = ts
	return ts
}

func (ch *channel) noiseState(initiator bool, pattern byte, peerKey []byte) (*noise.HandshakeState, error) {
	p := noise.HandshakeIK
	if pattern == patternXX {
		p = noise.HandshakeXX
		peerKey = nil
	}
	return noise.NewHandshakeState(noise.Config{
		CipherSuite:   cipherSuite,
		Random:        ch.cfg.Rand,
		Pattern:       p,
		Initiator:     initiator,
		Prologue:      ch.prologue,
		StaticKeypair: ch.ep.static,
		PeerStatic:    peerKey,
	})
}

// initiate starts a handshake: IK when the peer's key is known, else XX.
// started is when the first attempt of this handshake began.
func (ch *channel) initiate(now, started time.Time) ([]byte, error) {
	pattern := byte(patternXX)
	if ch.hasPeer {
		pattern = patternIK
	} else if !ch.allowXX {
		return nil, fmt.Errorf("link: no key for the peer")
	}
	hs, err := ch.noiseState(true, pattern, ch.peer.Key)
	if err != nil {
		return nil, err
	}
	p := handshakePayload{index: ch.allocIndex(), timestamp: ch.timestamp(now)}
	if pattern == patternIK {
		p.cert = ch.cfg.Identity.Cert
	}
	frame, _, _, err := hs.WriteMessage([]byte{typeInit, pattern}, p.appendTo(nil))
	if err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	ch.pending = &handshake{
		state: hs, pattern: pattern, localIndex: p.index,
		ephemeral: hs.LocalEphemeral().Public, started: started, sent: now,
	}
	ch.c.inc(cHandshakesStarted)
	ch.c.inc(cFramesSent)
	ch.c.add(cBytesSent, uint64(len(frame)))
	return frame, nil
}

// verifyPeer checks a certificate received in a handshake whose Noise
// static key is static, and counts a refusal under its reason.
func (ch *channel) verifyPeer(now time.Time, cert, static []byte) (Peer, error) {
	peer, err := ch.cfg.Verifier.Verify(cert, now)
	switch {
	case errors.Is(err, ErrForeignHome):
		ch.c.inc(cForeignHome)
		return Peer{}, err
	case errors.Is(err, ErrRevoked):
		ch.c.inc(cRevoked)
		return Peer{}, err
	case err != nil:
		ch.c.inc(cBadCert)
		return Peer{}, err
	case !sameKey(peer.Key, static):
		ch.c.inc(cBadCert)
		return Peer{}, fmt.Errorf("%w: certificate of node %s for another key than the handshake's", ErrBadCert, peer.ID)
	case ch.hasPeer && !sameKey(peer.Key, ch.peer.Key):
		ch.c.inc(cPeerChanged)
		return Peer{}, fmt.Errorf("%w: node %s instead of %s", ErrPeerChanged, peer.ID, ch.peer.ID)
	case ch.hasWantID && peer.ID != ch.wantID:
		ch.c.inc(cPeerChanged)
		return Peer{}, fmt.Errorf("%w: node %s claims to be %s", ErrPeerChanged, peer.ID, ch.wantID)
	}
	return peer, nil
}

// refusePeer handles a refused certificate: before the channel ever
// worked the peer is simply the wrong one, so the channel closes; after,
// it may be an injected handshake, so only that handshake is dropped.
func (ch *channel) refusePeer(err error) error {
	if !ch.confirmed {
		return ch.fatal(err)
	}
	return err
}

func (ch *channel) setPeer(p Peer) {
	ch.peer, ch.hasPeer, ch.peerVerified = p, true, true
}

func (ch *channel) newKeypair(now time.Time, send, recv *noise.CipherState, local, remote uint8, initiator bool) *keypair {
	ch.c.inc(cHandshakesCompleted)
	return &keypair{
		send: send.Cipher(), recv: recv.Cipher(),
		localIndex: local, remoteIndex: remote,
		created: now, initiator: initiator, confirmAt: now,
	}
}

// install makes kp the keys to send with, keeping the ones it replaces
// for frames in flight.
func (ch *channel) install(now time.Time, kp *keypair) {
	if ch.current != nil {
		ch.c.inc(cRekeys)
		ch.previous = ch.current
		ch.previous.retired = now
	}
	ch.current = kp
	ch.lastUsable = now
}

// handle processes one frame. It returns the plaintext of a transport
// frame (empty for a keepalive), frames to send, and an error when the
// frame was refused (already counted) or, wrapping ErrClosed, when the
// channel died.
func (ch *channel) handle(now time.Time, frame []byte) (plain []byte, out [][]byte, err error) {
	if ch.closeErr != nil {
		return nil, nil, ch.closeErr
	}
	ch.c.inc(cFramesReceived)
	ch.c.add(cBytesReceived, uint64(len(frame)))
	if len(frame) == 0 {
		ch.c.inc(cMalformed)
		return nil, nil, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	switch frame[0] {
	case typeTransport:
		return ch.handleTransport(now, frame)
	case typeInit:
		out, err = ch.handleInit(now, frame)
	case typeResponse:
		out, err = ch.handleResponse(now, frame)
	case typeFinish:
		out, err = ch.handleFinish(now, frame)
	default:
		ch.c.inc(cMalformed)
		err = fmt.Errorf("%w: frame type %#x", ErrMalformed, frame[0])
	}
	return nil, out, err
}

func (ch *channel) handleInit(now time.Time, frame []byte) ([][]byte, error) {
	pattern, msg, err := parseInit(frame)
	if err == nil && pattern == patternXX && !ch.allowXX {
		err = fmt.Errorf("%w: XX is not used here", ErrMalformed)
	}
	if err != nil {
		ch.c.inc(cMalformed)
		return nil, err
	}
	hs, err := ch.noiseState(false, pattern, nil)
	if err != nil {
		return nil, err
	}
	raw, _, _, err := hs.ReadMessage(nil, msg)
	if err != nil {
		ch.c.inc(cForged)
		return nil, fmt.Errorf("%w: handshake: %v", ErrForged, err)
	}
	p, err := parseHandshakePayload(raw)
	if err != nil {
		ch.c.inc(cMalformed)
		return nil, err
	}
	var peer Peer
	if pattern == patternIK {
		if peer, err = ch.verifyPeer(now, p.cert, hs.PeerStatic()); err != nil {
			return nil, ch.refusePeer(err)
		}
		if p.timestamp <= ch.lastInitTimestamp {
			ch.c.inc(cStaleHandshake)
			return nil, fmt.Errorf("%w: handshake not newer than the last one", ErrReplayed)
		}
	}
	// Crossed handshakes (both sides initiating at once) are settled by
	// their ephemeral keys, which both sides see: the larger one goes on,
	// the other side gives its own up and answers.
	if ch.pending != nil {
		if bytes.Compare(ch.pending.ephemeral, msg[:dhLen]) > 0 {
			return nil, nil
		}
		ch.pending = nil
	}
	reply := handshakePayload{index: ch.allocIndex(), timestamp: ch.timestamp(now), cert: ch.cfg.Identity.Cert}
	frame2, cs1, cs2, err := hs.WriteMessage([]byte{typeResponse}, reply.appendTo(nil))
	if err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	ch.c.inc(cFramesSent)
	ch.c.add(cBytesSent, uint64(len(frame2)))
	if pattern == patternIK {
		ch.lastInitTimestamp = p.timestamp
		ch.setPeer(peer)
		// The initiator may be a replay until it proves it holds the keys,
		// so they wait in next until a frame arrives with them.
		ch.next = ch.newKeypair(now, cs2, cs1, reply.index, p.index, false)
		return [][]byte{frame2}, nil
	}
	ch.responding = &handshake{state: hs, pattern: pattern, localIndex: reply.index, remoteIndex: p.index, started: now, sent: now}
	return [][]byte{frame2}, nil
}

func (ch *channel) handleResponse(now time.Time, frame []byte) ([][]byte, error) {
	if len(frame) < 1+dhLen+tagLen {
		ch.c.inc(cMalformed)
		return nil, fmt.Errorf("%w: short handshake response", ErrMalformed)
	}
	hs := ch.pending
	if hs == nil {
		ch.c.inc(cStaleHandshake)
		return nil, fmt.Errorf("%w: no handshake in progress", ErrForged)
	}
	raw, cs1, cs2, err := hs.state.ReadMessage(nil, frame[1:])
	if err != nil {
		ch.c.inc(cForged)
		return nil, fmt.Errorf("%w: handshake: %v", ErrForged, err)
	}
	p, err := parseHandshakePayload(raw)
	if err != nil {
		ch.c.inc(cMalformed)
		ch.pending = nil
		return nil, err
	}
	peer, err := ch.verifyPeer(now, p.cert, hs.state.PeerStatic())
	if err != nil {
		ch.pending = nil
		return nil, ch.refusePeer(err)
	}
	ch.pending = nil
	ch.setPeer(peer)
	if hs.pattern == patternIK {
		kp := ch.newKeypair(now, cs1, cs2, hs.localIndex, p.index, true)
		ch.install(now, kp)
		ch.confirmed = true // the response proves the responder holds the keys
		return [][]byte{ch.keepalive(now, kp)}, nil
	}
	finish, cs1, cs2, err := hs.state.WriteMessage([]byte{typeFinish},
		handshakePayload{index: hs.localIndex, timestamp: ch.timestamp(now), cert: ch.cfg.Identity.Cert}.appendTo(nil))
	if err != nil {
		return nil, fmt.Errorf("link: handshake: %w", err)
	}
	kp := ch.newKeypair(now, cs1, cs2, hs.localIndex, p.index, true)
	kp.finish = finish
	ch.install(now, kp)
	ch.c.inc(cFramesSent)
	ch.c.add(cBytesSent, uint64(len(finish)))
	return [][]byte{finish}, nil
}

func (ch *channel) handleFinish(now time.Time, frame []byte) ([][]byte, error) {
	if len(frame) < 1+dhLen+2*tagLen {
		ch.c.inc(cMalformed)
		return nil, fmt.Errorf("%w: short handshake finish", ErrMalformed)
	}
	hs := ch.responding
	if hs == nil {
		// A repeated finish whose answer was lost gets the answer again.
		if kp := ch.lastFinishKeys; kp != nil && kp == ch.current && sha256.Sum256(frame) == ch.lastFinish {
			return [][]byte{ch.keepalive(now, kp)}, nil
		}
		ch.c.inc(cStaleHandshake)
		return nil, fmt.Errorf("%w: no handshake in progress", ErrForged)
	}
	raw, cs1, cs2, err := hs.state.ReadMessage(nil, frame[1:])
	if err != nil {
		ch.c.inc(cForged)
		return nil, fmt.Errorf("%w: handshake: %v", ErrForged, err)
	}
	ch.responding = nil
	p, err := parseHandshakePayload(raw)
	if err != nil {
		ch.c.inc(cMalformed)
		return nil, err
	}
	peer, err := ch.verifyPeer(now, p.cert, hs.state.PeerStatic())
	if err != nil {
		return nil, ch.refusePeer(err)
	}
	ch.setPeer(peer)
	kp := ch.newKeypair(now, cs2, cs1, hs.localIndex, hs.remoteIndex, false)
	ch.install(now, kp)
	ch.confirmed = true // the finish proves the initiator holds the keys
	ch.lastFinish, ch.lastFinishKeys = sha256.Sum256(frame), kp
	return [][]byte{ch.keepalive(now, kp)}, nil
}

func (ch *channel) lookup(index uint8, now time.Time) *keypair {
	for _, kp := range [...]*keypair{ch.current, ch.next, ch.previous} {
		if kp != nil && kp.localIndex == index && !ch.expired(kp, now) {
			return kp
		}
	}
	return nil
}

func (ch *channel) handleTransport(now time.Time, frame []byte) ([]byte, [][]byte, error) {
	h, header, ciphertext, err := parseTransport(frame)
	if err != nil {
		ch.c.inc(cMalformed)
		return nil, nil, err
	}
	kp := ch.lookup(h.index, now)
	if kp == nil {
		ch.c.inc(cUnknownKey)
		return nil, nil, fmt.Errorf("%w: key id %d", ErrUnknownKey, h.index)
	}
	if h.counter >= rejectAfterMessages || !kp.window.check(h.counter) {
		ch.c.inc(cReplayed)
		return nil, nil, fmt.Errorf("%w: counter %d", ErrReplayed, h.counter)
	}
	var adBuf [transportHeaderLen + 2*len(route.NodeID{})]byte
	ad := append(append(adBuf[:0], header...), ch.recvAD...)
	plain, err := kp.recv.Decrypt(nil, h.counter, ad, ciphertext)
	if err != nil {
		ch.c.inc(cForged)
		return nil, nil, fmt.Errorf("%w: counter %d", ErrForged, h.counter)
	}
	kp.window.mark(h.counter)
	if !kp.heard {
		kp.heard, kp.heardAt = true, now
	}
	ch.confirmed = true
	var out [][]byte
	switch {
	case kp == ch.next:
		// The initiator proved it holds the keys: send with them from now
		// on, and tell it so, since it may have nothing else to say.
		ch.next = nil
		ch.install(now, kp)
		out = append(out, ch.keepalive(now, kp))
	case len(plain) == 0 && !kp.initiator && kp == ch.current:
		// The initiator repeats its confirmation: our answer was lost.
		out = append(out, ch.keepalive(now, kp))
	}
	return plain, out, nil
}

// sendable reports whether ch has keys to send with at now.
func (ch *channel) sendable(now time.Time) bool {
	return ch.closeErr == nil && ch.current != nil && !ch.expired(ch.current, now)
}

// seal encrypts buf[transportHeaderLen:] in place under the current keys;
// buf has room for the header in front and the tag behind.
func (ch *channel) seal(now time.Time, buf []byte) ([]byte, error) {
	if ch.closeErr != nil {
		return nil, ch.closeErr
	}
	kp := ch.current
	if kp == nil || ch.expired(kp, now) {
		return nil, ErrNotEstablished
	}
	return ch.sealWith(kp, buf), nil
}

func (ch *channel) sealWith(kp *keypair, buf []byte) []byte {
	n := kp.sendCounter
	kp.sendCounter++
	appendTransportHeader(buf[:0], transportHeader{index: kp.remoteIndex, counter: n})
	var adBuf [transportHeaderLen + 2*len(route.NodeID{})]byte
	ad := append(append(adBuf[:0], buf[:transportHeaderLen]...), ch.sendAD...)
	frame := kp.send.Encrypt(buf[:transportHeaderLen], n, ad, buf[transportHeaderLen:])
	ch.c.inc(cFramesSent)
	ch.c.add(cBytesSent, uint64(len(frame)))
	return frame
}

// keepalive returns an empty transport frame under kp: it confirms keys.
func (ch *channel) keepalive(now time.Time, kp *keypair) []byte {
	kp.confirmAt = now
	return ch.sealWith(kp, make([]byte, transportHeaderLen, TransportOverhead))
}

// rekeyDue reports whether this side should start a new handshake now.
func (ch *channel) rekeyDue(now time.Time) bool {
	if ch.closeErr != nil || ch.pending != nil || !ch.hasPeer || !ch.peerVerified {
		return false
	}
	if ch.next != nil || ch.responding != nil {
		return false // the peer is rekeying; let it finish
	}
	kp := ch.current
	if kp == nil {
		return ch.confirmed // keys ran out: get new ones
	}
	return now.Sub(kp.created) >= ch.rekeyAge(kp) || kp.sendCounter >= ch.cfg.RekeyAfterMessages
}

// rekeyAge is when kp is due for replacement: the initiator of the keys
// goes first, the other side later in case the first cannot.
func (ch *channel) rekeyAge(kp *keypair) time.Duration {
	if kp.initiator {
		return ch.cfg.RekeyAfter
	}
	return ch.cfg.RekeyAfter + (ch.cfg.RejectAfter-ch.cfg.RekeyAfter)/2
}

// maybeRekey starts a rekey if one is due.
func (ch *channel) maybeRekey(now time.Time) [][]byte {
	if !ch.rekeyDue(now) {
		return nil
	}
	frame, err := ch.initiate(now, now)
	if err != nil {
		return nil
	}
	return [][]byte{frame}
}

// tick does what time requires: repeats handshakes and confirmations,
// forgets expired keys, rekeys, and closes a channel that has had no
// usable keys for HandshakeTimeout.
func (ch *channel) tick(now time.Time) ([][]byte, error) {
	if ch.closeErr != nil {
		return nil, ch.closeErr
	}
	var out [][]byte
	cfg := ch.cfg
	if hs := ch.pending; hs != nil && now.Sub(hs.sent) >= cfg.HandshakeRetry {
		ch.pending = nil
		if now.Sub(hs.started) < cfg.HandshakeTimeout {
			frame, err := ch.initiate(now, hs.started)
			if err != nil {
				return nil, ch.fatal(err)
			}
			out = append(out, frame)
		}
	}
	if hs := ch.responding; hs != nil && now.Sub(hs.started) >= cfg.HandshakeTimeout {
		ch.responding = nil
	}
	if kp := ch.next; kp != nil && now.Sub(kp.created) >= cfg.HandshakeTimeout {
		ch.next = nil
	}
	if kp := ch.previous; kp != nil && (ch.expired(kp, now) || !now.Before(ch.previousUntil())) {
		ch.previous = nil
	}
	if kp := ch.current; kp != nil && ch.expired(kp, now) {
		ch.current = nil
		ch.lastUsable = now
	}
	if kp := ch.current; kp != nil && kp.initiator && !kp.heard && now.Sub(kp.confirmAt) >= cfg.HandshakeRetry {
		if kp.finish != nil {
			kp.confirmAt = now
			out = append(out, kp.finish)
			ch.c.inc(cFramesSent)
			ch.c.add(cBytesSent, uint64(len(kp.finish)))
		} else {
			out = append(out, ch.keepalive(now, kp))
		}
	}
	if ch.rekeyOnTick {
		out = append(out, ch.maybeRekey(now)...)
	}
	if ch.current == nil && now.Sub(ch.lastUsable) >= cfg.HandshakeTimeout {
		return out, ch.fatal(errors.New("no usable keys"))
	}
	if !ch.confirmed && now.Sub(ch.created) >= cfg.HandshakeTimeout {
		return out, ch.fatal(errors.New("handshake timed out"))
	}
	return out, nil
}

// previousUntil is when the replaced keys are forgotten: KeepPrevious
// after the new ones were heard from the peer (which then no longer
// sends with the old ones), or never while they have not been.
func (ch *channel) previousUntil() time.Time {
	kp := ch.current
	if kp == nil || !kp.heard {
		return ch.previous.created.Add(ch.cfg.RejectAfter)
	}
	from := ch.previous.retired
	if kp.heardAt.After(from) {
		from = kp.heardAt
	}
	return from.Add(ch.cfg.KeepPrevious)
}

// deadline returns when tick must next run (zero: nothing scheduled).
func (ch *channel) deadline() time.Time {
	if ch.closeErr != nil {
		return time.Time{}
	}
	var d time.Time
	at := func(t time.Time) {
		if d.IsZero() || t.Before(d) {
			d = t
		}
	}
	cfg := ch.cfg
	if hs := ch.pending; hs != nil {
		at(hs.sent.Add(cfg.HandshakeRetry))
	}
	if hs := ch.responding; hs != nil {
		at(hs.started.Add(cfg.HandshakeTimeout))
	}
	if kp := ch.next; kp != nil {
		at(kp.created.Add(cfg.HandshakeTimeout))
	}
	if ch.previous != nil {
		at(ch.previousUntil())
		at(ch.previous.created.Add(cfg.RejectAfter))
	}
	if kp := ch.current; kp != nil {
		at(kp.created.Add(cfg.RejectAfter))
		if kp.initiator && !kp.heard {
			at(kp.confirmAt.Add(cfg.HandshakeRetry))
		}
		// A due rekey that waits for the peer's handshake needs no tick of
		// its own: that handshake's deadline comes first.
		if ch.rekeyOnTick && ch.pending == nil && ch.next == nil && ch.responding == nil {
			at(kp.created.Add(ch.rekeyAge(kp)))
		}
	} else {
		at(ch.lastUsable.Add(cfg.HandshakeTimeout))
	}
	if !ch.confirmed {
		at(ch.created.Add(cfg.HandshakeTimeout))
	}
	return d
}
