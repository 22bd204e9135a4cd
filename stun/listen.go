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

// ListenAndServe opens the sockets Config describes and serves them until
// ctx ends or the server is closed: UDP and TCP on Addr; with AltAddr, the
// three more UDP sockets of RFC 5780; with TLSConfig, TLS on TLSAddr. If
// any socket cannot be opened it closes the others and returns the error.
// Otherwise it returns ErrServerClosed after Close or Shutdown, or ctx's
// error, once every goroutine has ended.
func (s *Server) ListenAndServe(ctx context.Context) error {
	var (
		groups [4][]net.PacketConn
		lns    []net.Listener
		opened []interface{ Close() error }
	)
	fail := func(err error) error {
		for _, c := range opened {
			_ = c.Close()
		}
		return fmt.Errorf("stun: listen: %w", err)
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
				addr = groups[role][0].LocalAddr().String()
			}
			pc, err := lc.ListenPacket(ctx, "udp", addr)
			if err != nil {
				return fail(err)
			}
			opened = append(opened, pc)
			groups[role] = append(groups[role], pc)
		}
	}
	if !s.cfg.DisableTCP {
		l, err := net.Listen("tcp", s.cfg.Addr)
		if err != nil {
			return fail(err)
		}
		opened = append(opened, l)
		lns = append(lns, l)
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
		l, err := tls.Listen("tcp", addr, s.cfg.TLSConfig)
		if err != nil {
			return fail(err)
		}
		opened = append(opened, l)
		lns = append(lns, l)
	}

	// One failing part stops the rest: ctx is cancelled for all of them.
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, 1+len(lns))
	var wg sync.WaitGroup
	wg.Go(func() {
		errs[0] = s.serveUDP(ctx, groups, s.alt.IsValid())
		cancel()
	})
	for i, l := range lns {
		wg.Go(func() {
			errs[i+1] = s.ServeStream(ctx, l)
			cancel()
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, ErrServerClosed) && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return s.serveResult(parent)
}
