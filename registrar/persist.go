package registrar

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/talkpad/talkpad/store"
)

// persister moves bindings between the table and the store.
//
// In write-back mode it keeps the set of bindings changed since the last
// successful flush (their IDs only: the table holds the values). A flush
// takes the set, writes each binding's current state (an upsert if it is
// live, a delete if it is gone) and, if the store fails, puts the IDs back
// so the next flush retries them. Versions make the retry safe: a stale
// value never overwrites a newer one in the store.
type persister struct {
	r *Registrar

	mu    sync.Mutex
	dirty map[store.BindingKey]struct{}

	flushMu sync.Mutex // one flush at a time
}

func newPersister(r *Registrar) *persister {
	return &persister{r: r, dirty: make(map[store.BindingKey]struct{})}
}

func (p *persister) markDirty(ids []store.BindingKey) {
	p.mu.Lock()
	for _, id := range ids {
		p.dirty[id] = struct{}{}
	}
	p.mu.Unlock()
}

func (p *persister) dirtyLen() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.dirty)
}

func (p *persister) flushLoop() {
	t := time.NewTicker(p.r.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-p.r.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), p.r.cfg.FlushInterval*2)
			if err := p.flush(ctx); err != nil {
				p.r.log.Warn("flush failed; changes kept for the next flush", "error", err, "dirty", p.dirtyLen())
			}
			cancel()
		}
	}
}

// flush writes every dirty binding to the store. In write-through mode,
// where every change is already written, it deletes the expired rows.
func (p *persister) flush(ctx context.Context) error {
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	if p.r.cfg.Persistence == WriteThrough {
		if _, err := p.r.cfg.Store.DeleteExpiredBindings(ctx, time.Now()); err != nil {
			p.r.stats.flushErrors.Add(1)
			return err
		}
		p.r.stats.flushes.Add(1)
		return nil
	}
	p.mu.Lock()
	if len(p.dirty) == 0 {
		p.mu.Unlock()
		return nil
	}
	ids := make([]store.BindingKey, 0, len(p.dirty))
	for id := range p.dirty {
		ids = append(ids, id)
	}
	clear(p.dirty)
	p.mu.Unlock()

	now := time.Now()
	var ups []store.Binding
	var dels []store.BindingKey
	for _, id := range ids {
		if b, ok := p.r.table.get(id, now); ok {
			ups = append(ups, b)
		} else {
			dels = append(dels, id)
		}
	}
	err := p.r.cfg.Store.UpsertBindings(ctx, ups)
	if err == nil {
		err = p.r.cfg.Store.DeleteBindings(ctx, dels)
	}
	if err == nil {
		_, err = p.r.cfg.Store.DeleteExpiredBindings(ctx, now)
	}
	if err != nil {
		p.markDirty(ids)
		p.r.stats.flushErrors.Add(1)
		return err
	}
	p.r.stats.flushes.Add(1)
	return nil
}

// writeThrough persists one AOR's update before it is applied.
func (p *persister) writeThrough(ctx context.Context, ups []store.Binding, dels []store.BindingKey) error {
	if err := p.r.cfg.Store.UpsertBindings(ctx, ups); err != nil {
		return err
	}
	return p.r.cfg.Store.DeleteBindings(ctx, dels)
}

// deleteNow removes a binding from the store in write-through mode, for
// removals the registrar makes by itself (expiry, closed connections). A
// failure is logged: the row stays until it expires and is swept.
func (p *persister) deleteNow(id store.BindingKey) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.r.cfg.Store.DeleteBindings(ctx, []store.BindingKey{id}); err != nil && !errors.Is(err, context.Canceled) {
		p.r.log.Warn("write-through delete failed", "aor", id.AOR, "error", err)
	}
}
