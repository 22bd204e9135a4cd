package billing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/talkpad/talkpad/store"
)

// group is the live calls of one account on this node. They share the
// account's money, so they share one horizon: the instant until which the
// money reserved pays for all of them together. Its mutex serialises the
// store work of one account on this node; it is held across a store
// transaction (milliseconds), which PostgreSQL's row lock would serialise
// anyway, and never across anything that waits on the caller.
type group struct {
	account string
	users   int // callers between looking the group up and releasing it; guarded by Engine.mu

	mu      sync.Mutex
	calls   map[string]*call
	lost    []*call   // calls another node settled, to cut off
	horizon time.Time // the money reserved pays every call until here
	full    bool      // horizon is a whole window away: money was not the limit
	failed  bool      // the last renewal could not reach the store
	checked bool      // the final check found no more money: cut at the horizon
	timer   *time.Timer
}

// call is one live call.
type call struct {
	Call
	tariff        store.Tariff
	reserved      int64
	reservedUntil time.Time
}

// reserve recomputes the group's horizon from the account's money and
// writes every call's reservation in one store transaction; add, if not
// nil, joins the group when it succeeds. The caller holds g.mu.
//
// The money the group may use (pot) is the balance plus the credit limit
// less what other nodes' calls hold. The horizon is the latest instant, at
// most one Window away, at which the calls' summed cost still fits in the
// pot, and each call reserves its own cost up to it. If a window's worth
// fits, the group renews before the window ends; if not, the horizon is
// where the money runs out, and the group checks once more shortly before
// that instant (a top-up may have arrived) before cutting the calls off.
func (e *Engine) reserve(ctx context.Context, g *group, now time.Time, add *call) error {
	p := e.plan(g, now, add)
	_, err := e.st.Reserve(ctx, g.account, p.fn)
	e.renewals.Add(1)
	if err != nil {
		e.renewFail.Add(1)
		switch {
		case errors.Is(err, ErrInsufficientFunds), errors.Is(err, ErrDisabled):
			return err
		case errors.Is(err, store.ErrInsufficientFunds):
			return fmt.Errorf("%w: account %q", ErrInsufficientFunds, g.account)
		}
		return accountErr(g.account, err)
	}
	e.apply(p)
	return nil
}

// plan is one group's reservation in the making: fn computes it inside
// the store's transaction (and may run more than once), apply makes it
// the group's once the transaction committed.
type plan struct {
	e       *Engine
	g       *group
	add     *call
	now, hi time.Time
	lost    []*call
	live    []*call
	h       time.Time
	broke   bool
}

func (e *Engine) plan(g *group, now time.Time, add *call) *plan {
	return &plan{e: e, g: g, add: add, now: now, hi: now.Add(e.cfg.Window)}
}

func (p *plan) fn(a store.Account, open []store.Session) ([]store.Session, error) {
	e, g := p.e, p.g
	p.lost, p.live, p.broke = p.lost[:0], p.live[:0], false
	held := make(map[string]int64, len(open))
	for _, s := range open {
		if s.Node == e.cfg.Node {
			held[s.ID] = s.Reserved
		}
	}
	var ours int64
	for _, c := range g.calls {
		r, ok := held[c.ID]
		if !ok {
			p.lost = append(p.lost, c)
			continue
		}
		ours += r
		p.live = append(p.live, c)
	}
	if p.add != nil {
		if a.Disabled {
			return nil, fmt.Errorf("%w: %q", ErrDisabled, a.ID)
		}
		p.live = append(p.live, p.add)
	}
	ps := make([]priced, len(p.live))
	for i, c := range p.live {
		ps[i] = priced{tariff: c.tariff, answer: c.Answer}
	}
	pot := a.Balance + a.CreditLimit - (a.Reserved - ours)
	var ok bool
	p.h, ok = horizon(pot, ps, p.now, p.hi)
	if p.add != nil && (!ok || costAt(ps, p.now.Add(1)) > pot) {
		return nil, fmt.Errorf("%w: account %q", ErrInsufficientFunds, a.ID)
	}
	if !ok {
		// The money held no longer covers even now (an operator took
		// money away): keep what is reserved; the calls run to their
		// current horizon and end there.
		p.broke = true
		return nil, nil
	}
	out := make([]store.Session, len(p.live))
	for i, c := range p.live {
		_, cost := Rate(c.tariff, p.h.Sub(c.Answer))
		out[i] = store.Session{
			ID: c.ID, Account: c.Account, Node: e.cfg.Node, Caller: c.Caller, Callee: c.Callee,
			Tariff: c.tariff, Setup: c.Setup, Answer: c.Answer, Reserved: cost, ReservedUntil: p.h,
			LastSeen: p.now, LeaseUntil: p.now.Add(e.cfg.Lease),
		}
	}
	return out, nil
}

// apply makes a committed plan the group's. The caller holds g.mu.
func (e *Engine) apply(p *plan) {
	g := p.g
	for _, c := range p.lost {
		delete(g.calls, c.ID)
		g.lost = append(g.lost, c)
	}
	if p.broke {
		g.full, g.checked = false, true
		e.schedule(g, p.now)
		return
	}
	for _, c := range p.live {
		_, c.reserved = Rate(c.tariff, p.h.Sub(c.Answer))
		c.reservedUntil = p.h
	}
	if p.add != nil {
		g.calls[p.add.ID] = p.add
	}
	g.horizon, g.full, g.failed = p.h, p.h.Equal(p.hi), false
	g.checked = !g.full && !p.now.Before(p.h.Add(-e.finalLead()))
	e.schedule(g, p.now)
}

// schedule sets the group's timer for its next renewal or final check.
// The final check runs a little before the money runs out, so that when it
// finds no more the cut-off fires at the horizon itself, without a
// database round trip in between. The caller holds g.mu.
func (e *Engine) schedule(g *group, now time.Time) {
	at := g.horizon
	switch {
	case g.full:
		at = at.Add(-e.cfg.RenewBefore)
	case !g.checked:
		at = at.Add(-e.finalLead())
	}
	e.setTimer(g, at.Sub(now))
}

// finalLead is how long before the horizon the final check runs: long
// enough for a store transaction, short enough that a top-up made in
// between rarely misses it (the call then ends at the horizon anyway).
func (e *Engine) finalLead() time.Duration {
	return min(time.Second, e.cfg.RenewBefore/2)
}

// scheduleRetry retries a failed renewal soon, but no later than the
// horizon, where the calls end if the store is still away. The caller
// holds g.mu.
func (e *Engine) scheduleRetry(g *group, now time.Time) {
	at := now.Add(e.cfg.Retry)
	if at.After(g.horizon) {
		at = g.horizon
	}
	g.full, g.failed, g.checked = false, true, false
	e.setTimer(g, at.Sub(now))
}

func (e *Engine) setTimer(g *group, d time.Duration) {
	if d < 0 {
		d = 0
	}
	if g.timer == nil {
		g.timer = time.AfterFunc(d, func() { e.onTimer(g) })
		return
	}
	g.timer.Reset(d)
}

// onTimer renews the group's reservations, or cuts its calls off when the
// money is gone.
func (e *Engine) onTimer(g *group) {
	e.mu.Lock()
	if e.closed || e.groups[g.account] != g {
		e.mu.Unlock()
		return
	}
	e.wg.Add(1)
	g.users++
	e.mu.Unlock()
	defer e.wg.Done()

	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	g.mu.Lock()
	now := time.Now()
	switch {
	case len(g.calls) == 0:
	case !g.full && !now.Before(g.horizon):
		// The horizon has come and the last check (or the store) found
		// no more money: cut now, without waiting on the store again.
	case g.full && e.cfg.BatchDelay > 0 && now.Before(g.horizon.Add(-e.finalLead()-e.cfg.BatchDelay)):
		// A routine renewal: join the next batch.
		e.queueRenewal(g)
	default:
		if err := e.reserve(ctx, g, now, nil); err != nil {
			e.log.Warn("renewal failed", "account", g.account, "calls", len(g.calls), "err", err)
			e.scheduleRetry(g, now)
		}
	}
	cuts := e.settleDue(ctx, g, now)
	g.mu.Unlock()
	e.release(g, func() {})
	e.deliver(ctx, cuts)
}

// storeTimeout bounds one store call made from a timer.
const storeTimeout = 10 * time.Second

// settleDue ends the calls whose money has run out at now, and those
// another node settled, and returns what to tell the owner; deliver then
// settles them. The caller holds g.mu.
func (e *Engine) settleDue(ctx context.Context, g *group, now time.Time) []Cutoff {
	var cuts []Cutoff
	for _, c := range g.lost {
		cdr, err := e.st.GetCDR(ctx, c.ID)
		if err != nil {
			cdr = store.CDR{CallID: c.ID, Account: c.Account, Caller: c.Caller, Callee: c.Callee, Answer: c.Answer, End: now, Cause: CauseLost}
		}
		e.mu.Lock()
		delete(e.calls, c.ID)
		e.done[c.ID] = doneEntry{cdr: cdr, at: now}
		e.mu.Unlock()
		e.cutOff.Add(1)
		cuts = append(cuts, Cutoff{CallID: c.ID, Account: c.Account, At: cdr.End, Cause: CauseLost, CDR: cdr})
	}
	g.lost = nil
	if g.full || now.Before(g.horizon) {
		return cuts
	}
	cause := CauseCredit
	if g.failed {
		cause = CauseUnavailable
	}
	for _, c := range g.calls {
		cdr := e.end(g, c, c.reservedUntil, cause)
		e.cutOff.Add(1)
		cuts = append(cuts, Cutoff{CallID: c.ID, Account: c.Account, At: cdr.End, Cause: cause, CDR: cdr})
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	return cuts
}

// queueRenewal adds g to the next batch of renewals, which one store
// transaction writes for every account in it (store.Sessions.ReserveMany):
// at 10,000 calls and 60 s windows that is one transaction a second
// instead of two hundred. The caller holds g.mu.
func (e *Engine) queueRenewal(g *group) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.renewQ[g] = struct{}{}
	if !e.batchArmed {
		e.batchArmed = true
		time.AfterFunc(e.cfg.BatchDelay, e.flushRenewals)
	}
}

// flushRenewals renews every queued group in one transaction, falling
// back to one transaction per group if the batch fails.
func (e *Engine) flushRenewals() {
	e.mu.Lock()
	e.batchArmed = false
	if e.closed {
		e.mu.Unlock()
		return
	}
	gs := make([]*group, 0, len(e.renewQ))
	for g := range e.renewQ {
		if e.groups[g.account] == g {
			g.users++
			gs = append(gs, g)
		}
	}
	clear(e.renewQ)
	e.wg.Add(1)
	e.mu.Unlock()
	defer e.wg.Done()
	if len(gs) == 0 {
		return
	}
	// Groups are locked in account order, the only order in which any
	// code holds more than one.
	slices.SortFunc(gs, func(a, b *group) int { return strings.Compare(a.account, b.account) })
	for _, g := range gs {
		g.mu.Lock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	now := time.Now()
	plans := make(map[string]*plan, len(gs))
	accounts := make([]string, 0, len(gs))
	for _, g := range gs {
		// Still due: not renewed, stopped or cut meanwhile.
		if len(g.calls) > 0 && g.full {
			plans[g.account] = e.plan(g, now, nil)
			accounts = append(accounts, g.account)
		}
	}
	if len(accounts) > 0 {
		_, err := e.st.ReserveMany(ctx, accounts, func(a store.Account, open []store.Session) ([]store.Session, error) {
			return plans[a.ID].fn(a, open)
		})
		e.renewals.Add(uint64(len(accounts)))
		e.batches.Add(1)
		if err == nil {
			for _, a := range accounts {
				e.apply(plans[a])
			}
		} else {
			e.log.Warn("batch renewal failed; renewing one by one", "accounts", len(accounts), "err", err)
			for _, a := range accounts {
				g := plans[a].g
				if err := e.reserve(ctx, g, now, nil); err != nil {
					e.scheduleRetry(g, now)
				}
			}
		}
	}
	var cuts []Cutoff
	for _, g := range gs {
		cuts = append(cuts, e.settleDue(ctx, g, now)...)
		g.mu.Unlock()
	}
	for _, g := range gs {
		e.release(g, func() {})
	}
	e.deliver(ctx, cuts)
}
