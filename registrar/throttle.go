package registrar

import (
	"net/netip"
	"sync"
	"time"
)

// throttle counts authentication failures per source and refuses a source
// that failed too often within a window, so that a password scanner gets no
// answers worth having. It is keyed by the source address only (IPv6 by its
// /64, which one subscriber usually holds whole): failures from one address
// never lock a user out at another.
type throttle struct {
	limit  int
	window time.Duration
	max    int // entries kept at most; the oldest windows go first

	mu sync.Mutex
	m  map[netip.Prefix]*failures
}

type failures struct {
	n     int
	start time.Time
}

func newThrottle(limit int, window time.Duration, max int) *throttle {
	return &throttle{limit: limit, window: window, max: max, m: make(map[netip.Prefix]*failures)}
}

func throttleKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// blocked reports whether src has reached the failure limit in the current
// window.
func (t *throttle) blocked(src netip.Addr, now time.Time) bool {
	if t == nil || t.limit <= 0 || !src.IsValid() {
		return false
	}
	k := throttleKey(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[k]
	if f == nil {
		return false
	}
	if now.Sub(f.start) >= t.window {
		delete(t.m, k)
		return false
	}
	return f.n >= t.limit
}

// fail records one authentication failure from src.
func (t *throttle) fail(src netip.Addr, now time.Time) {
	if t == nil || t.limit <= 0 || !src.IsValid() {
		return
	}
	k := throttleKey(src)
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[k]
	if f == nil || now.Sub(f.start) >= t.window {
		if f == nil && len(t.m) >= t.max {
			t.evict(now)
		}
		t.m[k] = &failures{n: 1, start: now}
		return
	}
	f.n++
}

// evict drops expired windows, and if none had expired, the oldest one, so
// a flood of sources cannot grow the table without bound.
func (t *throttle) evict(now time.Time) {
	var oldestKey netip.Prefix
	var oldest time.Time
	for k, f := range t.m {
		if now.Sub(f.start) >= t.window {
			delete(t.m, k)
			continue
		}
		if oldest.IsZero() || f.start.Before(oldest) {
			oldest, oldestKey = f.start, k
		}
	}
	if len(t.m) >= t.max {
		delete(t.m, oldestKey)
	}
}
