package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/talkpad/talkpad/store"
)

// RunBillingTests runs the conformance suite of the billing interfaces
// (store.Accounts, Ledger, Tariffs, Sessions and CDRs).
func RunBillingTests(t *testing.T, newStore func(t *testing.T) store.Billing) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Billing)
	}{
		{"AccountCreateGet", testAccountCreateGet},
		{"AccountInvalid", testAccountInvalid},
		{"AccountUpdate", testAccountUpdate},
		{"LedgerPost", testLedgerPost},
		{"LedgerIdempotent", testLedgerIdempotent},
		{"LedgerList", testLedgerList},
		{"LedgerConcurrent", testLedgerConcurrent},
		{"Tariffs", testTariffs},
		{"TariffInvalid", testTariffInvalid},
		{"ReserveAndSettle", testReserveSettle},
		{"ReserveInsufficient", testReserveInsufficient},
		{"ReserveFnError", testReserveFnError},
		{"SettleTwice", testSettleTwice},
		{"Leases", testLeases},
		{"CDRFilter", testCDRFilter},
		{"ConcurrentReserve", testConcurrentReserve},
		{"ReserveMany", testReserveMany},
		{"ReserveManyAllOrNothing", testReserveManyAllOrNothing},
		{"ConcurrentReserveMany", testConcurrentReserveMany},
		{"SettleMany", testSettleMany},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every subtest has a store of its own; in parallel they
			// overlap the round trips of a database backend.
			t.Parallel()
			tt.run(t, newStore(t))
		})
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func mkAccount(t *testing.T, s store.Billing, id string, balance, credit int64) {
	t.Helper()
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, store.Account{ID: id, Currency: "EUR", CreditLimit: credit}))
	if balance != 0 {
		_, err := s.PostEntry(ctx, store.LedgerEntry{Account: id, Key: "init", Kind: store.EntryTopUp, Amount: balance, Time: t0})
		mustNil(t, err)
	}
}

// checkLedger verifies the invariant every backend keeps: the balance is
// the sum of the ledger, and the reservations are the sum of the sessions.
func checkLedger(t *testing.T, s store.Billing, id string) store.Account {
	t.Helper()
	ctx := context.Background()
	a, err := s.GetAccount(ctx, id)
	mustNil(t, err)
	es, err := s.ListEntries(ctx, id, time.Time{}, time.Time{})
	mustNil(t, err)
	var sum int64
	for _, e := range es {
		sum += e.Amount
	}
	if sum != a.Balance {
		t.Fatalf("account %q: balance %d, ledger sum %d", id, a.Balance, sum)
	}
	ss, err := s.ListSessions(ctx, "")
	mustNil(t, err)
	var held int64
	for _, x := range ss {
		if x.Account == id {
			held += x.Reserved
		}
	}
	if held != a.Reserved {
		t.Fatalf("account %q: reserved %d, sessions hold %d", id, a.Reserved, held)
	}
	return a
}

var testTariff = store.Tariff{Prefix: "49", PricePerMinute: 600_000, FirstIncrement: 1, NextIncrement: 1}

func mkSession(id, account string, reserved int64) store.Session {
	return store.Session{ID: id, Account: account, Node: "n1", Caller: "alice", Callee: "4930123",
		Tariff: testTariff, Setup: t0, Answer: t0.Add(time.Second), Reserved: reserved,
		ReservedUntil: t0.Add(time.Minute), LastSeen: t0.Add(time.Second), LeaseUntil: t0.Add(2 * time.Minute)}
}

func testAccountCreateGet(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mustNil(t, s.CreateAccount(ctx, store.Account{ID: "acc-1", Currency: "EUR", CreditLimit: 5}))
	mustIs(t, s.CreateAccount(ctx, store.Account{ID: "acc-1"}), store.ErrExists)
	a, err := s.GetAccount(ctx, "acc-1")
	mustNil(t, err)
	if a.Currency != "EUR" || a.CreditLimit != 5 || a.Balance != 0 || a.Disabled || a.CreatedAt.IsZero() {
		t.Fatalf("got %+v", a)
	}
	if a.Available() != 5 {
		t.Fatalf("Available = %d, want 5", a.Available())
	}
	_, err = s.GetAccount(ctx, "nope")
	mustIs(t, err, store.ErrNotFound)
	mustNil(t, s.CreateAccount(ctx, store.Account{ID: "acc-0"}))
	list, err := s.ListAccounts(ctx)
	mustNil(t, err)
	if len(list) != 2 || list[0].ID != "acc-0" || list[1].ID != "acc-1" {
		t.Fatalf("ListAccounts = %+v", list)
	}
}

func testAccountInvalid(t *testing.T, s store.Billing) {
	ctx := context.Background()
	for _, a := range []store.Account{{}, {ID: "x", CreditLimit: -1}, {ID: "x", Balance: 10}, {ID: "x", Reserved: 1}, {ID: "nul\x00"}} {
		mustIs(t, s.CreateAccount(ctx, a), store.ErrInvalid)
	}
	_, err := s.GetAccount(ctx, "x")
	mustIs(t, err, store.ErrNotFound)
}

func testAccountUpdate(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "u", 100, 0)
	mustNil(t, s.UpdateAccount(ctx, "u", func(a store.Account) (store.Account, error) {
		a.Disabled, a.CreditLimit, a.Balance, a.Reserved, a.ID = true, 7, 1_000_000, 99, "other"
		return a, nil
	}))
	a := checkLedger(t, s, "u")
	if !a.Disabled || a.CreditLimit != 7 || a.Balance != 100 || a.Reserved != 0 {
		t.Fatalf("after update: %+v (balance and reservations must not change)", a)
	}
	boom := errors.New("boom")
	mustIs(t, s.UpdateAccount(ctx, "u", func(a store.Account) (store.Account, error) { return a, boom }), boom)
	mustIs(t, s.UpdateAccount(ctx, "u", func(a store.Account) (store.Account, error) { a.CreditLimit = -1; return a, nil }), store.ErrInvalid)
	mustIs(t, s.UpdateAccount(ctx, "missing", func(a store.Account) (store.Account, error) { return a, nil }), store.ErrNotFound)
}

func testLedgerPost(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "l", 0, 0)
	e, err := s.PostEntry(ctx, store.LedgerEntry{Account: "l", Key: "k1", Kind: store.EntryTopUp, Amount: 5_000_000, Note: "card", Time: t0})
	mustNil(t, err)
	if e.Seq == 0 || e.Balance != 5_000_000 || !e.Time.Equal(store.TruncateTime(t0)) {
		t.Fatalf("stored entry %+v", e)
	}
	e2, err := s.PostEntry(ctx, store.LedgerEntry{Account: "l", Key: "k2", Kind: store.EntryAdjustment, Amount: -6_000_000, Time: t0})
	mustNil(t, err)
	if e2.Seq <= e.Seq || e2.Balance != -1_000_000 {
		t.Fatalf("second entry %+v", e2)
	}
	if a := checkLedger(t, s, "l"); a.Balance != -1_000_000 {
		t.Fatalf("balance %d", a.Balance)
	}
	_, err = s.PostEntry(ctx, store.LedgerEntry{Account: "ghost", Key: "k", Kind: store.EntryTopUp, Amount: 1, Time: t0})
	mustIs(t, err, store.ErrNotFound)
	for _, bad := range []store.LedgerEntry{
		{Account: "l", Kind: store.EntryTopUp, Amount: 1, Time: t0},
		{Account: "l", Key: "x", Kind: "gift", Amount: 1, Time: t0},
		{Account: "l", Key: "x", Kind: store.EntryTopUp, Amount: 1},
	} {
		_, err = s.PostEntry(ctx, bad)
		mustIs(t, err, store.ErrInvalid)
	}
	checkLedger(t, s, "l")
}

func testLedgerIdempotent(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "i", 0, 0)
	mkAccount(t, s, "j", 0, 0)
	first, err := s.PostEntry(ctx, store.LedgerEntry{Account: "i", Key: "pay-42", Kind: store.EntryTopUp, Amount: 10, Time: t0})
	mustNil(t, err)
	again, err := s.PostEntry(ctx, store.LedgerEntry{Account: "i", Key: "pay-42", Kind: store.EntryTopUp, Amount: 10, Time: t0.Add(time.Second)})
	mustIs(t, err, store.ErrExists)
	if again.Seq != first.Seq || again.Amount != 10 {
		t.Fatalf("duplicate returned %+v, want the original %+v", again, first)
	}
	// Keys are per account.
	_, err = s.PostEntry(ctx, store.LedgerEntry{Account: "j", Key: "pay-42", Kind: store.EntryTopUp, Amount: 3, Time: t0})
	mustNil(t, err)
	if a := checkLedger(t, s, "i"); a.Balance != 10 {
		t.Fatalf("balance %d after a repeated top-up, want 10", a.Balance)
	}
}

func testLedgerList(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "h", 0, 0)
	for i := range 5 {
		_, err := s.PostEntry(ctx, store.LedgerEntry{Account: "h", Key: fmt.Sprint(i), Kind: store.EntryTopUp, Amount: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Hour)})
		mustNil(t, err)
	}
	es, err := s.ListEntries(ctx, "h", t0.Add(time.Hour), t0.Add(3*time.Hour))
	mustNil(t, err)
	if len(es) != 2 || es[0].Key != "1" || es[1].Key != "2" || es[1].Balance != 1+2+3 {
		t.Fatalf("ListEntries(1h..3h) = %+v", es)
	}
	all, err := s.ListEntries(ctx, "h", time.Time{}, time.Time{})
	mustNil(t, err)
	if len(all) != 5 {
		t.Fatalf("%d entries, want 5", len(all))
	}
}

func testLedgerConcurrent(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "c", 0, 0)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		for range 2 { // every key twice: one must lose
			wg.Go(func() {
				_, err := s.PostEntry(ctx, store.LedgerEntry{Account: "c", Key: fmt.Sprint(i), Kind: store.EntryTopUp, Amount: 1, Time: t0})
				if err != nil && !errors.Is(err, store.ErrExists) {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		mustNil(t, err)
	}
	if a := checkLedger(t, s, "c"); a.Balance != n {
		t.Fatalf("balance %d after %d distinct concurrent top-ups, want %d", a.Balance, n, n)
	}
}

func testTariffs(t *testing.T, s store.Billing) {
	ctx := context.Background()
	until := t0.Add(24 * time.Hour)
	ts := []store.Tariff{
		{Prefix: "4930", PricePerMinute: 10_000, ConnectFee: 5, FirstIncrement: 60, NextIncrement: 60, MinDuration: 10, ValidFrom: t0, ValidUntil: until, Description: "Berlin"},
		{Prefix: "49", PricePerMinute: 20_000, FirstIncrement: 30, NextIncrement: 6},
		{Prefix: "4930", PricePerMinute: 9_000, FirstIncrement: 1, NextIncrement: 1, ValidFrom: until},
		{Prefix: "", PricePerMinute: 1_000_000, FirstIncrement: 1, NextIncrement: 1},
	}
	mustNil(t, s.UpsertTariffs(ctx, ts))
	got, err := s.ListTariffs(ctx)
	mustNil(t, err)
	if len(got) != 4 || got[0].Prefix != "" || got[1].Prefix != "49" || got[2].PricePerMinute != 10_000 || got[3].PricePerMinute != 9_000 {
		t.Fatalf("ListTariffs = %+v", got)
	}
	if g := got[2]; g.ConnectFee != 5 || g.FirstIncrement != 60 || g.MinDuration != 10 || g.Description != "Berlin" ||
		!g.ValidFrom.Equal(store.TruncateTime(t0)) || !g.ValidUntil.Equal(until.Truncate(time.Microsecond)) {
		t.Fatalf("tariff fields changed on the way: %+v", g)
	}
	// Replace by key.
	ts[1].PricePerMinute = 21_000
	mustNil(t, s.UpsertTariffs(ctx, ts[1:2]))
	mustNil(t, s.DeleteTariffs(ctx, []store.TariffKey{ts[0].Key(), {Prefix: "777"}}))
	got, err = s.ListTariffs(ctx)
	mustNil(t, err)
	if len(got) != 3 || got[1].PricePerMinute != 21_000 || got[2].ValidFrom.IsZero() {
		t.Fatalf("after upsert and delete: %+v", got)
	}
}

func testTariffInvalid(t *testing.T, s store.Billing) {
	ctx := context.Background()
	good := store.Tariff{Prefix: "1", PricePerMinute: 1, FirstIncrement: 1, NextIncrement: 1}
	for _, bad := range []store.Tariff{
		{Prefix: "+1", PricePerMinute: 1, FirstIncrement: 1, NextIncrement: 1},
		{Prefix: "1", PricePerMinute: -1, FirstIncrement: 1, NextIncrement: 1},
		{Prefix: "1", FirstIncrement: 0, NextIncrement: 1},
		{Prefix: "1", FirstIncrement: 1, NextIncrement: 1, ValidFrom: t0, ValidUntil: t0},
	} {
		mustIs(t, s.UpsertTariffs(ctx, []store.Tariff{good, bad}), store.ErrInvalid)
	}
	got, err := s.ListTariffs(ctx)
	mustNil(t, err)
	if len(got) != 0 {
		t.Fatalf("a refused batch wrote %d tariffs", len(got))
	}
}

func testReserveSettle(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "r", 1_000_000, 100_000)
	a, err := s.Reserve(ctx, "r", func(a store.Account, open []store.Session) ([]store.Session, error) {
		if len(open) != 0 || a.Balance != 1_000_000 {
			return nil, fmt.Errorf("fn got %+v and %d sessions", a, len(open))
		}
		return []store.Session{mkSession("call-1", "r", 600_000), mkSession("call-2", "r", 300_000)}, nil
	})
	mustNil(t, err)
	if a.Reserved != 900_000 || a.Available() != 200_000 {
		t.Fatalf("after reserve: %+v", a)
	}
	got, err := s.GetSession(ctx, "call-1")
	mustNil(t, err)
	want := store.Session(mkSession("call-1", "r", 600_000))
	if got.Tariff.PricePerMinute != want.Tariff.PricePerMinute || got.Tariff.Prefix != "49" || got.Node != "n1" ||
		!got.Answer.Equal(store.TruncateTime(want.Answer)) || !got.ReservedUntil.Equal(store.TruncateTime(want.ReservedUntil)) ||
		got.Callee != "4930123" || got.Reserved != 600_000 {
		t.Fatalf("GetSession = %+v, want %+v", got, want)
	}
	// Shrinking one reservation and growing another, in one go.
	a, err = s.Reserve(ctx, "r", func(a store.Account, open []store.Session) ([]store.Session, error) {
		if len(open) != 2 || open[0].ID != "call-1" {
			return nil, fmt.Errorf("open sessions %+v", open)
		}
		open[0].Reserved = 100_000
		open[1].Reserved = 1_000_000
		return open, nil
	})
	mustNil(t, err)
	if a.Reserved != 1_100_000 {
		t.Fatalf("reserved %d, want 1100000", a.Reserved)
	}
	cdr := store.CDR{CallID: "call-1", Account: "r", Caller: "alice", Callee: "4930123", Prefix: "49",
		Setup: t0, Answer: t0.Add(time.Second), End: t0.Add(11 * time.Second), BilledSeconds: 10, Cost: 100_000, Cause: "normal", Node: "n1"}
	a, err = s.Settle(ctx, cdr)
	mustNil(t, err)
	if a.Balance != 900_000 || a.Reserved != 1_000_000 {
		t.Fatalf("after settle: %+v", a)
	}
	checkLedger(t, s, "r")
	_, err = s.GetSession(ctx, "call-1")
	mustIs(t, err, store.ErrNotFound)
	c, err := s.GetCDR(ctx, "call-1")
	mustNil(t, err)
	if c.Cost != 100_000 || c.BilledSeconds != 10 || c.Cause != "normal" || c.Prefix != "49" || !c.End.Equal(store.TruncateTime(cdr.End)) {
		t.Fatalf("CDR %+v", c)
	}
	es, err := s.ListEntries(ctx, "r", time.Time{}, time.Time{})
	mustNil(t, err)
	last := es[len(es)-1]
	if last.Kind != store.EntryCall || last.Key != store.CallKey("call-1") || last.Amount != -100_000 || last.CallID != "call-1" {
		t.Fatalf("call entry %+v", last)
	}
	// A cost beyond the reservation is still charged.
	cdr.CallID, cdr.Cost = "call-2", 1_500_000
	a, err = s.Settle(ctx, cdr)
	mustNil(t, err)
	if a.Balance != -600_000 || a.Reserved != 0 {
		t.Fatalf("after second settle: %+v", a)
	}
	checkLedger(t, s, "r")
	_, err = s.GetCDR(ctx, "nope")
	mustIs(t, err, store.ErrNotFound)
	_, err = s.Reserve(ctx, "ghost", func(store.Account, []store.Session) ([]store.Session, error) { return nil, nil })
	mustIs(t, err, store.ErrNotFound)
}

func testReserveInsufficient(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "p", 500, 100)
	_, err := s.Reserve(ctx, "p", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("a", "p", 601)}, nil
	})
	mustIs(t, err, store.ErrInsufficientFunds)
	if a := checkLedger(t, s, "p"); a.Reserved != 0 {
		t.Fatalf("a refused reservation held %d", a.Reserved)
	}
	_, err = s.Reserve(ctx, "p", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("a", "p", 600)}, nil
	})
	mustNil(t, err)
	// The balance drops below what is held (an operator's adjustment):
	// reservations may still shrink, not grow.
	_, err = s.PostEntry(ctx, store.LedgerEntry{Account: "p", Key: "adj", Kind: store.EntryAdjustment, Amount: -400, Time: t0})
	mustNil(t, err)
	_, err = s.Reserve(ctx, "p", func(_ store.Account, open []store.Session) ([]store.Session, error) {
		open[0].Reserved = 601
		return open, nil
	})
	mustIs(t, err, store.ErrInsufficientFunds)
	_, err = s.Reserve(ctx, "p", func(_ store.Account, open []store.Session) ([]store.Session, error) {
		open[0].Reserved = 300
		return open, nil
	})
	mustNil(t, err)
	// A session must name the locked account.
	mkAccount(t, s, "q", 0, 0)
	_, err = s.Reserve(ctx, "q", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("b", "p", 0)}, nil
	})
	mustIs(t, err, store.ErrInvalid)
	_, err = s.Reserve(ctx, "q", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("a", "q", 0)}, nil // "a" belongs to p
	})
	mustIs(t, err, store.ErrInvalid)
	checkLedger(t, s, "p")
	checkLedger(t, s, "q")
}

func testReserveFnError(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "f", 1000, 0)
	boom := errors.New("boom")
	_, err := s.Reserve(ctx, "f", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("a", "f", 10)}, boom
	})
	mustIs(t, err, boom)
	ss, err := s.ListSessions(ctx, "")
	mustNil(t, err)
	if len(ss) != 0 {
		t.Fatal("a failed reservation wrote a session")
	}
}

func testSettleTwice(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "d", 1000, 0)
	_, err := s.Reserve(ctx, "d", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("x", "d", 500)}, nil
	})
	mustNil(t, err)
	cdr := store.CDR{CallID: "x", Account: "d", Answer: t0, End: t0.Add(time.Second), BilledSeconds: 1, Cost: 7}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, notFound := 0, 0
	for range 4 {
		wg.Go(func() {
			_, err := s.Settle(ctx, cdr)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrNotFound):
				notFound++
			default:
				t.Errorf("Settle: %v", err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || notFound != 3 {
		t.Fatalf("4 concurrent settles: %d succeeded, %d not found; want 1 and 3", ok, notFound)
	}
	if a := checkLedger(t, s, "d"); a.Balance != 993 || a.Reserved != 0 {
		t.Fatalf("after settle: %+v", a)
	}
}

func testLeases(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "m", 10_000, 0)
	_, err := s.Reserve(ctx, "m", func(store.Account, []store.Session) ([]store.Session, error) {
		a, b, c := mkSession("a", "m", 1), mkSession("b", "m", 1), mkSession("c", "m", 1)
		c.Node = "n2"
		return []store.Session{a, b, c}, nil
	})
	mustNil(t, err)
	n, err := s.RenewLeases(ctx, "n1", t0.Add(30*time.Second), t0.Add(5*time.Minute))
	mustNil(t, err)
	if n != 2 {
		t.Fatalf("RenewLeases renewed %d, want 2", n)
	}
	exp, err := s.ListExpiredSessions(ctx, t0.Add(2*time.Minute))
	mustNil(t, err)
	if len(exp) != 1 || exp[0].ID != "c" {
		t.Fatalf("expired at +2m: %+v, want c only", exp)
	}
	a, err := s.GetSession(ctx, "a")
	mustNil(t, err)
	if !a.LastSeen.Equal(store.TruncateTime(t0.Add(30*time.Second))) || !a.LeaseUntil.Equal(store.TruncateTime(t0.Add(5*time.Minute))) {
		t.Fatalf("renewed session %+v", a)
	}
	// LastSeen stops at what was reserved.
	_, err = s.RenewLeases(ctx, "n1", t0.Add(time.Hour), t0.Add(2*time.Hour))
	mustNil(t, err)
	a, err = s.GetSession(ctx, "a")
	mustNil(t, err)
	if !a.LastSeen.Equal(a.ReservedUntil) {
		t.Fatalf("LastSeen %v moved past ReservedUntil %v", a.LastSeen, a.ReservedUntil)
	}
	n1, err := s.ListSessions(ctx, "n1")
	mustNil(t, err)
	if len(n1) != 2 || n1[0].ID != "a" || n1[1].ID != "b" {
		t.Fatalf("ListSessions(n1) = %+v", n1)
	}
}

func testCDRFilter(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "x", 1000, 0)
	mkAccount(t, s, "y", 1000, 0)
	for i, acc := range []string{"x", "y", "x"} {
		id := fmt.Sprint("call-", i)
		_, err := s.Reserve(ctx, acc, func(store.Account, []store.Session) ([]store.Session, error) {
			return []store.Session{mkSession(id, acc, 1)}, nil
		})
		mustNil(t, err)
		_, err = s.Settle(ctx, store.CDR{CallID: id, Account: acc, Answer: t0, End: t0.Add(time.Duration(i+1) * time.Minute), Cost: 1, Cause: "normal"})
		mustNil(t, err)
	}
	all, err := s.ListCDRs(ctx, store.CDRFilter{})
	mustNil(t, err)
	if len(all) != 3 || all[0].CallID != "call-0" || all[2].CallID != "call-2" {
		t.Fatalf("all CDRs %+v", all)
	}
	xs, err := s.ListCDRs(ctx, store.CDRFilter{Account: "x", From: t0.Add(2 * time.Minute)})
	mustNil(t, err)
	if len(xs) != 1 || xs[0].CallID != "call-2" {
		t.Fatalf("x from +2m: %+v", xs)
	}
	ys, err := s.ListCDRs(ctx, store.CDRFilter{To: t0.Add(2 * time.Minute)})
	mustNil(t, err)
	if len(ys) != 1 || ys[0].CallID != "call-0" {
		t.Fatalf("until +2m: %+v", ys)
	}
}

// testConcurrentReserve races writers that each try to reserve 100 more
// on one account: the store must serialise them so that exactly as many
// succeed as the money allows.
func testConcurrentReserve(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "z", 1000, 0)
	const n = 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	won := 0
	for i := range n {
		wg.Go(func() {
			_, err := s.Reserve(ctx, "z", func(a store.Account, _ []store.Session) ([]store.Session, error) {
				if a.Available() < 100 {
					return nil, store.ErrInsufficientFunds
				}
				return []store.Session{mkSession(fmt.Sprint("c", i), "z", 100)}, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won++
			case !errors.Is(err, store.ErrInsufficientFunds):
				t.Errorf("Reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if a := checkLedger(t, s, "z"); won != 10 || a.Reserved != 1000 {
		t.Fatalf("%d reservations of 100 won on 1000 (reserved %d); want 10", won, a.Reserved)
	}
}

func testReserveMany(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "m2", 1000, 0)
	mkAccount(t, s, "m1", 1000, 0)
	mkAccount(t, s, "m3", 1000, 0)
	_, err := s.Reserve(ctx, "m2", func(store.Account, []store.Session) ([]store.Session, error) {
		return []store.Session{mkSession("x", "m2", 100), mkSession("y", "m2", 200)}, nil
	})
	mustNil(t, err)
	var seen []string
	as, err := s.ReserveMany(ctx, []string{"m2", "m1", "m2"}, func(a store.Account, open []store.Session) ([]store.Session, error) {
		seen = append(seen, a.ID)
		switch a.ID {
		case "m1":
			if len(open) != 0 {
				return nil, fmt.Errorf("m1 has %d sessions", len(open))
			}
			return []store.Session{mkSession("z", "m1", 400)}, nil
		case "m2":
			if len(open) != 2 || open[0].ID != "x" || open[1].ID != "y" {
				return nil, fmt.Errorf("m2 sessions %+v", open)
			}
			open[0].Reserved = 50
			return open[:1], nil
		}
		return nil, fmt.Errorf("unexpected account %q", a.ID)
	})
	mustNil(t, err)
	if len(as) != 2 || as[0].ID != "m1" || as[0].Reserved != 400 || as[1].ID != "m2" || as[1].Reserved != 250 {
		t.Fatalf("ReserveMany returned %+v", as)
	}
	if got := fmt.Sprint(seen[len(seen)-2:]); got != "[m1 m2]" {
		t.Fatalf("fn called for %v, want each account once in ID order", seen)
	}
	checkLedger(t, s, "m1")
	checkLedger(t, s, "m2")
	_, err = s.ReserveMany(ctx, []string{"m1", "ghost"}, func(store.Account, []store.Session) ([]store.Session, error) { return nil, nil })
	mustIs(t, err, store.ErrNotFound)
}

func testReserveManyAllOrNothing(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "o1", 1000, 0)
	mkAccount(t, s, "o2", 1000, 0)
	_, err := s.ReserveMany(ctx, []string{"o1", "o2"}, func(a store.Account, _ []store.Session) ([]store.Session, error) {
		if a.ID == "o1" {
			return []store.Session{mkSession("fine", "o1", 500)}, nil
		}
		return []store.Session{mkSession("greedy", "o2", 1001)}, nil
	})
	mustIs(t, err, store.ErrInsufficientFunds)
	for _, id := range []string{"o1", "o2"} {
		if a := checkLedger(t, s, id); a.Reserved != 0 {
			t.Fatalf("account %s holds %d after a refused batch", id, a.Reserved)
		}
	}
	boom := errors.New("boom")
	_, err = s.ReserveMany(ctx, []string{"o1", "o2"}, func(a store.Account, _ []store.Session) ([]store.Session, error) {
		if a.ID == "o2" {
			return nil, boom
		}
		return []store.Session{mkSession("fine", "o1", 500)}, nil
	})
	mustIs(t, err, boom)
	if _, err := s.GetSession(ctx, "fine"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a failed batch wrote a session: %v", err)
	}
}

// testConcurrentReserveMany races batches over overlapping accounts in
// different orders: they must neither deadlock nor lose a reservation.
func testConcurrentReserveMany(t *testing.T, s store.Billing) {
	ctx := context.Background()
	ids := []string{"k0", "k1", "k2", "k3"}
	for _, id := range ids {
		mkAccount(t, s, id, 1_000_000, 0)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 5 {
				batch := []string{ids[(w+i)%4], ids[(w+i+1)%4], ids[(w+3*i)%4]}
				_, err := s.ReserveMany(ctx, batch, func(a store.Account, _ []store.Session) ([]store.Session, error) {
					return []store.Session{mkSession(fmt.Sprintf("%s-w%d-%d", a.ID, w, i), a.ID, 10)}, nil
				})
				if err != nil {
					t.Errorf("ReserveMany: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		checkLedger(t, s, id)
	}
}

func testSettleMany(t *testing.T, s store.Billing) {
	ctx := context.Background()
	mkAccount(t, s, "s1", 10_000, 0)
	mkAccount(t, s, "s2", 10_000, 0)
	_, err := s.ReserveMany(ctx, []string{"s1", "s2"}, func(a store.Account, _ []store.Session) ([]store.Session, error) {
		if a.ID == "s1" {
			return []store.Session{mkSession("a", "s1", 1000), mkSession("b", "s1", 2000)}, nil
		}
		return []store.Session{mkSession("c", "s2", 3000)}, nil
	})
	mustNil(t, err)
	cdr := func(id, acct string, cost int64) store.CDR {
		return store.CDR{CallID: id, Account: acct, Caller: "x", Callee: "49", Prefix: "49", Answer: t0,
			End: t0.Add(time.Duration(cost) * time.Millisecond), BilledSeconds: cost / 100, Cost: cost, Cause: "normal", Node: "n1"}
	}
	missing, err := s.SettleMany(ctx, []store.CDR{cdr("b", "s1", 700), cdr("ghost", "s1", 5), cdr("c", "s2", 300), cdr("a", "s1", 100), cdr("a", "s1", 100)})
	mustNil(t, err)
	if fmt.Sprint(missing) != "[ghost a]" {
		t.Fatalf("missing %v, want [ghost a] (unknown, and a repeat)", missing)
	}
	a1, a2 := checkLedger(t, s, "s1"), checkLedger(t, s, "s2")
	if a1.Balance != 10_000-800 || a1.Reserved != 0 || a2.Balance != 10_000-300 || a2.Reserved != 0 {
		t.Fatalf("after SettleMany: %+v %+v", a1, a2)
	}
	es, err := s.ListEntries(ctx, "s1", time.Time{}, time.Time{})
	mustNil(t, err)
	if len(es) != 3 || es[1].Balance+es[2].Balance != (10_000-700)+(10_000-800) {
		t.Fatalf("running balances of the entries: %+v", es)
	}
	c, err := s.GetCDR(ctx, "c")
	mustNil(t, err)
	if c.Cost != 300 || c.Account != "s2" || c.Node != "n1" {
		t.Fatalf("CDR %+v", c)
	}
	missing, err = s.SettleMany(ctx, []store.CDR{cdr("a", "s1", 1)})
	mustNil(t, err)
	if len(missing) != 1 {
		t.Fatalf("settled twice: missing %v", missing)
	}
	if a := checkLedger(t, s, "s1"); a.Balance != 10_000-800 {
		t.Fatalf("balance %d after a repeated settlement", a.Balance)
	}
}
