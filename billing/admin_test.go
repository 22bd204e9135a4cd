package billing_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

func TestConfig(t *testing.T) {
	st := memory.New()
	for _, cfg := range []billing.Config{
		{},
		{Store: st, Node: "n", Window: time.Millisecond},
		{Store: st, Node: "n", Window: time.Minute, RenewBefore: time.Minute},
		{Store: st, Node: "n", Lease: time.Second, Heartbeat: 2 * time.Second},
		{Store: st, Node: "n", Retry: -1},
	} {
		if _, err := billing.New(cfg); !errors.Is(err, billing.ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	e, err := billing.New(billing.Config{Store: st})
	if err != nil || e.Node() == "" {
		t.Fatalf("defaults: %v, node %q", err, e.Node())
	}
	e.Close()
	if err := e.Serve(context.Background()); !errors.Is(err, billing.ErrClosed) {
		t.Fatalf("Serve after Close = %v", err)
	}
	if err := e.Start(context.Background(), billing.Call{ID: "x", Account: "a", Callee: ""}); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestLedgerAndCSV(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := newStore(t, "acc", 0, 0)
		e, _, stop := run(t, st, "n1", billing.Config{})
		defer stop()
		ctx := context.Background()
		if _, err := e.TopUp(ctx, "acc", 5_000_000, "pay-1", "card"); err != nil {
			t.Fatal(err)
		}
		t0 := start(t, e, "call-1", "acc", "+4930")
		time.Sleep(90 * time.Second)
		if _, err := e.Stop(ctx, "call-1", time.Time{}, "normal"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the batch settlement
		es, err := e.Entries(ctx, "acc", time.Time{}, time.Time{})
		if err != nil || len(es) != 2 {
			t.Fatalf("entries %+v, %v", es, err)
		}
		if es[0].Kind != store.EntryTopUp || es[0].Note != "card" || es[1].Kind != store.EntryCall || es[1].Amount != -1_800_000 || es[1].Balance != 3_200_000 {
			t.Fatalf("entries %+v", es)
		}
		if a, err := e.Balance(ctx, "acc"); err != nil || a.Balance != 3_200_000 {
			t.Fatalf("Balance = %+v, %v", a, err)
		}
		if _, err := e.Balance(ctx, "nobody"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Balance of an unknown account: %v", err)
		}
		var buf bytes.Buffer
		if err := e.WriteCDRs(ctx, &buf, store.CDRFilter{Account: "acc", From: t0}); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&buf).ReadAll()
		if err != nil || len(recs) != 2 || len(recs[1]) != len(billing.CDRHeader) {
			t.Fatalf("CSV %q, %v", recs, err)
		}
		if r := recs[1]; r[0] != "call-1" || r[8] != "90" || r[9] != "1800000" || r[10] != "normal" || r[11] != "n1" {
			t.Fatalf("CSV row %q", r)
		}
	})
}
