package billing_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
)

// flaky is a store that fails every call while down, as a database outage
// does.
type flaky struct {
	store.Billing
	down atomic.Bool
}

var errDown = errors.New("connection refused")

func (f *flaky) err() error {
	if f.down.Load() {
		return errDown
	}
	return nil
}

func (f *flaky) GetAccount(ctx context.Context, id string) (store.Account, error) {
	if err := f.err(); err != nil {
		return store.Account{}, err
	}
	return f.Billing.GetAccount(ctx, id)
}

func (f *flaky) Reserve(ctx context.Context, id string, fn func(store.Account, []store.Session) ([]store.Session, error)) (store.Account, error) {
	if err := f.err(); err != nil {
		return store.Account{}, err
	}
	return f.Billing.Reserve(ctx, id, fn)
}

func (f *flaky) ReserveMany(ctx context.Context, ids []string, fn func(store.Account, []store.Session) ([]store.Session, error)) ([]store.Account, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Billing.ReserveMany(ctx, ids, fn)
}

func (f *flaky) Settle(ctx context.Context, cdr store.CDR) (store.Account, error) {
	if err := f.err(); err != nil {
		return store.Account{}, err
	}
	return f.Billing.Settle(ctx, cdr)
}

func (f *flaky) RenewLeases(ctx context.Context, node string, seen, until time.Time) (int, error) {
	if err := f.err(); err != nil {
		return 0, err
	}
	return f.Billing.RenewLeases(ctx, node, seen, until)
}

func (f *flaky) ListExpiredSessions(ctx context.Context, now time.Time) ([]store.Session, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Billing.ListExpiredSessions(ctx, now)
}

func (f *flaky) ListTariffs(ctx context.Context) ([]store.Tariff, error) {
	if err := f.err(); err != nil {
		return nil, err
	}
	return f.Billing.ListTariffs(ctx)
}

// During a database outage live calls run on what was already reserved,
// end when that runs out, and are settled once the database is back; no
// new call is authorized meanwhile.
func TestStoreOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newStore(t, "acc", 10_000_000, 0)
		st := &flaky{Billing: mem}
		e, cuts, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		ctx := context.Background()
		t0 := start(t, e, "a", "acc", "4930")
		time.Sleep(5 * time.Second)
		st.down.Store(true)
		if _, err := e.Authorize(ctx, "acc", "4930"); !errors.Is(err, billing.ErrUnavailable) {
			t.Fatalf("Authorize during the outage: %v", err)
		}
		if err := e.Start(ctx, billing.Call{ID: "b", Account: "acc", Callee: "4930"}); !errors.Is(err, billing.ErrUnavailable) {
			t.Fatalf("Start during the outage: %v", err)
		}
		// The first window (60 s) was reserved: the call runs to its end
		// and no further.
		time.Sleep(54 * time.Second)
		if when, _ := cuts.at("a"); !when.IsZero() {
			t.Fatalf("cut off at +%v, inside the reserved window", when.Sub(t0))
		}
		time.Sleep(10 * time.Second)
		when, c := cuts.at("a")
		if !when.Equal(t0.Add(time.Minute)) || c.Cause != billing.CauseUnavailable || c.CDR.Cost != 1_200_000 {
			t.Fatalf("cut off at +%v cause %q cost %d; want +1m0s %q 1200000", when.Sub(t0), c.Cause, c.CDR.Cost, billing.CauseUnavailable)
		}
		if s := e.Stats(); s.PendingSettlements != 1 {
			t.Fatalf("pending settlements %d, want 1", s.PendingSettlements)
		}
		st.down.Store(false)
		time.Sleep(time.Minute) // a heartbeat retries the settlement
		if s := e.Stats(); s.PendingSettlements != 0 {
			t.Fatalf("pending settlements %d after the outage", s.PendingSettlements)
		}
		if a := checkAccount(t, mem, "acc"); a.Balance != 8_800_000 || a.Reserved != 0 {
			t.Fatalf("after the outage: %+v", a)
		}
		if _, err := e.Authorize(ctx, "acc", "4930"); err != nil {
			t.Fatalf("Authorize after the outage: %v", err)
		}
	})
}

// A node dies with live calls: the same node restarted settles them up to
// its last heartbeat and refunds the rest.
func TestRestartSettlesOwnCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 10_000_000, 0)
		// Heartbeat every 10 s.
		cfg := billing.Config{Window: 60 * time.Second, Lease: 60 * time.Second, Heartbeat: 10 * time.Second}
		e1, _, stop1 := run(t, st, "n1", cfg)
		t0 := start(t, e1, "a", "acc", "4930")
		start(t, e1, "b", "acc", "3310")
		time.Sleep(25 * time.Second)
		stop1() // the node dies: nothing is settled
		if a := checkAccount(t, st, "acc"); a.Reserved == 0 || a.Balance != 10_000_000 {
			t.Fatalf("after the crash: %+v", a)
		}
		time.Sleep(time.Minute)
		e2, _, stop2 := run(t, st, "n1", cfg)
		defer stop2()
		// Last heartbeat at +20s: a 20 s at 20,000/s, b 20 s at 10,000/s.
		a := checkAccount(t, st, "acc")
		if a.Reserved != 0 || a.Balance != 10_000_000-400_000-200_000 {
			t.Fatalf("after the restart: %+v", a)
		}
		cdr, err := st.GetCDR(context.Background(), "a")
		if err != nil || cdr.Cause != billing.CauseNodeLost || !cdr.End.Equal(store.TruncateTime(t0.Add(20*time.Second))) {
			t.Fatalf("CDR of a: %+v, %v", cdr, err)
		}
		if s := e2.Stats(); s.Reconciled != 2 {
			t.Fatalf("reconciled %d, want 2", s.Reconciled)
		}
	})
}

// Another node settles a dead node's calls once their leases lapse; the
// dead node, if it comes back, finds its calls gone and cuts them off.
func TestOtherNodeTakesOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := newStore(t, "acc", 10_000_000, 0)
		st1 := &flaky{Billing: mem}
		cfg := billing.Config{Window: 60 * time.Second, Lease: 60 * time.Second, Heartbeat: 10 * time.Second}
		e1, cuts1, stop1 := run(t, st1, "n1", cfg)
		defer stop1()
		e2, _, stop2 := run(t, mem, "n2", cfg)
		defer stop2()
		t0 := start(t, e1, "a", "acc", "4930")
		time.Sleep(15 * time.Second)
		st1.down.Store(true) // n1 loses the database
		time.Sleep(80 * time.Second)
		// n1 cut its call at the end of its window (+60s); n2 settled
		// the session once the lease lapsed (+10s + 60s), up to n1's
		// last heartbeat (+10s).
		if s := e2.Stats(); s.Reconciled != 1 {
			t.Fatalf("n2 reconciled %d, want 1", s.Reconciled)
		}
		cdr, err := mem.GetCDR(context.Background(), "a")
		if err != nil || cdr.Node != "n2" || cdr.BilledSeconds != 10 {
			t.Fatalf("CDR %+v, %v", cdr, err)
		}
		when, _ := cuts1.at("a")
		if !when.Equal(t0.Add(time.Minute)) {
			t.Fatalf("n1 cut its call at +%v, want +1m", when.Sub(t0))
		}
		st1.down.Store(false)
		time.Sleep(30 * time.Second)
		// n1's own settlement is refused (already settled): charged once.
		if a := checkAccount(t, mem, "acc"); a.Balance != 10_000_000-200_000 || a.Reserved != 0 {
			t.Fatalf("account %+v", a)
		}
		if s := e1.Stats(); s.PendingSettlements != 0 {
			t.Fatalf("n1 still has %d pending settlements", s.PendingSettlements)
		}
	})
}
