package stun

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
)

// ShareConn lets another protocol's server (SIP) and this STUN server use
// one UDP socket. It returns a net.PacketConn to give to the other server:
// its ReadFrom answers STUN Binding requests arriving on pc itself and
// returns every other datagram. RFC 5626 §4.4.1 has SIP user agents send
// STUN Binding requests to the SIP port as NAT keep-alives and to learn
// their public address ("flow" keep-alive); this is what answers them.
//
// With sipgo:
//
//	pc, _ := net.ListenPacket("udp", ":5060")
//	go sipServer.ServeUDP(stunServer.ShareConn(pc))
//
// A datagram is taken as STUN when its first two bits are zero and it
// carries the magic cookie (RFC 7983 §7 and RFC 5626 §5.2): SIP messages
// start with a letter, and classic RFC 3489 requests (no cookie) are not
// used for keep-alives, so they go to the other server like any text.
// The STUN answers use Config's rate limit and count in Stats like any
// other. Requests are answered in the caller's reading goroutine, which
// is fine for keep-alive rates; it does not make the STUN path use more
// cores than the other server reads with.
//
// Closing the returned conn closes pc. The server's Close does not close
// it: the other server owns the socket.
func (s *Server) ShareConn(pc net.PacketConn) net.PacketConn {
	sc := &sharedConn{PacketConn: pc, s: s}
	sc.fast, _ = pc.(*net.UDPConn)
	sc.us = &udpSock{pc: pc, fast: sc.fast, origin: origin{local: addrPortOf(pc.LocalAddr())}}
	sc.pool.New = func() any { return newWorker() }
	return sc
}

type sharedConn struct {
	net.PacketConn
	s    *Server
	fast *net.UDPConn
	us   *udpSock
	pool sync.Pool // workers; the other server may read from several goroutines
}

// isSTUN reports whether b looks like a STUN message with the magic
// cookie.
func isSTUN(b []byte) bool {
	return len(b) >= headerSize && b[0]&0xC0 == 0 && binary.BigEndian.Uint32(b[4:8]) == magicCookie
}

// ReadFrom returns the next datagram that is not STUN, answering the STUN
// ones on the way.
func (c *sharedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		var (
			n   int
			src netip.AddrPort
			a   net.Addr
			err error
		)
		if c.fast != nil {
			n, src, err = c.fast.ReadFromUDPAddrPort(b)
		} else {
			n, a, err = c.PacketConn.ReadFrom(b)
			src = addrPortOf(a)
		}
		if err != nil || !isSTUN(b[:n]) {
			if a == nil && err == nil {
				a = net.UDPAddrFromAddrPort(src)
			}
			return n, a, err
		}
		w := c.pool.Get().(*worker)
		c.s.handleDatagram(w, c.us, b[:n], src)
		c.pool.Put(w)
	}
}
