package relay_test

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/relay"
)

func TestForwardBothWays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		if alice.relay.Addr() != relayIP || bob.relay.Addr() != relayIP || alice.relay == bob.relay {
			t.Fatalf("relay addresses: alice->%v bob->%v", alice.relay, bob.relay)
		}
		for range 5 {
			alice.send()
			bob.send()
		}
		if got := len(bob.recv()); got != 5 {
			t.Errorf("bob got %d packets, want 5", got)
		}
		if got := len(alice.recv()); got != 5 {
			t.Errorf("alice got %d packets, want 5", got)
		}
		ev := e.takeEvents()
		latched := 0
		for _, x := range ev {
			if x.Type == relay.EventLatched && x.CallID == "c1" {
				latched++
			}
		}
		if latched != 2 {
			t.Errorf("latched events = %d, want 2 (%v)", latched, ev)
		}
		st := e.r.Stats()
		if st.RTPPackets != 10 || st.Forwarded != 10 || st.Drops.Total() != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// A packet from an address that is neither the signalling source nor the SDP
// address must not latch the leg (RTP Bleed), before or after the real party
// latched, and must not reach the other party.
func TestBleedAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		// Alice is NATed: SDP says 192.0.2.10 but signalling came from
		// 100.64.0.7, which is where her media comes from too.
		natIP := netip.MustParseAddr("100.64.0.7")
		alice, bob := e.call("c1", natIP, bobIP, relay.Flags{})
		evil := e.party(netip.AddrPortFrom(evilIP, 6666))
		evil.relay = alice.relay
		natted := e.party(netip.AddrPortFrom(natIP, 61000))
		natted.relay = alice.relay

		evil.send() // before alice latched
		if got := bob.recv(); len(got) != 0 {
			t.Fatalf("bleed packet reached bob before latch")
		}
		natted.send()
		if got := bob.recv(); len(got) != 1 {
			t.Fatalf("bob got %d packets from alice's NAT address, want 1", len(got))
		}
		evil.send() // after alice latched
		bob.send()
		if got := evil.recv(); len(got) != 0 {
			t.Fatalf("attacker received %d packets of bob's media", len(got))
		}
		if got := natted.recv(); len(got) != 1 {
			t.Fatalf("alice got %d packets, want 1", len(got))
		}
		q, err := e.r.Query(context.Background(), "c1")
		if err != nil {
			t.Fatal(err)
		}
		leg := q.Streams[0].Legs[0]
		if leg.Drops.UnexpectedSource != 2 || leg.Peer != natted.conn.AddrPort() {
			t.Errorf("alice leg: drops %+v peer %v", leg.Drops, leg.Peer)
		}
	})
}

// After a re-INVITE that moves alice to a new endpoint, stray packets from the
// old one are forwarded but must not win the latch back; the new endpoint
// latches and the old one is dropped from then on.
func TestRelatchAfterReinvite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		alice.send()
		bob.send()
		bob.recv()
		alice.recv()
		e.takeEvents()

		moved := e.party(netip.AddrPortFrom(aliceIP, 4100))
		moved.relay = alice.relay
		ctx := context.Background()
		reoffer, err := e.r.Offer(ctx, relay.OfferRequest{
			CallID: "c1", FromTag: "a", ToTag: "b", SDP: audioSDP(moved.conn.AddrPort(), ""), SourceAddr: aliceIP,
		})
		if err != nil {
			t.Fatal(err)
		}
		if mediaAddr(t, reoffer) != bob.relay {
			t.Errorf("re-offer moved bob's relay port: %v, was %v", mediaAddr(t, reoffer), bob.relay)
		}
		if _, err := e.r.Answer(ctx, relay.AnswerRequest{
			CallID: "c1", FromTag: "a", ToTag: "b", SDP: audioSDP(bob.conn.AddrPort(), ""), SourceAddr: bobIP,
		}); err != nil {
			t.Fatal(err)
		}
		alice.send() // stray from the old endpoint
		if got := len(bob.recv()); got != 1 {
			t.Errorf("stray from old endpoint: bob got %d, want 1 (forwarded)", got)
		}
		bob.send()
		if got := len(alice.recv()); got != 1 {
			t.Errorf("before the new endpoint sends, alice's old address gets %d, want 1", got)
		}
		moved.send()
		if got := len(bob.recv()); got != 1 {
			t.Errorf("bob got %d packets from the new endpoint, want 1", got)
		}
		bob.send()
		if got := len(moved.recv()); got != 1 {
			t.Errorf("new endpoint got %d packets, want 1", got)
		}
		alice.send() // old endpoint again: now dropped
		if got := len(bob.recv()); got != 0 {
			t.Errorf("old endpoint after the re-latch: bob got %d packets, want 0", got)
		}
		var rel []relay.Event
		for _, ev := range e.takeEvents() {
			if ev.Type == relay.EventRelatched {
				rel = append(rel, ev)
			}
		}
		if len(rel) != 1 || rel[0].Tag != "a" || rel[0].Old != alice.conn.AddrPort() || rel[0].New != moved.conn.AddrPort() {
			t.Errorf("relatched events = %+v", rel)
		}
	})
}

// A re-INVITE that keeps the endpoint (session refresh) lets the old address
// latch again at once.
func TestRearmSameEndpoint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		alice.send()
		bob.recv()
		if _, err := e.r.Offer(context.Background(), relay.OfferRequest{
			CallID: "c1", FromTag: "a", ToTag: "b", SDP: audioSDP(alice.conn.AddrPort(), ""), SourceAddr: aliceIP,
		}); err != nil {
			t.Fatal(err)
		}
		alice.send()
		// A different port of alice's IP (eligible) must now be refused:
		// the old address won the re-armed latch back.
		other := e.party(netip.AddrPortFrom(aliceIP, 4200))
		other.relay = alice.relay
		other.send()
		if got := len(bob.recv()); got != 1 {
			t.Errorf("bob got %d packets, want 1", got)
		}
	})
}

func TestLearningModes(t *testing.T) {
	tests := []struct {
		name     string
		mode     relay.Learning
		fromSDP  bool // first packet from the SDP address (else from another port)
		second   bool // then a packet from a third port of the same IP
		wantBob  int
		wantBack bool // bob's packet reaches the first sender's address
	}{
		{"immediate/other-port", relay.LearnImmediate, false, true, 1, true},
		{"strict/sdp", relay.LearnStrict, true, true, 1, true},
		{"strict/other-port", relay.LearnStrict, false, false, 0, false},
		{"off/other-port", relay.LearnOff, false, false, 1, false},
		{"delayed/follows-within-window", relay.LearnDelayed, false, true, 2, false},
		{"handover", relay.LearnHandover, false, true, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEnv(t, relay.Config{})
				alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{Learning: tc.mode})
				first := alice
				if !tc.fromSDP {
					first = e.party(netip.AddrPortFrom(aliceIP, 4400))
					first.relay = alice.relay
				}
				first.send()
				n := len(bob.recv())
				if tc.second {
					third := e.party(netip.AddrPortFrom(aliceIP, 4500))
					third.relay = alice.relay
					third.send()
					n += len(bob.recv())
				}
				if n != tc.wantBob {
					t.Errorf("bob got %d, want %d", n, tc.wantBob)
				}
				bob.send()
				if got := len(first.recv()) == 1; got != tc.wantBack {
					t.Errorf("bob's packet reached first sender: %v, want %v", got, tc.wantBack)
				}
			})
		})
	}
}

// Delayed learning keeps its choice once the window has passed.
func TestLearnDelayedLocksAfterWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{Learning: relay.LearnDelayed})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		alice.send()
		bob.recv()
		time.Sleep(4 * time.Second)
		other := e.party(netip.AddrPortFrom(aliceIP, 4600))
		other.relay = alice.relay
		other.send()
		if got := len(bob.recv()); got != 0 {
			t.Errorf("packet from a new port after the window was forwarded")
		}
	})
}

// A second fork answers with another to-tag (183 from one branch, 200 from
// another): the latest answerer becomes the other party.
func TestForkedAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		carol := e.party(netip.MustParseAddrPort("198.51.100.30:7000"))
		carol.relay = bob.relay
		if _, err := e.r.Answer(context.Background(), relay.AnswerRequest{
			CallID: "c1", FromTag: "a", ToTag: "c", SDP: audioSDP(carol.conn.AddrPort(), ""),
		}); err != nil {
			t.Fatal(err)
		}
		alice.send()
		if got := len(carol.recv()); got != 1 {
			t.Errorf("carol got %d packets, want 1", got)
		}
		if got := len(bob.recv()); got != 0 {
			t.Errorf("bob (the first fork) got %d packets", got)
		}
		q, _ := e.r.Query(context.Background(), "c1")
		if q.ToTag != "c" {
			t.Errorf("to-tag = %q", q.ToTag)
		}
	})
}
