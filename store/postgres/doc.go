// Package postgres is the PostgreSQL backend of package store, built on pgx
// (github.com/jackc/pgx/v5) and its connection pool.
//
// # Usage
//
//	s, err := postgres.New(ctx, postgres.Config{
//		DSN: "postgres://talkpad@db.example.com/talkpad?sslmode=verify-full",
//	})
//	if err != nil { ... }
//	defer s.Close()
//	// s implements store.Credentials and store.Bindings.
//
// # Schema and migrations
//
// Every table lives in one PostgreSQL schema (Config.Schema, "talkpad" by
// default), created if missing; every statement names it explicitly, so no
// search_path or other session state is needed. The SQL migrations are
// embedded in the binary and applied by [New] in one transaction that holds a
// transaction-level advisory lock: when two nodes start at once, one migrates
// and the other waits, then finds nothing to do. The applied versions are
// recorded in the schema_migrations table of the schema.
//
// # PgBouncer
//
// The backend works through PgBouncer in transaction pooling mode. It keeps
// no session state between transactions, takes only transaction-level
// advisory locks, and by default runs statements with
// [pgx.QueryExecModeExec]: unnamed statements in the extended protocol, one
// round trip each, which PgBouncer passes through in any pooling mode.
// Config.ExecMode selects another mode, for example
// [pgx.QueryExecModeSimpleProtocol] for poolers without extended protocol
// support or [pgx.QueryExecModeDescribeExec]; a Pool passed in Config.Pool
// may use named prepared statements when it talks to PostgreSQL directly.
//
// # Failures
//
// Every error is wrapped with the operation that failed ("postgres: upsert
// bindings: ..."); sentinel conditions keep their store errors
// (store.ErrNotFound, store.ErrExists, store.ErrInvalid). When the database
// goes away, calls return errors; the pool discards broken connections and
// dials new ones on later calls, so the store recovers by itself when the
// server is back. Callers that must not lose writes (the registrar's
// write-back table) keep them and retry.
package postgres
