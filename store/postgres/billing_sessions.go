package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/talkpad/talkpad/store"
)

func collectSessions(rows pgx.Rows) ([]store.Session, error) {
	defer rows.Close()
	var out []store.Session
	for rows.Next() {
		var (
			ss           store.Session
			until, setup *time.Time
		)
		dst := []any{&ss.ID, &ss.Account, &ss.Node, &ss.Caller, &ss.Callee}
		td := scanTariff(&ss.Tariff)
		td[2] = &until
		dst = append(dst, td...)
		dst = append(dst, &setup, &ss.Answer, &ss.Reserved, &ss.ReservedUntil, &ss.LastSeen, &ss.LeaseUntil)
		if err := rows.Scan(dst...); err != nil {
			return nil, err
		}
		ss.Tariff.ValidFrom, ss.Tariff.ValidUntil = ss.Tariff.ValidFrom.UTC(), fromNull(until)
		ss.Setup, ss.Answer = fromNull(setup), ss.Answer.UTC()
		ss.ReservedUntil, ss.LastSeen, ss.LeaseUntil = ss.ReservedUntil.UTC(), ss.LastSeen.UTC(), ss.LeaseUntil.UTC()
		out = append(out, ss)
	}
	return out, rows.Err()
}

// Reserve implements store.Sessions, as ReserveMany of one account.
func (s *Store) Reserve(ctx context.Context, account string, fn func(store.Account, []store.Session) ([]store.Session, error)) (store.Account, error) {
	as, err := s.ReserveMany(ctx, []string{account}, fn)
	if err != nil {
		return store.Account{}, err
	}
	return as[0], nil
}

// sessionColumns are a batch of sessions as one array per column, for the
// upsertSessions statement.
type sessionColumns struct {
	ids, accounts, nodes, callers, callees, prefixes, descs []string
	froms, answers, untils, seens, leases                   []time.Time
	validUntils, setups                                     []*time.Time
	prices, fees, reserved                                  []int64
	firsts, nexts, mins                                     []int32
}

func (c *sessionColumns) add(ss store.Session) {
	t := ss.Tariff
	c.ids, c.accounts, c.nodes = append(c.ids, ss.ID), append(c.accounts, ss.Account), append(c.nodes, ss.Node)
	c.callers, c.callees = append(c.callers, ss.Caller), append(c.callees, ss.Callee)
	c.prefixes, c.froms, c.validUntils = append(c.prefixes, t.Prefix), append(c.froms, store.TruncateTime(t.ValidFrom)), append(c.validUntils, nullTime(t.ValidUntil))
	c.prices, c.fees = append(c.prices, t.PricePerMinute), append(c.fees, t.ConnectFee)
	c.firsts, c.nexts, c.mins, c.descs = append(c.firsts, t.FirstIncrement), append(c.nexts, t.NextIncrement), append(c.mins, t.MinDuration), append(c.descs, t.Description)
	c.setups, c.answers = append(c.setups, nullTime(ss.Setup)), append(c.answers, store.TruncateTime(ss.Answer))
	c.reserved, c.untils = append(c.reserved, ss.Reserved), append(c.untils, store.TruncateTime(ss.ReservedUntil))
	c.seens, c.leases = append(c.seens, store.TruncateTime(ss.LastSeen)), append(c.leases, store.TruncateTime(ss.LeaseUntil))
}

func (c *sessionColumns) args() []any {
	return []any{c.ids, c.accounts, c.nodes, c.callers, c.callees, c.prefixes, c.froms, c.validUntils,
		c.prices, c.fees, c.firsts, c.nexts, c.mins, c.descs, c.setups, c.answers, c.reserved, c.untils, c.seens, c.leases}
}

// ReserveMany implements store.Sessions in one transaction of four round
// trips whatever the number of accounts: BEGIN; the account locks and their
// sessions; every changed session and every reserved total, one statement
// each; COMMIT.
func (s *Store) ReserveMany(ctx context.Context, accounts []string, fn func(store.Account, []store.Session) ([]store.Session, error)) ([]store.Account, error) {
	ids := slices.Clone(accounts)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	q := s.bq()
	var (
		fnErr error
		out   []store.Account
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// One round trip: the locks, then (a statement later, so with a
		// snapshot taken after them) the sessions they protect.
		var open []store.Session
		locked, err := lockAccountsThen(ctx, tx, q.lockAccounts, ids, q.sessionsOfAccounts, ids, func(rows pgx.Rows) (err error) {
			open, err = collectSessions(rows)
			return err
		})
		if err != nil {
			return err
		}
		if len(locked) != len(ids) {
			for i, a := range locked {
				if a.ID != ids[i] {
					return fmt.Errorf("account %q: %w", ids[i], store.ErrNotFound)
				}
			}
			return fmt.Errorf("account %q: %w", ids[len(locked)], store.ErrNotFound)
		}
		var cols sessionColumns
		reserved := make([]int64, len(locked))
		k := 0
		for i, a := range locked {
			lo := k
			for k < len(open) && open[k].Account == a.ID {
				k++
			}
			mine := open[lo:k]
			held := make(map[string]int64, len(mine))
			for _, ss := range mine {
				held[ss.ID] = ss.Reserved
			}
			changes, err := fn(a, slices.Clone(mine))
			if err != nil {
				fnErr = err
				return err
			}
			r := a.Reserved
			for _, c := range changes {
				if err := c.Validate(); err != nil {
					return err
				}
				if c.Account != a.ID {
					return fmt.Errorf("%w: session %q names account %q", store.ErrInvalid, c.ID, c.Account)
				}
				r += c.Reserved - held[c.ID]
				cols.add(c)
			}
			if r > a.Reserved && r > a.Balance+a.CreditLimit {
				return fmt.Errorf("account %q: %w", a.ID, store.ErrInsufficientFunds)
			}
			reserved[i] = r
		}
		second := &pgx.Batch{}
		if len(cols.ids) > 0 {
			second.Queue(q.upsertSessions, cols.args()...)
		}
		second.Queue(q.setReservedMany, ids, reserved)
		br := tx.SendBatch(ctx, second)
		if len(cols.ids) > 0 {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return err
			}
			if int(tag.RowsAffected()) != len(cols.ids) {
				br.Close()
				return fmt.Errorf("%w: a session belongs to another account", store.ErrInvalid)
			}
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) { return scanAccount(r) })
		if err != nil {
			br.Close()
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		slices.SortFunc(out, func(x, y store.Account) int { return strings.Compare(x.ID, y.ID) })
		return nil
	})
	if fnErr != nil {
		return nil, fnErr
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: reserve on %d accounts: %w", len(ids), err)
	}
	return out, nil
}

// errOtherAccount sends Settle round again with the session's real
// account, when the CDR named another.
type errOtherAccount struct{ account string }

func (e errOtherAccount) Error() string { return "session belongs to account " + e.account }

// Settle implements store.Sessions. cdr.Account, when set, saves looking
// the session's account up first: it is checked, not trusted.
func (s *Store) Settle(ctx context.Context, cdr store.CDR) (store.Account, error) {
	q := s.bq()
	account := cdr.Account
	if account == "" {
		err := s.pool.QueryRow(ctx, q.sessionAccount, cdr.CallID).Scan(&account)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.Account{}, fmt.Errorf("postgres: settle %q: %w", cdr.CallID, store.ErrNotFound)
		}
		if err != nil {
			return store.Account{}, fmt.Errorf("postgres: settle %q: %w", cdr.CallID, err)
		}
	}
	for attempt := 0; ; attempt++ {
		a, err := s.settle(ctx, q, account, cdr)
		var other errOtherAccount
		if errors.As(err, &other) && attempt == 0 {
			account = other.account
			continue
		}
		if err != nil {
			return store.Account{}, fmt.Errorf("postgres: settle %q: %w", cdr.CallID, err)
		}
		return a, nil
	}
}

func (s *Store) settle(ctx context.Context, q *billingQueries, account string, cdr store.CDR) (store.Account, error) {
	end := cdr.End
	if end.IsZero() {
		end = time.Now()
	}
	e := store.LedgerEntry{Account: account, Key: store.CallKey(cdr.CallID), Kind: store.EntryCall,
		Amount: -cdr.Cost, CallID: cdr.CallID, Time: store.TruncateTime(end)}
	if err := e.Validate(); err != nil {
		return store.Account{}, err
	}
	cdr.Account = account
	var out store.Account
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		first := &pgx.Batch{}
		first.Queue(q.getAccountForUpdate, account)
		first.Queue(q.sessionHeld, cdr.CallID, account)
		br := tx.SendBatch(ctx, first)
		a, err := scanAccount(br.QueryRow())
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			br.Close()
			return err
		}
		var held int64
		err = br.QueryRow().Scan(&held)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			br.Close()
			return err
		}
		if err := br.Close(); err != nil {
			return err
		}
		if a.ID == "" || errors.Is(err, pgx.ErrNoRows) {
			// No such session in this account: in another, or none.
			var owner string
			err := tx.QueryRow(ctx, q.sessionAccount, cdr.CallID).Scan(&owner)
			if errors.Is(err, pgx.ErrNoRows) {
				return store.ErrNotFound
			}
			if err != nil {
				return err
			}
			return errOtherAccount{owner}
		}
		batch := &pgx.Batch{}
		batch.Queue(q.creditBalance, account, -cdr.Cost, held)
		batch.Queue(q.insertEntry, e.Account, e.Key, string(e.Kind), e.Amount, a.Balance-cdr.Cost, e.CallID, e.Note, e.Time)
		batch.Queue(q.deleteSession, cdr.CallID)
		batch.Queue(q.insertCDR, cdr.CallID, cdr.Account, cdr.Caller, cdr.Callee, cdr.Prefix, nullTime(cdr.Setup),
			nullTime(cdr.Answer), store.TruncateTime(end), cdr.BilledSeconds, cdr.Cost, cdr.Cause, cdr.Node)
		br = tx.SendBatch(ctx, batch)
		defer br.Close()
		if out, err = scanAccount(br.QueryRow()); err != nil {
			return err
		}
		var seq int64
		if err := br.QueryRow().Scan(&seq); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("%w: ledger already holds %q", store.ErrExists, e.Key)
			}
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		_, err = br.Exec()
		return err
	})
	return out, err
}

// SettleMany implements store.Sessions in one transaction of four round
// trips, whatever the number of calls. Each CDR must name its session's
// account (the engine always does): that is what gets locked.
func (s *Store) SettleMany(ctx context.Context, cdrs []store.CDR) ([]string, error) {
	if len(cdrs) == 0 {
		return nil, ctx.Err()
	}
	q := s.bq()
	ids := make([]string, len(cdrs))
	var accounts []string
	for i, c := range cdrs {
		if c.Account == "" {
			return nil, fmt.Errorf("postgres: settle %q: %w: the CDR names no account", c.CallID, store.ErrInvalid)
		}
		ids[i] = c.CallID
		accounts = append(accounts, c.Account)
	}
	slices.Sort(accounts)
	accounts = slices.Compact(accounts)
	var missing []string
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		missing = missing[:0]
		type held struct {
			account  string
			reserved int64
		}
		sessions := make(map[string]held, len(ids))
		locked, err := lockAccountsThen(ctx, tx, q.lockAccounts, accounts, q.sessionsHeldMany, ids, func(rows pgx.Rows) error {
			defer rows.Close()
			for rows.Next() {
				var id string
				var h held
				if err := rows.Scan(&id, &h.account, &h.reserved); err != nil {
					return err
				}
				sessions[id] = h
			}
			return rows.Err()
		})
		if err != nil {
			return err
		}
		balance := make(map[string]int64, len(locked))
		for _, a := range locked {
			balance[a.ID] = a.Balance
		}
		var (
			eAcct, eKey, eKind, eCall, eNote                     []string
			eAmount, eBal                                        []int64
			eTime                                                []time.Time
			cID, cAcct, cCaller, cCallee, cPrefix, cCause, cNode []string
			cSetup, cAnswer                                      []*time.Time
			cEnd                                                 []time.Time
			cSecs, cCost                                         []int64
			uAmount, uHeld                                       = make(map[string]int64), make(map[string]int64)
			done                                                 []string
		)
		for _, c := range cdrs {
			h, ok := sessions[c.CallID]
			if !ok {
				missing = append(missing, c.CallID)
				continue
			}
			if h.account != c.Account {
				return fmt.Errorf("%w: CDR of %q names account %q, its session %q", store.ErrInvalid, c.CallID, c.Account, h.account)
			}
			delete(sessions, c.CallID) // a call listed twice settles once
			end := c.End
			if end.IsZero() {
				end = time.Now()
			}
			end = store.TruncateTime(end)
			balance[c.Account] -= c.Cost
			eAcct, eKey, eKind, eCall, eNote = append(eAcct, c.Account), append(eKey, store.CallKey(c.CallID)), append(eKind, string(store.EntryCall)), append(eCall, c.CallID), append(eNote, "")
			eAmount, eBal, eTime = append(eAmount, -c.Cost), append(eBal, balance[c.Account]), append(eTime, end)
			cID, cAcct, cCaller, cCallee, cPrefix = append(cID, c.CallID), append(cAcct, c.Account), append(cCaller, c.Caller), append(cCallee, c.Callee), append(cPrefix, c.Prefix)
			cSetup, cAnswer, cEnd = append(cSetup, nullTime(c.Setup)), append(cAnswer, nullTime(c.Answer)), append(cEnd, end)
			cSecs, cCost, cCause, cNode = append(cSecs, c.BilledSeconds), append(cCost, c.Cost), append(cCause, c.Cause), append(cNode, c.Node)
			uAmount[c.Account] -= c.Cost
			uHeld[c.Account] += h.reserved
			done = append(done, c.CallID)
		}
		if len(done) == 0 {
			return nil
		}
		var uID []string
		var uA, uH []int64
		for _, a := range accounts {
			if _, ok := uHeld[a]; ok {
				uID, uA, uH = append(uID, a), append(uA, uAmount[a]), append(uH, uHeld[a])
			}
		}
		second := &pgx.Batch{}
		second.Queue(q.insertEntries, eAcct, eKey, eKind, eAmount, eBal, eCall, eNote, eTime)
		second.Queue(q.deleteSessions, done)
		second.Queue(q.insertCDRs, cID, cAcct, cCaller, cCallee, cPrefix, cSetup, cAnswer, cEnd, cSecs, cCost, cCause, cNode)
		second.Queue(q.creditMany, uID, uA, uH)
		br := tx.SendBatch(ctx, second)
		defer br.Close()
		tag, err := br.Exec()
		if err != nil {
			return err
		}
		if int(tag.RowsAffected()) != len(done) {
			return fmt.Errorf("%w: the ledger already holds a debit of these calls", store.ErrExists)
		}
		for range 3 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: settle %d calls: %w", len(cdrs), err)
	}
	return missing, nil
}

// GetSession implements store.Sessions.
func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	ss, err := s.querySessions(ctx, "get session", s.bq().getSession, id)
	if err != nil {
		return store.Session{}, err
	}
	if len(ss) == 0 {
		return store.Session{}, fmt.Errorf("postgres: get session %q: %w", id, store.ErrNotFound)
	}
	return ss[0], nil
}

func (s *Store) querySessions(ctx context.Context, what, sql string, args ...any) ([]store.Session, error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	out, err := collectSessions(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: %s: %w", what, err)
	}
	return out, nil
}

// ListSessions implements store.Sessions.
func (s *Store) ListSessions(ctx context.Context, node string) ([]store.Session, error) {
	if node == "" {
		return s.querySessions(ctx, "list sessions", s.bq().listSessions)
	}
	return s.querySessions(ctx, "list sessions", s.bq().listNodeSessions, node)
}

// ListExpiredSessions implements store.Sessions.
func (s *Store) ListExpiredSessions(ctx context.Context, now time.Time) ([]store.Session, error) {
	return s.querySessions(ctx, "list expired sessions", s.bq().listExpired, now)
}

// RenewLeases implements store.Sessions: one UPDATE for all of a node's
// sessions.
func (s *Store) RenewLeases(ctx context.Context, node string, lastSeen, leaseUntil time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, s.bq().renewLeases, node, store.TruncateTime(lastSeen), store.TruncateTime(leaseUntil))
	if err != nil {
		return 0, fmt.Errorf("postgres: renew leases of %q: %w", node, err)
	}
	return int(tag.RowsAffected()), nil
}

func collectCDRs(rows pgx.Rows) ([]store.CDR, error) {
	defer rows.Close()
	var out []store.CDR
	for rows.Next() {
		var c store.CDR
		var setup, answer *time.Time
		if err := rows.Scan(&c.CallID, &c.Account, &c.Caller, &c.Callee, &c.Prefix, &setup, &answer, &c.End,
			&c.BilledSeconds, &c.Cost, &c.Cause, &c.Node); err != nil {
			return nil, err
		}
		c.Setup, c.Answer, c.End = fromNull(setup), fromNull(answer), c.End.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

// GetCDR implements store.CDRs.
func (s *Store) GetCDR(ctx context.Context, callID string) (store.CDR, error) {
	rows, err := s.pool.Query(ctx, s.bq().getCDR, callID)
	if err != nil {
		return store.CDR{}, fmt.Errorf("postgres: get CDR %q: %w", callID, err)
	}
	cs, err := collectCDRs(rows)
	if err != nil {
		return store.CDR{}, fmt.Errorf("postgres: get CDR %q: %w", callID, err)
	}
	if len(cs) == 0 {
		return store.CDR{}, fmt.Errorf("postgres: get CDR %q: %w", callID, store.ErrNotFound)
	}
	return cs[0], nil
}

// ListCDRs implements store.CDRs.
func (s *Store) ListCDRs(ctx context.Context, f store.CDRFilter) ([]store.CDR, error) {
	rows, err := s.pool.Query(ctx, s.bq().listCDRs, f.Account, nullTime(f.From), nullTime(f.To))
	if err != nil {
		return nil, fmt.Errorf("postgres: list CDRs: %w", err)
	}
	out, err := collectCDRs(rows)
	if err != nil {
		return nil, fmt.Errorf("postgres: list CDRs: %w", err)
	}
	return out, nil
}

// lockAccountsThen locks the accounts (lockSQL with lockArg) and runs
// second with arg in one round trip: a statement after the locks, so its
// snapshot sees what they protect. scan reads second's rows.
func lockAccountsThen(ctx context.Context, tx pgx.Tx, lockSQL string, lockArg any, second string, arg any, scan func(pgx.Rows) error) ([]store.Account, error) {
	b := &pgx.Batch{}
	b.Queue(lockSQL, lockArg)
	b.Queue(second, arg)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	locked, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Account, error) { return scanAccount(r) })
	if err != nil {
		return nil, err
	}
	rows, err = br.Query()
	if err != nil {
		return nil, err
	}
	if err := scan(rows); err != nil {
		return nil, err
	}
	return locked, br.Close()
}
