// Package relaytest provides an in-memory, channel-based datagram network for
// testing code that uses package relay.
//
// Sockets of a [Network] exchange packets through buffered channels, so a
// goroutine waiting for a packet is durably blocked in the sense of
// testing/synctest: tests of media timeouts, hold timeouts and session
// lifetimes run in a synctest bubble on a fake clock, in microseconds.
//
// # Usage
//
//	n := relaytest.NewNetwork()
//	r, _ := relay.New(relay.Config{Listen: n.Listen})
//	alice, _ := n.ListenConn(netip.MustParseAddrPort("192.0.2.10:4000"))
//	alice.WriteToUDPAddrPort(pkt, relayAddr)
//
// Like UDP, a packet to an address nobody listens on is silently lost, and so
// is a packet that finds the receiver's queue full.
package relaytest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/talkpad/talkpad/relay"
)

// ErrAddrInUse is returned by Listen for an address already bound.
var ErrAddrInUse = errors.New("relaytest: address already in use")

// QueueLen is the receive queue of every socket, in packets.
const QueueLen = 256

// Network is a set of fake sockets that can reach each other. The zero value
// is not usable; call NewNetwork.
type Network struct {
	mu    sync.Mutex
	conns map[netip.AddrPort]*Conn
	next  uint16
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{conns: make(map[netip.AddrPort]*Conn), next: 49152}
}

// Listen binds a socket; it has the signature of relay.ListenFunc.
func (n *Network) Listen(addr netip.AddrPort) (relay.Conn, error) {
	return n.ListenConn(addr)
}

// ListenConn binds a socket at addr. Port 0 picks a free port.
func (n *Network) ListenConn(addr netip.AddrPort) (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if addr.Port() == 0 {
		for {
			n.next++
			if n.next == 0 {
				n.next = 49152
			}
			a := netip.AddrPortFrom(addr.Addr(), n.next)
			if _, ok := n.conns[a]; !ok {
				addr = a
				break
			}
		}
	}
	if _, ok := n.conns[addr]; ok {
		return nil, fmt.Errorf("listen %s: %w", addr, ErrAddrInUse)
	}
	c := &Conn{n: n, local: addr, in: make(chan packet, QueueLen), done: make(chan struct{})}
	n.conns[addr] = c
	return c, nil
}

// Bound reports how many sockets are open: after everything is closed it
// must be back to what the test opened itself.
func (n *Network) Bound() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns)
}

type packet struct {
	b    []byte
	from netip.AddrPort
}

// Conn is a fake UDP socket. It satisfies relay.Conn.
type Conn struct {
	n     *Network
	local netip.AddrPort
	in    chan packet
	done  chan struct{}
	once  sync.Once
}

// ReadFromUDPAddrPort blocks until a packet arrives or the socket closes.
func (c *Conn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case p := <-c.in:
		return copy(b, p.b), p.from, nil
	case <-c.done:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

// WriteToUDPAddrPort delivers a copy of b to the socket bound at addr, if
// any, without blocking.
func (c *Conn) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	c.n.mu.Lock()
	dst := c.n.conns[netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())]
	c.n.mu.Unlock()
	if dst == nil {
		return len(b), nil
	}
	p := packet{b: append([]byte(nil), b...), from: c.local}
	select {
	case dst.in <- p:
	default:
	}
	return len(b), nil
}

// LocalAddr returns the bound address as a *net.UDPAddr.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// AddrPort returns the bound address.
func (c *Conn) AddrPort() netip.AddrPort { return c.local }

// Close unbinds the socket and wakes its reader. It is idempotent.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		if c.n.conns[c.local] == c {
			delete(c.n.conns, c.local)
		}
		c.n.mu.Unlock()
		close(c.done)
	})
	return nil
}

// Pending returns the number of packets waiting to be read.
func (c *Conn) Pending() int { return len(c.in) }
