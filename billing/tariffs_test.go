package billing_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

func TestTableLookup(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr := func(prefix string, price int64) store.Tariff {
		return store.Tariff{Prefix: prefix, PricePerMinute: price, FirstIncrement: 1, NextIncrement: 1}
	}
	old := tr("4930", 30)
	old.ValidUntil = t0
	newer := tr("4930", 31)
	newer.ValidFrom = t0
	later := tr("4930", 32)
	later.ValidFrom = t0.Add(24 * time.Hour)
	table := billing.NewTable([]store.Tariff{tr("", 1), tr("4", 4), tr("49", 49), tr("491", 491), old, newer, later, tr("1", 10), {Prefix: "x"}})
	if table.Len() != 8 {
		t.Fatalf("Len = %d, want 8 (the invalid prefix skipped)", table.Len())
	}
	tests := []struct {
		dest string
		at   time.Time
		want int64
		ok   bool
	}{
		{"+4930123", t0, 31, true},
		{"4930123", t0.Add(-time.Second), 30, true},
		{"4930123", t0.Add(48 * time.Hour), 32, true},
		{"4915112345", t0, 491, true},
		{"4989", t0, 49, true},
		{"44", t0, 4, true},
		{"33", t0, 1, true},
		{"", t0, 1, true},
		{"49;ext=1", t0, 49, true},
		{"1555", t0, 10, true},
	}
	for _, tt := range tests {
		got, ok := table.Lookup(tt.dest, tt.at)
		if ok != tt.ok || got.PricePerMinute != tt.want {
			t.Errorf("Lookup(%q, %v) = %d, %v; want %d", tt.dest, tt.at, got.PricePerMinute, ok, tt.want)
		}
	}
	if _, ok := billing.NewTable([]store.Tariff{tr("49", 1)}).Lookup("33", t0); ok {
		t.Error("a destination without a tariff matched")
	}
	if _, ok := (*billing.Table)(nil).Lookup("49", t0); ok {
		t.Error("nil table matched")
	}
}

// bigTable returns n tariffs with random prefixes of 2 to 9 digits, and
// destinations that hit them.
func bigTable(n int) ([]store.Tariff, []string) {
	rng := rand.New(rand.NewPCG(1, 2))
	ts := make([]store.Tariff, 0, n)
	seen := make(map[string]bool, n)
	for len(ts) < n {
		var b strings.Builder
		for range 2 + rng.IntN(8) {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		p := b.String()
		if seen[p] {
			continue
		}
		seen[p] = true
		ts = append(ts, store.Tariff{Prefix: p, PricePerMinute: int64(rng.IntN(2_000_000)), FirstIncrement: 1, NextIncrement: 1})
	}
	dests := make([]string, 1024)
	for i := range dests {
		dests[i] = "+" + ts[rng.IntN(n)].Prefix + fmt.Sprint(rng.IntN(1_000_000))
	}
	return ts, dests
}

func BenchmarkLookup(b *testing.B) {
	ts, dests := bigTable(100_000)
	table := billing.NewTable(ts)
	now := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, ok := table.Lookup(dests[i&1023], now); !ok {
			b.Fatal("no match")
		}
		i++
	}
}

func BenchmarkNewTable(b *testing.B) {
	ts, _ := bigTable(100_000)
	b.ReportAllocs()
	for b.Loop() {
		billing.NewTable(ts)
	}
}

// BenchmarkAuthorize is Authorize on the memory store with a 100,000-prefix
// table: the tariff lookup, one account read and the horizon search.
func BenchmarkAuthorize(b *testing.B) {
	for _, live := range []int{0, 4} {
		b.Run(fmt.Sprint("live=", live), func(b *testing.B) {
			ctx := context.Background()
			ts, dests := bigTable(100_000)
			st := memory.New()
			if err := st.UpsertTariffs(ctx, ts); err != nil {
				b.Fatal(err)
			}
			if err := st.CreateAccount(ctx, store.Account{ID: "a"}); err != nil {
				b.Fatal(err)
			}
			if _, err := st.PostEntry(ctx, store.LedgerEntry{Account: "a", Key: "k", Kind: store.EntryTopUp, Amount: 1e12, Time: time.Now()}); err != nil {
				b.Fatal(err)
			}
			e, err := billing.New(billing.Config{Store: st, Node: "n", Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			if err := e.ReloadTariffs(ctx); err != nil {
				b.Fatal(err)
			}
			for i := range live {
				if err := e.Start(ctx, billing.Call{ID: fmt.Sprint(i), Account: "a", Callee: dests[i]}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := e.Authorize(ctx, "a", dests[i&1023]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkStartStop is one call's whole life on the memory store: the
// reservation at answer and the settlement at hang-up (batched), over
// 1,024 accounts.
func BenchmarkStartStop(b *testing.B) {
	ctx := context.Background()
	st := memory.New()
	if err := st.UpsertTariffs(ctx, []store.Tariff{de}); err != nil {
		b.Fatal(err)
	}
	for i := range 1024 {
		id := fmt.Sprint("a", i)
		if err := st.CreateAccount(ctx, store.Account{ID: id}); err != nil {
			b.Fatal(err)
		}
		if _, err := st.PostEntry(ctx, store.LedgerEntry{Account: id, Key: "k", Kind: store.EntryTopUp, Amount: 1e15, Time: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	e, err := billing.New(billing.Config{Store: st, Node: "n", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	if err := e.ReloadTariffs(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		id := fmt.Sprint(i)
		if err := e.Start(ctx, billing.Call{ID: id, Account: fmt.Sprint("a", i&1023), Callee: "4930"}); err != nil {
			b.Fatal(err)
		}
		if _, err := e.Stop(ctx, id, time.Time{}, ""); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
