package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrInsufficientFunds reports a reservation that would hold more money than
// an account has (its balance plus its credit limit). Nothing is written when
// it is returned.
var ErrInsufficientFunds = errors.New("store: insufficient funds")

// Account is a prepaid account. Money is in integer micro-units of Currency
// (1 EUR = 1,000,000).
//
// Balance always equals the sum of the account's ledger entries: backends
// change it only together with an entry, in one transaction. Reserved is the
// money held by the account's open sessions; what new calls may still use is
// Available.
type Account struct {
	// ID identifies the account: any non-empty UTF-8 string.
	ID string
	// Currency is an ISO 4217 code such as "EUR"; informational.
	Currency string
	// Balance is the sum of the ledger, set by the backend. CreateAccount
	// requires 0: money arrives through ledger entries.
	Balance int64
	// CreditLimit is how far below zero the balance may go (0 or more).
	CreditLimit int64
	// Reserved is the sum of the Reserved amounts of the account's open
	// sessions, set by the backend.
	Reserved int64
	// Disabled accounts exist but may not start calls.
	Disabled bool
	// CreatedAt and UpdatedAt are set by the backend.
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Available returns the money new reservations may take.
func (a Account) Available() int64 { return a.Balance + a.CreditLimit - a.Reserved }

// Validate reports whether a's own fields can be stored.
func (a Account) Validate() error {
	switch {
	case a.ID == "" || !validText(a.ID):
		return fmt.Errorf("%w: account id must be non-empty UTF-8 without NUL", ErrInvalid)
	case !validText(a.Currency):
		return fmt.Errorf("%w: account %q: currency must be UTF-8 without NUL", ErrInvalid, a.ID)
	case a.CreditLimit < 0:
		return fmt.Errorf("%w: account %q: negative credit limit", ErrInvalid, a.ID)
	}
	return nil
}

// Accounts stores prepaid accounts.
type Accounts interface {
	// CreateAccount stores a new account with a zero balance and nothing
	// reserved. It returns ErrExists for a taken ID and ErrInvalid when
	// a.Validate fails or a.Balance or a.Reserved is not zero.
	CreateAccount(ctx context.Context, a Account) error
	// GetAccount returns the account, or ErrNotFound.
	GetAccount(ctx context.Context, id string) (Account, error)
	// UpdateAccount replaces the account's Currency, CreditLimit and
	// Disabled with what update returns; Balance, Reserved and the ID
	// cannot change this way. update may run more than once and must not
	// have side effects; its error is returned as is.
	UpdateAccount(ctx context.Context, id string, update func(Account) (Account, error)) error
	// ListAccounts returns every account ordered by ID.
	ListAccounts(ctx context.Context) ([]Account, error)
}

// EntryKind says what moved money in a ledger entry.
type EntryKind string

// Ledger entry kinds.
const (
	EntryTopUp      EntryKind = "topup"      // money paid in
	EntryCall       EntryKind = "call"       // the final cost of a call (negative)
	EntryRefund     EntryKind = "refund"     // money given back by an operator
	EntryAdjustment EntryKind = "adjustment" // any other correction, either sign
)

// LedgerEntry is one movement of an account's money.
type LedgerEntry struct {
	// Seq orders entries; set by the backend, increasing within a store.
	Seq int64
	// Account is the account whose balance moves.
	Account string
	// Key makes the entry idempotent: a second entry with the same account
	// and key is refused with ErrExists. Call debits use "call:" + call id.
	Key string
	// Kind says what the movement is.
	Kind EntryKind
	// Amount is the signed change of the balance: positive credits it.
	Amount int64
	// Balance is the account's balance after the entry; set by the backend.
	Balance int64
	// CallID names the call of a call entry; empty otherwise.
	CallID string
	// Note is free text for operators.
	Note string
	// Time is when the entry was made.
	Time time.Time
}

// Validate reports whether e's own fields can be stored.
func (e LedgerEntry) Validate() error {
	switch {
	case e.Account == "" || !validText(e.Account):
		return fmt.Errorf("%w: ledger entry: empty account", ErrInvalid)
	case e.Key == "" || !validText(e.Key):
		return fmt.Errorf("%w: ledger entry of %q: empty idempotency key", ErrInvalid, e.Account)
	case e.Kind != EntryTopUp && e.Kind != EntryCall && e.Kind != EntryRefund && e.Kind != EntryAdjustment:
		return fmt.Errorf("%w: ledger entry of %q: unknown kind %q", ErrInvalid, e.Account, e.Kind)
	case e.Time.IsZero():
		return fmt.Errorf("%w: ledger entry of %q: no time", ErrInvalid, e.Account)
	case !validText(e.CallID) || !validText(e.Note):
		return fmt.Errorf("%w: ledger entry of %q: text is not UTF-8 or holds NUL", ErrInvalid, e.Account)
	}
	return nil
}

// Ledger is the append-only record of every movement of money.
type Ledger interface {
	// PostEntry appends e and adds e.Amount to the account's balance in one
	// transaction, and returns the entry as stored (Seq and Balance set).
	// When the account already has an entry with e.Key, nothing is written
	// and it returns that entry and an error wrapping ErrExists, so a
	// retried top-up is applied once. It returns ErrNotFound for an unknown
	// account and ErrInvalid when e.Validate fails. It does not check the
	// credit limit: operators may adjust below it.
	PostEntry(ctx context.Context, e LedgerEntry) (LedgerEntry, error)
	// ListEntries returns the account's entries with from <= Time < to,
	// ordered by Seq; a zero from or to leaves that end open.
	ListEntries(ctx context.Context, account string, from, to time.Time) ([]LedgerEntry, error)
}

// Tariff prices calls to destinations starting with Prefix during its
// validity period.
type Tariff struct {
	// Prefix is E.164 digits without "+", e.g. "4930"; "" matches every
	// destination (a default rate).
	Prefix string
	// ValidFrom and ValidUntil bound the period the tariff applies to a
	// call answered at t: ValidFrom <= t < ValidUntil. A zero ValidUntil
	// never ends. (Prefix, ValidFrom) identifies the tariff.
	ValidFrom  time.Time
	ValidUntil time.Time
	// PricePerMinute and ConnectFee are in micro-units.
	PricePerMinute int64
	ConnectFee     int64
	// FirstIncrement and NextIncrement are the billing steps in seconds
	// (1/1, 30/6, 60/60): the first FirstIncrement seconds are charged
	// whole, then every started NextIncrement. Both at least 1.
	FirstIncrement int32
	NextIncrement  int32
	// MinDuration is the least number of seconds an answered call is
	// charged, 0 or more.
	MinDuration int32
	// Description is free text ("Germany mobile").
	Description string
}

// TariffKey identifies a tariff.
type TariffKey struct {
	Prefix    string
	ValidFrom time.Time
}

// Key returns the tariff's identity.
func (t Tariff) Key() TariffKey {
	return TariffKey{Prefix: t.Prefix, ValidFrom: TruncateTime(t.ValidFrom)}
}

// ValidAt reports whether t applies to a call answered at now.
func (t Tariff) ValidAt(now time.Time) bool {
	return !now.Before(t.ValidFrom) && (t.ValidUntil.IsZero() || now.Before(t.ValidUntil))
}

// Validate reports whether t can be stored.
func (t Tariff) Validate() error {
	for i := 0; i < len(t.Prefix); i++ {
		if t.Prefix[i] < '0' || t.Prefix[i] > '9' {
			return fmt.Errorf("%w: tariff prefix %q: digits only", ErrInvalid, t.Prefix)
		}
	}
	switch {
	case t.PricePerMinute < 0 || t.ConnectFee < 0:
		return fmt.Errorf("%w: tariff %q: negative price", ErrInvalid, t.Prefix)
	case t.FirstIncrement < 1 || t.NextIncrement < 1:
		return fmt.Errorf("%w: tariff %q: increments must be at least 1 s", ErrInvalid, t.Prefix)
	case t.MinDuration < 0:
		return fmt.Errorf("%w: tariff %q: negative minimum duration", ErrInvalid, t.Prefix)
	case !t.ValidUntil.IsZero() && !t.ValidUntil.After(t.ValidFrom):
		return fmt.Errorf("%w: tariff %q: validity ends before it starts", ErrInvalid, t.Prefix)
	case !validText(t.Description):
		return fmt.Errorf("%w: tariff %q: description is not UTF-8 or holds NUL", ErrInvalid, t.Prefix)
	}
	return nil
}

// Tariffs stores the rate table.
type Tariffs interface {
	// UpsertTariffs inserts or replaces each tariff by its Key,
	// atomically. It returns ErrInvalid, writing nothing, if any fails
	// Validate.
	UpsertTariffs(ctx context.Context, ts []Tariff) error
	// DeleteTariffs removes the tariffs with the given keys; missing ones
	// are ignored.
	DeleteTariffs(ctx context.Context, keys []TariffKey) error
	// ListTariffs returns every tariff ordered by prefix (byte order) and
	// ValidFrom.
	ListTariffs(ctx context.Context) ([]Tariff, error)
}
