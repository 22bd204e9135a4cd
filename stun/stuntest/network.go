// Package stuntest provides test kits for the stun package and its users:
// an in-memory UDP network with simulated NATs whose sockets are
// channel-based, so that STUN servers, clients and NAT classifications run
// inside testing/synctest bubbles with a fake clock, and a helper that binds
// RFC 5780 socket sets on loopback.
package stuntest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// Behavior is a simulated NAT's mapping or filtering behaviour (RFC 4787).
type Behavior int

const (
	EndpointIndependent Behavior = iota
	AddressDependent
	AddressAndPortDependent
)

// NATConfig describes a simulated NAT.
type NATConfig struct {
	// Inside is the private prefix behind the NAT; packets from it to
	// addresses outside it are translated.
	Inside netip.Prefix
	// Public is the NAT's outside address.
	Public netip.Addr
	// Mapping and Filtering select the NAT's behaviour.
	Mapping, Filtering Behavior
	// Drop makes the NAT drop every packet: "UDP blocked".
	Drop bool
}

// Network is an in-memory UDP network. Its zero value is not usable; call
// NewNetwork. Safe for concurrent use.
type Network struct {
	mu       sync.Mutex
	socks    map[netip.AddrPort]*Conn
	nats     []*nat
	nextPort uint16
}

// NewNetwork returns an empty network.
func NewNetwork() *Network {
	return &Network{socks: map[netip.AddrPort]*Conn{}, nextPort: 40000}
}

// AddNAT puts hosts of cfg.Inside behind a NAT.
func (n *Network) AddNAT(cfg NATConfig) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nats = append(n.nats, &nat{cfg: cfg, byKey: map[mapKey]*mapping{}, byPort: map[uint16]*mapping{}, next: 50000})
}

// Listen binds a socket; port 0 picks a free one.
func (n *Network) Listen(addr netip.AddrPort) (*Conn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if addr.Port() == 0 {
		for {
			n.nextPort++
			a := netip.AddrPortFrom(addr.Addr(), n.nextPort)
			if n.socks[a] == nil {
				addr = a
				break
			}
		}
	}
	if n.socks[addr] != nil {
		return nil, fmt.Errorf("stuntest: %v: address in use", addr)
	}
	c := &Conn{
		net: n, local: addr,
		in:      make(chan packet, 256),
		closed:  make(chan struct{}),
		changed: make(chan struct{}),
	}
	n.socks[addr] = c
	return c, nil
}

// ListenPacket is Listen with the signature of net.ListenConfig's, for
// stun.ClassifierConfig.ListenPacket.
func (n *Network) ListenPacket(_ context.Context, _, address string) (net.PacketConn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, err
	}
	return n.Listen(ap)
}

type packet struct {
	data []byte
	from netip.AddrPort
}

// send routes one datagram through the NATs on its way. Like UDP, it drops
// silently what it cannot deliver.
func (n *Network) send(b []byte, from, to netip.AddrPort) {
	n.mu.Lock()
	for _, nt := range n.nats {
		if nt.cfg.Inside.Contains(from.Addr()) && !nt.cfg.Inside.Contains(to.Addr()) {
			if nt.cfg.Drop {
				n.mu.Unlock()
				return
			}
			from = nt.outbound(from, to)
		}
	}
	for _, nt := range n.nats {
		if to.Addr() == nt.cfg.Public {
			inside, ok := nt.inbound(from, to)
			if !ok {
				n.mu.Unlock()
				return
			}
			to = inside
		}
	}
	c := n.socks[to]
	n.mu.Unlock()
	if c == nil {
		return
	}
	p := packet{data: append([]byte(nil), b...), from: from}
	select {
	case c.in <- p:
	case <-c.closed:
	default: // receive buffer full
	}
}

type mapKey struct {
	inside netip.AddrPort
	dst    netip.AddrPort // zeroed parts per mapping behaviour
}

type mapping struct {
	inside  netip.AddrPort
	port    uint16
	allowed map[netip.AddrPort]bool // remote endpoints the inside host sent to
}

type nat struct {
	cfg    NATConfig
	byKey  map[mapKey]*mapping
	byPort map[uint16]*mapping
	next   uint16
}

func (nt *nat) outbound(from, to netip.AddrPort) netip.AddrPort {
	k := mapKey{inside: from}
	switch nt.cfg.Mapping {
	case AddressDependent:
		k.dst = netip.AddrPortFrom(to.Addr(), 0)
	case AddressAndPortDependent:
		k.dst = to
	}
	m := nt.byKey[k]
	if m == nil {
		m = &mapping{inside: from, port: nt.next, allowed: map[netip.AddrPort]bool{}}
		nt.next++
		nt.byKey[k] = m
		nt.byPort[m.port] = m
	}
	m.allowed[to] = true
	return netip.AddrPortFrom(nt.cfg.Public, m.port)
}

func (nt *nat) inbound(from, to netip.AddrPort) (netip.AddrPort, bool) {
	m := nt.byPort[to.Port()]
	if m == nil {
		return netip.AddrPort{}, false
	}
	switch nt.cfg.Filtering {
	case AddressDependent:
		ok := false
		for a := range m.allowed {
			ok = ok || a.Addr() == from.Addr()
		}
		if !ok {
			return netip.AddrPort{}, false
		}
	case AddressAndPortDependent:
		if !m.allowed[from] {
			return netip.AddrPort{}, false
		}
	}
	return m.inside, true
}

// Conn is a socket of a Network. It implements net.PacketConn, including
// read deadlines; a goroutine blocked in ReadFrom is durably blocked in the
// synctest sense.
type Conn struct {
	net   *Network
	local netip.AddrPort
	in    chan packet

	closeOnce sync.Once
	closed    chan struct{}

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

// ReadFrom implements net.PacketConn. Unlike a kernel socket it returns a
// queued datagram even when the deadline has passed, so that a test can
// drain what has arrived with SetReadDeadline(time.Now()).
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.data), net.UDPAddrFromAddrPort(p.from), nil
	default:
	}
	for {
		c.mu.Lock()
		dl, changed := c.deadline, c.changed
		c.mu.Unlock()
		var expired <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, c.opErr("read", os.ErrDeadlineExceeded)
			}
			t := time.NewTimer(d)
			expired = t.C
			defer t.Stop()
		}
		select {
		case p := <-c.in:
			return copy(b, p.data), net.UDPAddrFromAddrPort(p.from), nil
		case <-c.closed:
			return 0, nil, c.opErr("read", net.ErrClosed)
		case <-expired:
			return 0, nil, c.opErr("read", os.ErrDeadlineExceeded)
		case <-changed:
		}
	}
}

// WriteTo implements net.PacketConn.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, c.opErr("write", net.ErrClosed)
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opErr("write", errors.New("not a UDP address"))
	}
	c.net.send(b, c.local, ua.AddrPort())
	return len(b), nil
}

// Close implements net.PacketConn.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.net.mu.Lock()
		delete(c.net.socks, c.local)
		c.net.mu.Unlock()
	})
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *Conn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// SetDeadline implements net.PacketConn; only reads have deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// SetWriteDeadline implements net.PacketConn; writes never block.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Addr: c.LocalAddr(), Err: err}
}
