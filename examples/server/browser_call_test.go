package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/talkpad/talkpad/b2bua"
)

// TestBrowserCall is the product's core use case with real peers: two
// JsSIP pages in headless Chromium (one browser, a context each, fake
// microphones) register over WebSocket, alice calls bob through the
// B2BUA, bob answers, the WebRTC media flows between the browsers on
// loopback (neither binding says symmetric NAT, so the server does not
// anchor it), and alice hangs up. testdata/browser/call.mjs drives the
// pages and reports each step in a line.
//
// BROWSER_CALL_DEBUG=1 logs the server at debug level; JSSIP_DEBUG=1 puts
// JsSIP's trace in the driver's stderr (shown when the test fails, or
// with -v).
func TestBrowserCall(t *testing.T) {
	node := needBinary(t, "node", "nodejs")
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Skipf("%s is not installed (Debian package chromium); skipping", chromiumPath)
	}
	npmCI(t)

	ws := freeTCPPort(t)
	origin := "http://" + ws
	cfg := baseConfig(t, "alice,secret", "bob,secret")
	cfg.SIPWS = ws
	cfg.WebRoot = t.TempDir()
	cfg.Origins = []string{origin}
	if os.Getenv("BROWSER_CALL_DEBUG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s := startServer(t, cfg)
	up := s.up

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	d := startDriver(t, ctx, node, "call.mjs", os.Getenv("JSSIP_DEBUG") != "", "--web-root", cfg.WebRoot, "--server", origin,
		"--caller", "alice:secret", "--callee", "bob:secret", "--domain", "127.0.0.1", "--chromium", chromiumPath)
	next := d.next

	next("registered alice ")
	next("registered bob ")
	next("calling sip:bob@127.0.0.1")
	next("confirmed alice")
	next("confirmed bob")
	// User targets keep their WebRTC SDP: nothing rewritten either way.
	next("sdp offer same")
	next("sdp answer same")
	for _, user := range []string{"alice", "bob"} {
		l := next("connected " + user + " connected/")
		if f := strings.Fields(l); len(f) != 5 || !directPair(t, f[3], f[4]) {
			t.Errorf("%s's selected candidate pair is not browser to browser on this machine: %q", user, l)
		}
	}
	next("media alice received=")
	next("media bob received=")

	// During the call: one answered call between the two users, media
	// direct between the browsers, nothing in the relay.
	calls := up.B2BUA.Calls()
	if len(calls) != 1 {
		t.Fatalf("B2BUA calls during the call = %+v", calls)
	}
	if c := calls[0]; c.Caller != "alice" || c.Callee != "bob" || c.Anchored || c.Status != 200 || c.Answer.IsZero() {
		t.Errorf("call during the call = %+v; want alice to bob, answered, not anchored", c)
	}
	if st := up.B2BUA.Stats(); st.Active != 1 || st.InSetup != 0 {
		t.Errorf("B2BUA during the call: Active %d, InSetup %d; want 1, 0", st.Active, st.InSetup)
	}
	if rs := up.Relay.Stats(); rs.Sessions != 0 {
		t.Errorf("relay sessions during an unanchored call = %d", rs.Sessions)
	}

	d.send("hangup")
	if l := next("ended alice "); !strings.HasPrefix(l, "ended alice local ") {
		t.Errorf("alice's session: %q, want ended by her (local)", l)
	}
	if l := next("ended bob "); !strings.HasPrefix(l, "ended bob remote ") {
		t.Errorf("bob's session: %q, want ended by alice (remote)", l)
	}
	next("done")
	d.wait()

	// Both BYEs were answered before the pages saw "ended"; the call state
	// goes once the B2BUA has finished with both legs.
	deadline := time.Now().Add(5 * time.Second)
	for len(up.B2BUA.Calls()) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if calls := up.B2BUA.Calls(); len(calls) != 0 {
		t.Fatalf("calls left after the hangup: %+v", calls)
	}
	st := up.B2BUA.Stats()
	if st.Calls != 1 || st.Answered != 1 || st.Failed != 0 || st.Active != 0 || st.InSetup != 0 {
		t.Errorf("B2BUA stats after the call: %+v; want one call, answered, none active", st)
	}
	if n := st.Ends[b2bua.CauseCallerHangup]; n != 1 || len(st.Ends) != 1 {
		t.Errorf("ends = %v; want one %q", st.Ends, b2bua.CauseCallerHangup)
	}
	if rs := up.Relay.Stats(); rs.Sessions != 0 || rs.RTPPackets != 0 {
		t.Errorf("relay after the call: %d sessions, %d RTP packets; want none", rs.Sessions, rs.RTPPackets)
	}
}

// directPair tells whether a selected ICE candidate pair, as call.js
// reports it (address:port/type, the address empty when Chromium hides a
// peer-reflexive one), joins two host candidates of this machine: no STUN
// or TURN in the path. The pages offer only 127.0.0.1, but a check sent
// from a page's other host address (eth0's, say) to the peer's 127.0.0.1
// can win as a peer-reflexive pair; it still never leaves the machine.
func directPair(t *testing.T, local, remote string) bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	own := func(a netip.Addr) bool {
		if a.IsLoopback() {
			return true
		}
		for _, ia := range addrs {
			if p, err := netip.ParsePrefix(ia.String()); err == nil && p.Addr() == a.Unmap() {
				return true
			}
		}
		return false
	}
	for _, c := range []string{local, remote} {
		hostPort, typ, ok := strings.Cut(c, "/")
		if !ok || typ != "host" && typ != "prflx" {
			return false
		}
		if typ == "prflx" && strings.HasPrefix(hostPort, ":") {
			continue // address hidden by the browser
		}
		ap, err := netip.ParseAddrPort(hostPort)
		if err != nil || !own(ap.Addr()) {
			return false
		}
	}
	return true
}
