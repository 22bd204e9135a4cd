package registrar

import (
	"sync/atomic"

	"github.com/talkpad/talkpad/store"
)

// EventKind says what happened to a binding.
type EventKind int

const (
	// Added: a new binding.
	Added EventKind = iota + 1
	// Refreshed: an existing binding re-registered (its expiry, source
	// address or other fields may have changed).
	Refreshed
	// Removed: unregistered (expires=0 or Contact: *), replaced, or its
	// connection closed; Event.Reason says which.
	Removed
	// Expired: the binding reached its expiry instant.
	Expired
)

func (k EventKind) String() string {
	switch k {
	case Added:
		return "added"
	case Refreshed:
		return "refreshed"
	case Removed:
		return "removed"
	case Expired:
		return "expired"
	}
	return "unknown"
}

// Event reports a change of one binding.
type Event struct {
	Kind    EventKind
	Binding store.Binding
	// Reason is set for Removed: "unregistered", "connection closed".
	Reason string
}

// Watch calls fn for every binding change from now on, until the returned
// stop function is called. fn runs on the goroutine that made the change,
// after the change is visible to Lookup; it must not block. Events of one
// AOR are delivered in order; Binding.Version orders them across watchers.
func (r *Registrar) Watch(fn func(Event)) (stop func()) {
	r.watchMu.Lock()
	r.watchID++
	id := r.watchID
	r.watchers[id] = fn
	r.watchMu.Unlock()
	return func() {
		r.watchMu.Lock()
		delete(r.watchers, id)
		r.watchMu.Unlock()
	}
}

func (r *Registrar) emit(evs []Event) {
	if len(evs) == 0 {
		return
	}
	r.watchMu.Lock()
	fns := make([]func(Event), 0, len(r.watchers))
	for _, fn := range r.watchers {
		fns = append(fns, fn)
	}
	r.watchMu.Unlock()
	for _, fn := range fns {
		for _, e := range evs {
			fn(e)
		}
	}
}

// Stats is a snapshot of the registrar's counters and gauges.
type Stats struct {
	Registrations uint64 // successful REGISTERs that added or refreshed bindings
	Added         uint64 // bindings added
	Refreshed     uint64 // bindings refreshed
	Removed       uint64 // bindings removed by the client or a closed connection
	Expired       uint64 // bindings that expired
	Queries       uint64 // REGISTERs without Contact
	Rejected      uint64 // REGISTERs answered with an error other than a challenge
	Malformed     uint64 // REGISTERs refused as malformed (400)
	Auth          AuthStats
	Active        int    // live bindings now
	Dirty         int    // bindings waiting for the next write-back flush
	Flushes       uint64 // successful flushes
	FlushErrors   uint64 // failed flushes (their changes are kept and retried)
}

type counters struct {
	registrations, added, refreshed, removed, expired, queries, rejected, malformed, flushes, flushErrors atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (r *Registrar) Stats() Stats {
	c := &r.stats
	s := Stats{
		Registrations: c.registrations.Load(), Added: c.added.Load(), Refreshed: c.refreshed.Load(),
		Removed: c.removed.Load(), Expired: c.expired.Load(), Queries: c.queries.Load(),
		Rejected: c.rejected.Load(), Malformed: c.malformed.Load(),
		Flushes: c.flushes.Load(), FlushErrors: c.flushErrors.Load(),
		Active: r.table.count(),
	}
	if r.cfg.Auth != nil {
		s.Auth = r.cfg.Auth.Stats()
	}
	if r.pers != nil {
		s.Dirty = r.pers.dirtyLen()
	}
	return s
}
