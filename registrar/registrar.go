package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/talkpad/talkpad/store"
)

// Persistence selects how bindings reach the store, like the db_mode of
// Kamailio's usrloc.
type Persistence int

const (
	// WriteBack keeps the in-memory table authoritative for every lookup
	// and flushes changed bindings to the store every FlushInterval, and
	// once more on Close. A failed flush keeps its changes for the next
	// one: nothing is lost while the process lives, and a crash loses at
	// most one interval. The default when Config.Store is set.
	WriteBack Persistence = iota
	// WriteThrough writes each registration to the store before answering
	// it; a store failure answers 500 and changes nothing.
	WriteThrough
	// MemoryOnly never touches a store. The default when Config.Store is
	// nil.
	MemoryOnly
)

func (p Persistence) String() string {
	switch p {
	case WriteBack:
		return "write-back"
	case WriteThrough:
		return "write-through"
	case MemoryOnly:
		return "memory-only"
	}
	return fmt.Sprintf("Persistence(%d)", int(p))
}

// Config configures a Registrar. Zero values mean the documented defaults.
type Config struct {
	// Auth authenticates REGISTERs. Required unless Insecure is set.
	Auth *Authenticator
	// Insecure accepts REGISTERs without authentication. Only for tests
	// and closed networks: anybody can then take anybody's calls.
	Insecure bool
	// Authorize decides whether the authenticated user may register aor
	// (the normalised To URI, "sip:user@domain"). Defaults to: the AOR's
	// user part equals the digest user name, and its domain is served.
	Authorize func(username, aor string) bool
	// Domains are the domains this registrar is responsible for (RFC 3261
	// §10.3 step 1), lowercase. Empty means any domain.
	Domains []string

	// Store persists bindings. Nil means memory only.
	Store store.Bindings
	// Persistence defaults to WriteBack with a Store, MemoryOnly without.
	Persistence Persistence
	// FlushInterval is the write-back period. Defaults to 5 seconds.
	FlushInterval time.Duration
	// Node names this node in the bindings it owns. Defaults to "local".
	Node string

	// DefaultExpires applies when a contact gives no expiry. Defaults to
	// 3600 seconds.
	DefaultExpires time.Duration
	// MinExpires is the shortest accepted non-zero expiry; shorter ones get
	// 423 Interval Too Brief. Defaults to 60 seconds.
	MinExpires time.Duration
	// MaxExpires clamps longer expiries. Defaults to 7200 seconds.
	MaxExpires time.Duration
	// MaxContacts caps the bindings of one AOR; a REGISTER that would
	// exceed it gets 503 Too Many Registered Contacts. Defaults to 10;
	// negative means no cap.
	MaxContacts int
	// StrictPath refuses (420 Bad Extension) a REGISTER with Path from a
	// client that does not list "path" in Supported. By default such a
	// Path is stored and used but not echoed (RFC 3327 §5.3).
	StrictPath bool
	// NATHeader carries the client's own NAT type (e.g. "symmetric", as
	// the stun package's classifier names it). Defaults to "X-NAT-Type".
	NATHeader string
	// ConnectionBound ties bindings made over TCP, TLS, WS and WSS to their
	// connection: they are reachable only through it and removed when it
	// closes (browsers cannot be dialled back). Defaults to true; set
	// NotConnectionBound to turn it off.
	NotConnectionBound bool

	// Logger defaults to slog.Default() with component=registrar.
	Logger *slog.Logger
}

// Errors returned by New.
var (
	ErrConfig = errors.New("registrar: invalid config")
	ErrClosed = errors.New("registrar: closed")
)

// Registrar is a SIP registrar and location service. Mount ServeRegister on
// a sipgo server; ask Lookup where a user is. It is safe for concurrent use.
type Registrar struct {
	cfg   Config
	log   *slog.Logger
	table *table
	pers  *persister

	watchMu  sync.Mutex
	watchers map[int]func(Event)
	watchID  int

	stats counters
	// inflight is held for reading by every REGISTER being handled, so
	// that Shutdown's final flush comes after the last of them.
	inflight sync.RWMutex
	closed   atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
	closeMu  sync.Mutex
}

// New returns a Registrar. With a Store, it loads the non-expired bindings
// from it first and fails if it cannot: a registrar that starts empty would
// tell callers that registered users are offline. It starts the expiry and
// flush goroutines; Close or Shutdown stops them.
func New(ctx context.Context, cfg Config) (*Registrar, error) {
	if cfg.Auth == nil && !cfg.Insecure {
		return nil, fmt.Errorf("%w: Auth is required (or set Insecure)", ErrConfig)
	}
	if cfg.Store == nil {
		cfg.Persistence = MemoryOnly
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 5 * time.Second
	}
	if cfg.Node == "" {
		cfg.Node = "local"
	}
	if cfg.DefaultExpires <= 0 {
		cfg.DefaultExpires = 3600 * time.Second
	}
	if cfg.MinExpires <= 0 {
		cfg.MinExpires = 60 * time.Second
	}
	if cfg.MaxExpires <= 0 {
		cfg.MaxExpires = 7200 * time.Second
	}
	if cfg.MaxExpires < cfg.MinExpires {
		return nil, fmt.Errorf("%w: MaxExpires %v below MinExpires %v", ErrConfig, cfg.MaxExpires, cfg.MinExpires)
	}
	if cfg.DefaultExpires > cfg.MaxExpires {
		cfg.DefaultExpires = cfg.MaxExpires
	}
	if cfg.MaxContacts == 0 {
		cfg.MaxContacts = 10
	}
	if cfg.NATHeader == "" {
		cfg.NATHeader = "X-NAT-Type"
	}
	for i, d := range cfg.Domains {
		cfg.Domains[i] = strings.ToLower(d)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default().With("component", "registrar")
	}
	r := &Registrar{
		cfg:      cfg,
		log:      cfg.Logger,
		watchers: make(map[int]func(Event)),
		stop:     make(chan struct{}),
	}
	r.table = newTable(r)
	if cfg.Persistence != MemoryOnly {
		r.pers = newPersister(r)
		bs, err := cfg.Store.ListAllBindings(ctx, time.Now())
		if err != nil {
			return nil, fmt.Errorf("registrar: load bindings: %w", err)
		}
		dead := r.table.load(bs, time.Now())
		if len(dead) > 0 {
			if err := cfg.Store.DeleteBindings(ctx, dead); err != nil {
				r.log.Warn("cannot delete bindings of connections lost at restart", "count", len(dead), "error", err)
			}
		}
		r.log.Info("loaded bindings", "count", len(bs)-len(dead), "dropped_connection_bound", len(dead))
	}
	r.wg.Go(r.table.expiryLoop)
	if cfg.Persistence != MemoryOnly {
		// Write-back flushes; write-through only sweeps expired rows.
		r.wg.Go(r.pers.flushLoop)
	}
	return r, nil
}

// Close stops the registrar: the expiry and flush goroutines end, and in
// write-back mode the changed bindings are flushed one last time, without
// a deadline. It returns the final flush's error. Close is idempotent.
func (r *Registrar) Close() error {
	return r.Shutdown(context.Background())
}

// Shutdown is Close with a deadline for the final flush.
func (r *Registrar) Shutdown(ctx context.Context) error {
	r.closeMu.Lock()
	defer r.closeMu.Unlock()
	r.inflight.Lock()
	already := r.closed.Swap(true)
	r.inflight.Unlock()
	if already {
		return nil
	}
	close(r.stop)
	r.wg.Wait()
	if r.cfg.Persistence == WriteBack {
		if err := r.pers.flush(ctx); err != nil {
			return fmt.Errorf("registrar: final flush: %w", err)
		}
	}
	return nil
}

// Flush writes the changed bindings to the store now (write-back mode).
func (r *Registrar) Flush(ctx context.Context) error {
	if r.pers == nil || r.cfg.Persistence != WriteBack {
		return nil
	}
	return r.pers.flush(ctx)
}

// Lookup returns the live bindings of aor, highest q first, then most
// recently refreshed first. Each binding's Received (over Transport, from
// LocalAddr) is where to send requests, and Path is the route set to put in
// front of them. aor is normalised like a To URI ("sip:Alice@Example.COM"
// finds "sip:Alice@example.com").
func (r *Registrar) Lookup(ctx context.Context, aor string) ([]store.Binding, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	norm, err := NormalizeAOR(aor)
	if err != nil {
		return nil, err
	}
	return r.table.lookup(norm, time.Now()), nil
}

// Count returns the number of live bindings.
func (r *Registrar) Count() int { return r.table.count() }
