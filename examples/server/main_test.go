package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/icholy/digest"

	"github.com/talkpad/talkpad/registrar"
)

// testServer is a reference server running in process on loopback.
type testServer struct {
	up   listening
	stop func() error
}

// Registrar returns the running registrar, to look bindings up.
func (s *testServer) Registrar() *registrar.Registrar { return s.up.Registrar }

// udpAddr and the others return the bound addresses.
func (s *testServer) udpAddr() string { return s.up.UDP.String() }
func (s *testServer) tcpAddr() string { return s.up.TCP.String() }
func (s *testServer) wsAddr() string  { return s.up.WS.String() }

// baseConfig listens on free loopback ports with the in-memory store, no
// STUN server, and users loaded from the given "user,password" lines.
func baseConfig(t testing.TB, users ...string) config {
	t.Helper()
	cfg := config{
		SIPUDP: "127.0.0.1:0", SIPTCP: "127.0.0.1:0", SIPWS: "127.0.0.1:0",
		Realm: "talkpad", Algorithms: []string{"MD5", "SHA-256"}, Store: "memory", StoreSchema: "talkpad",
		FlushInterval: time.Second, MinExpires: time.Second, MaxExpires: 7200 * time.Second, Node: "test",
		Logger: slog.New(slog.DiscardHandler),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if len(users) > 0 {
		cfg.Users = filepath.Join(t.TempDir(), "users.csv")
		if err := os.WriteFile(cfg.Users, []byte(strings.Join(users, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// startServer runs the server until the test ends (or stop is called).
func startServer(t testing.TB, cfg config) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan listening, 1)
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, func(l listening) { ready <- l }) }()
	s := &testServer{}
	select {
	case s.up = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("server did not start in 30s")
	}
	stopped := false
	s.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("server did not stop in 30s")
		}
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("server stop: %v", err)
		}
	})
	return s
}

func needBinary(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed (Debian package %s); skipping", name, pkg)
	}
	return p
}

func TestParseFlagsAndEnv(t *testing.T) {
	t.Setenv("TALKPAD_REALM", "from-env")
	t.Setenv("TALKPAD_SIP_UDP", "127.0.0.1:5999")
	cfg, err := parseFlags([]string{"-sip-udp", "127.0.0.1:6000", "-ws-origins", "https://a.example, https://b.example"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Realm != "from-env" || cfg.SIPUDP != "127.0.0.1:6000" || len(cfg.Origins) != 2 {
		t.Fatalf("cfg = %+v", cfg)
	}
	if _, err := parseFlags([]string{"-log-level", "loud"}); err == nil {
		t.Fatal("bad log level accepted")
	}
}

func TestUsersFile(t *testing.T) {
	cfg := baseConfig(t, "# comment", "alice,secret", "", "zoë, pässword")
	s := startServer(t, cfg)
	_ = s
	bad := baseConfig(t, "alice")
	if err := run(context.Background(), bad, nil); err == nil || !strings.Contains(err.Error(), "username,password") {
		t.Fatalf("malformed users file: %v", err)
	}
}

// TestSipsak registers with sipsak, a real SIP client, over UDP and TCP.
func TestSipsak(t *testing.T) {
	sipsak := needBinary(t, "sipsak", "sipsak")
	s := startServer(t, baseConfig(t, "alice,secret"))
	for _, tc := range []struct{ transport, addr string }{{"udp", s.udpAddr()}, {"tcp", s.tcpAddr()}} {
		args := []string{"-U", "-s", "sip:alice@" + tc.addr, "-u", "alice", "-a", "secret", "-x", "300", "-i"}
		if tc.transport == "tcp" {
			args = append(args, "-E", "tcp")
		}
		out, err := exec.Command(sipsak, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("sipsak over %s: %v\n%s", tc.transport, err, out)
		}
	}
	bs, err := s.Registrar().Lookup(context.Background(), "sip:alice@127.0.0.1")
	if err != nil || len(bs) == 0 {
		t.Fatalf("no binding after sipsak registered: %v", err)
	}
}

// TestSipp1000Users registers 1000 distinct users with digest
// authentication using sipp, and checks every binding is there.
func TestSipp1000Users(t *testing.T) {
	sipp := needBinary(t, "sipp", "sip-tester")
	const n = 1000
	users := make([]string, n)
	inf := []string{"SEQUENTIAL"}
	for i := range n {
		users[i] = fmt.Sprintf("user%04d,pw%04d", i, i)
		inf = append(inf, fmt.Sprintf("user%04d;[authentication username=user%04d password=pw%04d];127.0.0.1", i, i, i))
	}
	s := startServer(t, baseConfig(t, users...))
	dir := t.TempDir()
	infPath := filepath.Join(dir, "users.csv")
	os.WriteFile(infPath, []byte(strings.Join(inf, "\n")+"\n"), 0o600)
	cmd := exec.Command(sipp, s.udpAddr(), "-sf", "testdata/register.xml", "-inf", infPath,
		"-m", fmt.Sprint(n), "-r", "500", "-l", "200", "-i", "127.0.0.1", "-p", fmt.Sprint(freeUDPPort(t)),
		"-t", "u1", "-nostdin", "-timeout", "60s", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
		"-trace_stat", "-stf", filepath.Join(dir, "stat.csv"))
	cmd.Dir = "."
	out, err := cmd.CombinedOutput()
	if err != nil {
		errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
		t.Fatalf("sipp: %v\n%s\n%s", err, tail(out, 2000), tail(errs, 2000))
	}
	ctx := context.Background()
	missing := 0
	for i := range n {
		bs, err := s.Registrar().Lookup(ctx, fmt.Sprintf("sip:user%04d@127.0.0.1", i))
		if err != nil || len(bs) != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d users have no binding after sipp registered them all", missing, n)
	}
	if st := s.Registrar().Stats(); st.Auth.OK != n {
		t.Errorf("Auth.OK = %d, want %d", st.Auth.OK, n)
	}
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestTCPBindingDiesWithConnection registers over TCP with sipsak; when
// sipsak exits and its connection closes, the binding is gone.
func TestTCPBindingDiesWithConnection(t *testing.T) {
	sipsak := needBinary(t, "sipsak", "sipsak")
	s := startServer(t, baseConfig(t, "alice,secret"))
	removed := make(chan registrar.Event, 4)
	stop := s.Registrar().Watch(func(e registrar.Event) {
		if e.Kind == registrar.Removed {
			removed <- e
		}
	})
	defer stop()
	out, err := exec.Command(sipsak, "-U", "-s", "sip:alice@"+s.tcpAddr(), "-u", "alice", "-a", "secret", "-x", "300", "-i", "-E", "tcp").CombinedOutput()
	if err != nil {
		t.Fatalf("sipsak: %v\n%s", err, out)
	}
	select {
	case e := <-removed:
		if e.Reason != "connection closed" || e.Binding.Transport != "tcp" {
			t.Fatalf("removed: %+v", e)
		}
	case <-time.After(10 * time.Second):
		bs, _ := s.Registrar().Lookup(context.Background(), "sip:alice@127.0.0.1")
		t.Fatalf("TCP binding still there 10s after its connection closed: %+v", bs)
	}
}

// TestKeepAliveTCP: a double-CRLF ping on a SIP TCP connection gets a
// CRLF pong (RFC 5626 §4.4.1).
func TestKeepAliveTCP(t *testing.T) {
	s := startServer(t, baseConfig(t))
	c, err := net.Dial("tcp", s.tcpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "\r\n" {
		t.Fatalf("pong = %q, %v; want CRLF", buf[:n], err)
	}
}

func TestAdmin(t *testing.T) {
	sipsak := needBinary(t, "sipsak", "sipsak")
	cfg := baseConfig(t, "alice,secret")
	cfg.Admin = "127.0.0.1:0"
	s := startServer(t, cfg)
	out, err := exec.Command(sipsak, "-U", "-s", "sip:alice@"+s.udpAddr(), "-u", "alice", "-a", "secret", "-x", "300", "-i").CombinedOutput()
	if err != nil {
		t.Fatalf("sipsak: %v\n%s", err, out)
	}
	get := func(path string) string {
		res, err := http.Get("http://" + s.up.Admin.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if m := get("/metrics"); !strings.Contains(m, "talkpad_registrar_bindings 1\n") || !strings.Contains(m, `talkpad_auth_total{outcome="ok"} 1`) {
		t.Fatalf("metrics:\n%s", m)
	}
	if l := get("/api/lookup?aor=sip:alice@127.0.0.1"); !strings.Contains(l, `"Transport":"udp"`) {
		t.Fatalf("lookup: %s", l)
	}
}

// TestUDPRetransmission: over UDP REGISTER is answered statelessly; a
// retransmitted authenticated REGISTER gets the very same answer, not a
// replay refusal, and other methods still reach sipgo.
func TestUDPRetransmission(t *testing.T) {
	s := startServer(t, baseConfig(t, "alice,secret"))
	c, err := net.Dial("udp", s.udpAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	exchange := func(msg string) string {
		t.Helper()
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no answer to\n%s: %v", msg, err)
		}
		return string(buf[:n])
	}
	reg := func(branch string, cseq int, auth string) string {
		m := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=" + branch + ";rport\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:alice@127.0.0.1>\r\nCall-ID: retrans-test\r\n" +
			fmt.Sprintf("CSeq: %d REGISTER\r\n", cseq) + "Contact: <sip:alice@" + local + ">\r\n"
		if auth != "" {
			m += "Authorization: " + auth + "\r\n"
		}
		return m + "Content-Length: 0\r\n\r\n"
	}
	first := exchange(reg("z9hG4bK-1", 1, ""))
	if !strings.HasPrefix(first, "SIP/2.0 401") {
		t.Fatalf("first REGISTER: %s", first)
	}
	var chal *digest.Challenge
	for _, line := range strings.Split(first, "\r\n") {
		if v, ok := strings.CutPrefix(line, "WWW-Authenticate: "); ok {
			if c, err := digest.ParseChallenge(v); err == nil && c.Algorithm == "MD5" {
				chal = c
			}
		}
	}
	if chal == nil {
		t.Fatalf("no MD5 challenge in %s", first)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "REGISTER", URI: "sip:127.0.0.1", Username: "alice", Password: "secret", Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	authReq := reg("z9hG4bK-2", 2, cred.String())
	ok1 := exchange(authReq)
	ok2 := exchange(authReq) // a retransmission: same branch, same nc
	if !strings.HasPrefix(ok1, "SIP/2.0 200") || ok1 != ok2 {
		t.Fatalf("answer and retransmission answer differ:\n%s\n---\n%s", ok1, ok2)
	}
	if !strings.Contains(ok1, "rport=") || !strings.Contains(ok1, "received=127.0.0.1") {
		t.Errorf("Via without rport/received: %s", ok1)
	}
	opt := exchange("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP " + local + ";branch=z9hG4bK-3;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
	if !strings.HasPrefix(opt, "SIP/2.0 200") {
		t.Fatalf("OPTIONS: %s", opt)
	}
	if st := s.Registrar().Stats(); st.Auth.Replay != 0 || st.Registrations != 1 {
		t.Errorf("stats = %+v", st)
	}
}
