package billing

import (
	"time"

	"github.com/talkpad/talkpad/store"
)

// Rate returns what a call priced with t costs when it lasted d from its
// answer: the seconds billed and the cost in micro-units.
//
// The duration is rounded up to whole seconds and raised to the tariff's
// minimum duration. A call of any length above zero is billed at least the
// first increment; beyond it, every started next increment is billed whole
// (60/60 bills 61 s as 120 s, 30/6 bills 31 s as 36 s). The cost is the
// connect fee plus the billed seconds at PricePerMinute/60, rounded up to a
// whole micro-unit, so that rounding never favours the caller over the
// reservation that paid for the call. A call answered and ended at the same
// instant is billed 0 s and pays only the connect fee (or its minimum
// duration).
func Rate(t store.Tariff, d time.Duration) (seconds, cost int64) {
	seconds = billedSeconds(t, d)
	return seconds, t.ConnectFee + ceilDiv(seconds*t.PricePerMinute, 60)
}

func billedSeconds(t store.Tariff, d time.Duration) int64 {
	var s int64
	if d > 0 {
		s = int64((d + time.Second - 1) / time.Second)
	}
	if m := int64(t.MinDuration); s < m {
		s = m
	}
	if s == 0 {
		return 0
	}
	first, next := int64(max(t.FirstIncrement, 1)), int64(max(t.NextIncrement, 1))
	if s <= first {
		return first
	}
	return first + ceilDiv(s-first, next)*next
}

func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	return (a + b - 1) / b
}

// priced is what the horizon search needs of a call.
type priced struct {
	tariff store.Tariff
	answer time.Time
}

// costAt returns the summed cost of calls if they all lasted until at.
func costAt(calls []priced, at time.Time) int64 {
	var sum int64
	for _, c := range calls {
		_, cost := Rate(c.tariff, at.Sub(c.answer))
		sum += cost
	}
	return sum
}

// horizon returns the latest instant in [lo, hi] until which pot pays for
// every call in calls together, and whether even lo is paid for. Costs are
// step functions of time, so the answer is exact to the nanosecond: a
// binary search over the interval, about 45 evaluations of costAt.
//
// This is what makes the engine exact without per-second debits: the
// instant the shared money runs out is computed, not discovered by ticking.
func horizon(pot int64, calls []priced, lo, hi time.Time) (time.Time, bool) {
	if costAt(calls, lo) > pot {
		return lo, false
	}
	if costAt(calls, hi) <= pot {
		return hi, true
	}
	// Invariant: lo is paid for, hi is not.
	l, h := time.Duration(0), hi.Sub(lo)
	for h-l > 1 {
		m := l + (h-l)/2
		if costAt(calls, lo.Add(m)) <= pot {
			l = m
		} else {
			h = m
		}
	}
	return lo.Add(l), true
}
