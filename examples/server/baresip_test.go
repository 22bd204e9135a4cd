package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/talkpad/talkpad/registrar"
)

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// baresipConfig writes a baresip configuration directory for one account
// registering over UDP to server every regint seconds, with the SIP socket
// on a free 127.0.0.1 port.
func baresipConfig(t *testing.T, server, user, pass string, regint int) string {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`module_path /usr/lib/baresip/modules
module_app account.so
sip_listen 127.0.0.1:%d
`, freeUDPPort(t))
	acct := fmt.Sprintf("<sip:%s@%s;transport=udp>;auth_pass=%s;regint=%d\n", user, server, pass, regint)
	for name, body := range map[string]string{"config": conf, "accounts": acct} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBaresipRegistersAndRefreshes runs baresip, a real SIP user agent,
// against the server: it registers with digest authentication, refreshes
// its registration before it expires, and unregisters when it quits.
//
// The server offers only MD5 here. baresip 1.0 (Debian 12) uses libre 1.1,
// whose client digest knows only MD5 and fails the whole authentication
// with ENOSYS ("reg: ...: Register: Function not implemented") as soon as
// any WWW-Authenticate header names another algorithm, even when an MD5
// challenge is offered next to it. Later libre releases also answer
// SHA-256.
func TestBaresipRegistersAndRefreshes(t *testing.T) {
	baresip := needBinary(t, "baresip", "baresip")
	if _, err := os.Stat("/usr/lib/baresip/modules/account.so"); err != nil {
		t.Skipf("baresip's account module is not installed (Debian package baresip-core): %v", err)
	}
	// The default challenge policy gives baresip 1.x (libre 1.x, which
	// gives up on any non-MD5 challenge) MD5 alone.
	cfg := baseConfig(t, "alice,secret")
	s := startServer(t, cfg)

	events := make(chan registrar.Event, 16)
	stop := s.Registrar().Watch(func(e registrar.Event) {
		if e.Binding.AOR == "sip:alice@127.0.0.1" {
			select {
			case events <- e:
			default:
			}
		}
	})
	defer stop()

	// libre refreshes at 90% of the granted expiry: every 2.7 s here.
	const regint = 3
	dir := baresipConfig(t, s.udpAddr(), "alice", "secret", regint)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// -4: IPv4 only. -n 127.0.0.1: loopback only; without it baresip takes
	// the machine's first non-loopback address as its own ("-n lo" fails
	// with "lo: could not get IPv4 address (No such device)").
	// -s: SIP trace, shown on failure. -t: quit by itself even if the test
	// is killed.
	cmd := exec.CommandContext(ctx, baresip, "-4", "-n", "127.0.0.1", "-s", "-t", "30", "-f", dir)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("baresip output:\n%s", tail([]byte(out.String()), 6000))
		}
	}()

	var added registrar.Event
	deadline := time.After(15 * time.Second)
	for added.Kind == 0 {
		select {
		case e := <-events:
			if e.Kind == registrar.Added {
				added = e
			}
		case <-deadline:
			t.Fatal("baresip did not register within 15s")
		}
	}
	b := added.Binding
	if b.Transport != "udp" || !b.Received.Addr().IsLoopback() || b.CallID == "" {
		t.Fatalf("binding = %+v", b)
	}
	if st := s.Registrar().Stats(); st.Auth.OK < 1 {
		t.Errorf("Auth.OK = %d after baresip registered", st.Auth.OK)
	}

	// The refresh keeps the Call-ID, raises the CSeq and pushes the expiry
	// out (RFC 3261 §10.2.4).
	select {
	case e := <-events:
		if e.Kind != registrar.Refreshed {
			t.Fatalf("unexpected %s event: %+v", e.Kind, e.Binding)
		}
		r := e.Binding
		if r.CallID != b.CallID || r.CSeq <= b.CSeq || !r.Expires.After(b.Expires) {
			t.Fatalf("refresh = Call-ID %q CSeq %d expires %v; first = Call-ID %q CSeq %d expires %v",
				r.CallID, r.CSeq, r.Expires, b.CallID, b.CSeq, b.Expires)
		}
		bs, err := s.Registrar().Lookup(context.Background(), "sip:alice@127.0.0.1")
		if err != nil || len(bs) != 1 || bs[0].CSeq < r.CSeq {
			t.Fatalf("lookup after refresh = %+v, %v", bs, err)
		}
	case <-time.After(3 * regint * time.Second):
		t.Fatalf("baresip did not refresh within %ds of registering", 3*regint)
	}

	// On SIGTERM baresip unregisters (Expires: 0) before it exits.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.After(10 * time.Second)
	for {
		select {
		case e := <-events:
			if e.Kind == registrar.Refreshed {
				continue // a refresh that crossed the signal
			}
			if e.Kind != registrar.Removed || e.Reason != "unregistered" {
				t.Fatalf("after SIGTERM: %s event (%s): %+v", e.Kind, e.Reason, e.Binding)
			}
			if bs, err := s.Registrar().Lookup(context.Background(), "sip:alice@127.0.0.1"); err != nil || len(bs) != 0 {
				t.Fatalf("lookup after baresip unregistered = %+v, %v", bs, err)
			}
			return
		case <-deadline:
			t.Fatal("baresip did not unregister within 10s of SIGTERM")
		}
	}
}
