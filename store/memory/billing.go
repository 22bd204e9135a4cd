package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/talkpad/talkpad/store"
)

// billing holds the billing tables. One mutex guards them all: a
// reservation reads an account and its sessions and writes both, as one
// transaction does in PostgreSQL. The zero value is ready.
type billing struct {
	mu       sync.Mutex
	accounts map[string]store.Account
	entries  map[string][]store.LedgerEntry // account → entries in Seq order
	keys     map[string]map[string]int      // account → key → index in entries
	seq      int64
	tariffs  map[store.TariffKey]store.Tariff
	sessions map[string]store.Session
	byAcct   map[string]map[string]struct{} // account → its session ids
	cdrs     map[string]store.CDR
}

var _ store.Billing = (*Store)(nil)

// init makes the maps on first use; the caller holds mu.
func (b *billing) init() {
	if b.accounts != nil {
		return
	}
	b.accounts = make(map[string]store.Account)
	b.entries = make(map[string][]store.LedgerEntry)
	b.keys = make(map[string]map[string]int)
	b.tariffs = make(map[store.TariffKey]store.Tariff)
	b.sessions = make(map[string]store.Session)
	b.byAcct = make(map[string]map[string]struct{})
	b.cdrs = make(map[string]store.CDR)
}

func (s *Store) lockBilling() *billing {
	s.bill.mu.Lock()
	s.bill.init()
	return &s.bill
}

// CreateAccount implements store.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := a.Validate(); err != nil {
		return fmt.Errorf("memory: create account: %w", err)
	}
	if a.Balance != 0 || a.Reserved != 0 {
		return fmt.Errorf("memory: create account %q: %w: balance and reservations start at zero", a.ID, store.ErrInvalid)
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	if _, ok := b.accounts[a.ID]; ok {
		return fmt.Errorf("memory: create account %q: %w", a.ID, store.ErrExists)
	}
	now := store.TruncateTime(s.now())
	a.CreatedAt, a.UpdatedAt = now, now
	b.accounts[a.ID] = a
	return nil
}

// GetAccount implements store.Accounts.
func (s *Store) GetAccount(ctx context.Context, id string) (store.Account, error) {
	if err := ctx.Err(); err != nil {
		return store.Account{}, err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	a, ok := b.accounts[id]
	if !ok {
		return store.Account{}, fmt.Errorf("memory: get account %q: %w", id, store.ErrNotFound)
	}
	return a, nil
}

// UpdateAccount implements store.Accounts. The updater runs under the
// store's lock, so it must not call back into the store.
func (s *Store) UpdateAccount(ctx context.Context, id string, update func(store.Account) (store.Account, error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	old, ok := b.accounts[id]
	if !ok {
		return fmt.Errorf("memory: update account %q: %w", id, store.ErrNotFound)
	}
	a, err := update(old)
	if err != nil {
		return err
	}
	a.ID, a.Balance, a.Reserved, a.CreatedAt = old.ID, old.Balance, old.Reserved, old.CreatedAt
	if err := a.Validate(); err != nil {
		return fmt.Errorf("memory: update account: %w", err)
	}
	a.UpdatedAt = store.TruncateTime(s.now())
	b.accounts[id] = a
	return nil
}

// ListAccounts implements store.Accounts.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.lockBilling()
	out := make([]store.Account, 0, len(b.accounts))
	for _, a := range b.accounts {
		out = append(out, a)
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y store.Account) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// PostEntry implements store.Ledger.
func (s *Store) PostEntry(ctx context.Context, e store.LedgerEntry) (store.LedgerEntry, error) {
	if err := ctx.Err(); err != nil {
		return store.LedgerEntry{}, err
	}
	if err := e.Validate(); err != nil {
		return store.LedgerEntry{}, fmt.Errorf("memory: post entry: %w", err)
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	return b.post(e, s.now())
}

// post appends e; the caller holds mu.
func (b *billing) post(e store.LedgerEntry, now time.Time) (store.LedgerEntry, error) {
	a, ok := b.accounts[e.Account]
	if !ok {
		return store.LedgerEntry{}, fmt.Errorf("memory: post entry to %q: %w", e.Account, store.ErrNotFound)
	}
	if i, ok := b.keys[e.Account][e.Key]; ok {
		return b.entries[e.Account][i], fmt.Errorf("memory: post entry %q to %q: %w", e.Key, e.Account, store.ErrExists)
	}
	b.seq++
	a.Balance += e.Amount
	a.UpdatedAt = store.TruncateTime(now)
	e.Seq, e.Balance, e.Time = b.seq, a.Balance, store.TruncateTime(e.Time)
	b.accounts[e.Account] = a
	if b.keys[e.Account] == nil {
		b.keys[e.Account] = make(map[string]int)
	}
	b.keys[e.Account][e.Key] = len(b.entries[e.Account])
	b.entries[e.Account] = append(b.entries[e.Account], e)
	return e, nil
}

// ListEntries implements store.Ledger.
func (s *Store) ListEntries(ctx context.Context, account string, from, to time.Time) ([]store.LedgerEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	var out []store.LedgerEntry
	for _, e := range b.entries[account] {
		if (from.IsZero() || !e.Time.Before(from)) && (to.IsZero() || e.Time.Before(to)) {
			out = append(out, e)
		}
	}
	return out, nil
}

// UpsertTariffs implements store.Tariffs.
func (s *Store) UpsertTariffs(ctx context.Context, ts []store.Tariff) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("memory: upsert tariffs: %w", err)
		}
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	for _, t := range ts {
		t.ValidFrom, t.ValidUntil = store.TruncateTime(t.ValidFrom), store.TruncateTime(t.ValidUntil)
		b.tariffs[t.Key()] = t
	}
	return nil
}

// DeleteTariffs implements store.Tariffs.
func (s *Store) DeleteTariffs(ctx context.Context, keys []store.TariffKey) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	for _, k := range keys {
		k.ValidFrom = store.TruncateTime(k.ValidFrom)
		delete(b.tariffs, k)
	}
	return nil
}

// ListTariffs implements store.Tariffs.
func (s *Store) ListTariffs(ctx context.Context) ([]store.Tariff, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.lockBilling()
	out := make([]store.Tariff, 0, len(b.tariffs))
	for _, t := range b.tariffs {
		out = append(out, t)
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y store.Tariff) int {
		if c := strings.Compare(x.Prefix, y.Prefix); c != 0 {
			return c
		}
		return x.ValidFrom.Compare(y.ValidFrom)
	})
	return out, nil
}

// Reserve implements store.Sessions. fn runs under the store's lock, so it
// must not call back into the store.
func (s *Store) Reserve(ctx context.Context, account string, fn func(store.Account, []store.Session) ([]store.Session, error)) (store.Account, error) {
	as, err := s.ReserveMany(ctx, []string{account}, fn)
	if err != nil {
		return store.Account{}, err
	}
	return as[0], nil
}

// ReserveMany implements store.Sessions. fn runs under the store's lock,
// so it must not call back into the store.
func (s *Store) ReserveMany(ctx context.Context, accounts []string, fn func(store.Account, []store.Session) ([]store.Session, error)) ([]store.Account, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ids := slices.Clone(accounts)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	b := s.lockBilling()
	defer b.mu.Unlock()
	type change struct {
		a  store.Account
		ss []store.Session
	}
	changes := make([]change, 0, len(ids))
	for _, account := range ids {
		a, ok := b.accounts[account]
		if !ok {
			return nil, fmt.Errorf("memory: reserve on %q: %w", account, store.ErrNotFound)
		}
		var open []store.Session
		for id := range b.byAcct[account] {
			open = append(open, b.sessions[id])
		}
		slices.SortFunc(open, func(x, y store.Session) int { return strings.Compare(x.ID, y.ID) })
		cs, err := fn(a, slices.Clone(open))
		if err != nil {
			return nil, err
		}
		reserved := a.Reserved
		for _, c := range cs {
			if err := c.Validate(); err != nil {
				return nil, fmt.Errorf("memory: reserve on %q: %w", account, err)
			}
			if c.Account != account {
				return nil, fmt.Errorf("memory: reserve on %q: %w: session %q names account %q", account, store.ErrInvalid, c.ID, c.Account)
			}
			if old, ok := b.sessions[c.ID]; ok {
				if old.Account != account {
					return nil, fmt.Errorf("memory: reserve on %q: %w: session %q belongs to %q", account, store.ErrInvalid, c.ID, old.Account)
				}
				reserved -= old.Reserved
			}
			reserved += c.Reserved
		}
		if reserved > a.Reserved && reserved > a.Balance+a.CreditLimit {
			return nil, fmt.Errorf("memory: reserve on %q: %w", account, store.ErrInsufficientFunds)
		}
		a.Reserved = reserved
		changes = append(changes, change{a, cs})
	}
	out := make([]store.Account, len(changes))
	now := store.TruncateTime(s.now())
	for i, c := range changes {
		for _, ss := range c.ss {
			b.sessions[ss.ID] = truncSession(ss)
			if b.byAcct[ss.Account] == nil {
				b.byAcct[ss.Account] = make(map[string]struct{})
			}
			b.byAcct[ss.Account][ss.ID] = struct{}{}
		}
		c.a.UpdatedAt = now
		b.accounts[c.a.ID] = c.a
		out[i] = c.a
	}
	return out, nil
}

func truncSession(c store.Session) store.Session {
	c.Setup, c.Answer = store.TruncateTime(c.Setup), store.TruncateTime(c.Answer)
	c.ReservedUntil, c.LastSeen, c.LeaseUntil = store.TruncateTime(c.ReservedUntil), store.TruncateTime(c.LastSeen), store.TruncateTime(c.LeaseUntil)
	c.Tariff.ValidFrom, c.Tariff.ValidUntil = store.TruncateTime(c.Tariff.ValidFrom), store.TruncateTime(c.Tariff.ValidUntil)
	return c
}

func truncCDR(c store.CDR) store.CDR {
	c.Setup, c.Answer, c.End = store.TruncateTime(c.Setup), store.TruncateTime(c.Answer), store.TruncateTime(c.End)
	return c
}

// Settle implements store.Sessions.
func (s *Store) Settle(ctx context.Context, cdr store.CDR) (store.Account, error) {
	if err := ctx.Err(); err != nil {
		return store.Account{}, err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	if err := b.checkSettle(cdr); err != nil {
		return store.Account{}, err
	}
	return b.settle(cdr, s.now()), nil
}

// SettleMany implements store.Sessions.
func (s *Store) SettleMany(ctx context.Context, cdrs []store.CDR) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	var missing []string
	var ok []store.CDR
	seen := make(map[string]bool, len(cdrs))
	for _, cdr := range cdrs {
		err := b.checkSettle(cdr)
		switch {
		case errors.Is(err, store.ErrNotFound) || seen[cdr.CallID]:
			missing = append(missing, cdr.CallID)
			continue
		case err != nil:
			return nil, err
		}
		seen[cdr.CallID] = true
		ok = append(ok, cdr)
	}
	for _, cdr := range ok {
		b.settle(cdr, s.now())
	}
	return missing, nil
}

// checkSettle reports whether cdr can be settled; the caller holds mu.
func (b *billing) checkSettle(cdr store.CDR) error {
	ss, ok := b.sessions[cdr.CallID]
	if !ok {
		return fmt.Errorf("memory: settle %q: %w", cdr.CallID, store.ErrNotFound)
	}
	if _, dup := b.keys[ss.Account][store.CallKey(cdr.CallID)]; dup {
		return fmt.Errorf("memory: settle %q: %w: ledger already holds its debit", cdr.CallID, store.ErrExists)
	}
	return nil
}

// settle writes a checked settlement; the caller holds mu.
func (b *billing) settle(cdr store.CDR, now time.Time) store.Account {
	ss := b.sessions[cdr.CallID]
	cdr.Account = ss.Account
	e := store.LedgerEntry{Account: ss.Account, Key: store.CallKey(cdr.CallID), Kind: store.EntryCall,
		Amount: -cdr.Cost, CallID: cdr.CallID, Time: cdr.End}
	if e.Time.IsZero() {
		e.Time = now
	}
	b.post(e, now)
	delete(b.sessions, cdr.CallID)
	if m := b.byAcct[ss.Account]; m != nil {
		delete(m, cdr.CallID)
		if len(m) == 0 {
			delete(b.byAcct, ss.Account)
		}
	}
	a := b.accounts[ss.Account]
	a.Reserved -= ss.Reserved
	b.accounts[ss.Account] = a
	b.cdrs[cdr.CallID] = truncCDR(cdr)
	return a
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	if err := ctx.Err(); err != nil {
		return store.Session{}, err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	ss, ok := b.sessions[id]
	if !ok {
		return store.Session{}, fmt.Errorf("memory: get session %q: %w", id, store.ErrNotFound)
	}
	return ss, nil
}

func (s *Store) listSessions(ctx context.Context, keep func(store.Session) bool) ([]store.Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.lockBilling()
	var out []store.Session
	for _, ss := range b.sessions {
		if keep(ss) {
			out = append(out, ss)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y store.Session) int { return strings.Compare(x.ID, y.ID) })
	return out, nil
}

// ListSessions implements store.Sessions.
func (s *Store) ListSessions(ctx context.Context, node string) ([]store.Session, error) {
	return s.listSessions(ctx, func(ss store.Session) bool { return node == "" || ss.Node == node })
}

// ListExpiredSessions implements store.Sessions.
func (s *Store) ListExpiredSessions(ctx context.Context, now time.Time) ([]store.Session, error) {
	return s.listSessions(ctx, func(ss store.Session) bool { return !ss.LeaseUntil.After(now) })
}

// RenewLeases implements store.Sessions.
func (s *Store) RenewLeases(ctx context.Context, node string, lastSeen, leaseUntil time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	lastSeen, leaseUntil = store.TruncateTime(lastSeen), store.TruncateTime(leaseUntil)
	b := s.lockBilling()
	defer b.mu.Unlock()
	n := 0
	for id, ss := range b.sessions {
		if ss.Node != node {
			continue
		}
		ss.LastSeen = lastSeen
		if ss.LastSeen.After(ss.ReservedUntil) {
			ss.LastSeen = ss.ReservedUntil
		}
		ss.LeaseUntil = leaseUntil
		b.sessions[id] = ss
		n++
	}
	return n, nil
}

// GetCDR implements store.CDRs.
func (s *Store) GetCDR(ctx context.Context, callID string) (store.CDR, error) {
	if err := ctx.Err(); err != nil {
		return store.CDR{}, err
	}
	b := s.lockBilling()
	defer b.mu.Unlock()
	c, ok := b.cdrs[callID]
	if !ok {
		return store.CDR{}, fmt.Errorf("memory: get CDR %q: %w", callID, store.ErrNotFound)
	}
	return c, nil
}

// ListCDRs implements store.CDRs.
func (s *Store) ListCDRs(ctx context.Context, f store.CDRFilter) ([]store.CDR, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b := s.lockBilling()
	var out []store.CDR
	for _, c := range b.cdrs {
		if (f.Account == "" || c.Account == f.Account) && (f.From.IsZero() || !c.End.Before(f.From)) && (f.To.IsZero() || c.End.Before(f.To)) {
			out = append(out, c)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y store.CDR) int {
		if c := x.End.Compare(y.End); c != 0 {
			return c
		}
		return strings.Compare(x.CallID, y.CallID)
	})
	return out, nil
}
