package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/talkpad/talkpad/internal/pgtest"
	"github.com/talkpad/talkpad/store/postgres"
)

func sipsakRegister(t *testing.T, sipsak, addr, user, pass string) {
	t.Helper()
	out, err := exec.Command(sipsak, "-U", "-s", "sip:"+user+"@"+addr, "-u", user, "-a", pass, "-x", "3600", "-i").CombinedOutput()
	if err != nil {
		t.Fatalf("sipsak register %s: %v\n%s", user, err, out)
	}
}

// TestRestartKeepsBindings registers, stops the server (which flushes), and
// starts a new one on the same PostgreSQL schema: the bindings are back.
func TestRestartKeepsBindings(t *testing.T) {
	dsn := pgtest.DSN(t)
	sipsak := needBinary(t, "sipsak", "sipsak")
	cfg := baseConfig(t, "alice,secret", "bob,secret2")
	cfg.Store, cfg.StoreSchema = dsn, pgtest.Schema(t, dsn)
	cfg.FlushInterval = time.Hour // only the shutdown flush can save them
	s := startServer(t, cfg)
	sipsakRegister(t, sipsak, s.udpAddr(), "alice", "secret")
	sipsakRegister(t, sipsak, s.udpAddr(), "bob", "secret2")
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, cfg)
	for _, aor := range []string{"sip:alice@127.0.0.1", "sip:bob@127.0.0.1"} {
		bs, err := s2.Registrar().Lookup(context.Background(), aor)
		if err != nil || len(bs) != 1 {
			t.Fatalf("%s after restart: %d bindings, %v", aor, len(bs), err)
		}
		if bs[0].Transport != "udp" || !bs[0].Received.IsValid() {
			t.Errorf("%s came back without its NAT data: %+v", aor, bs[0])
		}
	}
}

// TestDatabaseOutage cuts PostgreSQL away from a running server:
// registrations keep working, and the bindings reach the database once it
// is back.
func TestDatabaseOutage(t *testing.T) {
	dsn := pgtest.DSN(t)
	sipsak := needBinary(t, "sipsak", "sipsak")
	proxy := pgtest.NewProxy(t, dsn)
	schema := pgtest.Schema(t, dsn)
	cfg := baseConfig(t, "alice,secret")
	cfg.Store, cfg.StoreSchema = proxy.DSN(dsn)+"&connect_timeout=2", schema
	cfg.FlushInterval = 200 * time.Millisecond
	s := startServer(t, cfg)

	proxy.Cut()
	sipsakRegister(t, sipsak, s.udpAddr(), "alice", "secret")
	if bs, _ := s.Registrar().Lookup(context.Background(), "sip:alice@127.0.0.1"); len(bs) != 1 {
		t.Fatal("registration failed while the database was down")
	}
	// Let a few flushes fail.
	deadline := time.Now().Add(10 * time.Second)
	for s.Registrar().Stats().FlushErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no flush attempt failed during the outage")
		}
		time.Sleep(50 * time.Millisecond)
	}
	proxy.Restore(t)

	direct, err := postgres.New(context.Background(), postgres.Config{DSN: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	deadline = time.Now().Add(20 * time.Second)
	for {
		bs, err := direct.ListBindings(context.Background(), "sip:alice@127.0.0.1", time.Now())
		if err == nil && len(bs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("binding made during the outage is not in the database 20s after it came back (%v, stats %+v)", err, s.Registrar().Stats())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
