package stun

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// Sentinel errors. Callers branch on them with errors.Is.
var (
	// ErrServerClosed is returned by the Serve methods after Close or
	// Shutdown.
	ErrServerClosed = errors.New("stun: server closed")
	// ErrConfig wraps every configuration error returned by New.
	ErrConfig = errors.New("stun: invalid config")
)

// Config configures a Server. The zero value is a working STUN server on
// UDP and TCP port 3478 of every interface, without RFC 5780.
type Config struct {
	// Addr is the primary address, "ip:port", used by ListenAndServe for
	// UDP and TCP. Defaults to ":3478". With AltAddr set it must name a
	// specific IP, because that IP is sent to clients in OTHER-ADDRESS.
	Addr string

	// AltAddr is the alternate address of RFC 5780 behaviour discovery,
	// "ip:port", whose IP and port both differ from Addr's. ListenAndServe
	// then binds the four UDP sockets primary/alternate IP × primary/
	// alternate port. Empty (the default) disables RFC 5780: CHANGE-REQUEST
	// is refused with 420 and OTHER-ADDRESS is not sent.
	AltAddr string

	// TLSConfig, when set, makes ListenAndServe also accept STUN over TLS
	// on TLSAddr. It must hold a certificate. Nil (the default): no TLS.
	TLSConfig *tls.Config

	// TLSAddr is the TLS address. Defaults to Addr's IP with port 5349.
	TLSAddr string

	// DisableTCP stops ListenAndServe from accepting STUN over TCP on Addr.
	// Default false: TCP is on.
	DisableTCP bool

	// Software is the SOFTWARE attribute sent in every response. Defaults
	// to "talkpad". Set OmitSoftware to send none.
	Software string

	// OmitSoftware leaves the SOFTWARE attribute out of responses, so that
	// the server does not announce what it runs. Default false.
	OmitSoftware bool

	// RateLimit is the number of requests per second answered for one
	// source IP address; requests over it are dropped and counted, so that
	// the server cannot be used to reflect traffic at a victim whose
	// address an attacker spoofs. Defaults to 20. Negative: no limit.
	RateLimit float64

	// RateBurst is how many requests one source may send at once before
	// RateLimit applies. Defaults to 40 (a full RFC 5780 classification
	// with retransmissions stays well under it).
	RateBurst int

	// MaxSources bounds the memory of the rate limiter: the number of
	// source addresses tracked at once. While it is full, requests from
	// new sources are dropped (fail closed: under a spoofed flood the
	// server keeps its reflection guarantee). Defaults to 1<<20.
	MaxSources int

	// Readers is the number of goroutines reading each UDP socket, so that
	// one socket uses every core. Defaults to runtime.GOMAXPROCS(0).
	Readers int

	// ReusePort makes ListenAndServe open Readers sockets per UDP address
	// with SO_REUSEPORT (Linux), one reader each, so that the kernel
	// spreads clients over them. Default false: one socket, Readers
	// goroutines.
	ReusePort bool

	// MaxConns caps concurrent TCP and TLS connections; more are closed on
	// accept. Defaults to 4096.
	MaxConns int

	// IdleTimeout closes a TCP or TLS connection that sends no request for
	// this long. Defaults to 30s.
	IdleTimeout time.Duration

	// Logger receives debug logs about dropped input and info logs about
	// sockets. Nil means slog.Default() with component=stun.
	Logger *slog.Logger
}

// Server answers STUN Binding requests. It is safe for concurrent use: its
// Serve methods may run at the same time on different sockets.
type Server struct {
	cfg      Config
	log      *slog.Logger
	software []byte
	limit    *limiter
	stats    counters

	addr, alt netip.AddrPort // parsed Addr/AltAddr (zero when unset)

	mu       sync.Mutex
	closed   bool
	draining bool
	closers  map[io.Closer]struct{}
	wg       sync.WaitGroup // every goroutine started by any Serve method
	nconns   int
}

// New checks cfg, fills in defaults and returns a Server. It opens no
// socket: call ListenAndServe, or one of the Serve methods with sockets
// you made.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":3478"
	}
	if cfg.Software == "" {
		cfg.Software = "talkpad"
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 20
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = 40
	}
	if cfg.MaxSources <= 0 {
		cfg.MaxSources = 1 << 20
	}
	if cfg.Readers <= 0 {
		cfg.Readers = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 4096
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	s := &Server{cfg: cfg, closers: map[io.Closer]struct{}{}}
	if err := s.validate(); err != nil {
		return nil, err
	}
	s.log = cfg.Logger
	if s.log == nil {
		s.log = slog.Default().With("component", "stun")
	}
	if !cfg.OmitSoftware {
		s.software = []byte(cfg.Software)
	}
	if cfg.RateLimit > 0 {
		s.limit = newLimiter(cfg.RateLimit, cfg.RateBurst, cfg.MaxSources)
	}
	return s, nil
}

func (s *Server) validate() error {
	cfg := &s.cfg
	if len(cfg.Software) > 763 {
		return fmt.Errorf("%w: Software longer than 763 bytes", ErrConfig)
	}
	if cfg.TLSConfig != nil && len(cfg.TLSConfig.Certificates) == 0 &&
		cfg.TLSConfig.GetCertificate == nil && cfg.TLSConfig.GetConfigForClient == nil {
		return fmt.Errorf("%w: TLSConfig has no certificate", ErrConfig)
	}
	if cfg.AltAddr == "" {
		return nil
	}
	var err error
	if s.addr, err = netip.ParseAddrPort(cfg.Addr); err != nil {
		return fmt.Errorf("%w: Addr must be ip:port with AltAddr: %w", ErrConfig, err)
	}
	if s.alt, err = netip.ParseAddrPort(cfg.AltAddr); err != nil {
		return fmt.Errorf("%w: AltAddr: %w", ErrConfig, err)
	}
	return checkQuadAddrs(s.addr, s.alt)
}

// checkQuadAddrs enforces what RFC 5780 needs from the two addresses.
func checkQuadAddrs(a, b netip.AddrPort) error {
	switch {
	case a.Addr().IsUnspecified() || b.Addr().IsUnspecified():
		return fmt.Errorf("%w: RFC 5780 needs specific IPs, got %v and %v", ErrConfig, a, b)
	case a.Addr().Unmap().Is4() != b.Addr().Unmap().Is4():
		return fmt.Errorf("%w: %v and %v are of different families", ErrConfig, a, b)
	case a.Addr() == b.Addr() || a.Port() == b.Port():
		return fmt.Errorf("%w: alternate %v must differ from %v in both IP and port", ErrConfig, b, a)
	case a.Port() == 0 || b.Port() == 0:
		return fmt.Errorf("%w: RFC 5780 needs fixed ports, got %v and %v", ErrConfig, a, b)
	}
	return nil
}

// track registers c to be closed by Close. It fails once the server is
// closed, so that a Serve racing with Close does not start.
func (s *Server) track(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining {
		return false
	}
	s.closers[c] = struct{}{}
	return true
}

func (s *Server) untrack(c io.Closer) {
	s.mu.Lock()
	delete(s.closers, c)
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed || s.draining
}

// Close stops the server at once: it closes every socket, listener and
// connection the Serve methods were given or opened, and returns after
// every goroutine the server started has ended. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	cs := make([]io.Closer, 0, len(s.closers))
	for c := range s.closers {
		cs = append(cs, c)
	}
	clear(s.closers)
	s.mu.Unlock()
	for _, c := range cs {
		_ = c.Close()
	}
	s.wg.Wait()
	return nil
}

// Shutdown stops the server gracefully: it stops reading new requests,
// lets responses being built go out, then closes everything. If ctx ends
// first it falls back to Close and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	cs := make([]io.Closer, 0, len(s.closers))
	for c := range s.closers {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	// A past read deadline wakes every reader without cutting off a write
	// in progress; readers see draining and leave.
	past := time.Unix(1, 0)
	for _, c := range cs {
		switch c := c.(type) {
		case net.Listener:
			_ = c.Close()
		case interface{ SetReadDeadline(time.Time) error }:
			_ = c.SetReadDeadline(past)
		}
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return s.Close()
	case <-ctx.Done():
		_ = s.Close()
		return ctx.Err()
	}
}

// serveResult is what a Serve method returns when its sockets are gone.
func (s *Server) serveResult(ctx context.Context) error {
	if s.isClosed() {
		return ErrServerClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ErrServerClosed
}
