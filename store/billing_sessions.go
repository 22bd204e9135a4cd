package store

import (
	"context"
	"fmt"
	"time"
)

// Session is the persisted state of one answered, still running call: the
// money held for it and who looks after it. A billing engine keeps its live
// calls in memory and writes a session only when the money held changes
// (every reservation window, not every second), so that a node that dies
// leaves enough behind for another to settle its calls.
type Session struct {
	// ID is the call's id, unique in the store.
	ID string
	// Account pays for the call.
	Account string
	// Node is the engine that owns the call and renews its lease.
	Node string
	// Caller and Callee are the parties, as the CDR will name them.
	Caller string
	Callee string
	// Tariff is the tariff matched when the call was answered; the call is
	// priced with it to the end, whatever happens to the rate table.
	Tariff Tariff
	// Setup and Answer are when the call was set up and answered.
	Setup  time.Time
	Answer time.Time
	// Reserved is the money held for the call from its answer up to
	// ReservedUntil: the call's whole cost up to that instant.
	Reserved      int64
	ReservedUntil time.Time
	// LastSeen is the last instant the owner knew the call was alive:
	// what a call is settled up to when its owner is gone.
	LastSeen time.Time
	// LeaseUntil is when another node may settle the session if its owner
	// has not renewed the lease.
	LeaseUntil time.Time
}

// Validate reports whether s can be stored.
func (s Session) Validate() error {
	switch {
	case s.ID == "" || !validText(s.ID):
		return fmt.Errorf("%w: session id must be non-empty UTF-8", ErrInvalid)
	case s.Account == "":
		return fmt.Errorf("%w: session %q: no account", ErrInvalid, s.ID)
	case s.Reserved < 0:
		return fmt.Errorf("%w: session %q: negative reservation", ErrInvalid, s.ID)
	case s.Answer.IsZero():
		return fmt.Errorf("%w: session %q: not answered", ErrInvalid, s.ID)
	}
	for _, f := range []string{s.Account, s.Node, s.Caller, s.Callee} {
		if !validText(f) {
			return fmt.Errorf("%w: session %q: text is not UTF-8 or holds NUL", ErrInvalid, s.ID)
		}
	}
	if err := s.Tariff.Validate(); err != nil {
		return fmt.Errorf("session %q: %w", s.ID, err)
	}
	return nil
}

// CDR is the record of one finished call.
type CDR struct {
	CallID  string
	Account string
	Caller  string
	Callee  string
	// Prefix is the tariff prefix the callee matched.
	Prefix string
	Setup  time.Time
	Answer time.Time
	End    time.Time
	// BilledSeconds is the duration charged, after increments and the
	// minimum duration.
	BilledSeconds int64
	// Cost is what the call was charged, in micro-units.
	Cost int64
	// Cause says why the call ended: "normal", "credit", "node-lost"...
	Cause string
	// Node is the engine that settled the call.
	Node string
}

// CDRFilter selects CDRs: of Account (all when empty) that ended in
// From <= End < To (a zero bound is open).
type CDRFilter struct {
	Account string
	From    time.Time
	To      time.Time
}

// Sessions persists live calls and settles them. Every method that moves
// money locks the account for its transaction, so engines on several nodes
// sharing one database never overspend an account between them.
type Sessions interface {
	// Reserve runs fn in one transaction with the account locked. fn gets
	// the account and all its open sessions (of every node) ordered by ID,
	// and returns the sessions to insert or replace by ID; the others are
	// left as they are. The account's Reserved becomes the sum of its
	// sessions' Reserved, and Reserve returns the account as written.
	// When that sum grows beyond Balance + CreditLimit it returns
	// ErrInsufficientFunds and writes nothing. It returns ErrNotFound for
	// an unknown account, ErrInvalid for a session that fails Validate or
	// names another account. fn may run more than once and must not have
	// side effects; its error is returned as is.
	Reserve(ctx context.Context, account string, fn func(Account, []Session) ([]Session, error)) (Account, error)
	// ReserveMany is Reserve for several accounts in one transaction, so
	// that a node renews the reservations of many accounts at the cost of
	// one. It locks the accounts in ID order (so two callers cannot
	// deadlock), calls fn once per account in that order, and either
	// writes every change or none: ErrNotFound if an account is missing,
	// ErrInsufficientFunds or ErrInvalid if any account's change breaks
	// Reserve's rules. It returns the accounts as written, in ID order.
	ReserveMany(ctx context.Context, accounts []string, fn func(Account, []Session) ([]Session, error)) ([]Account, error)
	// Settle ends session cdr.CallID in one transaction: it deletes the
	// session (releasing its reservation), posts a ledger entry of kind
	// EntryCall, key "call:" + CallID and amount -cdr.Cost, and stores cdr.
	// The cost may exceed what was reserved. It returns ErrNotFound, writing
	// nothing, when the session does not exist, so of two nodes settling
	// one call only one charges it.
	Settle(ctx context.Context, cdr CDR) (Account, error)
	// SettleMany is Settle for several calls in one transaction, so that a
	// node writes the hang-ups of a second at the cost of one. Calls whose
	// session does not exist are skipped and returned in missing; the
	// others are all settled or, on error, none.
	SettleMany(ctx context.Context, cdrs []CDR) (missing []string, err error)
	// GetSession returns one open session, or ErrNotFound.
	GetSession(ctx context.Context, id string) (Session, error)
	// ListSessions returns the open sessions of node (of every node when
	// node is empty), ordered by ID.
	ListSessions(ctx context.Context, node string) ([]Session, error)
	// ListExpiredSessions returns the sessions whose LeaseUntil is not
	// after now, ordered by ID.
	ListExpiredSessions(ctx context.Context, now time.Time) ([]Session, error)
	// RenewLeases sets LastSeen and LeaseUntil of every session of node
	// (one statement, whatever the number of calls) and returns how many
	// it renewed. LastSeen never moves past a session's ReservedUntil.
	RenewLeases(ctx context.Context, node string, lastSeen, leaseUntil time.Time) (int, error)
}

// CDRs reads the records of finished calls, written by Sessions.Settle.
type CDRs interface {
	// GetCDR returns the CDR of a call, or ErrNotFound.
	GetCDR(ctx context.Context, callID string) (CDR, error)
	// ListCDRs returns the CDRs f selects, ordered by End then CallID.
	ListCDRs(ctx context.Context, f CDRFilter) ([]CDR, error)
}

// Billing is every interface a billing engine needs, for backends that
// implement them all.
type Billing interface {
	Accounts
	Ledger
	Tariffs
	Sessions
	CDRs
}

// CallKey is the ledger key of a call's debit.
func CallKey(callID string) string { return "call:" + callID }
