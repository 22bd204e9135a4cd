package registrar

import (
	"net/netip"
	"sync"
	"time"
)

// throttle counts authentication failures and refuses what failed too
// often within a window, so that a password scanner gets no answers worth
// having. Wrong passwords count against the pair (source, user name);
// unknown users and malformed headers against the source alone (a scanner
// trying names). Sources are addresses, IPv6 by its /64 (which one
// subscriber usually holds whole). Failures from one address never lock a
// user out at another, and a scanner guessing one user's password behind a
// shared NAT or proxy does not lock out the other users there.
type throttle struct {
	limit  int
	window time.Duration
	max    int // entries kept at most; the oldest windows go first

	mu sync.Mutex
	m  map[throttleKey]*failures
}

type throttleKey struct {
	src  netip.Prefix
	user string // "" counts the source as a whole
}

type failures struct {
	n     int
	start time.Time
}

func newThrottle(limit int, window time.Duration, max int) *throttle {
	return &throttle{limit: limit, window: window, max: max, m: make(map[throttleKey]*failures)}
}

func sourcePrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// blocked reports whether (src, user) has reached the failure limit in the
// current window; user "" asks about the source as a whole.
func (t *throttle) blocked(src netip.Addr, user string, now time.Time) bool {
	if t == nil || t.limit <= 0 || !src.IsValid() {
		return false
	}
	k := throttleKey{sourcePrefix(src), user}
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

// fail records one authentication failure from src for user ("" for the
// source as a whole).
func (t *throttle) fail(src netip.Addr, user string, now time.Time) {
	if t == nil || t.limit <= 0 || len(user) > 256 || !src.IsValid() {
		return
	}
	k := throttleKey{sourcePrefix(src), user}
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
	var oldestKey throttleKey
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
