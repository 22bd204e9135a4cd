package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/talkpad/talkpad/registrar"
)

// chromiumPath is where Debian's chromium package puts the browser; the
// test never downloads one.
const chromiumPath = "/usr/bin/chromium"

// browserDir holds the page, its driver and their npm dependencies.
const browserDir = "testdata/browser"

// npmCI installs testdata/browser's pinned dependencies from its
// package-lock.json when node_modules is missing or older than the lock
// file (.ci/run installs them up front; this covers a fresh checkout).
func npmCI(t *testing.T) {
	t.Helper()
	lock, err := os.Stat(filepath.Join(browserDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	installed, err := os.Stat(filepath.Join(browserDir, "node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	npm := needBinary(t, "npm", "npm")
	cmd := exec.Command(npm, "ci", "--prefer-offline", "--no-audit", "--no-fund")
	cmd.Dir = browserDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", browserDir, err, tail(out, 3000))
	}
}

// freeTCPPort returns a loopback TCP port that was free a moment ago. The
// WebSocket port must be known before the server starts, because the
// allowed Origin names it.
func freeTCPPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestBrowserJsSIP registers JsSIP, bundled for the browser, from a page
// in headless Chromium over WebSocket with digest authentication. The page
// is served by the server itself on its WebSocket port, the one allowed
// Origin. When the page closes, its connection-bound binding goes with its
// connection. A page from another origin is refused at the upgrade.
func TestBrowserJsSIP(t *testing.T) {
	node := needBinary(t, "node", "nodejs")
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (Debian package chromium); skipping", chromiumPath)
	}
	npmCI(t)

	ws := freeTCPPort(t)
	origin := "http://" + ws
	cfg := baseConfig(t, "alice,secret")
	cfg.SIPWS = ws
	cfg.WebRoot = t.TempDir()
	cfg.Origins = []string{origin}
	cfg.Admin = "127.0.0.1:0"
	// JsSIP 3.13 keeps only the last WWW-Authenticate header of a response
	// (its parser replaces rather than appends) and aborts unless that one
	// is MD5: the default challenge policy puts MD5 last over WebSocket.
	s := startServer(t, cfg)
	const aor = "sip:alice@127.0.0.1"

	events := make(chan registrar.Event, 16)
	stop := s.Registrar().Watch(func(e registrar.Event) {
		if e.Binding.AOR == aor {
			select {
			case events <- e:
			default:
			}
		}
	})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d := startDriver(t, ctx, node, "run.mjs", false, "--web-root", cfg.WebRoot, "--server", origin,
		"--user", "alice", "--password", "secret", "--domain", "127.0.0.1", "--chromium", chromiumPath)
	next := d.next

	// The page registered: the binding is there, over WS, from loopback.
	next("registered")
	bs, err := s.Registrar().Lookup(ctx, aor)
	if err != nil || len(bs) != 1 {
		t.Fatalf("lookup after the page registered = %+v, %v", bs, err)
	}
	b := bs[0]
	if b.Transport != "ws" || !b.Received.Addr().IsLoopback() || !strings.Contains(b.Contact, ".invalid") {
		t.Fatalf("binding = %+v; want transport ws from loopback with JsSIP's .invalid contact", b)
	}

	// Closing the page closes the WebSocket, and the binding goes with it.
	d.send("close")
	next("closed")
	removed := time.After(10 * time.Second)
	for gone := false; !gone; {
		select {
		case e := <-events:
			if e.Kind == registrar.Removed {
				if e.Reason != "connection closed" || e.Binding.Transport != "ws" {
					t.Fatalf("removed: %+v", e)
				}
				gone = true
			}
		case <-removed:
			bs, _ := s.Registrar().Lookup(ctx, aor)
			t.Fatalf("WS binding still there 10s after the page closed: %+v", bs)
		}
	}
	if bs, err := s.Registrar().Lookup(ctx, aor); err != nil || len(bs) != 0 {
		t.Fatalf("lookup after the page closed = %+v, %v", bs, err)
	}

	// A page from another origin cannot even open the WebSocket.
	next("refused")
	next("done")
	d.wait()
	if bs, err := s.Registrar().Lookup(ctx, aor); err != nil || len(bs) != 0 {
		t.Fatalf("the foreign page registered: %+v, %v", bs, err)
	}
	// JsSIP may have retried before the page closed: at least one refusal.
	metrics := httpGet(t, "http://"+s.up.Admin.String()+"/metrics")
	if n := metricValue(metrics, "talkpad_ws_rejected_origin_total"); n < 1 {
		t.Errorf("talkpad_ws_rejected_origin_total = %d, want at least 1:\n%s", n, metrics)
	}
	if st := s.Registrar().Stats(); st.Auth.OK < 1 {
		t.Errorf("Auth.OK = %d after the page registered", st.Auth.OK)
	}
}

// browserDriver is a Node script driving Chromium for a test: it reports
// each step as a line on stdout and takes commands on stdin.
type browserDriver struct {
	t      *testing.T
	ctx    context.Context
	cmd    *exec.Cmd
	stdin  io.Writer
	stderr lockedBuffer
	lines  chan string
	exited bool
}

// startDriver runs node script args in the browser test directory until
// the test ends; its stderr is logged when the test fails (or, with
// showStderr, always with -v).
func startDriver(t *testing.T, ctx context.Context, node, script string, showStderr bool, args ...string) *browserDriver {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	d := &browserDriver{t: t, ctx: ctx, lines: make(chan string)}
	d.cmd = exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	d.cmd.Dir = browserDir
	d.cmd.WaitDelay = 5 * time.Second
	stdin, err := d.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.stdin = stdin
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stderr = &d.stderr
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !d.exited {
			cancel()
			d.cmd.Wait()
		}
		cancel()
		if t.Failed() || showStderr && testing.Verbose() {
			t.Logf("driver stderr:\n%s", tail([]byte(d.stderr.String()), 20000))
		}
	})
	go func() {
		defer close(d.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			d.lines <- sc.Text()
		}
	}()
	return d
}

// next waits for the driver's next line and checks that it starts with
// want.
func (d *browserDriver) next(want string) string {
	d.t.Helper()
	select {
	case l, ok := <-d.lines:
		if !ok {
			d.t.Fatalf("driver exited before %q", want)
		}
		if !strings.HasPrefix(l, want) {
			d.t.Fatalf("driver said %q, want %q", l, want)
		}
		d.t.Log(l)
		return l
	case <-d.ctx.Done():
		d.t.Fatalf("no %q from the driver: %v", want, d.ctx.Err())
	}
	return ""
}

// send writes a command line to the driver.
func (d *browserDriver) send(cmd string) { io.WriteString(d.stdin, cmd+"\n") }

// wait waits for the driver to exit successfully.
func (d *browserDriver) wait() {
	d.t.Helper()
	err := d.cmd.Wait()
	d.exited = true
	if err != nil {
		d.t.Fatalf("driver: %v", err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricValue returns an unlabelled integer metric from a Prometheus text
// exposition, or -1 when it is missing.
func metricValue(exposition, name string) int {
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	return -1
}
