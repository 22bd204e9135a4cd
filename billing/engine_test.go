package billing_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

// Tariffs of the scenarios, with per-second prices that make the sums easy.
var (
	de    = store.Tariff{Prefix: "49", PricePerMinute: 1_200_000, FirstIncrement: 1, NextIncrement: 1} // 20,000/s
	fr    = store.Tariff{Prefix: "33", PricePerMinute: 600_000, FirstIncrement: 1, NextIncrement: 1}   // 10,000/s
	uk    = store.Tariff{Prefix: "44", PricePerMinute: 1_800_000, FirstIncrement: 1, NextIncrement: 1} // 30,000/s
	perMn = store.Tariff{Prefix: "1", PricePerMinute: 600_000, FirstIncrement: 60, NextIncrement: 60}  // per minute
	s306  = store.Tariff{Prefix: "39", PricePerMinute: 600_000, FirstIncrement: 30, NextIncrement: 6}  // 30/6
	fee   = store.Tariff{Prefix: "34", PricePerMinute: 600_000, ConnectFee: 100_000, FirstIncrement: 1, NextIncrement: 1}
)

// newStore returns a memory store with the scenario tariffs and one
// account holding balance.
func newStore(t *testing.T, account string, balance, credit int64) *memory.Store {
	t.Helper()
	ctx := context.Background()
	st := memory.New()
	if err := st.UpsertTariffs(ctx, []store.Tariff{de, fr, uk, perMn, s306, fee}); err != nil {
		t.Fatal(err)
	}
	addAccount(t, st, account, balance, credit)
	return st
}

func addAccount(t *testing.T, st store.Billing, id string, balance, credit int64) {
	t.Helper()
	ctx := context.Background()
	if err := st.CreateAccount(ctx, store.Account{ID: id, Currency: "EUR", CreditLimit: credit}); err != nil {
		t.Fatal(err)
	}
	if balance != 0 {
		if _, err := st.PostEntry(ctx, store.LedgerEntry{Account: id, Key: "init", Kind: store.EntryTopUp, Amount: balance, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
}

// cutoffs records what the engine told the owner, and when.
type cutoffs struct {
	mu   sync.Mutex
	list []billing.Cutoff
	when []time.Time
}

func (c *cutoffs) record(x billing.Cutoff) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.list = append(c.list, x)
	c.when = append(c.when, time.Now())
}

// at returns when call id was cut off, or the zero time.
func (c *cutoffs) at(id string) (time.Time, billing.Cutoff) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, x := range c.list {
		if x.CallID == id {
			return c.when[i], x
		}
	}
	return time.Time{}, billing.Cutoff{}
}

// run starts an engine on st inside the current bubble and stops it when
// the test function returns.
func run(t *testing.T, st store.Billing, node string, cfg billing.Config) (*billing.Engine, *cutoffs, func()) {
	t.Helper()
	cuts := &cutoffs{}
	cfg.Store, cfg.Node, cfg.OnCutoff = st, node, cuts.record
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e, err := billing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	synctest.Wait()
	stop := func() {
		cancel()
		<-done
		e.Close()
	}
	return e, cuts, stop
}

// checkAccount verifies the ledger invariant and returns the account.
// Against a real database, engines' timers settle calls while it reads, so
// it retries until the account did not change between its reads.
func checkAccount(t *testing.T, st store.Billing, id string) store.Account {
	t.Helper()
	a, _ := snapshotAccount(t, st, id)
	return a
}

// snapshotAccount checks an account's invariants on a consistent reading
// and returns it with the money its sessions hold.
func snapshotAccount(t *testing.T, st store.Billing, id string) (store.Account, int64) {
	t.Helper()
	ctx := context.Background()
	for attempt := 0; ; attempt++ {
		a, err := st.GetAccount(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		es, err := st.ListEntries(ctx, id, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		ss, err := st.ListSessions(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		again, err := st.GetAccount(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if again != a && attempt < 50 {
			continue
		}
		var sum, held int64
		for _, e := range es {
			sum += e.Amount
		}
		for _, s := range ss {
			if s.Account == id {
				held += s.Reserved
			}
		}
		if sum != a.Balance {
			t.Fatalf("account %s: balance %d != ledger sum %d", id, a.Balance, sum)
		}
		if held != a.Reserved {
			t.Fatalf("account %s: reserved %d, sessions hold %d", id, a.Reserved, held)
		}
		if a.Balance+a.CreditLimit < 0 {
			t.Fatalf("account %s: balance %d below credit limit %d", id, a.Balance, a.CreditLimit)
		}
		if a.Reserved < 0 || a.Reserved > a.Balance+a.CreditLimit {
			t.Fatalf("account %s holds %d of %d+%d", id, a.Reserved, a.Balance, a.CreditLimit)
		}
		return a, held
	}
}

func start(t *testing.T, e *billing.Engine, id, account, callee string) time.Time {
	t.Helper()
	now := time.Now()
	if err := e.Start(context.Background(), billing.Call{ID: id, Account: account, Caller: "alice", Callee: callee}); err != nil {
		t.Fatalf("Start %s: %v", id, err)
	}
	return now
}

func wantCut(t *testing.T, cuts *cutoffs, id string, at time.Time, cost int64) {
	t.Helper()
	when, c := cuts.at(id)
	if when.IsZero() {
		t.Fatalf("call %s was not cut off", id)
	}
	if !when.Equal(at) || !c.At.Equal(at) {
		t.Fatalf("call %s cut off at %v (billed to %v), want %v", id, when, c.At, at)
	}
	if c.Cause != billing.CauseCredit || c.CDR.Cost != cost {
		t.Fatalf("call %s: cause %q cost %d, want %q %d", id, c.Cause, c.CDR.Cost, billing.CauseCredit, cost)
	}
}

// One call runs out at the exact second its money does.
func TestOneCallRunsOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 1_000_000, 0)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		ctx := context.Background()
		d, err := e.Authorize(ctx, "acc", "+4930123456")
		if err != nil || d != 50*time.Second {
			t.Fatalf("Authorize = %v, %v; want 50s", d, err)
		}
		t0 := start(t, e, "c1", "acc", "+4930123456")
		time.Sleep(49*time.Second + 999*time.Millisecond)
		if when, _ := cuts.at("c1"); !when.IsZero() {
			t.Fatalf("cut off early, at %v", when.Sub(t0))
		}
		time.Sleep(time.Minute)
		wantCut(t, cuts, "c1", t0.Add(50*time.Second), 1_000_000)
		a := checkAccount(t, st, "acc")
		if a.Balance != 0 || a.Reserved != 0 {
			t.Fatalf("after the cut-off: %+v", a)
		}
		// The owner hangs up afterwards: nothing more is charged.
		cdr, err := e.Stop(ctx, "c1", time.Now(), "")
		if err != nil || cdr.Cost != 1_000_000 || cdr.BilledSeconds != 50 || cdr.Cause != billing.CauseCredit {
			t.Fatalf("Stop after cut-off = %+v, %v", cdr, err)
		}
		if _, err := e.Authorize(ctx, "acc", "4930"); !errors.Is(err, billing.ErrInsufficientFunds) {
			t.Fatalf("Authorize on an empty account: %v", err)
		}
	})
}

// Two calls at different rates share the money and end together when it
// ends; a third is authorized only for what is left and shortens them.
func TestSharedMoney(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 3_000_000, 0)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		t0 := start(t, e, "a", "acc", "4930")
		start(t, e, "b", "acc", "3310")
		time.Sleep(200 * time.Second)
		// 20,000/s + 10,000/s on 3,000,000: 100 s.
		wantCut(t, cuts, "a", t0.Add(100*time.Second), 2_000_000)
		wantCut(t, cuts, "b", t0.Add(100*time.Second), 1_000_000)
		if a := checkAccount(t, st, "acc"); a.Balance != 0 || a.Reserved != 0 {
			t.Fatalf("after both: %+v", a)
		}
	})
}

func TestThirdCallGetsWhatIsLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 3_000_000, 0)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		ctx := context.Background()
		t0 := start(t, e, "a", "acc", "4930")
		start(t, e, "b", "acc", "3310")
		time.Sleep(40 * time.Second)
		// 1,800,000 left; with the third call at 30,000/s the three
		// spend 60,000/s: 30 s.
		d, err := e.Authorize(ctx, "acc", "4420")
		if err != nil || d != 30*time.Second {
			t.Fatalf("third call authorized for %v, %v; want 30s", d, err)
		}
		start(t, e, "c", "acc", "4420")
		time.Sleep(time.Minute)
		end := t0.Add(70 * time.Second)
		wantCut(t, cuts, "a", end, 1_400_000)
		wantCut(t, cuts, "b", end, 700_000)
		wantCut(t, cuts, "c", end, 900_000)
		if a := checkAccount(t, st, "acc"); a.Balance != 0 {
			t.Fatalf("balance %d", a.Balance)
		}
	})
}

func TestTopUpExtendsCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 3_000_000, 0)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		ctx := context.Background()
		t0 := start(t, e, "a", "acc", "4930")
		start(t, e, "b", "acc", "3310")
		time.Sleep(80 * time.Second)
		if _, err := e.TopUp(ctx, "acc", 1_500_000, "pay-1", "card"); err != nil {
			t.Fatal(err)
		}
		// Repeated with the same key: applied once.
		if _, err := e.TopUp(ctx, "acc", 1_500_000, "pay-1", "card"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.TopUp(ctx, "acc", 9, "pay-1", ""); !errors.Is(err, billing.ErrKeyReused) {
			t.Fatalf("key reused with another amount: %v", err)
		}
		time.Sleep(100 * time.Second)
		// 4,500,000 at 30,000/s: 150 s.
		wantCut(t, cuts, "a", t0.Add(150*time.Second), 3_000_000)
		wantCut(t, cuts, "b", t0.Add(150*time.Second), 1_500_000)
		if a := checkAccount(t, st, "acc"); a.Balance != 0 {
			t.Fatalf("balance %d", a.Balance)
		}
	})
}

// A top-up made on another node (straight into the store) is found at the
// final check, so the calls go on.
func TestTopUpElsewhereFoundAtFinalCheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 1_000_000, 0)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		t0 := start(t, e, "a", "acc", "4930")
		time.Sleep(30 * time.Second)
		if _, err := st.PostEntry(context.Background(), store.LedgerEntry{Account: "acc", Key: "k", Kind: store.EntryTopUp, Amount: 400_000, Time: time.Now()}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		wantCut(t, cuts, "a", t0.Add(70*time.Second), 1_400_000)
		_ = e
	})
}

func TestStopRefundsTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 10_000_000, 0)
		e, _, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		ctx := context.Background()
		t0 := start(t, e, "a", "acc", "4930")
		// One 60 s window of 20,000/s is held.
		if a := checkAccount(t, st, "acc"); a.Reserved != 1_200_000 {
			t.Fatalf("reserved %d, want 1200000", a.Reserved)
		}
		time.Sleep(10*time.Second + 500*time.Millisecond)
		cdr, err := e.Stop(ctx, "a", time.Time{}, "")
		if err != nil || cdr.BilledSeconds != 11 || cdr.Cost != 220_000 || !cdr.End.Equal(t0.Add(10500*time.Millisecond)) {
			t.Fatalf("Stop = %+v, %v", cdr, err)
		}
		// The settlement waits for the next batch; the money stays held
		// until it is written.
		if a := checkAccount(t, st, "acc"); a.Reserved != 1_200_000 {
			t.Fatalf("before the batch: %+v", a)
		}
		time.Sleep(2 * time.Second)
		a := checkAccount(t, st, "acc")
		if a.Balance != 9_780_000 || a.Reserved != 0 {
			t.Fatalf("after stop: %+v", a)
		}
		// Stopping twice charges once.
		again, err := e.Stop(ctx, "a", time.Now().Add(time.Hour), "other")
		if err != nil || again != cdr {
			t.Fatalf("second Stop = %+v, %v; want the first CDR", again, err)
		}
		if b := checkAccount(t, st, "acc"); b.Balance != a.Balance {
			t.Fatalf("second Stop charged again: %d", b.Balance)
		}
		if _, err := e.Stop(ctx, "never", time.Time{}, ""); !errors.Is(err, billing.ErrUnknownCall) {
			t.Fatalf("Stop of an unknown call: %v", err)
		}
		if s := e.Stats(); s.LiveCalls != 0 || s.Accounts != 0 || s.Stopped != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// Stopping one of two calls frees its money for the other.
func TestStopExtendsTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 3_000_000, 0)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		t0 := start(t, e, "a", "acc", "4930")
		start(t, e, "b", "acc", "3310")
		time.Sleep(90 * time.Second)
		cdr, err := e.Stop(context.Background(), "b", time.Time{}, "")
		if err != nil || cdr.Cost != 900_000 {
			t.Fatalf("Stop b = %+v, %v", cdr, err)
		}
		time.Sleep(time.Minute)
		// a alone: (3,000,000 - 900,000) / 20,000 = 105 s.
		wantCut(t, cuts, "a", t0.Add(105*time.Second), 2_100_000)
	})
}

// Increments: the cut-off falls on the last increment the money buys.
func TestIncrements(t *testing.T) {
	tests := []struct {
		name, callee string
		balance      int64
		after        time.Duration
		secs, cost   int64
	}{
		// 60/60 at 600,000/min on 1,000,000: one minute, not two.
		{"60/60", "1212", 1_000_000, 60 * time.Second, 60, 600_000},
		// 30/6 at 10,000/s on 1,000,000: 30 + 11*6 = 96 s = 960,000.
		{"30/6", "3906", 1_000_000, 96 * time.Second, 96, 960_000},
		// Connect fee 100,000 then 10,000/s on 1,000,000: 90 s.
		{"connect fee", "3491", 1_000_000, 90 * time.Second, 90, 1_000_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				st := newStore(t, "acc", tt.balance, 0)
				e, cuts, stop := run(t, st, "n1", billing.Config{})
				defer stop()
				d, err := e.Authorize(context.Background(), "acc", tt.callee)
				if err != nil || d != tt.after {
					t.Fatalf("Authorize = %v, %v; want %v", d, err, tt.after)
				}
				t0 := start(t, e, "a", "acc", tt.callee)
				time.Sleep(5 * time.Minute)
				wantCut(t, cuts, "a", t0.Add(tt.after), tt.cost)
				if _, c := cuts.at("a"); c.CDR.BilledSeconds != tt.secs {
					t.Fatalf("billed %d s, want %d", c.CDR.BilledSeconds, tt.secs)
				}
				if a := checkAccount(t, st, "acc"); a.Balance != tt.balance-tt.cost {
					t.Fatalf("balance %d", a.Balance)
				}
			})
		})
	}
}

func TestCreditLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 200_000, 800_000)
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		t0 := start(t, e, "a", "acc", "4930")
		time.Sleep(2 * time.Minute)
		wantCut(t, cuts, "a", t0.Add(50*time.Second), 1_000_000)
		if a := checkAccount(t, st, "acc"); a.Balance != -800_000 {
			t.Fatalf("balance %d, want -800000 (the credit limit)", a.Balance)
		}
	})
}

func TestRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 1_000_000, 0)
		addAccount(t, st, "poor", 10_000, 0)
		addAccount(t, st, "off", 1_000_000, 0)
		ctx := context.Background()
		if err := st.UpdateAccount(ctx, "off", func(a store.Account) (store.Account, error) { a.Disabled = true; return a, nil }); err != nil {
			t.Fatal(err)
		}
		e, _, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		for _, tt := range []struct {
			account, dest string
			want          error
		}{
			{"acc", "999", billing.ErrNoTariff},
			{"nobody", "4930", billing.ErrUnknownAccount},
			{"off", "4930", billing.ErrDisabled},
			{"poor", "3491", billing.ErrInsufficientFunds}, // the connect fee alone is 100,000
		} {
			if _, err := e.Authorize(ctx, tt.account, tt.dest); !errors.Is(err, tt.want) {
				t.Errorf("Authorize(%s, %s) = %v, want %v", tt.account, tt.dest, err, tt.want)
			}
			if err := e.Start(ctx, billing.Call{ID: "x-" + tt.account, Account: tt.account, Callee: tt.dest}); !errors.Is(err, tt.want) {
				t.Errorf("Start(%s, %s) = %v, want %v", tt.account, tt.dest, err, tt.want)
			}
		}
		start(t, e, "dup", "acc", "4930")
		if err := e.Start(ctx, billing.Call{ID: "dup", Account: "acc", Callee: "4930"}); !errors.Is(err, billing.ErrDuplicateCall) {
			t.Fatalf("duplicate Start: %v", err)
		}
		if s := e.Stats(); s.LiveCalls != 1 || s.Started != 1 || s.Refused != 8 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// Routine renewals of many accounts share one store transaction.
func TestBatchedRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc-0", 100_000_000, 0)
		for i := 1; i < 20; i++ {
			addAccount(t, st, fmt.Sprint("acc-", i), 100_000_000, 0)
		}
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		for i := range 20 {
			start(t, e, fmt.Sprint("c", i), fmt.Sprint("acc-", i), "4930")
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(5 * time.Minute)
		s := e.Stats()
		if s.LiveCalls != 20 || s.CutOff != 0 || len(cuts.list) != 0 {
			t.Fatalf("stats %+v", s)
		}
		// Every call renewed about six times in 5 minutes, in one batch
		// per round.
		if s.RenewalBatches == 0 || s.RenewalBatches > 10 || s.Renewals < 100 {
			t.Fatalf("%d renewals in %d batches", s.Renewals, s.RenewalBatches)
		}
		for i := range 20 {
			ss, err := st.GetSession(context.Background(), fmt.Sprint("c", i))
			if err != nil || ss.ReservedUntil.Before(time.Now().Add(10*time.Second)) {
				t.Fatalf("session %d: %+v, %v", i, ss, err)
			}
		}
	})
}

// Close writes the settlements still waiting for their batch.
func TestCloseFlushesSettlements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 10_000_000, 0)
		e, _, stop := run(t, st, "n1", billing.Config{})
		start(t, e, "a", "acc", "4930")
		time.Sleep(10 * time.Second)
		if _, err := e.Stop(context.Background(), "a", time.Time{}, ""); err != nil {
			t.Fatal(err)
		}
		stop()
		if a := checkAccount(t, st, "acc"); a.Reserved != 0 || a.Balance != 10_000_000-200_000 {
			t.Fatalf("after Close: %+v", a)
		}
	})
}
