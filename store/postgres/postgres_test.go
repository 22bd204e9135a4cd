package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/talkpad/talkpad/internal/pgtest"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/postgres"
	"github.com/talkpad/talkpad/store/storetest"
)

func open(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.New(ctx, cfg)
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func runConformance(t *testing.T, dsn string, mode pgx.QueryExecMode) {
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		return open(t, postgres.Config{DSN: dsn, Schema: pgtest.Schema(t, dsn), ExecMode: mode})
	})
}

func TestConformance(t *testing.T) {
	runConformance(t, pgtest.DSN(t), 0)
}

func TestConformanceSimpleProtocol(t *testing.T) {
	runConformance(t, pgtest.DSN(t), pgx.QueryExecModeSimpleProtocol)
}

// TestConformancePgBouncer runs the suite through a real PgBouncer in
// transaction pooling mode, where session state and named prepared
// statements do not survive from one transaction to the next.
func TestConformancePgBouncer(t *testing.T) {
	dsn := pgtest.DSN(t)
	bouncer := pgtest.PgBouncer(t, dsn)
	storetest.Run(t, func(t *testing.T) storetest.Backend {
		// The schema is made directly; the store itself only talks
		// through PgBouncer.
		return open(t, postgres.Config{DSN: bouncer, Schema: pgtest.Schema(t, dsn)})
	})
}

func TestMigrateConcurrentStart(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	const nodes = 4
	var wg sync.WaitGroup
	stores := make([]*postgres.Store, nodes)
	errs := make([]error, nodes)
	for i := range nodes {
		wg.Go(func() {
			stores[i], errs[i] = postgres.New(context.Background(), postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	v, err := stores[0].SchemaVersion(context.Background())
	if err != nil || v < 1 {
		t.Fatalf("SchemaVersion = %d, %v", v, err)
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n, distinct int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT version) FROM `+schema+`.schema_migrations`).Scan(&n, &distinct); err != nil {
		t.Fatal(err)
	}
	if n != distinct || n != v {
		t.Fatalf("schema_migrations has %d rows for %d versions (latest %d): a migration ran twice", n, distinct, v)
	}
	// A restart finds nothing to do.
	open(t, postgres.Config{DSN: dsn, Schema: schema})
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []postgres.Config{
		{},
		{DSN: "postgres://x@127.0.0.1/db", Schema: "bad-name"},
		{DSN: "postgres://x@127.0.0.1/db", Schema: `x"; DROP TABLE y; --`},
		{DSN: "::not a dsn::"},
	} {
		if _, err := postgres.New(ctx, cfg); !errors.Is(err, postgres.ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	_, err := postgres.New(ctx, postgres.Config{DSN: "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"})
	if err == nil {
		t.Fatal("New succeeded against a closed port")
	}
	if !strings.Contains(err.Error(), "postgres: migrate") {
		t.Errorf("error does not say what failed: %v", err)
	}
}

// TestOutageAndRecovery cuts the database away under a live store: calls
// fail with errors that say what failed, nothing panics, and once the
// database is back the same store works again without being reopened.
func TestOutageAndRecovery(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	proxy := pgtest.NewProxy(t, dsn)
	s := open(t, postgres.Config{DSN: proxy.DSN(dsn) + "&connect_timeout=2", Schema: schema})
	ctx := context.Background()
	now := time.Now()
	b := store.Binding{AOR: "sip:outage@example.com", Contact: "sip:outage@192.0.2.1", Expires: now.Add(time.Hour), Q: 1000, Version: 1, Updated: now}
	if err := s.UpsertBindings(ctx, []store.Binding{b}); err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	b2 := b
	b2.Contact, b2.Version = "sip:outage2@192.0.2.1", 2
	err := s.UpsertBindings(opCtx, []store.Binding{b2})
	if err == nil {
		t.Fatal("UpsertBindings succeeded with the database cut off")
	}
	if !strings.HasPrefix(err.Error(), "postgres: upsert 1 bindings:") {
		t.Errorf("upsert error lacks context: %v", err)
	}
	if _, err := s.ListBindings(opCtx, b.AOR, now); err == nil || !strings.HasPrefix(err.Error(), "postgres: list bindings") {
		t.Errorf("ListBindings during outage: %v", err)
	}
	if _, err := s.GetCredential(opCtx, "example.com", "x"); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCredential during outage = %v, want a connection error, not ErrNotFound", err)
	}
	if err := s.Ping(opCtx); err == nil {
		t.Error("Ping succeeded with the database cut off")
	}

	proxy.Restore(t)
	// The pool reconnects by itself; the first call may still meet a
	// connection that died in the outage, so allow a few attempts.
	deadline := time.Now().Add(15 * time.Second)
	for {
		err = s.UpsertBindings(ctx, []store.Binding{b2})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("store did not recover after the database came back: %v", err)
	}
	got, err := s.ListBindings(ctx, b.AOR, now)
	if err != nil || len(got) != 2 {
		t.Fatalf("after recovery: %d bindings, %v; want 2", len(got), err)
	}
}

func BenchmarkBindingsUpsert(b *testing.B) {
	dsn := pgtest.DSN(b)
	for _, mode := range []struct {
		name string
		dsn  func() string
	}{
		{"direct", func() string { return dsn }},
		{"pgbouncer", func() string { return pgtest.PgBouncer(b, dsn) }},
	} {
		for _, size := range []int{1, 100, 1000} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode.name, size), func(b *testing.B) {
				s := open(b, postgres.Config{DSN: mode.dsn(), Schema: pgtest.Schema(b, dsn)})
				storetest.BenchmarkUpsert(b, s, size)
			})
		}
	}
}
