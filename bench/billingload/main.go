// Command billingload measures what the billing engine costs with many
// simultaneous calls: it keeps -calls calls live on one engine (one node)
// for -duration after a -ramp, each on its own account, and reports the
// database statements and transactions per second, the CPU time of this
// process (engine and load generator) and of the PostgreSQL server
// processes, and how late the calls whose money ran out were cut off.
//
//	billingload -store memory -calls 10000
//	billingload -store postgres -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//
// Each call lasts a uniformly random time around -hold, then hangs up and
// its slot starts a new call. A -short fraction of the accounts hold money
// for only 70 to 170 seconds of talk at the dearest rate: their calls are cut off by the engine,
// and get a top-up before the slot's next call. With -store postgres it
// works in a fresh schema that it drops at the end.
package main

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
	"github.com/talkpad/talkpad/store/postgres"
)

func main() {
	backend := flag.String("store", "memory", "memory or postgres")
	dsn := flag.String("dsn", os.Getenv("TALKPAD_TEST_POSTGRES"), "PostgreSQL DSN for -store postgres")
	calls := flag.Int("calls", 10000, "simultaneous calls to keep live")
	ramp := flag.Duration("ramp", 20*time.Second, "time to bring the calls up")
	duration := flag.Duration("duration", 60*time.Second, "measurement time after the ramp")
	hold := flag.Duration("hold", 180*time.Second, "mean call duration")
	window := flag.Duration("window", 60*time.Second, "engine reservation window")
	short := flag.Float64("short", 0.1, "fraction of accounts whose money runs out mid-call")
	tariffs := flag.Int("tariffs", 100000, "prefixes in the rate table")
	conns := flag.Int("conns", 8, "PostgreSQL pool size")
	execMode := flag.String("exec-mode", "exec", "how pgx sends statements: exec (unnamed, PgBouncer-safe, the store's default) or cache (named prepared statements, direct connections only)")
	flag.Parse()
	mode := pgx.QueryExecModeExec
	switch *execMode {
	case "exec":
	case "cache":
		mode = pgx.QueryExecModeCacheStatement
	default:
		fmt.Fprintln(os.Stderr, "billingload: -exec-mode: exec or cache")
		os.Exit(2)
	}
	if err := run(*backend, *dsn, *calls, *ramp, *duration, *hold, *window, *short, *tariffs, int32(*conns), mode); err != nil {
		fmt.Fprintln(os.Stderr, "billingload:", err)
		os.Exit(1)
	}
}

// counter counts the statements pgx sends, batched ones included.
type counter struct{ n atomic.Int64 }

func (c *counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *counter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (c *counter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) { c.n.Add(1) }
func (c *counter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

func run(backend, dsn string, n int, ramp, duration, hold, window time.Duration, short float64, ntariffs int, conns int32, mode pgx.QueryExecMode) error {
	ctx := context.Background()
	stmts := &counter{}
	var st store.Billing
	var pgPool *pgxpool.Pool
	switch backend {
	case "memory":
		st = memory.New()
	case "postgres":
		if dsn == "" {
			return fmt.Errorf("-dsn or TALKPAD_TEST_POSTGRES is required with -store postgres")
		}
		var b [4]byte
		crand.Read(b[:])
		schema := "talkpad_billingload_" + hex.EncodeToString(b[:])
		pc, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return err
		}
		pc.ConnConfig.DefaultQueryExecMode = mode
		pc.ConnConfig.Tracer = stmts
		pc.MaxConns, pc.MinConns = conns, conns
		// Named, so that the PostgreSQL backends serving this run can be
		// told from those of anything else on the server.
		pc.ConnConfig.RuntimeParams["application_name"] = appName
		pgPool, err = pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return err
		}
		defer pgPool.Close()
		defer pgPool.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
		ps, err := postgres.New(ctx, postgres.Config{Pool: pgPool, Schema: schema, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return err
		}
		st = ps
	default:
		return fmt.Errorf("-store %q: memory or postgres", backend)
	}

	rng := rand.New(rand.NewPCG(1, 2))
	ts := make([]store.Tariff, 0, ntariffs+1)
	ts = append(ts, store.Tariff{Prefix: "", PricePerMinute: 60_000, FirstIncrement: 1, NextIncrement: 1})
	seen := map[string]bool{}
	for len(ts) < ntariffs+1 {
		p := strconv.Itoa(10 + rng.IntN(99_999_990))
		if seen[p] {
			continue
		}
		seen[p] = true
		inc := []int32{1, 6, 30, 60}[rng.IntN(4)]
		ts = append(ts, store.Tariff{Prefix: p, PricePerMinute: int64(6_000 + rng.IntN(600_000)), FirstIncrement: inc, NextIncrement: inc})
	}
	if err := st.UpsertTariffs(ctx, ts); err != nil {
		return err
	}
	dest := func(r *rand.Rand) string { return "+" + ts[1+r.IntN(ntariffs)].Prefix + "1234567" }

	// At most 10,000 µ/s (600,000/min): rich accounts hold 100 hours.
	const rich = 10_000 * 3600 * 100
	shortSlots := int(float64(n) * short)
	for i := range n {
		if err := st.CreateAccount(ctx, store.Account{ID: fmt.Sprint("acct-", i), Currency: "EUR"}); err != nil {
			return err
		}
	}
	fmt.Printf("setup: %d accounts, %d tariffs on %s\n", n, len(ts), backend)

	slots := make([]chan billing.Cutoff, n)
	for i := range slots {
		slots[i] = make(chan billing.Cutoff, 4)
	}
	var lateMu sync.Mutex
	var late []time.Duration
	e, err := billing.New(billing.Config{
		Store: st, Node: "load-1", Window: window, Logger: slog.New(slog.DiscardHandler),
		OnCutoff: func(c billing.Cutoff) {
			d := time.Since(c.At)
			lateMu.Lock()
			late = append(late, d)
			lateMu.Unlock()
			i, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(c.CallID, "-", 2)[0], "s"))
			select {
			case slots[i] <- c:
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	sctx, stopServe := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- e.Serve(sctx) }()
	for e.Tariffs().Len() == 0 {
		time.Sleep(10 * time.Millisecond)
	}

	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var failures, topUpErrs atomic.Int64 // refused Starts, failed top-ups
	for i := range n {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 7))
			acct := fmt.Sprint("acct-", i)
			tops := 0
			topUp := func(int) {
				tops++
				k := tops
				amount := int64(rich)
				if i < shortSlots {
					amount = int64(70+r.IntN(100)) * 10_000 // 70-170 s at the dearest rate
				}
				if _, err := e.TopUp(lctx, acct, amount, fmt.Sprint("t", k), ""); err != nil && lctx.Err() == nil {
					topUpErrs.Add(1)
				}
			}
			topUp(0)
			select {
			case <-time.After(time.Duration(i) * ramp / time.Duration(n)):
			case <-lctx.Done():
				return
			}
			for k := 0; lctx.Err() == nil; k++ {
				id := fmt.Sprintf("s%d-%d", i, k)
				if err := e.Start(lctx, billing.Call{ID: id, Account: acct, Caller: "load", Callee: dest(r)}); err != nil {
					if lctx.Err() == nil {
						if failures.Add(1) <= 3 {
							fmt.Fprintln(os.Stderr, "Start refused:", err)
						}
						topUp(k + 1)
						time.Sleep(time.Second)
					}
					continue
				}
				d := time.Duration(float64(hold) * (0.5 + r.Float64()))
				if k == 0 {
					// The first calls end at random, as if the node had
					// been running: the churn is steady from the start.
					d = time.Duration(float64(hold) * 1.5 * r.Float64())
				}
				t := time.NewTimer(d)
				select {
				case <-t.C:
					e.Stop(context.Background(), id, time.Time{}, "")
				case <-slots[i]:
					t.Stop()
					e.Stop(context.Background(), id, time.Time{}, "")
					topUp(k + 1)
				case <-lctx.Done():
					t.Stop()
					e.Stop(context.Background(), id, time.Time{}, "")
					return
				}
			}
		})
	}

	time.Sleep(ramp)
	fmt.Printf("ramped up: %d live calls\n", e.Stats().LiveCalls)
	s0, c0, pg0, x0, o0 := e.Stats(), cpuSelf(), cpuPostgres(), xacts(ctx, pgPool), cpuOurs(ctx, pgPool)
	q0 := stmts.n.Load()
	lateMu.Lock()
	late = late[:0]
	lateMu.Unlock()
	t0 := time.Now()
	var minLive, maxLive int
	minLive = n
	for time.Since(t0) < duration {
		time.Sleep(time.Second)
		l := e.Stats().LiveCalls
		minLive, maxLive = min(minLive, l), max(maxLive, l)
	}
	el := time.Since(t0)
	s1, c1, pg1, x1, o1 := e.Stats(), cpuSelf(), cpuPostgres(), xacts(ctx, pgPool), cpuOurs(ctx, pgPool)
	q1 := stmts.n.Load()
	stopLoad()
	wg.Wait()
	stopServe()
	<-served
	e.Close()

	lateMu.Lock()
	slices.Sort(late)
	pct := func(p float64) time.Duration {
		if len(late) == 0 {
			return 0
		}
		return late[min(len(late)-1, int(p*float64(len(late))))]
	}
	sec := el.Seconds()
	engineCPU := (c1 - c0).Seconds() / sec * 100
	pgCPU := (pg1 - pg0).Seconds() / sec * 100
	oursCPU := (o1 - o0).Seconds() / sec * 100
	fmt.Printf("store=%s calls=%d live=%d..%d window=%v duration=%v\n", backend, n, minLive, maxLive, window, el.Round(time.Second))
	fmt.Printf("  calls started %.0f/s, stopped %.0f/s, cut off %.0f/s, renewals %.0f/s in %.1f batches/s; %d Starts refused (mostly accounts spent out, as the load intends), %d top-ups failed\n",
		float64(s1.Started-s0.Started)/sec, float64(s1.Stopped-s0.Stopped)/sec, float64(s1.CutOff-s0.CutOff)/sec,
		float64(s1.Renewals-s0.Renewals)/sec, float64(s1.RenewalBatches-s0.RenewalBatches)/sec, failures.Load(), topUpErrs.Load())
	if pgPool != nil {
		fmt.Printf("  database: %.0f statements/s from this run; %.0f transactions/s in the database (every client)\n", float64(q1-q0)/sec, float64(x1-x0)/sec)
	}
	fmt.Printf("  CPU: this process %.1f%% of one core; PostgreSQL for this run %.1f%% (all postgres processes on the machine %.1f%%); together %.1f%%\n",
		engineCPU, oursCPU, pgCPU, engineCPU+oursCPU)
	fmt.Printf("  cut-off lateness over %d cut-offs: p50 %v, p99 %v, max %v\n", len(late), pct(0.5), pct(0.99), pct(1))
	fmt.Printf("RESULT store=%s calls=%d stmts_per_s=%.0f cpu_pct_total=%.1f late_p99_ms=%.1f late_max_ms=%.1f\n",
		backend, n, float64(q1-q0)/sec, engineCPU+oursCPU, float64(pct(0.99))/1e6, float64(pct(1))/1e6)
	lateMu.Unlock()
	return nil
}

const appName = "talkpad-billingload"

// cpuOurs sums the CPU time of the PostgreSQL backends serving this run
// and of the server's shared writers (WAL writer, checkpointer, background
// writer), which work for every client but mostly for the busiest.
func cpuOurs(ctx context.Context, pool *pgxpool.Pool) time.Duration {
	if pool == nil {
		return 0
	}
	rows, err := pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1
		OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`, appName)
	if err != nil {
		return 0
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, pid := range pids {
		total += cpuOf(fmt.Sprintf("/proc/%d/stat", pid))
	}
	return total
}

// cpuOf reads a process's user and system CPU time from its stat file.
func cpuOf(path string) time.Duration {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	s := string(b)
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0
	}
	f := strings.Fields(s[end+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ
}

func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPostgres sums the CPU time of every process named postgres on this
// machine (the server and its backends), from /proc. Backends that ended
// in between are missed; the pool keeps its connections, so there are few.
func cpuPostgres() time.Duration {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total time.Duration
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')'); open >= 0 && end > open && string(b[open+1:end]) == "postgres" {
			total += cpuOf(p)
		}
	}
	return total
}

func xacts(ctx context.Context, pool *pgxpool.Pool) int64 {
	if pool == nil {
		return 0
	}
	var n int64
	err := pool.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	if err != nil {
		return 0
	}
	return n
}
