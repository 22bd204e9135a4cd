package billing

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/talkpad/talkpad/store"
)

// Balance returns the account as stored: its balance (the sum of its
// ledger), credit limit and the money its live calls hold.
func (e *Engine) Balance(ctx context.Context, account string) (store.Account, error) {
	a, err := e.st.GetAccount(ctx, account)
	if err != nil {
		return store.Account{}, fmt.Errorf("billing: balance of %q: %w", account, err)
	}
	return a, nil
}

// Entries returns the account's ledger entries with from <= Time < to
// (zero bounds are open), oldest first.
func (e *Engine) Entries(ctx context.Context, account string, from, to time.Time) ([]store.LedgerEntry, error) {
	es, err := e.st.ListEntries(ctx, account, from, to)
	if err != nil {
		return nil, fmt.Errorf("billing: ledger of %q: %w", account, err)
	}
	return es, nil
}

// CDRHeader is the header row WriteCDRs writes.
var CDRHeader = []string{"call_id", "account", "caller", "callee", "prefix", "setup", "answer", "end",
	"billed_seconds", "cost", "cause", "node"}

// WriteCDRs writes the CDRs f selects to w as CSV (RFC 4180), with a
// header row: times in RFC 3339 UTC with microseconds, cost in integer
// micro-units.
func (e *Engine) WriteCDRs(ctx context.Context, w io.Writer, f store.CDRFilter) error {
	cdrs, err := e.st.ListCDRs(ctx, f)
	if err != nil {
		return fmt.Errorf("billing: export CDRs: %w", err)
	}
	return WriteCDRsCSV(w, cdrs)
}

// WriteCDRsCSV writes cdrs to w as WriteCDRs does.
func WriteCDRsCSV(w io.Writer, cdrs []store.CDR) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CDRHeader); err != nil {
		return fmt.Errorf("billing: write CDRs: %w", err)
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02T15:04:05.000000Z07:00")
	}
	for _, c := range cdrs {
		rec := []string{c.CallID, c.Account, c.Caller, c.Callee, c.Prefix, ts(c.Setup), ts(c.Answer), ts(c.End),
			strconv.FormatInt(c.BilledSeconds, 10), strconv.FormatInt(c.Cost, 10), c.Cause, c.Node}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("billing: write CDRs: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("billing: write CDRs: %w", err)
	}
	return nil
}
