package billing

import (
	"context"
	"errors"
	"time"

	"github.com/talkpad/talkpad/store"
)

// Serve loads the tariffs, settles the sessions a previous run of this node
// left in the store, and then, every Config.Heartbeat, renews this node's
// leases, retries failed settlements, settles the sessions of nodes whose
// leases lapsed and reloads the tariffs when due. It returns ctx's error
// when ctx ends, ErrClosed after Close, or an error if the tariffs cannot
// be loaded at start (a node should not take calls it cannot price).
//
// Authorize, Start and Stop work without Serve, but then nothing renews
// leases, so other nodes settle this node's calls once they lapse.
func (e *Engine) Serve(ctx context.Context) error {
	if e.isClosed() {
		return ErrClosed
	}
	if err := e.ReloadTariffs(ctx); err != nil {
		return err
	}
	e.recoverOwn(ctx)
	tick := time.NewTicker(e.cfg.Heartbeat)
	defer tick.Stop()
	lastReload := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.closeCh:
			return ErrClosed
		case <-tick.C:
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		e.housekeep(ctx, now)
		if e.cfg.TariffRefresh > 0 && now.Sub(lastReload) >= e.cfg.TariffRefresh {
			if err := e.ReloadTariffs(ctx); err != nil {
				e.log.Warn("tariff reload failed; keeping the loaded table", "err", err)
			} else {
				lastReload = now
			}
		}
	}
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// Close stops the engine's timers, waits for those running and writes the
// settlements still waiting for their batch. Live calls are neither
// stopped nor settled: their sessions stay in the store with their
// reservations, and this node's next run (or another node, once the leases
// lapse) settles them up to their last known point.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	close(e.closeCh)
	groups := make([]*group, 0, len(e.groups))
	for _, g := range e.groups {
		groups = append(groups, g)
	}
	e.mu.Unlock()
	// g.mu is taken without e.mu held (the lock order is g.mu, then
	// e.mu). A timer reset after this finds the engine closed and returns.
	for _, g := range groups {
		g.mu.Lock()
		if g.timer != nil {
			g.timer.Stop()
		}
		g.mu.Unlock()
	}
	e.wg.Wait()
	// Hang-ups waiting for their batch are written now, so that a clean
	// stop leaves only live calls behind.
	e.mu.Lock()
	q := e.settleQ
	e.settleQ = nil
	e.mu.Unlock()
	if len(q) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if _, err := e.st.SettleMany(ctx, q); err != nil {
			e.log.Warn("cannot write the last settlements; they settle as a dead node's calls", "calls", len(q), "err", err)
		}
	}
	return nil
}

// recoverOwn settles the sessions of this node that no live call of this
// run owns: what a crash or restart left behind.
func (e *Engine) recoverOwn(ctx context.Context) {
	ss, err := e.st.ListSessions(ctx, e.cfg.Node)
	if err != nil {
		e.log.Warn("cannot list this node's sessions; they settle when their leases lapse", "err", err)
		return
	}
	e.settleOrphans(ctx, ss)
}

// housekeep is one heartbeat of Serve.
func (e *Engine) housekeep(ctx context.Context, now time.Time) {
	if _, err := e.st.RenewLeases(ctx, e.cfg.Node, now, now.Add(e.cfg.Lease)); err != nil {
		e.log.Warn("lease renewal failed", "err", err)
	}
	e.mu.Lock()
	retry := make([]store.CDR, 0, len(e.pending))
	for _, cdr := range e.pending {
		retry = append(retry, cdr)
	}
	for id, d := range e.done {
		if now.Sub(d.at) > doneTTL {
			delete(e.done, id)
		}
	}
	e.mu.Unlock()
	for _, cdr := range retry {
		_, err := e.st.Settle(ctx, cdr)
		if err == nil || errors.Is(err, store.ErrNotFound) {
			e.mu.Lock()
			delete(e.pending, cdr.CallID)
			e.mu.Unlock()
		}
	}
	ss, err := e.st.ListExpiredSessions(ctx, now)
	if err != nil {
		e.log.Warn("cannot list lapsed sessions", "err", err)
		return
	}
	e.settleOrphans(ctx, ss)
}

// settleOrphans settles sessions nobody on this node looks after, each up
// to the last instant its owner knew it alive (never past what it
// reserved), releasing the rest of its reservation.
func (e *Engine) settleOrphans(ctx context.Context, ss []store.Session) {
	for _, s := range ss {
		e.mu.Lock()
		_, live := e.calls[s.ID]
		_, pend := e.pending[s.ID]
		e.mu.Unlock()
		if live || pend {
			continue
		}
		end := s.LastSeen
		if end.After(s.ReservedUntil) {
			end = s.ReservedUntil
		}
		if end.Before(s.Answer) {
			end = s.Answer
		}
		secs, cost := Rate(s.Tariff, end.Sub(s.Answer))
		cdr := store.CDR{CallID: s.ID, Account: s.Account, Caller: s.Caller, Callee: s.Callee, Prefix: s.Tariff.Prefix,
			Setup: s.Setup, Answer: s.Answer, End: end, BilledSeconds: secs, Cost: cost, Cause: CauseNodeLost, Node: e.cfg.Node}
		_, err := e.st.Settle(ctx, cdr)
		switch {
		case err == nil:
			e.reconciled.Add(1)
			e.log.Info("settled an orphaned call", "call", s.ID, "account", s.Account, "owner", s.Node, "billed_seconds", secs, "cost", cost)
		case errors.Is(err, store.ErrNotFound):
			// Another node settled it first.
		default:
			e.log.Warn("cannot settle an orphaned call", "call", s.ID, "err", err)
		}
	}
}
