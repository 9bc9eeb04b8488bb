// Package route is the mesh's routing core: a Babel-style distance-vector
// protocol (RFC 8966 semantics in homemesh's own compact wire format). It
// is sans-IO: it consumes packets and clock ticks and returns packets to
// send, with no sockets, goroutines or wall clock inside, so the same code
// runs in a real node, in the deterministic simulator and in tests.
package route
