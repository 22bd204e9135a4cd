package stun_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/talkpad/talkpad/stun"
	"github.com/talkpad/talkpad/stun/stuntest"
)

// These tests run coturn's tools (Debian package coturn) against our
// server, and our classifier against coturn's server, on loopback.

func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (Debian package coturn): %v", name, err)
	}
	return p
}

func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, needTool(t, name), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
	return string(out)
}

func TestCoturnStunclient(t *testing.T) {
	needTool(t, "turnutils_stunclient")
	qs := startQuad(t, stun.Config{})
	p1 := strconv.Itoa(int(qs.addrs[0].Port()))
	out := runTool(t, "turnutils_stunclient", "-L", "127.0.0.1", "-p", p1, "127.0.0.1")
	for _, want := range []string{
		`UDP reflexive addr: 127\.0\.0\.1:\d+`,
		`Other addr: : ` + regexp.QuoteMeta(qs.addrs[3].String()),
		// Its second request asks for a change of IP and port.
		`Response origin: : ` + regexp.QuoteMeta(qs.addrs[3].String()),
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	st := qs.srv.Stats()
	if st.Success < 2 {
		t.Errorf("stats %+v", st)
	}
	// Its third request carries PADDING, which this server does not
	// implement: it must get 420, which stunclient prints.
	if st.Errors.UnknownAttribute != 1 || !regexp.MustCompile(`error 420`).MatchString(out) {
		t.Errorf("PADDING not refused with 420: %+v\n%s", st, out)
	}
}

func TestCoturnNatdiscovery(t *testing.T) {
	needTool(t, "turnutils_natdiscovery")
	qs := startQuad(t, stun.Config{})
	p1 := strconv.Itoa(int(qs.addrs[0].Port()))
	out := runTool(t, "turnutils_natdiscovery", "-m", "-f", "-L", "127.0.0.1", "-p", p1, "127.0.0.1")
	for _, want := range []string{
		"NAT with Endpoint Independent Mapping!",
		"NAT with Endpoint Independent Filtering!",
		`UDP reflexive addr: 127.0.0.1:`,
		// Mapping test II goes to the alternate IP.
		"Response origin: : " + netip.AddrPortFrom(ip2, qs.addrs[0].Port()).String(),
	} {
		if !bytes.Contains([]byte(out), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestClassifyCoturn runs our classifier against coturn's turnserver,
// started here on 127.0.0.1 and 127.0.0.2.
func TestClassifyCoturn(t *testing.T) {
	bin := needTool(t, "turnserver")
	socks, err := stuntest.LoopbackQuad(ip1, ip2)
	if err != nil {
		t.Fatal(err)
	}
	// coturn's alternate port is its main port + 1 by default; we pass
	// both explicitly. Free the ports we probed and hand them over.
	p1, p2 := socks[0].LocalAddr().(*net.UDPAddr).Port, socks[1].LocalAddr().(*net.UDPAddr).Port
	for _, s := range socks {
		s.Close()
	}
	var log bytes.Buffer
	cmd := exec.Command(bin, "-n",
		"--listening-ip", "127.0.0.1", "--listening-ip", "127.0.0.2",
		"--listening-port", strconv.Itoa(p1), "--alt-listening-port", strconv.Itoa(p2),
		"--stun-only", "--no-tls", "--no-dtls", "--no-cli", "--no-tcp",
		"--log-file", "stdout", "--simple-log",
		"--pidfile", t.TempDir()+"/turnserver.pid")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("turnserver log:\n%s", log.String())
		}
	})

	server := fmt.Sprintf("127.0.0.1:%d", p1)
	c, _ := stun.NewClassifier(stun.ClassifierConfig{LocalAddr: "127.0.0.1:0", RTO: 100 * time.Millisecond, Logger: quiet})
	var res stun.Result
	// turnserver needs a moment to open its sockets; the first
	// classifications may find it not yet there.
	for range 20 {
		if res, err = c.Classify(t.Context(), server); err != nil {
			t.Fatal(err)
		}
		if res.Type != stun.UDPBlocked {
			break
		}
	}
	t.Logf("\n%v", res)
	if res.Type != stun.OpenInternet || res.Partial || res.Mapping != stun.EndpointIndependent ||
		res.Filtering != stun.EndpointIndependent || res.Public != res.Local ||
		res.Other != netip.MustParseAddrPort(fmt.Sprintf("127.0.0.2:%d", p2)) {
		t.Errorf("got\n%v", res)
	}
}
