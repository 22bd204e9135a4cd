package relay

import (
	"net"
	"net/netip"
)

// Conn is the datagram socket the relay forwards media through. *net.UDPConn
// satisfies it; relaytest provides a channel-based fake so that time-driven
// behaviour can be tested inside a testing/synctest bubble.
//
// It is narrower than net.PacketConn on purpose: the netip.AddrPort variants
// of ReadFrom and WriteTo do not allocate a net.Addr per packet, which is what
// keeps the forwarding path allocation-free.
type Conn interface {
	ReadFromUDPAddrPort(b []byte) (n int, addr netip.AddrPort, err error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// ListenFunc opens a media socket bound to addr. It must fail (rather than
// pick another port) when addr's port is taken, so that the port pool can move
// on to the next pair.
type ListenFunc func(addr netip.AddrPort) (Conn, error)

// bufferSetter is the optional capability of sockets whose kernel buffers can
// be sized; *net.UDPConn has it, fakes need not.
type bufferSetter interface {
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
}

// listenUDP is the default ListenFunc: a real UDP socket.
func listenUDP(addr netip.AddrPort) (Conn, error) {
	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	return c, nil
}
