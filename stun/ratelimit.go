package stun

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a per-source-IP rate limit. Each source holds one number, its
// "theoretical arrival time" (the generic cell rate algorithm, equivalent
// to a token bucket): a request is allowed when the source is no more than
// burst intervals ahead of now, and each allowed request moves it one
// interval further. An entry whose time is in the past is the same as no
// entry, which makes cleanup a plain sweep.
//
// The table is split into shards, each with its own mutex, so that reader
// goroutines on different cores rarely meet on a lock.
type limiter struct {
	interval  int64 // nanoseconds per request
	tolerance int64 // burst allowance in nanoseconds
	perShard  int   // capacity of one shard
	epoch     time.Time
	shards    [limiterShards]limShard
}

const (
	limiterShards = 64
	// sweepEvery bounds how often one shard is swept for stale entries.
	sweepEvery = 10 * time.Second
)

type limShard struct {
	mu        sync.Mutex
	tat       map[netip.Addr]int64
	lastSweep int64
	_         [32]byte // keep neighbouring shards' locks off one cache line
}

func newLimiter(rate float64, burst, maxSources int) *limiter {
	l := &limiter{
		interval: int64(float64(time.Second) / rate),
		perShard: max(1, maxSources/limiterShards),
		epoch:    time.Now(),
	}
	l.tolerance = int64(burst-1) * l.interval
	for i := range l.shards {
		l.shards[i].tat = make(map[netip.Addr]int64)
	}
	return l
}

// allow reports whether a request from a may be answered now, and records
// it if so.
func (l *limiter) allow(a netip.Addr) bool {
	now := int64(time.Since(l.epoch))
	sh := &l.shards[shardOf(a)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tat, seen := sh.tat[a]
	if !seen || tat < now {
		tat = now
	}
	if tat-now > l.tolerance {
		return false
	}
	if !seen {
		if len(sh.tat) >= l.perShard {
			sh.sweep(now)
			if len(sh.tat) >= l.perShard {
				return false
			}
		} else if now-sh.lastSweep > int64(sweepEvery) {
			sh.sweep(now)
		}
	}
	sh.tat[a] = tat + l.interval
	return true
}

// sweep deletes entries whose time has passed: they carry no state.
func (sh *limShard) sweep(now int64) {
	sh.lastSweep = now
	for a, tat := range sh.tat {
		if tat < now {
			delete(sh.tat, a)
		}
	}
}

// size returns the number of tracked sources; for tests.
func (l *limiter) size() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.tat)
		sh.mu.Unlock()
	}
	return n
}

// shardOf hashes the address bytes (FNV-1a); no allocation.
func shardOf(a netip.Addr) int {
	b := a.As16()
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % limiterShards)
}
