package billing_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

// propertyRun drives random interleavings of Authorize, Start, top-ups,
// Stop and the passing of time over several accounts and two engines
// sharing st, and checks after every step that each account's balance is
// the sum of its ledger, that what is reserved is what its sessions hold
// and within its money, and that no balance ever went past its credit
// limit. tick scales the time steps: seconds inside a bubble, milliseconds
// against a real database.
func propertyRun(t *testing.T, st store.Billing, seed uint64, steps int, tick time.Duration, cfg billing.Config,
	start func(*testing.T, store.Billing, string, billing.Config) (*billing.Engine, *cutoffs, func())) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	accounts := []string{"p0", "p1", "p2"}
	for i, id := range accounts {
		addAccount(t, st, id, int64(200_000+100_000*i), int64(50_000*i))
	}
	e1, _, stop1 := start(t, st, "n1", cfg)
	defer stop1()
	e2, _, stop2 := start(t, st, "n2", cfg)
	defer stop2()
	engines := []*billing.Engine{e1, e2}
	dests := []string{"4930", "3310", "4420", "1212", "3906", "3491"}
	type live struct {
		e  *billing.Engine
		id string
	}
	var calls []live
	next := 0
	for step := range steps {
		e := engines[rng.IntN(2)]
		acc := accounts[rng.IntN(len(accounts))]
		switch op := rng.IntN(10); {
		case op < 4:
			dest := dests[rng.IntN(len(dests))]
			if _, err := e.Authorize(ctx, acc, dest); err != nil {
				if !errors.Is(err, billing.ErrInsufficientFunds) {
					t.Fatalf("step %d: Authorize: %v", step, err)
				}
				break
			}
			id := fmt.Sprint("call-", next)
			next++
			err := e.Start(ctx, billing.Call{ID: id, Account: acc, Caller: "x", Callee: dest})
			if err == nil {
				calls = append(calls, live{e, id})
			} else if !errors.Is(err, billing.ErrInsufficientFunds) {
				t.Fatalf("step %d: Start: %v", step, err)
			}
		case op < 5:
			_, err := e.TopUp(ctx, acc, int64(rng.IntN(100_000)+1), fmt.Sprint("top-", step), "")
			if err != nil {
				t.Fatalf("step %d: TopUp: %v", step, err)
			}
		case op < 7 && len(calls) > 0:
			i := rng.IntN(len(calls))
			c := calls[i]
			calls = append(calls[:i], calls[i+1:]...)
			if _, err := c.e.Stop(ctx, c.id, time.Time{}, ""); err != nil {
				t.Fatalf("step %d: Stop %s: %v", step, c.id, err)
			}
			// Twice: charged once.
			if _, err := c.e.Stop(ctx, c.id, time.Time{}, ""); err != nil {
				t.Fatalf("step %d: second Stop %s: %v", step, c.id, err)
			}
		default:
			time.Sleep(time.Duration(rng.IntN(20)+1) * tick)
		}
		for _, id := range accounts {
			checkAccount(t, st, id)
		}
	}
	s1, s2 := e1.Stats(), e2.Stats()
	t.Logf("n1 %+v", s1)
	t.Logf("n2 %+v", s2)
	for _, c := range calls {
		if _, err := c.e.Stop(ctx, c.id, time.Time{}, ""); err != nil {
			t.Fatalf("final Stop %s: %v", c.id, err)
		}
	}
	// Hang-ups of accounts with money to spare settle in batches.
	for i := 0; e1.Stats().PendingSettlements+e2.Stats().PendingSettlements > 0; i++ {
		if i == 200 {
			t.Fatalf("settlements still pending: %d, %d", e1.Stats().PendingSettlements, e2.Stats().PendingSettlements)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range accounts {
		if a := checkAccount(t, st, id); a.Reserved != 0 {
			t.Fatalf("account %s holds %d after every call ended", id, a.Reserved)
		}
	}
}

func TestPropertyMemory(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := memory.New()
				if err := st.UpsertTariffs(context.Background(), []store.Tariff{de, fr, uk, perMn, s306, fee}); err != nil {
					t.Fatal(err)
				}
				propertyRun(t, st, seed, 400, time.Second, billing.Config{Window: 20 * time.Second}, run)
			})
		})
	}
}

// TestConcurrentCalls runs many callers at once on two engines and a few
// accounts, with the race detector watching, and checks the accounts when
// they are done.
func TestConcurrentCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		st := newStore(t, "c0", 2_000_000, 0)
		addAccount(t, st, "c1", 2_000_000, 100_000)
		e1, _, stop1 := run(t, st, "n1", billing.Config{Window: 10 * time.Second})
		defer stop1()
		e2, _, stop2 := run(t, st, "n2", billing.Config{Window: 10 * time.Second})
		defer stop2()
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(w), 1))
				e := []*billing.Engine{e1, e2}[w%2]
				for i := range 30 {
					acc := fmt.Sprint("c", rng.IntN(2))
					id := fmt.Sprintf("w%d-%d", w, i)
					if rng.IntN(5) == 0 {
						e.TopUp(ctx, acc, 50_000, id, "")
					}
					if err := e.Start(ctx, billing.Call{ID: id, Account: acc, Callee: "4930"}); err != nil {
						continue
					}
					time.Sleep(time.Duration(rng.IntN(4000)) * time.Millisecond)
					if _, err := e.Stop(ctx, id, time.Time{}, ""); err != nil {
						t.Errorf("Stop %s: %v", id, err)
					}
				}
			})
		}
		wg.Wait()
		time.Sleep(2 * time.Second) // the last batch of settlements
		for _, id := range []string{"c0", "c1"} {
			if a := checkAccount(t, st, id); a.Reserved != 0 {
				t.Fatalf("account %s holds %d after every call", id, a.Reserved)
			}
		}
	})
}
