package stun

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestLimiterMemory: the table is bounded, full means new sources are
// refused (fail closed), and entries that have run out are swept so that
// new sources get in again.
func TestLimiterMemory(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLimiter(10, 2, limiterShards) // one source per shard
		addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)}) }
		admitted := 0
		for i := range 1000 {
			if l.allow(addr(i)) {
				admitted++
			}
		}
		if admitted != limiterShards || l.size() != limiterShards {
			t.Fatalf("admitted %d, tracking %d; want %d", admitted, l.size(), limiterShards)
		}
		// After one interval every entry is in the past: a full shard is
		// swept on the next new source.
		time.Sleep(200 * time.Millisecond)
		if !l.allow(addr(5000)) {
			t.Error("new source refused after entries expired")
		}
		if l.size() > limiterShards {
			t.Errorf("tracking %d", l.size())
		}
	})
}

func TestLimiterIPv6(t *testing.T) {
	l := newLimiter(1, 1, 1<<10)
	a := netip.MustParseAddr("::1")
	if !l.allow(a) || l.allow(a) {
		t.Error("burst of 1 not enforced for IPv6")
	}
}
