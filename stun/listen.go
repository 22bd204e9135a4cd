package stun

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
)

// Listeners are the sockets Config describes, opened by Listen and served
// by ServeListeners. Opening them first lets a caller learn the bound
// addresses (port 0) before serving.
type Listeners struct {
	// UDP holds the UDP sockets by RFC 5780 role: [0] the primary
	// address; with AltAddr, [1] primary IP and alternate port, [2]
	// alternate IP and primary port, [3] the alternate address. With
	// ReusePort each role has several sockets on one address.
	UDP [4][]net.PacketConn
	// TCP is nil with DisableTCP; TLS is nil without TLSConfig.
	TCP, TLS net.Listener
}

// Close closes every socket.
func (l *Listeners) Close() error {
	var errs []error
	for _, g := range l.UDP {
		for _, pc := range g {
			errs = append(errs, pc.Close())
		}
	}
	for _, ln := range []net.Listener{l.TCP, l.TLS} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}

// Listen opens the sockets Config describes: UDP and TCP on Addr; with
// AltAddr, the three more UDP sockets of RFC 5780; with TLSConfig, TLS on
// TLSAddr. If any cannot be opened it closes the others and returns the
// error.
func (s *Server) Listen(ctx context.Context) (*Listeners, error) {
	ls := &Listeners{}
	fail := func(err error) (*Listeners, error) {
		_ = ls.Close()
		return nil, fmt.Errorf("stun: listen: %w", err)
	}
	addrs := [4]string{s.cfg.Addr}
	if s.alt.IsValid() {
		p, a := s.addr, s.alt
		addrs = [4]string{
			p.String(),
			netip.AddrPortFrom(p.Addr(), a.Port()).String(),
			netip.AddrPortFrom(a.Addr(), p.Port()).String(),
			a.String(),
		}
	}
	nsock := 1
	if s.cfg.ReusePort {
		nsock = s.cfg.Readers
	}
	for role, addr := range addrs {
		if addr == "" {
			continue
		}
		for i := range nsock {
			lc := net.ListenConfig{}
			if nsock > 1 {
				lc.Control = reusePort
			}
			// With port 0 the first socket picks the port and
			// the others must join it.
			if i > 0 {
				addr = ls.UDP[role][0].LocalAddr().String()
			}
			pc, err := lc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				return fail(err)
			}
			ls.UDP[role] = append(ls.UDP[role], pc)
		}
	}
	if !s.cfg.DisableTCP {
		// TCP shares the UDP port, also when that was port 0.
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", ls.UDP[0][0].LocalAddr().String())
		if err != nil {
			return fail(err)
		}
		ls.TCP = l
	}
	if s.cfg.TLSConfig != nil {
		addr := s.cfg.TLSAddr
		if addr == "" {
			host, _, err := net.SplitHostPort(s.cfg.Addr)
			if err != nil {
				return fail(err)
			}
			addr = net.JoinHostPort(host, strconv.Itoa(5349))
		}
		var lc net.ListenConfig
		l, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return fail(err)
		}
		ls.TLS = tls.NewListener(l, s.cfg.TLSConfig)
	}
	return ls, nil
}

// ListenAndServe is Listen followed by ServeListeners.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ls, err := s.Listen(ctx)
	if err != nil {
		return err
	}
	return s.ServeListeners(ctx, ls)
}

// ServeListeners serves ls until ctx ends or the server is closed, then
// closes them. It returns ErrServerClosed after Close or Shutdown, or
// ctx's error, once every goroutine has ended; if one part fails, it stops
// the others and returns that error.
func (s *Server) ServeListeners(ctx context.Context, ls *Listeners) error {
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var lns []net.Listener
	for _, l := range []net.Listener{ls.TCP, ls.TLS} {
		if l != nil {
			lns = append(lns, l)
		}
	}
	errs := make([]error, 1+len(lns))
	var wg sync.WaitGroup
	if len(ls.UDP[0]) > 0 {
		wg.Go(func() {
			errs[0] = s.serveUDP(ctx, ls.UDP, len(ls.UDP[3]) > 0)
			cancel()
		})
	}
	for i, l := range lns {
		wg.Go(func() {
			errs[i+1] = s.ServeStream(ctx, l)
			cancel()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrServerClosed) && !errors.Is(err, context.Canceled) {
			_ = ls.Close()
			return err
		}
	}
	return s.serveResult(parent)
}
