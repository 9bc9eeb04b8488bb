// Package link is the mesh's secure link layer: Noise sessions between
// neighbouring nodes, node certificates from the home CA, and end-to-end
// channels between the source and destination of routed data. It is
// sans-IO like mesh/route: it takes frames and the time as arguments and
// returns frames to send, with no sockets, goroutines or wall clock
// inside, and draws randomness only from Config.Rand, so the simulator can
// run it deterministically.
//
// # Identities
//
// A node has a static X25519 key; its NodeID is route.IDFromKey of the
// public key. The home CA (ECDSA P-256, as auth issues it) signs a node
// certificate with IssueNodeCert: an X.509 v3 certificate whose subject key
// is the X25519 key, with key usage keyAgreement only, not a CA, and
// exactly one URI SAN
//
//	homemesh:home/<home id>/node/<node id>?role=<hub|router|leaf>
//
// (an opaque URI, because home ids may be longer than a DNS label). A
// Verifier accepts a certificate only if it chains to one of its roots, is
// valid at the given time, is of its home (else ErrForeignHome), and names
// the node id its key hashes to (else ErrBadCert).
//
// A certificate cannot be recalled: a stolen or retired node's stays
// valid until it expires. The home therefore revokes nodes by id:
// Verifier.Revoke adds them to the verifier's list, after which Verify
// refuses their certificates (ErrRevoked, counted as Revoked), E2E refuses
// to seal for or open from them, and the host closes what it already had
// with them (E2E.Forget, and its sessions).
//
// # Links
//
// An Endpoint holds a node's identity and settings. For each neighbour
// link the host keeps one Session: Initiate starts one (IK with the
// neighbour's known static key, XX on first contact), Accept answers a
// first message (IsInit) that arrives on a link without a session. Every
// frame that arrives on the link goes to Handle; every frame returned by
// Initiate, Accept, Handle, Seal and Tick goes to the link; Tick runs at
// Deadline. The link is up when Established reports true: the peer's
// certificate has been verified and Peer reports its NodeID, home and
// role. Handle returns an error only when the session died (wrapping
// ErrClosed): refused frames are dropped and counted in Counters, so that
// injected frames cannot take a link down. Both sides may initiate at once
// on the same session; the handshake with the larger ephemeral key wins.
//
// The Noise protocols are Noise_IK_25519_ChaChaPoly_SHA256 and
// Noise_XX_25519_ChaChaPoly_SHA256 with prologue "homemesh link v1".
// Transport frames carry their 64-bit counter in clear and are decrypted
// with explicit nonces, so frames may be lost or reordered; a 4096-bit
// RFC 6479 window (ReplayWindow counters) refuses replays. New keys come
// from a new handshake on the same session: by the keys' initiator after
// RekeyAfter (2 min), by either side after RekeyAfterMessages frames; keys
// are never used after RejectAfter (3 min). The keys a rekey replaced stay
// valid for received frames until KeepPrevious after the new ones are
// heard from, so nothing in flight is lost. An IK responder sends with new
// keys only once the initiator has used them (it may be a replayed first
// message otherwise, which the initiator's timestamp also guards against);
// the initiator confirms with a keepalive, repeated each HandshakeRetry
// until it hears back.
//
// Payloads of up to MaxPayload (64 KiB) are split into frames of at most
// MTU bytes and reassembled, in any order, with at most MaxReassemblies
// payloads and MaxReassemblyBytes held at once for at most
// ReassemblyTimeout: what a peer can make a session hold is bounded
// (ReassemblyBytes).
//
// # End to end
//
// E2E keeps one Noise_IK_25519_ChaChaPoly_SHA256 channel (prologue
// "homemesh e2e v1") per destination node, keyed by NodeID; the
// destination's static key comes from a lookup (the registry), and both
// ends' certificates are verified in the handshake. Seal returns messages
// for the host to carry as the payload of a route data packet; Open takes
// a message and the source id of the packet that carried it. Relays see
// only the route data header (source, destination, TTL, flow id); the
// transport associated data binds the source and destination ids, so a
// relay can neither read, alter, re-attribute nor redirect a message
// undetected. The channels have their own replay windows and rekeys and
// are dropped when idle past RejectAfter.
//
// # Frame format
//
// All integers are big-endian. The first byte of every frame is its type;
// its high nibble is the protocol version (1).
//
//	| frame          | layout                                              | bytes                   |
//	|----------------|-----------------------------------------------------|-------------------------|
//	| init 0x11      | type, pattern (1 IK, 2 XX), Noise message 1         | IK 109+cert, XX 45      |
//	| response 0x12  | type, Noise message 2                               | IK 60+cert, XX 108+cert |
//	| finish 0x13    | type, Noise message 3 (XX only)                     | 76+cert                 |
//	| transport 0x14 | type, key id (1), counter (8), ciphertext, tag (16) | 26+plaintext            |
//
// The Noise messages are e, s, payload as the patterns prescribe: IK
// message 1 is e (32), encrypted s (48), encrypted payload (+16); IK
// message 2 is e, encrypted payload; XX message 1 is e and a clear payload;
// XX message 2 is e, encrypted s, encrypted payload; XX message 3 is
// encrypted s, encrypted payload. Every handshake payload is
//
//	| field     | bytes | meaning                                                            |
//	|-----------|-------|--------------------------------------------------------------------|
//	| key id    | 1     | the sender's id for the key pair: the key id of frames it receives |
//	| timestamp | 8     | the sender's clock, Unix ns; IK responders refuse one not newer    |
//	| cert len  | 2     | 0 in XX message 1, else the certificate's length (at most 2048)    |
//	| cert      | len   | the sender's node certificate, DER                                 |
//
// and, as part of the handshake hash, authenticated by the end of the
// handshake. A node certificate is about 460 bytes, so handshake frames
// are 45 to 570 bytes and never fragmented (MinMTU 576).
//
// A transport frame's associated data is its 10-byte header (for E2E,
// followed by the source and destination NodeIDs). Its plaintext, on a
// link, is
//
//	| plaintext                                         | meaning                     |
//	|---------------------------------------------------|-----------------------------|
//	| empty                                             | keepalive: confirms keys    |
//	| 0x01, payload                                     | a whole payload             |
//	| 0x02, payload id (4), index (1), count (1), piece | one of count >= 2 fragments |
//
// and, end to end, the payload itself (empty: keepalive). A whole payload
// costs 27 bytes of overhead, a fragment 33.
package link
