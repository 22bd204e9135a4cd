package billing_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// A prepaid account with 1.00 EUR calls a destination at 1.20 EUR a
// minute: the call may last 50 seconds; hung up after 10.5 seconds it is
// billed 11.
func Example() {
	ctx := context.Background()
	st := memory.New()
	st.UpsertTariffs(ctx, []store.Tariff{{Prefix: "49", PricePerMinute: 1_200_000, FirstIncrement: 1, NextIncrement: 1}})
	st.CreateAccount(ctx, store.Account{ID: "alice", Currency: "EUR"})

	e, _ := billing.New(billing.Config{
		Store:    st,
		Node:     "node-1",
		OnCutoff: func(c billing.Cutoff) { fmt.Println("hang up", c.CallID) },
		Logger:   slog.New(slog.DiscardHandler),
	})
	defer e.Close()
	e.ReloadTariffs(ctx) // Serve does this, and keeps the leases
	e.TopUp(ctx, "alice", 1_000_000, "payment-1", "card")

	max, _ := e.Authorize(ctx, "alice", "+4930123456")
	fmt.Println("authorized for", max)
	answer := time.Now()
	e.Start(ctx, billing.Call{ID: "call-1", Account: "alice", Callee: "+4930123456", Answer: answer})
	cdr, _ := e.Stop(ctx, "call-1", answer.Add(10500*time.Millisecond), "normal")
	fmt.Println("billed", cdr.BilledSeconds, "s:", cdr.Cost, "µEUR")
	a, _ := e.Balance(ctx, "alice")
	fmt.Println("balance:", a.Balance, "reserved:", a.Reserved)
	// Output:
	// authorized for 50s
	// billed 11 s: 220000 µEUR
	// balance: 780000 reserved: 0
}

func ExampleWriteCDRsCSV() {
	answer := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	billing.WriteCDRsCSV(os.Stdout, []store.CDR{{
		CallID: "call-1", Account: "alice", Caller: "alice", Callee: "+4930123456", Prefix: "49",
		Setup: answer.Add(-4 * time.Second), Answer: answer, End: answer.Add(10500 * time.Millisecond),
		BilledSeconds: 11, Cost: 220_000, Cause: "normal", Node: "node-1",
	}})
	// Output:
	// call_id,account,caller,callee,prefix,setup,answer,end,billed_seconds,cost,cause,node
	// call-1,alice,alice,+4930123456,49,2026-05-01T11:59:56.000000Z,2026-05-01T12:00:00.000000Z,2026-05-01T12:00:10.500000Z,11,220000,normal,node-1
}
