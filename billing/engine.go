package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/talkpad/talkpad/store"
)

// Refusals and errors callers branch on. Authorize and Start return the
// refusals wrapped; test them with errors.Is.
var (
	// ErrInsufficientFunds refuses a call the account cannot pay for even
	// its first billing increment, given its other live calls.
	ErrInsufficientFunds = errors.New("billing: insufficient funds")
	// ErrNoTariff refuses a destination no tariff matches.
	ErrNoTariff = errors.New("billing: no tariff for destination")
	// ErrDisabled refuses calls of a disabled account.
	ErrDisabled = errors.New("billing: account disabled")
	// ErrUnknownAccount refuses calls of an account the store does not
	// know.
	ErrUnknownAccount = errors.New("billing: unknown account")
	// ErrUnavailable refuses a call because the store cannot be reached:
	// no call is authorized on money the engine cannot check.
	ErrUnavailable = errors.New("billing: store unavailable")
	// ErrUnknownCall reports a Stop of a call the engine never started.
	ErrUnknownCall = errors.New("billing: unknown call")
	// ErrDuplicateCall reports a Start of a call id already in use.
	ErrDuplicateCall = errors.New("billing: duplicate call id")
	// ErrKeyReused reports a top-up whose idempotency key was already used
	// for a different amount.
	ErrKeyReused = errors.New("billing: idempotency key reused with another amount")
	// ErrClosed is returned by Serve after Close, and by calls after it.
	ErrClosed = errors.New("billing: engine closed")
	// ErrConfig reports an unusable Config.
	ErrConfig = errors.New("billing: invalid config")
)

// Disconnect causes the engine writes in CDRs and Cutoffs. Stop takes the
// owner's own cause.
const (
	CauseCredit   = "credit"    // the money ran out
	CauseLost     = "lost"      // another node settled the call (this node's lease lapsed)
	CauseNodeLost = "node-lost" // settled after its node died
	CauseNormal   = "normal"    // the default cause of Stop
	// CauseUnavailable: the reserved time ended while the store could not
	// be reached to reserve more.
	CauseUnavailable = "store-unavailable"
)

// Config configures an Engine. Zero values mean the documented defaults.
type Config struct {
	// Store persists accounts, the ledger, tariffs, sessions and CDRs.
	// Required. Several engines may share one (one per node).
	Store store.Billing
	// Node names this engine in the sessions it owns; unique per node and
	// stable across restarts, so a restarted node settles what it left.
	// Defaults to the host name.
	Node string
	// Window is how much call time the engine reserves money for at once.
	// Longer windows mean fewer database transactions and more money held
	// per call. Defaults to 60s.
	Window time.Duration
	// RenewBefore is how long before a window ends its renewal starts.
	// Defaults to Window/6; must be shorter than Window.
	RenewBefore time.Duration
	// Lease is how long after its last heartbeat another node may settle
	// a session of this one. Defaults to 3*Window.
	Lease time.Duration
	// Heartbeat is how often the engine renews its leases (one statement
	// for all its calls), retries failed settlements and settles the
	// sessions of dead nodes. Defaults to Lease/6. It is also how stale
	// the "last known point" a dead node's calls are settled up to may be.
	Heartbeat time.Duration
	// Retry is how soon a failed reservation is tried again while a call
	// still has reserved time left. Defaults to 1s.
	Retry time.Duration
	// BatchDelay is how long a routine renewal, or the settlement of a
	// call that hung up while its account had money to spare, waits to be
	// written together with the others of that time, in one store
	// transaction. Defaults to 1s, or RenewBefore/4 if shorter; negative
	// writes each in its own transaction, at once.
	BatchDelay time.Duration
	// MaxDuration caps what Authorize grants. Defaults to 4h.
	MaxDuration time.Duration
	// TariffRefresh is how often Serve reloads the rate table from the
	// store. Defaults to 1 minute; negative disables reloading.
	TariffRefresh time.Duration
	// OnCutoff is called when a call must end because its money ran out
	// or another node settled it. Cutoff.CDR is final: the engine writes
	// the settlement right after the call returns, and a later Stop
	// returns that CDR and charges nothing more.
	// It is called from the engine's timer goroutines, never with a lock
	// held, and must not block for long. Nil ignores cut-offs (use
	// Cutoffs).
	OnCutoff func(Cutoff)
	// Logger receives the engine's messages. Defaults to slog.Default()
	// with component=billing.
	Logger *slog.Logger
}

// Cutoff tells the owner of a call that it must end.
type Cutoff struct {
	CallID  string
	Account string
	// At is the instant the call's money ran out: what it was billed to.
	At time.Time
	// Cause is CauseCredit, CauseUnavailable or CauseLost.
	Cause string
	// CDR is the record the call was settled with.
	CDR store.CDR
}

// Call describes an answered call to Start.
type Call struct {
	// ID identifies the call (the SIP Call-ID or the B2BUA's own id).
	ID      string
	Account string
	Caller  string
	Callee  string // the dialled E.164 number, "+" optional
	// Setup and Answer are when the call was set up and answered. A zero
	// Answer means now.
	Setup  time.Time
	Answer time.Time
}

// Stats are the engine's counters.
type Stats struct {
	LiveCalls          int
	Accounts           int // accounts with live calls on this node
	Authorized         uint64
	Refused            uint64
	Started            uint64
	Stopped            uint64
	CutOff             uint64
	Renewals           uint64 // reservations written, batched or not
	RenewalBatches     uint64 // store transactions that renewed a batch
	RenewalFailures    uint64
	PendingSettlements int
	Reconciled         uint64 // sessions of dead nodes (or of this node before a restart) settled
	Tariffs            int
}

// Engine controls prepaid balances in real time. It is safe for concurrent
// use.
type Engine struct {
	cfg   Config
	st    store.Billing
	log   *slog.Logger
	table atomic.Pointer[Table]

	mu          sync.Mutex
	groups      map[string]*group    // account → its live calls on this node
	calls       map[string]*group    // call id → its group
	done        map[string]doneEntry // recently ended calls, for idempotent Stop
	pending     map[string]store.CDR // settlements not yet written, retried by Serve
	renewQ      map[*group]struct{}  // groups waiting for the next batch renewal
	batchArmed  bool
	settleQ     []store.CDR // hang-ups waiting for the next batch settlement
	settleArmed bool
	closed      bool
	closeCh     chan struct{}
	wg          sync.WaitGroup // timer callbacks in flight

	authorized, refused, started, stopped, cutOff, renewals, renewFail, reconciled, batches atomic.Uint64
}

type doneEntry struct {
	cdr store.CDR
	at  time.Time
}

// doneTTL is how long a stopped call's CDR is kept for repeated Stops.
const doneTTL = 10 * time.Minute

// New returns an engine. It does no I/O: call Serve to load the tariffs,
// settle what a previous run left and keep the leases.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, fmt.Errorf("%w: Store is required", ErrConfig)
	}
	if cfg.Node == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("%w: Node is empty and the host name is unknown", ErrConfig)
		}
		cfg.Node = h
	}
	if cfg.Window == 0 {
		cfg.Window = 60 * time.Second
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = cfg.Window / 6
	}
	if cfg.Lease == 0 {
		cfg.Lease = 3 * cfg.Window
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = cfg.Lease / 6
	}
	if cfg.Retry == 0 {
		cfg.Retry = time.Second
	}
	if cfg.BatchDelay == 0 {
		cfg.BatchDelay = min(time.Second, cfg.RenewBefore/4)
	}
	if cfg.MaxDuration == 0 {
		cfg.MaxDuration = 4 * time.Hour
	}
	if cfg.TariffRefresh == 0 {
		cfg.TariffRefresh = time.Minute
	}
	switch {
	case cfg.Window < time.Second:
		return nil, fmt.Errorf("%w: Window %v is under a second", ErrConfig, cfg.Window)
	case cfg.RenewBefore <= 0 || cfg.RenewBefore >= cfg.Window:
		return nil, fmt.Errorf("%w: RenewBefore %v must be in (0, Window)", ErrConfig, cfg.RenewBefore)
	case cfg.Lease <= cfg.Heartbeat || cfg.Heartbeat <= 0:
		return nil, fmt.Errorf("%w: Heartbeat %v must be positive and shorter than Lease %v", ErrConfig, cfg.Heartbeat, cfg.Lease)
	case cfg.Retry < 0 || cfg.MaxDuration < 0:
		return nil, fmt.Errorf("%w: negative duration", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default().With("component", "billing")
	}
	e := &Engine{
		cfg:     cfg,
		st:      cfg.Store,
		log:     log,
		groups:  make(map[string]*group),
		calls:   make(map[string]*group),
		done:    make(map[string]doneEntry),
		pending: make(map[string]store.CDR),
		renewQ:  make(map[*group]struct{}),
		closeCh: make(chan struct{}),
	}
	e.table.Store(NewTable(nil))
	return e, nil
}

// Node returns the engine's node name.
func (e *Engine) Node() string { return e.cfg.Node }

// ReloadTariffs replaces the rate table with the store's. Serve calls it
// on start and every Config.TariffRefresh.
func (e *Engine) ReloadTariffs(ctx context.Context) error {
	ts, err := e.st.ListTariffs(ctx)
	if err != nil {
		return fmt.Errorf("billing: load tariffs: %w", err)
	}
	e.table.Store(NewTable(ts))
	return nil
}

// Tariffs returns the rate table in use.
func (e *Engine) Tariffs() *Table { return e.table.Load() }

// Authorize returns how long a new call of account to destination may
// last, given the account's balance, its credit limit and its other live
// calls (which keep running and share the money), capped at
// Config.MaxDuration. It reserves nothing: Start does, and may still refuse
// if the money went elsewhere in between. Refusals wrap ErrNoTariff,
// ErrUnknownAccount, ErrDisabled, ErrInsufficientFunds or ErrUnavailable.
func (e *Engine) Authorize(ctx context.Context, account, destination string) (time.Duration, error) {
	d, err := e.authorize(ctx, account, destination)
	if err != nil {
		e.refused.Add(1)
		return 0, err
	}
	e.authorized.Add(1)
	return d, nil
}

func (e *Engine) authorize(ctx context.Context, account, destination string) (time.Duration, error) {
	now := time.Now()
	tr, ok := e.table.Load().Lookup(destination, now)
	if !ok {
		return 0, fmt.Errorf("%w: %q", ErrNoTariff, destination)
	}
	a, err := e.st.GetAccount(ctx, account)
	if err != nil {
		return 0, accountErr(account, err)
	}
	if a.Disabled {
		return 0, fmt.Errorf("%w: %q", ErrDisabled, account)
	}
	calls, ours := e.snapshot(account)
	calls = append(calls, priced{tariff: tr, answer: now})
	pot := a.Balance + a.CreditLimit - (a.Reserved - ours)
	h, ok := horizon(pot, calls, now, now.Add(e.cfg.MaxDuration))
	if !ok || !h.After(now) || costAt(calls, now.Add(1)) > pot {
		return 0, fmt.Errorf("%w: account %q", ErrInsufficientFunds, account)
	}
	return h.Sub(now), nil
}

func accountErr(account string, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %q", ErrUnknownAccount, account)
	}
	return fmt.Errorf("%w: account %q: %w", ErrUnavailable, account, err)
}

// snapshot returns the live calls of account on this node and the money
// they hold.
func (e *Engine) snapshot(account string) ([]priced, int64) {
	e.mu.Lock()
	g := e.groups[account]
	e.mu.Unlock()
	if g == nil {
		return nil, 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]priced, 0, len(g.calls)+1)
	var held int64
	for _, c := range g.calls {
		out = append(out, priced{tariff: c.tariff, answer: c.Answer})
		held += c.reserved
	}
	return out, held
}

// Start begins charging an answered call: it reserves money for the call
// and recomputes when the account's money runs out for all its calls on
// this node. A refusal (wrapping ErrInsufficientFunds, ErrDisabled,
// ErrNoTariff, ErrUnknownAccount or ErrUnavailable) means the call must
// not go on.
func (e *Engine) Start(ctx context.Context, c Call) error {
	now := time.Now()
	if c.Answer.IsZero() {
		c.Answer = now
	}
	if c.Setup.IsZero() {
		c.Setup = c.Answer
	}
	tr, ok := e.table.Load().Lookup(c.Callee, c.Answer)
	if !ok {
		e.refused.Add(1)
		return fmt.Errorf("%w: %q", ErrNoTariff, c.Callee)
	}
	lc := &call{Call: c, tariff: tr}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	if _, dup := e.calls[c.ID]; dup {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrDuplicateCall, c.ID)
	}
	if _, dup := e.done[c.ID]; dup {
		e.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrDuplicateCall, c.ID)
	}
	g := e.groups[c.Account]
	if g == nil {
		g = &group{account: c.Account, calls: make(map[string]*call)}
		e.groups[c.Account] = g
	}
	// Claim the id before the store work so a concurrent Start of the
	// same id fails; the group's users count keeps it from being dropped.
	e.calls[c.ID] = g
	g.users++
	e.mu.Unlock()

	g.mu.Lock()
	err := e.reserve(ctx, g, now, lc)
	var cuts []Cutoff
	if err == nil {
		cuts = e.settleDue(ctx, g, now)
	}
	g.mu.Unlock()
	e.release(g, func() {
		if err != nil {
			delete(e.calls, c.ID)
		}
	})
	e.deliver(ctx, cuts)
	if err != nil {
		e.refused.Add(1)
		return err
	}
	e.started.Add(1)
	return nil
}

// release drops a user of g, and g itself once it has no calls and no
// users, after running f under the engine's lock.
//
// Lock order is g.mu before e.mu, so release must not take g.mu. It does
// not need to: with no users left, nobody holds g.mu or can take it before
// taking e.mu first, and the last user's unlock of g.mu happened before
// its release took e.mu.
func (e *Engine) release(g *group, f func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f()
	g.users--
	if g.users == 0 && len(g.calls) == 0 && e.groups[g.account] == g {
		if g.timer != nil {
			g.timer.Stop()
		}
		delete(e.groups, g.account)
	}
}

// Stop ends a call at end (zero means now) with the owner's cause, settles
// it and returns its CDR. Stopping a call twice, or one the engine already
// cut off, returns the CDR it was settled with and charges nothing more.
// If the store cannot be reached the settlement is kept and retried by
// Serve; the CDR is returned all the same.
func (e *Engine) Stop(ctx context.Context, callID string, end time.Time, cause string) (store.CDR, error) {
	if end.IsZero() {
		end = time.Now()
	}
	if cause == "" {
		cause = CauseNormal
	}
	e.mu.Lock()
	if d, ok := e.done[callID]; ok {
		e.mu.Unlock()
		return d.cdr, nil
	}
	g := e.calls[callID]
	if g == nil {
		e.mu.Unlock()
		return store.CDR{}, fmt.Errorf("%w: %q", ErrUnknownCall, callID)
	}
	g.users++
	e.mu.Unlock()

	g.mu.Lock()
	c := g.calls[callID]
	var cdr store.CDR
	var cuts []Cutoff
	if c != nil {
		// Never bill past what was reserved: the engine cuts a call off
		// at its horizon, so a later end is the owner's delay in hanging
		// up, not the caller's spending.
		if end.After(c.reservedUntil) {
			end = c.reservedUntil
		}
		scarce := !g.full
		cdr = e.end(g, c, end, cause)
		if scarce || e.cfg.BatchDelay < 0 {
			// The others wait for this call's money: settle now.
			e.settle(ctx, cdr)
		} else {
			e.queueSettlement(cdr)
		}
		e.stopped.Add(1)
		if len(g.calls) > 0 && !g.full {
			// The stopped call's unused money may extend the others.
			now := time.Now()
			if err := e.reserve(ctx, g, now, nil); err != nil {
				e.scheduleRetry(g, now)
			}
			cuts = e.settleDue(ctx, g, now)
		}
	}
	g.mu.Unlock()
	e.release(g, func() {})
	e.deliver(ctx, cuts)
	if c == nil {
		// Cut off or stopped concurrently: the first settlement stands.
		e.mu.Lock()
		d, ok := e.done[callID]
		e.mu.Unlock()
		if !ok {
			return store.CDR{}, fmt.Errorf("%w: %q", ErrUnknownCall, callID)
		}
		return d.cdr, nil
	}
	return cdr, nil
}

// finish ends c and settles it. The caller holds g.mu.
func (e *Engine) finish(ctx context.Context, g *group, c *call, end time.Time, cause string) store.CDR {
	cdr := e.end(g, c, end, cause)
	e.settle(ctx, cdr)
	return cdr
}

// end removes c from g, bills it up to end, and records the CDR as the
// call's for repeated Stops and as pending until settle succeeds. The
// caller holds g.mu.
func (e *Engine) end(g *group, c *call, end time.Time, cause string) store.CDR {
	if end.Before(c.Answer) {
		end = c.Answer
	}
	secs, cost := Rate(c.tariff, end.Sub(c.Answer))
	cdr := store.CDR{
		CallID: c.ID, Account: c.Account, Caller: c.Caller, Callee: c.Callee, Prefix: c.tariff.Prefix,
		Setup: c.Setup, Answer: c.Answer, End: end, BilledSeconds: secs, Cost: cost, Cause: cause, Node: e.cfg.Node,
	}
	delete(g.calls, c.ID)
	e.mu.Lock()
	delete(e.calls, c.ID)
	e.done[c.ID] = doneEntry{cdr: cdr, at: time.Now()}
	e.pending[c.ID] = cdr
	e.mu.Unlock()
	return cdr
}

// settle writes an ended call's settlement; if the store fails it stays
// pending for Serve to retry.
func (e *Engine) settle(ctx context.Context, cdr store.CDR) {
	_, err := e.st.Settle(ctx, cdr)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		e.log.Warn("settlement deferred", "call", cdr.CallID, "account", cdr.Account, "err", err)
		return
	}
	e.mu.Lock()
	delete(e.pending, cdr.CallID)
	e.mu.Unlock()
}

// queueSettlement adds an ended call to the next batch of settlements,
// written in one store transaction (store.Sessions.SettleMany). Until then
// the call's money stays reserved, so nothing can spend it twice; if the
// node dies first, the call is settled as a dead node's, up to its last
// heartbeat.
func (e *Engine) queueSettlement(cdr store.CDR) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settleQ = append(e.settleQ, cdr)
	if !e.settleArmed {
		e.settleArmed = true
		time.AfterFunc(e.cfg.BatchDelay, e.flushSettlements)
	}
}

func (e *Engine) flushSettlements() {
	e.mu.Lock()
	e.settleArmed = false
	q := e.settleQ
	e.settleQ = nil
	if e.closed || len(q) == 0 {
		e.mu.Unlock()
		return
	}
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if _, err := e.st.SettleMany(ctx, q); err != nil {
		// They stay pending; Serve retries them one by one.
		e.log.Warn("batch settlement failed", "calls", len(q), "err", err)
		return
	}
	e.mu.Lock()
	for _, cdr := range q {
		delete(e.pending, cdr.CallID)
	}
	e.mu.Unlock()
}

// deliver tells the owner which calls must end, then settles them: the
// owner hears first, so that the call ends as close to its horizon as the
// timer fired, not a database round trip later.
func (e *Engine) deliver(ctx context.Context, cuts []Cutoff) {
	e.notify(cuts)
	for _, c := range cuts {
		if c.Cause != CauseLost {
			e.settle(ctx, c.CDR)
		}
	}
}

func (e *Engine) notify(cuts []Cutoff) {
	if e.cfg.OnCutoff == nil {
		return
	}
	for _, c := range cuts {
		e.cfg.OnCutoff(c)
	}
}

// TopUp credits account with amount micro-units, once per key: repeating
// it with the same key and amount returns the first entry and changes
// nothing; the same key with another amount wraps ErrKeyReused. Live calls
// of the account on this node are extended at once; those on other nodes
// when they next renew their reservations (at the latest when their
// reserved time ends).
func (e *Engine) TopUp(ctx context.Context, account string, amount int64, key, note string) (store.LedgerEntry, error) {
	entry, err := e.st.PostEntry(ctx, store.LedgerEntry{Account: account, Key: key, Kind: store.EntryTopUp,
		Amount: amount, Note: note, Time: time.Now()})
	switch {
	case errors.Is(err, store.ErrExists):
		if entry.Amount != amount || entry.Kind != store.EntryTopUp {
			return entry, fmt.Errorf("%w: key %q", ErrKeyReused, key)
		}
		return entry, nil
	case err != nil:
		return store.LedgerEntry{}, fmt.Errorf("billing: top up %q: %w", account, err)
	}
	e.Refresh(ctx, account)
	return entry, nil
}

// Refresh re-reads account's money for its live calls on this node now,
// instead of at their next renewal: call it when money arrived through the
// store directly.
func (e *Engine) Refresh(ctx context.Context, account string) {
	e.mu.Lock()
	g := e.groups[account]
	if g != nil {
		g.users++
	}
	e.mu.Unlock()
	if g == nil {
		return
	}
	g.mu.Lock()
	now := time.Now()
	if len(g.calls) > 0 {
		if err := e.reserve(ctx, g, now, nil); err != nil {
			e.scheduleRetry(g, now)
		}
	}
	cuts := e.settleDue(ctx, g, now)
	g.mu.Unlock()
	e.release(g, func() {})
	e.deliver(ctx, cuts)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	s := Stats{LiveCalls: len(e.calls), Accounts: len(e.groups), PendingSettlements: len(e.pending)}
	e.mu.Unlock()
	s.Authorized, s.Refused, s.Started = e.authorized.Load(), e.refused.Load(), e.started.Load()
	s.Stopped, s.CutOff, s.Renewals, s.RenewalFailures = e.stopped.Load(), e.cutOff.Load(), e.renewals.Load(), e.renewFail.Load()
	s.Reconciled, s.RenewalBatches = e.reconciled.Load(), e.batches.Load()
	s.Tariffs = e.table.Load().Len()
	return s
}
