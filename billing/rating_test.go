package billing

import (
	"fmt"
	"testing"
	"time"

	"github.com/talkpad/talkpad/store"
)

func TestRate(t *testing.T) {
	perSec := store.Tariff{PricePerMinute: 1_200_000, FirstIncrement: 1, NextIncrement: 1}
	perMin := store.Tariff{PricePerMinute: 600_000, FirstIncrement: 60, NextIncrement: 60}
	thirtySix := store.Tariff{PricePerMinute: 600_000, FirstIncrement: 30, NextIncrement: 6}
	fee := store.Tariff{PricePerMinute: 100_000, ConnectFee: 50_000, FirstIncrement: 1, NextIncrement: 1, MinDuration: 10}
	cheap := store.Tariff{PricePerMinute: 7, FirstIncrement: 1, NextIncrement: 1}
	ms := time.Millisecond
	tests := []struct {
		name       string
		tariff     store.Tariff
		d          time.Duration
		secs, cost int64
	}{
		{"1/1 zero", perSec, 0, 0, 0},
		{"1/1 1ns", perSec, 1, 1, 20_000},
		{"1/1 exact", perSec, 50 * time.Second, 50, 1_000_000},
		{"1/1 61.2s", perSec, 61*time.Second + 200*ms, 62, 1_240_000},
		{"60/60 1s", perMin, time.Second, 60, 600_000},
		{"60/60 60s", perMin, 60 * time.Second, 60, 600_000},
		{"60/60 60.001s", perMin, 60*time.Second + ms, 120, 1_200_000},
		{"30/6 5s", thirtySix, 5 * time.Second, 30, 300_000},
		{"30/6 30s", thirtySix, 30 * time.Second, 30, 300_000},
		{"30/6 31s", thirtySix, 31 * time.Second, 36, 360_000},
		{"30/6 36s", thirtySix, 36 * time.Second, 36, 360_000},
		{"30/6 36.5s", thirtySix, 36*time.Second + 500*ms, 42, 420_000},
		// 10 s minimum at 100,000/min: 16,666.67 rounds up to 16,667.
		{"fee+min 0s", fee, 0, 10, 66_667},
		{"fee+min 3s", fee, 3 * time.Second, 10, 66_667},
		// 11 s: 18,333.33 → 18,334.
		{"fee+min 11s", fee, 11 * time.Second, 11, 68_334},
		{"round up", cheap, time.Second, 1, 1},
		{"negative", perSec, -time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secs, cost := Rate(tt.tariff, tt.d)
			if secs != tt.secs || cost != tt.cost {
				t.Fatalf("Rate(%v) = %d s, %d; want %d s, %d", tt.d, secs, cost, tt.secs, tt.cost)
			}
		})
	}
}

func TestHorizon(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := store.Tariff{PricePerMinute: 1_200_000, FirstIncrement: 1, NextIncrement: 1} // 20,000/s
	b := store.Tariff{PricePerMinute: 600_000, FirstIncrement: 1, NextIncrement: 1}   // 10,000/s
	m := store.Tariff{PricePerMinute: 600_000, FirstIncrement: 60, NextIncrement: 60}
	tests := []struct {
		pot   int64
		calls []priced
		want  time.Duration // after t0
		ok    bool
	}{
		{1_000_000, []priced{{a, t0}}, 50 * time.Second, true},
		{3_000_000, []priced{{a, t0}, {b, t0}}, 100 * time.Second, true},
		// The second call answered half a second later: its steps fall
		// half a second later too.
		{3_000_000, []priced{{a, t0}, {b, t0.Add(500 * time.Millisecond)}}, 100 * time.Second, true},
		{1_000_000, []priced{{m, t0}}, 60 * time.Second, true},
		{0, []priced{{a, t0}}, 0, true},
		{10_000_000_000, []priced{{a, t0}}, time.Hour, true},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			h, ok := horizon(tt.pot, tt.calls, t0, t0.Add(time.Hour))
			if ok != tt.ok || h.Sub(t0) != tt.want {
				t.Fatalf("horizon = +%v, %v; want +%v, %v", h.Sub(t0), ok, tt.want, tt.ok)
			}
		})
	}
	// Money short even now.
	if _, ok := horizon(10, []priced{{a, t0.Add(-time.Second)}}, t0, t0.Add(time.Minute)); ok {
		t.Fatal("horizon ok although the pot does not pay for what already ran")
	}
}
