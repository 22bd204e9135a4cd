package registrar

import (
	"container/heap"
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"github.com/talkpad/talkpad/store"
)

// table is the in-memory location table: the authority for every lookup.
// It is sharded by AOR so that registrations of different users do not
// contend; a change to one AOR is computed and applied under its shard's
// lock (update), so the checks of RFC 3261 §10.3 and the update they guard
// are atomic. Write-through, which must not hold a lock across its store
// write, computes on a snapshot and commits only if the AOR's generation is
// unchanged, else recomputes.
type table struct {
	r      *Registrar
	seed   maphash.Seed
	shards [64]shard

	// versions orders writes of all bindings: wall-clock nanoseconds,
	// bumped to stay strictly increasing, so a later registration on any
	// node normally carries the higher version.
	verMu   sync.Mutex
	lastVer uint64

	exp expiryQueue

	connMu sync.Mutex
	conns  map[connKey]map[store.BindingKey]struct{}
	// closed remembers recently closed connections, so that a REGISTER
	// that was being handled while its connection closed does not leave a
	// binding nobody can reach.
	closed map[connKey]time.Time
}

type shard struct {
	mu   sync.Mutex
	aors map[string]*aorEntry
}

type aorEntry struct {
	bindings []store.Binding
	gen      uint64 // bumped on every change, for optimistic write-through
}

// connKey identifies a TCP/TLS/WS/WSS connection by transport and peer.
type connKey struct {
	transport string
	remote    netip.AddrPort
}

func newTable(r *Registrar) *table {
	t := &table{r: r, seed: maphash.MakeSeed(), conns: make(map[connKey]map[store.BindingKey]struct{})}
	for i := range t.shards {
		t.shards[i].aors = make(map[string]*aorEntry)
	}
	t.exp.wake = make(chan struct{}, 1)
	return t
}

func (t *table) shard(aor string) *shard {
	return &t.shards[maphash.String(t.seed, aor)%uint64(len(t.shards))]
}

func (t *table) nextVersion(now time.Time) uint64 {
	t.verMu.Lock()
	defer t.verMu.Unlock()
	v := uint64(now.UnixNano())
	if v <= t.lastVer {
		v = t.lastVer + 1
	}
	t.lastVer = v
	return v
}

// seenVersion keeps versions above any loaded from the store.
func (t *table) seenVersion(v uint64) {
	t.verMu.Lock()
	if v > t.lastVer {
		t.lastVer = v
	}
	t.verMu.Unlock()
}

func connBound(transport string) bool {
	switch transport {
	case "tcp", "tls", "ws", "wss":
		return true
	}
	return false
}

// load fills the table with bindings read from the store at start.
// Connection-bound bindings this node owned are skipped, and returned so
// they can be deleted from the store: their connections died with the
// process that held them.
func (t *table) load(bs []store.Binding, now time.Time) (dead []store.BindingKey) {
	for _, b := range bs {
		if !b.Live(now) {
			continue
		}
		if connBound(b.Transport) && !t.r.cfg.NotConnectionBound && b.Node == t.r.cfg.Node {
			dead = append(dead, b.ID())
			continue
		}
		t.seenVersion(b.Version)
		sh := t.shard(b.AOR)
		sh.mu.Lock()
		e := sh.aors[b.AOR]
		if e == nil {
			e = &aorEntry{}
			sh.aors[b.AOR] = e
		}
		e.bindings = append(e.bindings, b)
		sh.mu.Unlock()
		t.exp.push(b.Expires, b.ID(), b.Version)
	}
	return dead
}

// lookup returns copies of aor's live bindings in store order.
func (t *table) lookup(aor string, now time.Time) []store.Binding {
	sh := t.shard(aor)
	sh.mu.Lock()
	var out []store.Binding
	if e := sh.aors[aor]; e != nil {
		out = make([]store.Binding, 0, len(e.bindings))
		for _, b := range e.bindings {
			if b.Live(now) {
				out = append(out, b.Clone())
			}
		}
	}
	sh.mu.Unlock()
	store.SortBindings(out)
	return out
}

func (t *table) get(id store.BindingKey, now time.Time) (store.Binding, bool) {
	sh := t.shard(id.AOR)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e := sh.aors[id.AOR]; e != nil {
		for _, b := range e.bindings {
			if b.Key() == id.Key && b.Live(now) {
				return b.Clone(), true
			}
		}
	}
	return store.Binding{}, false
}

func (t *table) count() int {
	now := time.Now()
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.aors {
			for _, b := range e.bindings {
				if b.Live(now) {
					n++
				}
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// change is one binding's fate in an update.
type change struct {
	kind   EventKind
	old    store.Binding // the binding before a refresh
	b      store.Binding // the new binding (Added, Refreshed) or the removed one
	reason string        // for Removed
}

// snapshot returns aor's live bindings (shared backing array: read only)
// and the entry's generation.
func (t *table) snapshot(aor string, now time.Time) ([]store.Binding, uint64) {
	sh := t.shard(aor)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.aors[aor]
	if e == nil {
		return nil, 0
	}
	live := make([]store.Binding, 0, len(e.bindings))
	for _, b := range e.bindings {
		if b.Live(now) {
			live = append(live, b.Clone())
		}
	}
	return live, e.gen
}

// update runs fn on aor's live bindings and applies its result, all under
// the shard lock, so two REGISTERs of one AOR cannot both start from the
// same state (RFC 3261 §10.3 steps 6-7 are atomic). Bindings found expired
// but not yet swept are removed as Expired on the way. fn must not block.
func (t *table) update(aor string, now time.Time, fn func(cur []store.Binding) ([]store.Binding, []change, bool)) {
	sh := t.shard(aor)
	sh.mu.Lock()
	e := sh.aors[aor]
	var live []store.Binding
	var expired []change
	if e != nil {
		live = make([]store.Binding, 0, len(e.bindings))
		for _, b := range e.bindings {
			if b.Live(now) {
				live = append(live, b.Clone())
			} else {
				expired = append(expired, change{kind: Expired, b: b})
			}
		}
	}
	next, changes, ok := fn(live)
	if !ok {
		sh.mu.Unlock()
		return
	}
	next, changes = t.admit(next, changes)
	if len(next) == 0 {
		delete(sh.aors, aor)
	} else {
		if e == nil {
			e = &aorEntry{}
			sh.aors[aor] = e
		}
		e.bindings = next
		e.gen++
	}
	evs := t.record(append(expired, changes...))
	sh.mu.Unlock()
	t.r.emit(evs)
}

// commit replaces aor's bindings with next if the entry is still at
// generation gen (or gen is ignored when check is false), and records the
// changes: expiry queue, connection index, dirty set, counters. Watchers
// hear of them after the lock is released, so a watcher may call Lookup.
// It reports false when another update got there first.
func (t *table) commit(aor string, gen uint64, check bool, next []store.Binding, changes []change, now time.Time) bool {
	sh := t.shard(aor)
	sh.mu.Lock()
	e := sh.aors[aor]
	cur := uint64(0)
	if e != nil {
		cur = e.gen
	}
	if check && cur != gen {
		sh.mu.Unlock()
		return false
	}
	if e != nil {
		// Bindings that expired but were not swept yet leave with next;
		// report them as the expiry loop would have.
		var expired []change
		for _, b := range e.bindings {
			if !b.Live(now) {
				expired = append(expired, change{kind: Expired, b: b})
			}
		}
		changes = append(expired, changes...)
	}
	next, changes = t.admit(next, changes)
	if len(next) == 0 {
		delete(sh.aors, aor)
	} else {
		if e == nil {
			e = &aorEntry{}
			sh.aors[aor] = e
		}
		e.bindings = next
		e.gen = cur + 1
	}
	evs := t.record(changes)
	sh.mu.Unlock()
	t.r.emit(evs)
	return true
}

// admit indexes the connections of added and refreshed bindings, under
// the same lock that ConnClosed marks a connection closed with, and returns
// next and changes without the bindings whose connection is already gone
// (a refreshed one becomes a removal). Called with the AOR's shard lock.
func (t *table) admit(next []store.Binding, changes []change) ([]store.Binding, []change) {
	t.connMu.Lock()
	defer t.connMu.Unlock()
	var gone map[string]bool
	out := changes[:0:0]
	for _, c := range changes {
		if c.kind != Added && c.kind != Refreshed {
			out = append(out, c)
			continue
		}
		k, bound := t.connOf(c.b)
		if bound {
			if at, dead := t.closed[k]; dead && time.Since(at) < closedMemory {
				if gone == nil {
					gone = make(map[string]bool)
				}
				gone[c.b.Key()] = true
				if c.kind == Refreshed {
					out = append(out, change{kind: Removed, b: c.old, reason: "connection closed"})
				}
				continue
			}
			t.indexLocked(k, c.b.ID(), true)
		}
		out = append(out, c)
	}
	if gone == nil {
		return next, out
	}
	kept := next[:0:0]
	for _, b := range next {
		if !gone[b.Key()] {
			kept = append(kept, b)
		}
	}
	return kept, out
}

// record applies the side effects of changes that must happen with the
// change (under the AOR's shard lock) and returns the events to emit.
func (t *table) record(changes []change) []Event {
	if len(changes) == 0 {
		return nil
	}
	evs := make([]Event, 0, len(changes))
	ids := make([]store.BindingKey, 0, len(changes))
	for _, c := range changes {
		ids = append(ids, c.b.ID())
		ev := Event{Kind: c.kind, Binding: c.b.Clone(), Reason: c.reason}
		switch c.kind {
		case Added:
			t.r.stats.added.Add(1)
			t.exp.push(c.b.Expires, c.b.ID(), c.b.Version)
		case Refreshed:
			t.r.stats.refreshed.Add(1)
			t.exp.push(c.b.Expires, c.b.ID(), c.b.Version)
			if c.old.Received != c.b.Received || c.old.Transport != c.b.Transport {
				t.indexConn(c.old, false)
			}
		case Removed:
			t.r.stats.removed.Add(1)
			t.indexConn(c.b, false)
			t.exp.remove(c.b.ID())
		case Expired:
			t.r.stats.expired.Add(1)
			t.indexConn(c.b, false)
		}
		evs = append(evs, ev)
	}
	if t.r.cfg.Persistence == WriteBack {
		t.r.pers.markDirty(ids)
	}
	return evs
}

// connOf returns the connection a binding is bound to, if it is.
func (t *table) connOf(b store.Binding) (connKey, bool) {
	// A binding that came through a proxy (Path) is reached through that
	// route, not through the proxy's connection to us.
	if t.r.cfg.NotConnectionBound || !connBound(b.Transport) || !b.Received.IsValid() || len(b.Path) > 0 {
		return connKey{}, false
	}
	return connKey{b.Transport, b.Received}, true
}

func (t *table) indexConn(b store.Binding, add bool) {
	k, ok := t.connOf(b)
	if !ok {
		return
	}
	t.connMu.Lock()
	t.indexLocked(k, b.ID(), add)
	t.connMu.Unlock()
}

func (t *table) indexLocked(k connKey, id store.BindingKey, add bool) {
	m := t.conns[k]
	if add {
		if m == nil {
			m = make(map[store.BindingKey]struct{})
			t.conns[k] = m
		}
		m[id] = struct{}{}
		return
	}
	if m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(t.conns, k)
		}
	}
}

// closedMemory is how long a closed connection is remembered: longer than
// any REGISTER takes to handle, shorter than a client takes to come back
// from the same address and port.
const closedMemory = 30 * time.Second

// connOpened forgets that a connection from k's peer closed: the address
// and port are in use again.
func (t *table) connOpened(k connKey) {
	t.connMu.Lock()
	delete(t.closed, k)
	t.connMu.Unlock()
}

// connClosed removes every binding reachable only through the closed
// connection.
func (t *table) connClosed(k connKey, reason string) int {
	now := time.Now()
	t.connMu.Lock()
	if t.closed == nil {
		t.closed = make(map[connKey]time.Time)
	}
	if len(t.closed) >= 4096 {
		for c, at := range t.closed {
			if now.Sub(at) >= closedMemory {
				delete(t.closed, c)
			}
		}
	}
	t.closed[k] = now
	ids := make([]store.BindingKey, 0, len(t.conns[k]))
	for id := range t.conns[k] {
		ids = append(ids, id)
	}
	t.connMu.Unlock()
	n := 0
	for _, id := range ids {
		if t.removeIf(id, func(b store.Binding) bool {
			return b.Transport == k.transport && b.Received == k.remote
		}, Removed, reason) {
			n++
		}
	}
	return n
}

// removeIf removes binding id if pred holds for it, as an event of kind.
func (t *table) removeIf(id store.BindingKey, pred func(store.Binding) bool, kind EventKind, reason string) bool {
	sh := t.shard(id.AOR)
	sh.mu.Lock()
	e := sh.aors[id.AOR]
	if e == nil {
		sh.mu.Unlock()
		return false
	}
	for i, b := range e.bindings {
		if b.Key() != id.Key || !pred(b) {
			continue
		}
		next := make([]store.Binding, 0, len(e.bindings)-1)
		next = append(next, e.bindings[:i]...)
		next = append(next, e.bindings[i+1:]...)
		if len(next) == 0 {
			delete(sh.aors, id.AOR)
		} else {
			e.bindings = next
			e.gen++
		}
		evs := t.record([]change{{kind: kind, b: b, reason: reason}})
		sh.mu.Unlock()
		if t.r.cfg.Persistence == WriteThrough {
			t.r.pers.deleteNow(id)
		}
		t.r.emit(evs)
		return true
	}
	sh.mu.Unlock()
	return false
}

// expiryLoop removes bindings at their expiry instant and reports them.
// Lookups never return an expired binding whatever this loop is doing;
// the loop makes the removal visible to watchers and the store.
func (t *table) expiryLoop() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := time.Now()
		for _, it := range t.exp.popDue(now) {
			t.removeIf(it.id, func(b store.Binding) bool {
				return b.Version == it.version && !b.Live(now)
			}, Expired, "")
		}
		next, ok := t.exp.next()
		wait := time.Hour
		if ok {
			wait = next.Sub(time.Now())
			if wait < 0 {
				wait = 0
			}
		}
		timer.Reset(wait)
		select {
		case <-t.r.stop:
			return
		case <-t.exp.wake:
			if !timer.Stop() {
				select {
				case <-timer.C:
				default:
				}
			}
		case <-timer.C:
		}
	}
}

// expiryQueue is a min-heap of expiry instants with one entry per binding:
// a refresh moves the binding's entry (heap.Fix) instead of adding one, so
// the heap stays as large as the table however often clients refresh.
type expiryQueue struct {
	mu    sync.Mutex
	items expiryHeap
	index map[store.BindingKey]*expiryItem
	wake  chan struct{}
}

type expiryItem struct {
	at      time.Time
	id      store.BindingKey
	version uint64
	idx     int
}

type expiryHeap []*expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expiryHeap) Push(x any) {
	it := x.(*expiryItem)
	it.idx = len(*h)
	*h = append(*h, it)
}
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return it
}

func (q *expiryQueue) push(at time.Time, id store.BindingKey, version uint64) {
	q.mu.Lock()
	if q.index == nil {
		q.index = make(map[store.BindingKey]*expiryItem)
	}
	if it := q.index[id]; it != nil {
		it.at, it.version = at, version
		heap.Fix(&q.items, it.idx)
	} else {
		it = &expiryItem{at: at, id: id, version: version}
		heap.Push(&q.items, it)
		q.index[id] = it
	}
	earliest := q.items[0].id == id
	q.mu.Unlock()
	if earliest {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// remove forgets id's entry (the binding was removed before expiring).
func (q *expiryQueue) remove(id store.BindingKey) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if it := q.index[id]; it != nil {
		heap.Remove(&q.items, it.idx)
		delete(q.index, id)
	}
}

func (q *expiryQueue) popDue(now time.Time) []expiryItem {
	q.mu.Lock()
	defer q.mu.Unlock()
	var due []expiryItem
	for len(q.items) > 0 && !now.Before(q.items[0].at) {
		it := heap.Pop(&q.items).(*expiryItem)
		delete(q.index, it.id)
		due = append(due, *it)
	}
	return due
}

func (q *expiryQueue) next() (time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) == 0 {
		return time.Time{}, false
	}
	return q.items[0].at, true
}

func (q *expiryQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
