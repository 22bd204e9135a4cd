// Package pgtest gives tests a PostgreSQL to work in: the DSN from
// TALKPAD_TEST_POSTGRES, a fresh schema per test dropped afterwards, and a
// PgBouncer in transaction pooling mode started on demand.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN is the environment variable holding the test database's DSN.
const EnvDSN = "TALKPAD_TEST_POSTGRES"

// DSN returns the test database's DSN, or skips the test when it is unset.
// When it is set, the database must be reachable: a test fails rather than
// skips, so CI cannot pass with the database silently gone.
func DSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvDSN)
	if dsn == "" {
		t.Skipf("%s is not set; skipping PostgreSQL test (e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable)", EnvDSN, EnvDSN)
	}
	return dsn
}

// Schema creates a uniquely named schema for the test and drops it, with
// everything in it, when the test ends. It returns the schema's name.
func Schema(t testing.TB, dsn string) string {
	t.Helper()
	var b [6]byte
	rand.Read(b[:])
	name := "talkpad_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s: %v", EnvDSN, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("create schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Errorf("drop schema %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// PgBouncer starts a pgbouncer in transaction pooling mode in front of the
// database dsn points at, and returns a DSN that goes through it. It is
// stopped when the test ends. The test is skipped when pgbouncer is not
// installed.
func PgBouncer(t testing.TB, dsn string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"} {
			if _, err := os.Stat(p); err == nil {
				bin = p
			}
		}
	}
	if bin == "" {
		t.Skip("pgbouncer is not installed; skipping the PgBouncer run (Debian package pgbouncer)")
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvDSN, err)
	}
	dir, err := os.MkdirTemp("", "talkpad-pgbouncer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// pgbouncer refuses to run as root; it drops to -u's user, which must
	// be able to write its log and pid files.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	password := ""
	if cfg.Password != "" {
		// A fresh cluster authenticates TCP logins with a password.
		password = " password=" + cfg.Password
	}
	ini := fmt.Sprintf(`[databases]
%s = host=%s port=%d dbname=%s user=%s%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
max_client_conn = 500
default_pool_size = 10
ignore_startup_parameters = extra_float_digits,search_path
logfile = %s
pidfile = %s
`, cfg.Database, cfg.Host, cfg.Port, cfg.Database, cfg.User, password, port,
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
	iniPath := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(iniPath, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{iniPath}
	if os.Geteuid() == 0 {
		runAs := "postgres"
		if _, err := user.Lookup(runAs); err != nil {
			runAs = "nobody"
		}
		args = []string{"-u", runAs, iniPath}
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pgbouncer: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
			t.Fatalf("pgbouncer exited: %s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgbouncer not listening on %s after 10s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(cfg.User),
		Host:     addr,
		Path:     "/" + cfg.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
