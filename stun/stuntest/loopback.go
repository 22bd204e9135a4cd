package stuntest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// LoopbackQuad binds the four UDP sockets of an RFC 5780 server on two
// loopback addresses, for example 127.0.0.1 and 127.0.0.2 (Linux routes all
// of 127.0.0.0/8 to lo), with two free ports. The sockets are returned in
// the order primary, alternate port, alternate IP, alternate both: the
// fields of stun.Quad.
func LoopbackQuad(primary, alternate netip.Addr) ([4]net.PacketConn, error) {
	var out [4]net.PacketConn
	// The alternate IP must bind the same two ports; another process may
	// hold one of them there, so retry with fresh ports.
	var lastErr error
	for range 20 {
		p1, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(primary, 0)))
		if err != nil {
			return out, err
		}
		p2, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(primary, 0)))
		if err != nil {
			p1.Close()
			return out, err
		}
		port1 := p1.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		port2 := p2.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		a1, err1 := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(alternate, port1)))
		a2, err2 := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(alternate, port2)))
		if err1 == nil && err2 == nil {
			return [4]net.PacketConn{p1, p2, a1, a2}, nil
		}
		lastErr = errors.Join(err1, err2)
		for _, c := range []*net.UDPConn{p1, p2, a1, a2} {
			if c != nil {
				c.Close()
			}
		}
	}
	return out, fmt.Errorf("stuntest: no free port pair on %v and %v: %w", primary, alternate, lastErr)
}
