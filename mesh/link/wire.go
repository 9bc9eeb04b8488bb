package link

import (
	"encoding/binary"
	"fmt"
)

// Frame types: the first byte of every frame. The high nibble is the
// protocol version (1), so a future version is told apart at once.
const (
	typeInit      = 0x11 // handshake message 1
	typeResponse  = 0x12 // handshake message 2
	typeFinish    = 0x13 // handshake message 3 (XX only)
	typeTransport = 0x14 // encrypted payload
)

// Handshake patterns, the second byte of an init frame.
const (
	patternIK = 1
	patternXX = 2
)

const (
	dhLen              = 32 // X25519 public key
	tagLen             = 16 // Poly1305
	transportHeaderLen = 1 + 1 + 8
	// TransportOverhead is what a transport frame adds to its plaintext.
	TransportOverhead = transportHeaderLen + tagLen
	payloadHeaderLen  = 1 + 8 + 2
)

// IsInit reports whether frame is the first message of a handshake: what a
// host passes to Endpoint.Accept when no Session exists for the link it
// came on.
func IsInit(frame []byte) bool { return len(frame) > 0 && frame[0] == typeInit }

// largestHandshake is the size of the largest handshake frame a node with
// a certificate of certLen bytes sends: the IK first message.
func largestHandshake(certLen int) int {
	return 2 + dhLen + (dhLen + tagLen) + (payloadHeaderLen + certLen + tagLen)
}

// parseInit splits an init frame into its pattern and Noise message, which
// starts with the initiator's ephemeral key in both patterns.
func parseInit(frame []byte) (pattern byte, msg []byte, err error) {
	if len(frame) < 2+dhLen || frame[0] != typeInit {
		return 0, nil, fmt.Errorf("%w: short init", ErrMalformed)
	}
	if frame[1] != patternIK && frame[1] != patternXX {
		return 0, nil, fmt.Errorf("%w: unknown handshake pattern %d", ErrMalformed, frame[1])
	}
	return frame[1], frame[2:], nil
}

// transportHeader is the clear part of a transport frame; all of it is
// authenticated as associated data.
type transportHeader struct {
	index   uint8  // the receiver's id for the key pair
	counter uint64 // the nonce, explicit so frames may be lost or reordered
}

func appendTransportHeader(b []byte, h transportHeader) []byte {
	b = append(b, typeTransport, h.index)
	return binary.BigEndian.AppendUint64(b, h.counter)
}

// parseTransport splits a transport frame into its header, the header's
// bytes (the associated data) and the ciphertext.
func parseTransport(frame []byte) (transportHeader, []byte, []byte, error) {
	if len(frame) < transportHeaderLen+tagLen || frame[0] != typeTransport {
		return transportHeader{}, nil, nil, fmt.Errorf("%w: short transport frame", ErrMalformed)
	}
	h := transportHeader{index: frame[1], counter: binary.BigEndian.Uint64(frame[2:10])}
	return h, frame[:transportHeaderLen], frame[transportHeaderLen:], nil
}

// handshakePayload is the payload of every handshake message, encrypted
// by Noise wherever the pattern has a key and always part of the
// handshake hash, so every field is authenticated by the end of the
// handshake.
type handshakePayload struct {
	index     uint8  // the sender's id for the key pair being made
	timestamp uint64 // the sender's clock, Unix ns; IK responders refuse a first message not newer than the last
	cert      []byte // the sender's node certificate, when this message identifies it
}

func (p handshakePayload) appendTo(b []byte) []byte {
	b = append(b, p.index)
	b = binary.BigEndian.AppendUint64(b, p.timestamp)
	b = binary.BigEndian.AppendUint16(b, uint16(len(p.cert)))
	return append(b, p.cert...)
}

func parseHandshakePayload(b []byte) (handshakePayload, error) {
	if len(b) < payloadHeaderLen {
		return handshakePayload{}, fmt.Errorf("%w: short handshake payload", ErrMalformed)
	}
	p := handshakePayload{index: b[0], timestamp: binary.BigEndian.Uint64(b[1:9])}
	n := int(binary.BigEndian.Uint16(b[9:11]))
	if n > maxCertLen || len(b) != payloadHeaderLen+n {
		return handshakePayload{}, fmt.Errorf("%w: handshake payload of %d bytes says its certificate has %d", ErrMalformed, len(b), n)
	}
	if n > 0 {
		p.cert = b[payloadHeaderLen:]
	}
	return p, nil
}

// Link payload kinds: the first plaintext byte of a link transport frame.
// An empty plaintext is a keepalive that confirms keys.
const (
	kindWhole    = 0x01 // the rest is one whole payload
	kindFragment = 0x02 // the rest is a fragment header and a piece of a payload
)

const (
	wholeOverhead    = TransportOverhead + 1
	fragHeaderLen    = 1 + 4 + 1 + 1
	fragmentOverhead = TransportOverhead + fragHeaderLen
)

// MaxWhole is the largest payload a Session with the given MTU sends in
// one frame; a larger one is fragmented, and lost whole when any of its
// fragments is. Routing control packets are sized to it.
func MaxWhole(mtu int) int { return mtu - wholeOverhead }

// fragment is one piece of a payload too large for one frame.
type fragment struct {
	id    uint32 // the sender's id for the payload
	index uint8  // this piece's position, from 0
	count uint8  // the number of pieces, at least 2
	data  []byte
}

func appendFragment(b []byte, f fragment) []byte {
	b = append(b, kindFragment)
	b = binary.BigEndian.AppendUint32(b, f.id)
	b = append(b, f.index, f.count)
	return append(b, f.data...)
}

// parseFragment parses a kindFragment plaintext.
func parseFragment(b []byte) (fragment, error) {
	if len(b) <= fragHeaderLen || b[0] != kindFragment {
		return fragment{}, fmt.Errorf("%w: short fragment", ErrMalformed)
	}
	f := fragment{id: binary.BigEndian.Uint32(b[1:5]), index: b[5], count: b[6], data: b[fragHeaderLen:]}
	if f.count < 2 || f.index >= f.count {
		return fragment{}, fmt.Errorf("%w: fragment %d of %d", ErrMalformed, f.index, f.count)
	}
	return f, nil
}
