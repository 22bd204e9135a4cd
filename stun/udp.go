package stun

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Quad is the four UDP sockets of an RFC 5780 server: every combination of
// the primary and alternate IP with the primary and alternate port. A
// request carrying CHANGE-REQUEST is answered from the socket that differs
// from the receiving one as asked.
type Quad struct {
	Primary net.PacketConn // primary IP, primary port (A1:P1)
	AltPort net.PacketConn // primary IP, alternate port (A1:P2)
	AltIP   net.PacketConn // alternate IP, primary port (A2:P1)
	AltBoth net.PacketConn // alternate IP, alternate port (A2:P2)
}

// udpSock is one UDP socket being served.
type udpSock struct {
	pc   net.PacketConn
	fast *net.UDPConn // pc itself when it is one: allocation-free I/O
	origin
}

// Serve answers STUN on pc, a UDP socket (or anything that behaves like
// one, such as a test fake), until ctx ends or the server is closed; then
// it closes pc. It runs Config.Readers goroutines on pc and returns after
// they have all ended: ErrServerClosed after Close or Shutdown, else
// ctx's error. A lone socket has no RFC 5780 role; use ServeQuad for that.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	return s.serveUDP(ctx, [4][]net.PacketConn{{pc}}, false)
}

// ServeQuad answers STUN with RFC 5780 behaviour discovery on the four
// sockets of q, which must all be bound to specific addresses, until ctx
// ends or the server is closed; then it closes them. Returns like Serve.
func (s *Server) ServeQuad(ctx context.Context, q Quad) error {
	if q.Primary == nil || q.AltPort == nil || q.AltIP == nil || q.AltBoth == nil {
		return fmt.Errorf("%w: Quad needs four sockets", ErrConfig)
	}
	return s.serveUDP(ctx, [4][]net.PacketConn{{q.Primary}, {q.AltPort}, {q.AltIP}, {q.AltBoth}}, true)
}

// serveUDP serves groups[role]: sockets that share the address of a role
// (several with SO_REUSEPORT, otherwise one). Only groups[0] is used
// unless isQuad.
func (s *Server) serveUDP(ctx context.Context, groups [4][]net.PacketConn, isQuad bool) error {
	var all []*udpSock
	var q *quad
	if isQuad {
		q = &quad{}
	}
	for role, g := range groups {
		for _, pc := range g {
			us := &udpSock{pc: pc, origin: origin{local: addrPortOf(pc.LocalAddr()), quad: q, role: role}}
			us.fast, _ = pc.(*net.UDPConn)
			all = append(all, us)
			if q != nil && q.socks[role] == nil {
				q.socks[role] = us
			}
		}
	}
	if isQuad {
		p, a := q.socks[rolePrimary].local, q.socks[roleAltBoth].local
		if err := checkQuadAddrs(p, a); err != nil {
			return err
		}
		if q.socks[roleAltPort].local != netip.AddrPortFrom(p.Addr(), a.Port()) ||
			q.socks[roleAltIP].local != netip.AddrPortFrom(a.Addr(), p.Port()) {
			return fmt.Errorf("%w: Quad sockets %v %v %v %v are not the four IP×port combinations", ErrConfig,
				p, q.socks[roleAltPort].local, q.socks[roleAltIP].local, a)
		}
	}

	readers := s.cfg.Readers
	if len(groups[0]) > 1 {
		readers = 1 // SO_REUSEPORT: the kernel already spreads the load
	}
	closeAll := func() {
		for _, us := range all {
			_ = us.pc.Close()
		}
	}
	var local sync.WaitGroup
	for _, us := range all {
		if !s.track(us.pc) {
			closeAll()
			local.Wait()
			return ErrServerClosed
		}
		defer s.untrack(us.pc)
		n := readers
		if us.role != rolePrimary {
			// The alternate sockets receive only the mapping tests
			// of classifications; one reader (with its batch buffers)
			// is plenty, and saves memory on many-core hosts.
			n = 1
		}
		for range n {
			if !s.spawn(&local, func() { s.readUDP(ctx, us) }) {
				closeAll()
				local.Wait()
				return ErrServerClosed
			}
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	s.log.Info("serving UDP", "addr", all[0].local, "sockets", len(all), "rfc5780", isQuad)
	local.Wait()
	closeAll()
	return s.serveResult(ctx)
}

// spawn starts fn as a goroutine owned by the server (Close waits for it)
// and by local. It refuses once the server is closing, so that no goroutine
// starts after Close has begun waiting.
func (s *Server) spawn(local *sync.WaitGroup, fn func()) bool {
	s.mu.Lock()
	if s.closed || s.draining {
		s.mu.Unlock()
		return false
	}
	s.wg.Add(1)
	local.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer local.Done()
		fn()
	}()
	return true
}

// readUDP is one reader goroutine: read, answer, repeat. With a
// *net.UDPConn every step is allocation-free.
func (s *Server) readUDP(ctx context.Context, us *udpSock) {
	if haveBatch && us.fast != nil && s.readUDPBatch(ctx, us) {
		return
	}
	w := newWorker()
	failures := 0
	for {
		var (
			n   int
			src netip.AddrPort
			err error
		)
		if us.fast != nil {
			n, src, err = us.fast.ReadFromUDPAddrPort(w.buf)
		} else {
			var a net.Addr
			n, a, err = us.pc.ReadFrom(w.buf)
			src = addrPortOf(a)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() || ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Someone else's deadline: clear it and go on.
				_ = us.pc.SetReadDeadline(time.Time{})
				continue
			}
			// Transient errors (ICMP feedback on some systems) are
			// skipped; a socket that only fails is given up.
			if failures++; failures > 100 {
				s.log.Error("UDP socket keeps failing, stop reading it", "addr", us.local, "err", err)
				return
			}
			continue
		}
		failures = 0
		s.handleDatagram(w, us, w.buf[:n], src)
	}
}

// handleDatagram answers one datagram and sends the response from the
// socket answer chose.
func (s *Server) handleDatagram(w *worker, us *udpSock, b []byte, src netip.AddrPort) {
	out, dst, from, ok := s.answer(w, b, src, &us.origin)
	if !ok {
		return
	}
	s.sendVia(us, from, out, dst)
}

// sendVia sends out to dst from the socket of role from in us's quad, or
// from us itself when it has none.
func (s *Server) sendVia(us *udpSock, from int, out []byte, dst netip.AddrPort) {
	via := us
	if us.quad != nil {
		via = us.quad.socks[from]
	}
	var err error
	if via.fast != nil {
		_, err = via.fast.WriteToUDPAddrPort(out, dst)
	} else {
		_, err = via.pc.WriteTo(out, net.UDPAddrFromAddrPort(dst))
	}
	if err != nil {
		s.stats.drop(dropWriteFailed)
		s.debug("write failed", dropWriteFailed, dst)
	}
}

// addrPortOf converts the net.Addr of a socket or peer to netip.AddrPort;
// invalid for addresses that are not IP.
func addrPortOf(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort()
	case *net.TCPAddr:
		return a.AddrPort()
	case nil:
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
