package meshnode

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// watchUnreachable asks the kernel to queue the ICMP errors that come back
// for the node's datagrams (IP_RECVERR, IPV6_RECVERR). Without it, an
// unconnected UDP socket never hears that a neighbour's port is closed: a
// neighbour whose process died (a crash, a restart, an upgrade) would
// then be noticed only when its Hellos stop, 2.5 Hello intervals later.
// Either option may fail on a socket of the other family; that is fine.
func watchUnreachable(conn *net.UDPConn) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_RECVERR, 1)
		_ = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_RECVERR, 1)
	})
}

// unreachableAddrs drains the socket's error queue and returns the
// destinations the kernel reported unreachable: the ports closed or the
// hosts or networks unreachable, as ICMP said. Anyone on the path can
// forge ICMP, so this is only a hint: the router probes the neighbour
// and declares it dead only if the probes go unanswered too.
func unreachableAddrs(conn *net.UDPConn) []netip.AddrPort {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	var out []netip.AddrPort
	buf := make([]byte, 512)
	oob := make([]byte, 512)
	// Control, not Read: Read would wait for the read lock, which the
	// reading goroutine holds while it waits for a datagram, and the
	// error queue is read without blocking anyway.
	_ = raw.Control(func(fd uintptr) {
		for range maxErrQueueDrain {
			_, oobn, _, from, err := unix.Recvmsg(int(fd), buf, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				break // EAGAIN: the queue is empty
			}
			if a, ok := sockaddrAddrPort(from); ok && unreachableError(oob[:oobn]) {
				out = append(out, a)
			}
		}
	})
	return out
}

// maxErrQueueDrain bounds one drain of the error queue, so that a flood
// of forged ICMP cannot hold the reader.
const maxErrQueueDrain = 64

// sockExtendedErrLen is the size of the kernel's struct
// sock_extended_err.
const sockExtendedErrLen = 16

// unreachableError reports whether the control messages of an error-queue
// read carry an ICMP error that means "nobody there".
func unreachableError(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		ip4 := m.Header.Level == unix.SOL_IP && m.Header.Type == unix.IP_RECVERR
		ip6 := m.Header.Level == unix.SOL_IPV6 && m.Header.Type == unix.IPV6_RECVERR
		// struct sock_extended_err: ee_errno (u32), ee_origin (u8), …
		if !ip4 && !ip6 || len(m.Data) < sockExtendedErrLen {
			continue
		}
		errno, origin := binary.NativeEndian.Uint32(m.Data[0:4]), m.Data[4]
		if origin != unix.SO_EE_ORIGIN_ICMP && origin != unix.SO_EE_ORIGIN_ICMP6 {
			continue
		}
		switch unix.Errno(errno) {
		case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH:
			return true
		}
	}
	return false
}

func sockaddrAddrPort(sa unix.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}

// isUnreachableErr reports whether a read error is the kernel passing on
// an ICMP error, so the error queue has something to drain.
func isUnreachableErr(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EHOSTUNREACH) || errors.Is(err, unix.ENETUNREACH)
}
