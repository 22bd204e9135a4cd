package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/talkpad/talkpad/store"
)

// Config configures a Store. The zero value of each field means its
// documented default; DSN or Pool is required.
type Config struct {
	// DSN is a PostgreSQL connection string, URL or key=value form, as
	// pgxpool.ParseConfig accepts, including pool_max_conns and friends.
	// Ignored when Pool is set.
	DSN string
	// Pool, when set, is used instead of opening one from DSN. Close does
	// not close it: its owner does. Its connections must still run
	// statements in a mode that suits the server or pooler in front.
	Pool *pgxpool.Pool
	// Schema is the PostgreSQL schema holding talkpad's tables, created on
	// start if missing. Defaults to "talkpad". Letters, digits and
	// underscores only, not starting with a digit.
	Schema string
	// ExecMode is how statements are sent. Defaults to
	// pgx.QueryExecModeExec, which is safe behind PgBouncer in transaction
	// pooling mode. pgx.QueryExecModeCacheStatement is pgx's zero value, so
	// it cannot be chosen here: to use named prepared statements (fastest
	// when talking to PostgreSQL directly), pass a Pool configured for
	// them. Ignored when Pool is set.
	ExecMode pgx.QueryExecMode
	// MaxConns caps the pool's connections. Defaults to pgxpool's default
	// (the larger of 4 and the number of CPUs) unless the DSN sets
	// pool_max_conns. Ignored when Pool is set.
	MaxConns int32
	// SkipMigrations leaves the schema alone; use it when migrations are
	// applied out of band. New still checks that the tables exist.
	SkipMigrations bool
	// Logger receives migration and connection messages. Defaults to
	// slog.Default() with component=store/postgres.
	Logger *slog.Logger
}

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("postgres: invalid config")

var schemaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)

// Store is a PostgreSQL-backed implementation of the store interfaces. It is
// safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	ownsPool bool
	schema   string
	log      *slog.Logger
	q        queries
}

var (
	_ store.Credentials = (*Store)(nil)
	_ store.Bindings    = (*Store)(nil)
)

// New connects to PostgreSQL, applies pending migrations and returns a ready
// Store. It fails when the database cannot be reached: a node should not
// start serving with a store it cannot load from.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Schema == "" {
		cfg.Schema = "talkpad"
	}
	if !schemaName.MatchString(cfg.Schema) {
		return nil, fmt.Errorf("%w: schema %q: use letters, digits and underscores", ErrConfig, cfg.Schema)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default().With("component", "store/postgres")
	}
	s := &Store{pool: cfg.Pool, schema: cfg.Schema, log: log}
	if s.pool == nil {
		if cfg.DSN == "" {
			return nil, fmt.Errorf("%w: DSN or Pool is required", ErrConfig)
		}
		pc, err := pgxpool.ParseConfig(cfg.DSN)
		if err != nil {
			return nil, fmt.Errorf("%w: parse DSN: %w", ErrConfig, err)
		}
		mode := cfg.ExecMode
		if mode == 0 {
			// 0 is pgx.QueryExecModeCacheStatement, whose named prepared
			// statements break behind a transaction-pooling PgBouncer.
			// Selecting it explicitly needs a non-zero sentinel, so the
			// zero value means the safe default here.
			mode = pgx.QueryExecModeExec
		}
		pc.ConnConfig.DefaultQueryExecMode = mode
		if cfg.MaxConns > 0 {
			pc.MaxConns = cfg.MaxConns
		}
		s.pool, err = pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, fmt.Errorf("postgres: open pool: %w", err)
		}
		s.ownsPool = true
	}
	s.q = newQueries(quoteIdent(s.schema))
	var err error
	if cfg.SkipMigrations {
		err = s.checkTables(ctx)
	} else {
		err = s.migrate(ctx)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the pool's connections, unless the pool was given in
// Config.Pool. It waits for connections in use to be returned.
func (s *Store) Close() {
	if s.ownsPool {
		s.pool.Close()
	}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Schema returns the schema holding the store's tables.
func (s *Store) Schema() string { return s.schema }

func (s *Store) checkTables(ctx context.Context) error {
	var n int
	err := s.pool.QueryRow(ctx,
		`SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name IN ('credentials', 'bindings')`,
		s.schema).Scan(&n)
	if err != nil {
		return fmt.Errorf("postgres: check tables: %w", err)
	}
	if n != 2 {
		return fmt.Errorf("postgres: schema %q lacks talkpad's tables; run the migrations", s.schema)
	}
	return nil
}

// quoteIdent quotes a schema name for SQL. The name is already restricted
// to a safe alphabet; quoting keeps its case.
func quoteIdent(s string) string { return `"` + s + `"` }
