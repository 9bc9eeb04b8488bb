package route

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The first byte of every packet says what it is: the high nibble is the
// kind (control or data), the low nibble the wire version, so a node can
// tell a packet from a newer protocol version from garbage.
const (
	kindControl    = 0xC
	kindData       = 0xD
	wireVersion    = 1
	controlMagic   = kindControl<<4 | wireVersion
	dataMagic      = kindData<<4 | wireVersion
	tlvHeaderLen   = 2
	maxTLVBodyLen  = 255
	helloBodyLen   = 4
	ihuBodyLen     = 2
	serialBodyLen  = 4
	updateBodyLen  = 13
	ackSerialLen   = 4
	requestBodyLen = 8
	seqnoReqLen    = 11
)

// MetricInfinity is the metric of an unreachable destination; an update
// carrying it retracts the route.
const MetricInfinity uint16 = 0xFFFF

// tlvType numbers the control messages on the wire.
type tlvType uint8

const (
	tlvHello        tlvType = 1 // seqno u16, interval u16 (centiseconds)
	tlvIHU          tlvType = 2 // rxcost u16
	tlvSerial       tlvType = 3 // serial u32: the updates after it form one acknowledged batch
	tlvUpdate       tlvType = 4 // flags u8, seqno u16, metric u16, destination [8]
	tlvAck          tlvType = 5 // serial u32, repeated
	tlvRouteRequest tlvType = 6 // empty (the whole table) or destination [8]
	tlvSeqnoRequest tlvType = 7 // seqno u16, hop limit u8, destination [8]
)

// Update flags: properties of the destination, set by its originator.
const (
	flagHub  = 1 << 0
	flagLeaf = 1 << 1
)

// message is one decoded control TLV. Only the fields of its type are set.
type message struct {
	typ      tlvType
	seqno    uint16 // Hello, Update, SeqnoRequest
	interval uint16 // Hello, in centiseconds
	cost     uint16 // IHU: the sender's rxcost for this link
	serial   uint32 // Serial, Ack (one message per acknowledged serial)
	flags    uint8  // Update
	metric   uint16 // Update; MetricInfinity retracts the route
	dest     NodeID // Update, RouteRequest (unless wildcard), SeqnoRequest
	hops     uint8  // SeqnoRequest: how many more hops it may travel
	wildcard bool   // RouteRequest for the whole table
}

// errNotControl is returned for a packet whose first byte is not a control
// packet's.
var errNotControl = errors.New("not a control packet")

// decodeControl parses a control packet into msgs (appending, so a caller
// can reuse one slice) and returns how many TLVs of unknown type it skipped.
// The whole packet is validated before anything is returned, so a caller
// never acts on half of a malformed packet. Bodies longer than a known
// type's fixed part are accepted and the extra bytes ignored, so that later
// versions can extend a TLV without breaking older nodes.
func decodeControl(b []byte, msgs []message) ([]message, int, error) {
	if len(b) == 0 {
		return msgs, 0, errors.New("empty packet")
	}
	if b[0] != controlMagic {
		if b[0]>>4 == kindControl {
			return msgs, 0, fmt.Errorf("control packet version %d, want %d", b[0]&0x0f, wireVersion)
		}
		return msgs, 0, errNotControl
	}
	unknown := 0
	serialSeen := false
	for off := 1; off < len(b); {
		if len(b)-off < tlvHeaderLen {
			return msgs, 0, fmt.Errorf("truncated TLV header at byte %d", off)
		}
		typ, n := tlvType(b[off]), int(b[off+1])
		off += tlvHeaderLen
		if len(b)-off < n {
			return msgs, 0, fmt.Errorf("TLV type %d at byte %d: length %d exceeds the packet", typ, off-tlvHeaderLen, n)
		}
		body := b[off : off+n]
		off += n
		m := message{typ: typ}
		switch typ {
		case tlvHello:
			if n < helloBodyLen {
				return msgs, 0, shortTLV(typ, n, helloBodyLen)
			}
			m.seqno = binary.BigEndian.Uint16(body)
			m.interval = binary.BigEndian.Uint16(body[2:])
		case tlvIHU:
			if n < ihuBodyLen {
				return msgs, 0, shortTLV(typ, n, ihuBodyLen)
			}
			m.cost = binary.BigEndian.Uint16(body)
		case tlvSerial:
			if n < serialBodyLen {
				return msgs, 0, shortTLV(typ, n, serialBodyLen)
			}
			if serialSeen {
				return msgs, 0, errors.New("two serial TLVs in one packet")
			}
			serialSeen = true
			m.serial = binary.BigEndian.Uint32(body)
		case tlvUpdate:
			if n < updateBodyLen {
				return msgs, 0, shortTLV(typ, n, updateBodyLen)
			}
			if !serialSeen {
				return msgs, 0, errors.New("update before the packet's serial")
			}
			m.flags = body[0]
			m.seqno = binary.BigEndian.Uint16(body[1:])
			m.metric = binary.BigEndian.Uint16(body[3:])
			copy(m.dest[:], body[5:])
		case tlvAck:
			if n == 0 || n%ackSerialLen != 0 {
				return msgs, 0, fmt.Errorf("ack TLV of %d bytes: want a non-zero multiple of %d", n, ackSerialLen)
			}
			for i := 0; i < n; i += ackSerialLen {
				msgs = append(msgs, message{typ: tlvAck, serial: binary.BigEndian.Uint32(body[i:])})
			}
			continue
		case tlvRouteRequest:
			switch {
			case n == 0:
				m.wildcard = true
			case n >= requestBodyLen:
				copy(m.dest[:], body)
			default:
				return msgs, 0, fmt.Errorf("route request TLV of %d bytes: want 0 or %d", n, requestBodyLen)
			}
		case tlvSeqnoRequest:
			if n < seqnoReqLen {
				return msgs, 0, shortTLV(typ, n, seqnoReqLen)
			}
			m.seqno = binary.BigEndian.Uint16(body)
			m.hops = body[2]
			copy(m.dest[:], body[3:])
		default:
			unknown++
			continue
		}
		msgs = append(msgs, m)
	}
	return msgs, unknown, nil
}

func shortTLV(typ tlvType, n, want int) error {
	return fmt.Errorf("TLV type %d of %d bytes: want at least %d", typ, n, want)
}

// The append functions encode one TLV each.

func appendHello(b []byte, seqno, interval uint16) []byte {
	b = append(b, byte(tlvHello), helloBodyLen)
	b = binary.BigEndian.AppendUint16(b, seqno)
	return binary.BigEndian.AppendUint16(b, interval)
}

func appendIHU(b []byte, rxcost uint16) []byte {
	b = append(b, byte(tlvIHU), ihuBodyLen)
	return binary.BigEndian.AppendUint16(b, rxcost)
}

func appendSerial(b []byte, serial uint32) []byte {
	b = append(b, byte(tlvSerial), serialBodyLen)
	return binary.BigEndian.AppendUint32(b, serial)
}

func appendUpdate(b []byte, flags uint8, seqno, metric uint16, dest NodeID) []byte {
	b = append(b, byte(tlvUpdate), updateBodyLen, flags)
	b = binary.BigEndian.AppendUint16(b, seqno)
	b = binary.BigEndian.AppendUint16(b, metric)
	return append(b, dest[:]...)
}

// appendAcks encodes serials in as few Ack TLVs as their length byte allows.
func appendAcks(b []byte, serials []uint32) []byte {
	const perTLV = maxTLVBodyLen / ackSerialLen
	for len(serials) > 0 {
		n := min(len(serials), perTLV)
		b = append(b, byte(tlvAck), byte(n*ackSerialLen))
		for _, s := range serials[:n] {
			b = binary.BigEndian.AppendUint32(b, s)
		}
		serials = serials[n:]
	}
	return b
}

func appendRouteRequest(b []byte, dest NodeID, wildcard bool) []byte {
	if wildcard {
		return append(b, byte(tlvRouteRequest), 0)
	}
	b = append(b, byte(tlvRouteRequest), requestBodyLen)
	return append(b, dest[:]...)
}

func appendSeqnoRequest(b []byte, seqno uint16, hops uint8, dest NodeID) []byte {
	b = append(b, byte(tlvSeqnoRequest), seqnoReqLen)
	b = binary.BigEndian.AppendUint16(b, seqno)
	b = append(b, hops)
	return append(b, dest[:]...)
}

// encodeMessage appends m as a TLV; an Ack message becomes a one-serial Ack.
func encodeMessage(b []byte, m message) []byte {
	switch m.typ {
	case tlvHello:
		return appendHello(b, m.seqno, m.interval)
	case tlvIHU:
		return appendIHU(b, m.cost)
	case tlvSerial:
		return appendSerial(b, m.serial)
	case tlvUpdate:
		return appendUpdate(b, m.flags, m.seqno, m.metric, m.dest)
	case tlvAck:
		return appendAcks(b, []uint32{m.serial})
	case tlvRouteRequest:
		return appendRouteRequest(b, m.dest, m.wildcard)
	case tlvSeqnoRequest:
		return appendSeqnoRequest(b, m.seqno, m.hops, m.dest)
	}
	return b
}

// DataHeaderLen is the length of a data packet's header.
const DataHeaderLen = 1 + 8 + 8 + 1 + 4

// DefaultTTL is a sensible TTL for originated data packets: more hops than
// any mesh this protocol is meant for, few enough that a loop is noticed.
const DefaultTTL = 64

// ttlOffset is where the TTL sits in a data packet, so that Forward can
// decrement it in place.
const ttlOffset = 1 + 8 + 8

// DataHeader is what relays see of a data packet: the end points, the hops
// it may still travel and a flow id. The payload after it is the
// end-to-end session's business.
type DataHeader struct {
	Src, Dst NodeID
	TTL      uint8
	Flow     uint32
}

// AppendData appends a data packet (h, then payload) to b and returns the
// extended slice.
func AppendData(b []byte, h DataHeader, payload []byte) []byte {
	b = append(b, dataMagic)
	b = append(b, h.Src[:]...)
	b = append(b, h.Dst[:]...)
	b = append(b, h.TTL)
	b = binary.BigEndian.AppendUint32(b, h.Flow)
	return append(b, payload...)
}

// ParseData splits a data packet into its header and payload. The payload
// aliases packet.
func ParseData(packet []byte) (DataHeader, []byte, error) {
	var h DataHeader
	if len(packet) == 0 || packet[0]>>4 != kindData {
		return h, nil, errors.New("not a data packet")
	}
	if packet[0] != dataMagic {
		return h, nil, fmt.Errorf("data packet version %d, want %d", packet[0]&0x0f, wireVersion)
	}
	if len(packet) < DataHeaderLen {
		return h, nil, fmt.Errorf("data packet of %d bytes: the header alone is %d", len(packet), DataHeaderLen)
	}
	copy(h.Src[:], packet[1:])
	copy(h.Dst[:], packet[9:])
	h.TTL = packet[ttlOffset]
	h.Flow = binary.BigEndian.Uint32(packet[ttlOffset+1:])
	return h, packet[DataHeaderLen:], nil
}

// IsData reports whether packet is a data packet (of any wire version)
// rather than a control packet, from its first byte alone.
func IsData(packet []byte) bool {
	return len(packet) > 0 && packet[0]>>4 == kindData
}
