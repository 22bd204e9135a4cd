package billing_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/internal/pgtest"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/postgres"
)

// These tests run in real time against the database in
// TALKPAD_TEST_POSTGRES (skipped when unset), with prices high enough that
// money runs out within seconds.

// fast is 100,000/s, 1/1.
var fast = store.Tariff{Prefix: "7", PricePerMinute: 6_000_000, FirstIncrement: 1, NextIncrement: 1}

func openPG(t *testing.T, dsn, schema string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, postgres.Config{DSN: dsn, Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// realEngine runs an engine in real time; stop closes it.
func realEngine(t *testing.T, st store.Billing, node string, cfg billing.Config) (*billing.Engine, *cutoffs, func()) {
	t.Helper()
	cuts := &cutoffs{}
	cfg.Store, cfg.Node, cfg.OnCutoff, cfg.Logger = st, node, cuts.record, slog.New(slog.DiscardHandler)
	e, err := billing.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	// Serve loads the tariffs first; wait for them.
	for deadline := time.Now().Add(10 * time.Second); e.Tariffs().Len() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("engine did not load its tariffs")
		}
		time.Sleep(5 * time.Millisecond)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			e.Close()
		})
	}
	t.Cleanup(stop)
	return e, cuts, stop
}

var quick = billing.Config{Window: 2 * time.Second, RenewBefore: 500 * time.Millisecond, Lease: 3 * time.Second, Heartbeat: 250 * time.Millisecond}

// Two engines on two nodes share one account through one database: the
// money is never overspent, and when it ends less than one second of
// either call's price is left.
func TestTwoEnginesPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	t.Run("direct", func(t *testing.T) { twoEngines(t, dsn, dsn) })
	// The second node through PgBouncer in transaction pooling mode.
	t.Run("pgbouncer", func(t *testing.T) { twoEngines(t, dsn, pgtest.PgBouncer(t, dsn)) })
}

func twoEngines(t *testing.T, dsn, dsn2 string) {
	schema := pgtest.Schema(t, dsn)
	st1 := openPG(t, dsn, schema)
	ctx := context.Background()
	if err := st1.UpsertTariffs(ctx, []store.Tariff{fast}); err != nil {
		t.Fatal(err)
	}
	st2 := openPG(t, dsn2, schema)
	addAccount(t, st1, "shared", 500_000, 0) // 5 call-seconds in all
	e1, cuts1, _ := realEngine(t, st1, "n1", quick)
	e2, cuts2, _ := realEngine(t, st2, "n2", quick)
	if err := e1.Start(ctx, billing.Call{ID: "a", Account: "shared", Callee: "71"}); err != nil {
		t.Fatal(err)
	}
	if err := e2.Start(ctx, billing.Call{ID: "b", Account: "shared", Callee: "72"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		w1, _ := cuts1.at("a")
		w2, _ := cuts2.at("b")
		if !w1.IsZero() && !w2.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("calls not cut off within 15 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	a := checkAccount(t, st1, "shared")
	if a.Reserved != 0 || a.Balance < 0 || a.Balance >= 100_000 {
		t.Fatalf("after both calls: %+v; want 0 <= balance < one second's price", a)
	}
	cdrs, err := st1.ListCDRs(ctx, store.CDRFilter{Account: "shared"})
	if err != nil || len(cdrs) != 2 {
		t.Fatalf("CDRs %+v, %v", cdrs, err)
	}
	if got := cdrs[0].Cost + cdrs[1].Cost; got != 500_000-a.Balance {
		t.Fatalf("CDRs cost %d, the balance moved by %d", got, 500_000-a.Balance)
	}
}

// An engine is killed with live calls; a new one on the same node settles
// them up to their last heartbeat and releases the rest.
func TestRestartPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	st := openPG(t, dsn, schema)
	ctx := context.Background()
	if err := st.UpsertTariffs(ctx, []store.Tariff{de}); err != nil {
		t.Fatal(err)
	}
	addAccount(t, st, "r", 100_000_000, 0)
	st1 := openPG(t, dsn, schema)
	e1, _, stop1 := realEngine(t, st1, "n1", quick)
	for i := range 3 {
		if err := e1.Start(ctx, billing.Call{ID: fmt.Sprint("r", i), Account: "r", Callee: "4930"}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(1200 * time.Millisecond)
	stop1()
	st1.Close() // the node is gone
	before, err := st.ListSessions(ctx, "n1")
	if err != nil || len(before) != 3 {
		t.Fatalf("sessions left: %d, %v", len(before), err)
	}
	var want int64
	for _, s := range before {
		_, cost := billing.Rate(s.Tariff, s.LastSeen.Sub(s.Answer))
		want += cost
		if s.LastSeen.Before(s.Answer.Add(500 * time.Millisecond)) {
			t.Fatalf("session %s last seen %v after answer: heartbeats did not run", s.ID, s.LastSeen.Sub(s.Answer))
		}
	}
	e2, _, _ := realEngine(t, openPG(t, dsn, schema), "n1", quick)
	for deadline := time.Now().Add(10 * time.Second); e2.Stats().Reconciled != 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("reconciled %d, want 3", e2.Stats().Reconciled)
		}
	}
	a := checkAccount(t, st, "r")
	if a.Reserved != 0 || a.Balance != 100_000_000-want {
		t.Fatalf("after the restart: %+v; want balance %d", a, 100_000_000-want)
	}
	left, err := st.ListSessions(ctx, "")
	if err != nil || len(left) != 0 {
		t.Fatalf("sessions left after the restart: %d, %v", len(left), err)
	}
}

// The property test against PostgreSQL, two engines with their own pools,
// one through PgBouncer when it is installed.
func TestPropertyPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	st := openPG(t, dsn, schema)
	if err := st.UpsertTariffs(context.Background(), []store.Tariff{de, fr, uk, perMn, s306, fee}); err != nil {
		t.Fatal(err)
	}
	propertyRun(t, st, 1, 150, 10*time.Millisecond, quick, realEngine)
}
