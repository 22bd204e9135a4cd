package postgres

import (
	"strings"
	"sync"
)

// billingQueries holds the billing statements with the schema filled in,
// like queries. They are a pure function of the schema name, so they are
// built once per schema on first use and shared by every Store of it.
type billingQueries struct {
	createAccount, getAccount, getAccountForUpdate, updateAccount, listAccounts string

	creditBalance, insertEntry, getEntry, listEntries string

	upsertTariffs, deleteTariffs, listTariffs string

	lockAccounts, sessionsOfAccounts, upsertSessions, setReservedMany, getSession, sessionAccount, sessionHeld, deleteSession,
	listSessions, listNodeSessions, listExpired, renewLeases string

	insertCDR, getCDR, listCDRs string

	sessionsHeldMany, insertEntries, deleteSessions, insertCDRs, creditMany string
}

var billingQueryCache sync.Map // quoted schema → *billingQueries

func (s *Store) bq() *billingQueries {
	schema := quoteIdent(s.schema)
	if q, ok := billingQueryCache.Load(schema); ok {
		return q.(*billingQueries)
	}
	q, _ := billingQueryCache.LoadOrStore(schema, newBillingQueries(schema))
	return q.(*billingQueries)
}

const accountCols = `id, currency, balance, credit_limit, reserved, disabled, created_at, updated_at`

const entryCols = `seq, account, key, kind, amount, balance, call_id, note, time`

const tariffCols = `prefix, valid_from, valid_until, price_per_minute, connect_fee, first_increment, next_increment,
	min_duration, description`

const sessionCols = `id, account, node, caller, callee, ` + tariffCols + `, setup, answer, reserved, reserved_until,
	last_seen, lease_until`

const cdrCols = `call_id, account, caller, callee, prefix, setup, answer, end_time, billed_seconds, cost, cause, node`

func newBillingQueries(schema string) *billingQueries {
	accounts := schema + `.accounts`
	ledger := schema + `.ledger`
	tariffs := schema + `.tariffs`
	sessions := schema + `.sessions`
	cdrs := schema + `.cdrs`
	return &billingQueries{
		createAccount: `INSERT INTO ` + accounts + ` (id, currency, credit_limit, disabled) VALUES ($1, $2, $3, $4)
			ON CONFLICT (id) DO NOTHING`,
		getAccount:          `SELECT ` + accountCols + ` FROM ` + accounts + ` WHERE id = $1`,
		getAccountForUpdate: `SELECT ` + accountCols + ` FROM ` + accounts + ` WHERE id = $1 FOR UPDATE`,
		updateAccount: `UPDATE ` + accounts + ` SET currency = $2, credit_limit = $3, disabled = $4,
			updated_at = greatest(clock_timestamp(), updated_at) WHERE id = $1`,
		listAccounts: `SELECT ` + accountCols + ` FROM ` + accounts + ` ORDER BY id COLLATE "C"`,

		// Updating the balance first takes the account's row lock, so two
		// posts with one key queue up and the second meets the conflict.
		creditBalance: `UPDATE ` + accounts + ` SET balance = balance + $2, reserved = reserved - $3,
			updated_at = greatest(clock_timestamp(), updated_at) WHERE id = $1 RETURNING ` + accountCols,
		insertEntry: `INSERT INTO ` + ledger + ` (account, key, kind, amount, balance, call_id, note, time)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (account, key) DO NOTHING RETURNING seq`,
		getEntry: `SELECT ` + entryCols + ` FROM ` + ledger + ` WHERE account = $1 AND key = $2`,
		listEntries: `SELECT ` + entryCols + ` FROM ` + ledger + ` WHERE account = $1
			AND ($2::timestamptz IS NULL OR time >= $2) AND ($3::timestamptz IS NULL OR time < $3) ORDER BY seq`,

		upsertTariffs: `INSERT INTO ` + tariffs + ` AS t (` + tariffCols + `)
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[], $4::int8[], $5::int8[],
				$6::int4[], $7::int4[], $8::int4[], $9::text[])
			ON CONFLICT (prefix, valid_from) DO UPDATE SET valid_until = EXCLUDED.valid_until,
				price_per_minute = EXCLUDED.price_per_minute, connect_fee = EXCLUDED.connect_fee,
				first_increment = EXCLUDED.first_increment, next_increment = EXCLUDED.next_increment,
				min_duration = EXCLUDED.min_duration, description = EXCLUDED.description`,
		deleteTariffs: `DELETE FROM ` + tariffs + ` AS t USING unnest($1::text[], $2::timestamptz[]) AS d(prefix, valid_from)
			WHERE t.prefix = d.prefix AND t.valid_from = d.valid_from`,
		listTariffs: `SELECT ` + tariffCols + ` FROM ` + tariffs + ` ORDER BY prefix COLLATE "C", valid_from`,

		lockAccounts: `SELECT ` + accountCols + ` FROM ` + accounts + ` WHERE id = ANY($1) ORDER BY id COLLATE "C" FOR UPDATE`,
		sessionsOfAccounts: `SELECT ` + sessionCols + ` FROM ` + sessions + ` WHERE account = ANY($1)
			ORDER BY account COLLATE "C", id COLLATE "C"`,
		// All changed sessions of a batch in one statement, one array per
		// column; the WHERE refuses to move a session to another account,
		// which shows as fewer rows affected than sent.
		upsertSessions: `INSERT INTO ` + sessions + ` AS s (` + sessionCols + `)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
				$7::timestamptz[], $8::timestamptz[], $9::int8[], $10::int8[], $11::int4[], $12::int4[], $13::int4[],
				$14::text[], $15::timestamptz[], $16::timestamptz[], $17::int8[], $18::timestamptz[],
				$19::timestamptz[], $20::timestamptz[])
			ON CONFLICT (id) DO UPDATE SET node = EXCLUDED.node, caller = EXCLUDED.caller, callee = EXCLUDED.callee,
				prefix = EXCLUDED.prefix, valid_from = EXCLUDED.valid_from, valid_until = EXCLUDED.valid_until,
				price_per_minute = EXCLUDED.price_per_minute, connect_fee = EXCLUDED.connect_fee,
				first_increment = EXCLUDED.first_increment, next_increment = EXCLUDED.next_increment,
				min_duration = EXCLUDED.min_duration, description = EXCLUDED.description, setup = EXCLUDED.setup,
				answer = EXCLUDED.answer, reserved = EXCLUDED.reserved, reserved_until = EXCLUDED.reserved_until,
				last_seen = EXCLUDED.last_seen, lease_until = EXCLUDED.lease_until
			WHERE s.account = EXCLUDED.account`,
		setReservedMany: `UPDATE ` + accounts + ` AS a SET reserved = u.reserved,
			updated_at = greatest(clock_timestamp(), a.updated_at)
			FROM unnest($1::text[], $2::int8[]) AS u(id, reserved) WHERE a.id = u.id
			RETURNING ` + prefixed("a.", accountCols),
		getSession:     `SELECT ` + sessionCols + ` FROM ` + sessions + ` WHERE id = $1`,
		sessionAccount: `SELECT account FROM ` + sessions + ` WHERE id = $1`,
		// Only the account row is locked: every writer of a session's
		// money holds its account's lock, so that is enough. It is read
		// in its own statement after the lock is taken, so that it sees
		// what a settlement that held the lock before committed.
		sessionHeld:      `SELECT reserved FROM ` + sessions + ` WHERE id = $1 AND account = $2`,
		deleteSession:    `DELETE FROM ` + sessions + ` WHERE id = $1`,
		listSessions:     `SELECT ` + sessionCols + ` FROM ` + sessions + ` ORDER BY id COLLATE "C"`,
		listNodeSessions: `SELECT ` + sessionCols + ` FROM ` + sessions + ` WHERE node = $1 ORDER BY id COLLATE "C"`,
		listExpired:      `SELECT ` + sessionCols + ` FROM ` + sessions + ` WHERE lease_until <= $1 ORDER BY id COLLATE "C"`,
		renewLeases: `UPDATE ` + sessions + ` SET last_seen = least($2, reserved_until), lease_until = $3
			WHERE node = $1`,

		sessionsHeldMany: `SELECT id, account, reserved FROM ` + sessions + ` WHERE id = ANY($1)`,
		insertEntries: `INSERT INTO ` + ledger + ` (account, key, kind, amount, balance, call_id, note, time)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[],
				$8::timestamptz[])
			ON CONFLICT (account, key) DO NOTHING`,
		deleteSessions: `DELETE FROM ` + sessions + ` WHERE id = ANY($1)`,
		insertCDRs: `INSERT INTO ` + cdrs + ` (` + cdrCols + `)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
				$7::timestamptz[], $8::timestamptz[], $9::int8[], $10::int8[], $11::text[], $12::text[])`,
		creditMany: `UPDATE ` + accounts + ` AS a SET balance = a.balance + u.amount, reserved = a.reserved - u.held,
			updated_at = greatest(clock_timestamp(), a.updated_at)
			FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(id, amount, held) WHERE a.id = u.id`,
		insertCDR: `INSERT INTO ` + cdrs + ` (` + cdrCols + `) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		getCDR:    `SELECT ` + cdrCols + ` FROM ` + cdrs + ` WHERE call_id = $1`,
		listCDRs: `SELECT ` + cdrCols + ` FROM ` + cdrs + ` WHERE ($1 = '' OR account = $1)
			AND ($2::timestamptz IS NULL OR end_time >= $2) AND ($3::timestamptz IS NULL OR end_time < $3)
			ORDER BY end_time, call_id COLLATE "C"`,
	}
}

// prefixed qualifies each column of a comma-separated list with p.
func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}
