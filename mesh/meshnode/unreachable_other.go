//go:build !linux

package meshnode

import (
	"net"
	"net/netip"
)

// watchUnreachable is a no-op where the kernel's error queue is not
// available: neighbours are then noticed by their Hellos alone.
func watchUnreachable(*net.UDPConn) {}

func unreachableAddrs(*net.UDPConn) []netip.AddrPort { return nil }

func isUnreachableErr(error) bool { return false }
