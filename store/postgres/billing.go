package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/talkpad/talkpad/store"
)

var _ store.Billing = (*Store)(nil)

// Lock order: every transaction that touches an account's money locks the
// account row first and its session rows after, so two of them (two nodes
// reserving and settling for one account) never wait on each other in a
// cycle.

func scanAccount(row pgx.Row) (store.Account, error) {
	var a store.Account
	err := row.Scan(&a.ID, &a.Currency, &a.Balance, &a.CreditLimit, &a.Reserved, &a.Disabled, &a.CreatedAt, &a.UpdatedAt)
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, err
}

// CreateAccount implements store.Accounts.
func (s *Store) CreateAccount(ctx context.Context, a store.Account) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("postgres: create account: %w", err)
	}
	if a.Balance != 0 || a.Reserved != 0 {
		return fmt.Errorf("postgres: create account %q: %w: balance and reservations start at zero", a.ID, store.ErrInvalid)
	}
	tag, err := s.pool.Exec(ctx, s.bq().createAccount, a.ID, a.Currency, a.CreditLimit, a.Disabled)
	if err != nil {
		return fmt.Errorf("postgres: create account %q: %w", a.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: create account %q: %w", a.ID, store.ErrExists)
	}
	return nil
}

// GetAccount implements store.Accounts.
func (s *Store) GetAccount(ctx context.Context, id string) (store.Account, error) {
	a, err := scanAccount(s.pool.QueryRow(ctx, s.bq().getAccount, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Account{}, fmt.Errorf("postgres: get account %q: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Account{}, fmt.Errorf("postgres: get account %q: %w", id, err)
	}
	return a, nil
}

// UpdateAccount implements store.Accounts. The row is locked for the
// transaction, so concurrent updates apply one after the other.
func (s *Store) UpdateAccount(ctx context.Context, id string, update func(store.Account) (store.Account, error)) error {
	var updaterErr error
	q := s.bq()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		old, err := scanAccount(tx.QueryRow(ctx, q.getAccountForUpdate, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		a, err := update(old)
		if err != nil {
			updaterErr = err
			return err
		}
		a.ID = old.ID
		if err := a.Validate(); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, q.updateAccount, id, a.Currency, a.CreditLimit, a.Disabled)
		return err
	})
	if updaterErr != nil {
		return updaterErr
	}
	if err != nil {
		return fmt.Errorf("postgres: update account %q: %w", id, err)
	}
	return nil
}

// ListAccounts implements store.Accounts.
func (s *Store) ListAccounts(ctx context.Context) ([]store.Account, error) {
	rows, err := s.pool.Query(ctx, s.bq().listAccounts)
	if err != nil {
		return nil, fmt.Errorf("postgres: list accounts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) { return scanAccount(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list accounts: %w", err)
	}
	return out, nil
}

func scanEntry(row pgx.Row) (store.LedgerEntry, error) {
	var e store.LedgerEntry
	var kind string
	err := row.Scan(&e.Seq, &e.Account, &e.Key, &kind, &e.Amount, &e.Balance, &e.CallID, &e.Note, &e.Time)
	e.Kind, e.Time = store.EntryKind(kind), e.Time.UTC()
	return e, err
}

// errDuplicateEntry rolls back a post whose key exists.
var errDuplicateEntry = errors.New("duplicate ledger key")

// PostEntry implements store.Ledger.
func (s *Store) PostEntry(ctx context.Context, e store.LedgerEntry) (store.LedgerEntry, error) {
	if err := e.Validate(); err != nil {
		return store.LedgerEntry{}, fmt.Errorf("postgres: post entry: %w", err)
	}
	q := s.bq()
	e.Time = store.TruncateTime(e.Time)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := scanAccount(tx.QueryRow(ctx, q.creditBalance, e.Account, e.Amount, 0))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		e.Balance = a.Balance
		err = tx.QueryRow(ctx, q.insertEntry, e.Account, e.Key, string(e.Kind), e.Amount, e.Balance, e.CallID, e.Note, e.Time).Scan(&e.Seq)
		if errors.Is(err, pgx.ErrNoRows) {
			return errDuplicateEntry
		}
		return err
	})
	if errors.Is(err, errDuplicateEntry) {
		old, err := scanEntry(s.pool.QueryRow(ctx, q.getEntry, e.Account, e.Key))
		if err != nil {
			return store.LedgerEntry{}, fmt.Errorf("postgres: post entry %q to %q: read the existing entry: %w", e.Key, e.Account, err)
		}
		return old, fmt.Errorf("postgres: post entry %q to %q: %w", e.Key, e.Account, store.ErrExists)
	}
	if err != nil {
		return store.LedgerEntry{}, fmt.Errorf("postgres: post entry to %q: %w", e.Account, err)
	}
	return e, nil
}

// nullTime stores a zero time as NULL, meaning "open" or "unknown".
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = store.TruncateTime(t)
	return &t
}

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// ListEntries implements store.Ledger.
func (s *Store) ListEntries(ctx context.Context, account string, from, to time.Time) ([]store.LedgerEntry, error) {
	rows, err := s.pool.Query(ctx, s.bq().listEntries, account, nullTime(from), nullTime(to))
	if err != nil {
		return nil, fmt.Errorf("postgres: list ledger of %q: %w", account, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.LedgerEntry, error) { return scanEntry(r) })
	if err != nil {
		return nil, fmt.Errorf("postgres: list ledger of %q: %w", account, err)
	}
	return out, nil
}

// UpsertTariffs implements store.Tariffs: one statement over arrays, so a
// 100,000-row rate table loads in one round trip.
func (s *Store) UpsertTariffs(ctx context.Context, ts []store.Tariff) error {
	if len(ts) == 0 {
		return ctx.Err()
	}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("postgres: upsert tariffs: %w", err)
		}
	}
	// One statement cannot update a row twice: of several tariffs with
	// one key, the last wins, as in the memory backend.
	last := make(map[store.TariffKey]int, len(ts))
	for i, t := range ts {
		last[t.Key()] = i
	}
	n := len(last)
	prefixes, descs := make([]string, 0, n), make([]string, 0, n)
	froms, untils := make([]time.Time, 0, n), make([]*time.Time, 0, n)
	prices, fees := make([]int64, 0, n), make([]int64, 0, n)
	firsts, nexts, mins := make([]int32, 0, n), make([]int32, 0, n), make([]int32, 0, n)
	for i, t := range ts {
		if last[t.Key()] != i {
			continue
		}
		prefixes, descs = append(prefixes, t.Prefix), append(descs, t.Description)
		froms, untils = append(froms, store.TruncateTime(t.ValidFrom)), append(untils, nullTime(t.ValidUntil))
		prices, fees = append(prices, t.PricePerMinute), append(fees, t.ConnectFee)
		firsts, nexts, mins = append(firsts, t.FirstIncrement), append(nexts, t.NextIncrement), append(mins, t.MinDuration)
	}
	if _, err := s.pool.Exec(ctx, s.bq().upsertTariffs, prefixes, froms, untils, prices, fees, firsts, nexts, mins, descs); err != nil {
		return fmt.Errorf("postgres: upsert %d tariffs: %w", len(ts), err)
	}
	return nil
}

// DeleteTariffs implements store.Tariffs.
func (s *Store) DeleteTariffs(ctx context.Context, keys []store.TariffKey) error {
	if len(keys) == 0 {
		return ctx.Err()
	}
	prefixes, froms := make([]string, len(keys)), make([]time.Time, len(keys))
	for i, k := range keys {
		prefixes[i], froms[i] = k.Prefix, store.TruncateTime(k.ValidFrom)
	}
	if _, err := s.pool.Exec(ctx, s.bq().deleteTariffs, prefixes, froms); err != nil {
		return fmt.Errorf("postgres: delete %d tariffs: %w", len(keys), err)
	}
	return nil
}

func scanTariff(dst *store.Tariff) []any {
	return []any{&dst.Prefix, &dst.ValidFrom, &dst.ValidUntil, &dst.PricePerMinute, &dst.ConnectFee,
		&dst.FirstIncrement, &dst.NextIncrement, &dst.MinDuration, &dst.Description}
}

// ListTariffs implements store.Tariffs.
func (s *Store) ListTariffs(ctx context.Context) ([]store.Tariff, error) {
	rows, err := s.pool.Query(ctx, s.bq().listTariffs)
	if err != nil {
		return nil, fmt.Errorf("postgres: list tariffs: %w", err)
	}
	defer rows.Close()
	var out []store.Tariff
	for rows.Next() {
		var t store.Tariff
		var until *time.Time
		dst := scanTariff(&t)
		dst[2] = &until
		if err := rows.Scan(dst...); err != nil {
			return nil, fmt.Errorf("postgres: list tariffs: %w", err)
		}
		t.ValidFrom, t.ValidUntil = t.ValidFrom.UTC(), fromNull(until)
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: list tariffs: %w", err)
	}
	return out, nil
}
