package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers branch on.
var (
	ErrConfig       = errors.New("relay: invalid config")
	ErrNoPorts      = errors.New("relay: port range exhausted")
	ErrNotFound     = errors.New("relay: session not found")
	ErrBadSDP       = errors.New("relay: malformed SDP")
	ErrBadRequest   = errors.New("relay: bad request")
	ErrTagMismatch  = errors.New("relay: tag matches neither party of the session")
	ErrServerClosed = errors.New("relay: closed")
	ErrUnsupported  = errors.New("relay: unsupported")
)

// Config configures a Relay. The zero value is usable: a relay on 127.0.0.1
// with ports 30000-40000 and rtpengine-like defaults.
type Config struct {
	// Addr is the local address media sockets bind to, IPv4 or IPv6.
	// Defaults to 127.0.0.1.
	Addr netip.Addr
	// AdvertiseAddr is the address written into rewritten SDP, for a relay
	// behind a 1:1 NAT. Defaults to Addr (which must then not be unspecified).
	AdvertiseAddr netip.Addr
	// MinPort and MaxPort bound the media port range (inclusive). RTP uses
	// the even ports, RTCP the odd port above. Default 30000-40000.
	MinPort, MaxPort uint16
	// Listen opens media sockets. Defaults to real UDP sockets (on Linux,
	// served by one epoll loop per core instead of a goroutine per socket);
	// tests pass relaytest.Network.Listen.
	Listen ListenFunc
	// SocketBuffer is the kernel receive and send buffer size requested for
	// each media socket, so that bursts survive scheduling hiccups. Defaults
	// to 1 MiB (the kernel caps it at net.core.rmem_max/wmem_max); negative
	// leaves the kernel default.
	SocketBuffer int

	// Timeout ends a session whose active streams carried no media in either
	// direction for this long. Defaults to 60s; negative disables.
	Timeout time.Duration
	// HoldTimeout replaces Timeout for sessions with a stream on hold
	// (sendonly, recvonly, inactive or 0.0.0.0) and for sessions not yet
	// answered. Defaults to 1h; negative disables.
	HoldTimeout time.Duration
	// MaxLifetime ends any session this long after its first offer. Defaults
	// to 12h; negative disables.
	MaxLifetime time.Duration
	// CheckInterval is how often timeouts are checked, hence their
	// resolution. Defaults to 1s.
	CheckInterval time.Duration

	// Learning is the default learning mode for requests that do not set one.
	// Defaults to LearnImmediate.
	Learning Learning
	// DelayedWindow is how long LearnDelayed keeps following a new source.
	// Defaults to 3s.
	DelayedWindow time.Duration
	// AllowAnySource turns the RTP Bleed protection off: any source may latch
	// a leg even when signalling told us the party's address.
	AllowAnySource bool

	// OnEvent, if set, receives latch and timeout events. It is called from
	// the relay's goroutines (a media goroutine for latch events) and must
	// not block; hand the event to a channel or goroutine of your own.
	OnEvent func(Event)
	// Logger defaults to slog.Default() with component=relay.
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if !c.Addr.IsValid() {
		c.Addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	c.Addr = c.Addr.Unmap()
	if !c.AdvertiseAddr.IsValid() {
		c.AdvertiseAddr = c.Addr
	}
	if c.AdvertiseAddr.IsUnspecified() {
		return fmt.Errorf("%w: AdvertiseAddr must be set when Addr is unspecified", ErrConfig)
	}
	if c.MinPort == 0 && c.MaxPort == 0 {
		c.MinPort, c.MaxPort = 30000, 40000
	}
	if c.MinPort > c.MaxPort {
		return fmt.Errorf("%w: MinPort %d > MaxPort %d", ErrConfig, c.MinPort, c.MaxPort)
	}
	if c.SocketBuffer == 0 {
		c.SocketBuffer = 1 << 20
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, 60*time.Second)
	def(&c.HoldTimeout, time.Hour)
	def(&c.MaxLifetime, 12*time.Hour)
	def(&c.CheckInterval, time.Second)
	def(&c.DelayedWindow, 3*time.Second)
	if c.CheckInterval < 0 {
		return fmt.Errorf("%w: negative CheckInterval", ErrConfig)
	}
	if c.Learning == LearnDefault {
		c.Learning = LearnImmediate
	}
	if c.Learning > LearnOff {
		return fmt.Errorf("%w: unknown learning mode %d", ErrConfig, c.Learning)
	}
	if c.Logger == nil {
		c.Logger = slog.Default().With("component", "relay")
	}
	return nil
}

// Relay is an RTP/RTCP relay. Create it with New; its methods are safe for
// concurrent use.
type Relay struct {
	cfg  Config
	log  *slog.Logger
	pool *portPool
	poll *poller        // nil unless the default Linux sockets are used
	wg   sync.WaitGroup // every socket goroutine

	mu sync.Mutex
	// sessions holds the sessions of each Call-ID: usually one, but an
	// offer from a tag that no session of the call knows starts another,
	// as rtpengine keys by call-id and tags.
	sessions map[string][]*session
	ended    sessionTotals // counters of deleted sessions
	closed   bool

	done      chan struct{}
	closeOnce sync.Once

	latches, relatches, timeouts atomic.Uint64
}

// New validates cfg and returns a Relay. Offer, Answer and Delete work right
// away; Serve runs the timeout checks.
func New(cfg Config) (*Relay, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	listen := cfg.Listen
	var poll *poller
	if listen == nil {
		var err error
		if listen, poll, err = defaultListen(max(cfg.SocketBuffer, 0)); err != nil {
			return nil, fmt.Errorf("relay: start poller: %w", err)
		}
	} else if cfg.SocketBuffer > 0 {
		size := cfg.SocketBuffer
		listen = func(a netip.AddrPort) (Conn, error) {
			c, err := cfg.Listen(a)
			if err == nil {
				if b, ok := c.(bufferSetter); ok {
					// Best effort: an unprivileged process gets the capped size.
					_ = b.SetReadBuffer(size)
					_ = b.SetWriteBuffer(size)
				}
			}
			return c, err
		}
	}
	pool, err := newPortPool(cfg.Addr, cfg.MinPort, cfg.MaxPort, listen)
	if err != nil {
		poll.close()
		return nil, err
	}
	return &Relay{
		poll:     poll,
		cfg:      cfg,
		log:      cfg.Logger,
		pool:     pool,
		sessions: make(map[string][]*session),
		done:     make(chan struct{}),
	}, nil
}

// Serve checks media timeouts and session lifetimes until ctx is done or
// Close is called. Then it closes the relay: every session, port and
// goroutine is released before Serve returns ErrServerClosed.
func (r *Relay) Serve(ctx context.Context) error {
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Close()
			return ErrServerClosed
		case <-r.done:
			r.Close()
			return ErrServerClosed
		case now := <-t.C:
			r.checkTimeouts(now)
		}
	}
}

// Close deletes every session, frees every port and waits for every media
// goroutine to end. It is idempotent; later Offers fail with
// ErrServerClosed.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		sessions := r.allLocked()
		r.mu.Unlock()
		for _, s := range sessions {
			r.remove(s)
		}
		r.pool.close()
		close(r.done)
		r.wg.Wait()
		r.poll.close()
	})
	r.wg.Wait()
	return nil
}

// Shutdown is Close honouring a deadline for the wait. Media relaying has
// nothing to drain, so it differs from Close only in giving up on ctx.
func (r *Relay) Shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { r.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkTimeouts ends sessions that were silent or alive too long.
func (r *Relay) checkTimeouts(now time.Time) {
	r.mu.Lock()
	sessions := r.allLocked()
	r.mu.Unlock()
	for _, s := range sessions {
		typ := s.expired(now, &r.cfg)
		if typ == 0 {
			continue
		}
		if !r.remove(s) {
			continue // deleted concurrently
		}
		r.timeouts.Add(1)
		ev := Event{Type: typ, Time: now}
		s.fill(&ev, -1)
		r.log.Info("session ended", "reason", typ.String(), "call_id", s.callID)
		r.emit(ev)
	}
}

// allLocked lists every session; r.mu must be held.
func (r *Relay) allLocked() []*session {
	var out []*session
	for _, b := range r.sessions {
		out = append(out, b...)
	}
	return out
}

// remove unlinks s and frees its ports. It reports false if s was already
// gone.
func (r *Relay) remove(s *session) bool {
	r.mu.Lock()
	bucket := r.sessions[s.callID]
	i := slices.Index(bucket, s)
	if i < 0 {
		r.mu.Unlock()
		return false
	}
	if bucket = slices.Delete(bucket, i, i+1); len(bucket) == 0 {
		delete(r.sessions, s.callID)
	} else {
		r.sessions[s.callID] = bucket
	}
	r.mu.Unlock()
	t := s.close(r.pool)
	r.mu.Lock()
	r.ended.add(&t)
	r.mu.Unlock()
	return true
}
