package relay_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"

	"github.com/talkpad/talkpad/relay"
)

func TestPortsExhaustionAndReuse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 30001-30006 holds the even/odd pairs 30002, 30004 and 30006.
		e := newEnv(t, relay.Config{MinPort: 30001, MaxPort: 30007})
		ctx := context.Background()
		// Another process holds 30004's RTCP port: that pair is skipped.
		busy, err := e.n.ListenConn(netip.AddrPortFrom(relayIP, 30005))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { busy.Close() })
		offer := func(id string) ([]byte, error) {
			return e.r.Offer(ctx, relay.OfferRequest{CallID: id, FromTag: "a", SDP: audioSDP(alice4000, "")})
		}
		out, err := offer("c1")
		if err != nil {
			t.Fatal(err)
		}
		q, _ := e.r.Query(ctx, "c1")
		got := []uint16{q.Streams[0].Legs[0].Local.Port(), q.Streams[0].Legs[1].Local.Port()}
		if got[0] != 30002 || got[1] != 30006 || mediaAddr(t, out).Port() != 30006 {
			t.Errorf("ports = %v, SDP to bob %v; want 30002 and 30006", got, mediaAddr(t, out))
		}
		if _, err := offer("c2"); !errors.Is(err, relay.ErrNoPorts) {
			t.Fatalf("offer with no ports left: %v, want ErrNoPorts", err)
		}
		if st := e.r.Stats(); st.Sessions != 1 || st.PortPairsInUse != 2 || st.PortPairsTotal != 3 {
			t.Errorf("stats after failed offer: %+v", st)
		}
		if err := e.r.Delete(ctx, relay.DeleteRequest{CallID: "c1", FromTag: "a"}); err != nil {
			t.Fatal(err)
		}
		if err := e.r.Delete(ctx, relay.DeleteRequest{CallID: "c1"}); !errors.Is(err, relay.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
		if _, err := offer("c2"); err != nil {
			t.Fatalf("offer after delete: %v", err)
		}
	})
}

func TestPortPairsEvenOdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice, bob := e.call("c1", aliceIP, bobIP, relay.Flags{})
		for _, a := range []netip.AddrPort{alice.relay, bob.relay} {
			if a.Port()%2 != 0 {
				t.Errorf("RTP port %d is odd", a.Port())
			}
		}
		// RTCP on the odd port next to RTP reaches the other party's RTCP
		// port (its RTP port + 1).
		bobRTCP := e.party(netip.AddrPortFrom(bobIP, bob.conn.AddrPort().Port()+1))
		aliceRTCP := e.party(netip.AddrPortFrom(aliceIP, alice.conn.AddrPort().Port()+1))
		rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 1} // empty receiver report
		if _, err := aliceRTCP.conn.WriteToUDPAddrPort(rr, netip.AddrPortFrom(relayIP, alice.relay.Port()+1)); err != nil {
			t.Fatal(err)
		}
		if got := bobRTCP.recv(); len(got) != 1 {
			t.Fatalf("bob's RTCP port got %d packets", len(got))
		}
		if st := e.r.Stats(); st.RTCPPackets != 1 {
			t.Errorf("RTCP packets = %d", st.RTCPPackets)
		}
	})
}

func TestBadRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		ctx := context.Background()
		cases := []struct {
			name string
			err  error
			do   func() error
		}{
			{"offer without call-id", relay.ErrBadRequest, func() error {
				_, err := e.r.Offer(ctx, relay.OfferRequest{FromTag: "a", SDP: audioSDP(alice4000, "")})
				return err
			}},
			{"offer with garbage SDP", relay.ErrBadSDP, func() error {
				_, err := e.r.Offer(ctx, relay.OfferRequest{CallID: "x", FromTag: "a", SDP: []byte("hello")})
				return err
			}},
			{"answer to unknown call", relay.ErrNotFound, func() error {
				_, err := e.r.Answer(ctx, relay.AnswerRequest{CallID: "nope", FromTag: "a", ToTag: "b", SDP: audioSDP(alice4000, "")})
				return err
			}},
			{"delete unknown call", relay.ErrNotFound, func() error {
				return e.r.Delete(ctx, relay.DeleteRequest{CallID: "nope"})
			}},
		}
		for _, tc := range cases {
			if err := tc.do(); !errors.Is(err, tc.err) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
			}
		}
		if st := e.r.Stats(); st.Sessions != 0 || st.PortPairsInUse != 0 {
			t.Errorf("failed requests left state: %+v", st)
		}
	})
}

// Sessions are keyed by call-id and tags: an offer from a tag no session of
// the call knows starts a second session under the same call-id; deleting by
// tag ends only that one, deleting by call-id ends all.
func TestSessionsKeyedByCallIDAndTag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		ctx := context.Background()
		for _, tag := range []string{"a", "x"} {
			if _, err := e.r.Offer(ctx, relay.OfferRequest{CallID: "same", FromTag: tag, SDP: audioSDP(alice4000, "")}); err != nil {
				t.Fatal(err)
			}
		}
		if st := e.r.Stats(); st.Sessions != 2 {
			t.Fatalf("sessions = %d, want 2", st.Sessions)
		}
		if _, err := e.r.Answer(ctx, relay.AnswerRequest{CallID: "same", FromTag: "x", ToTag: "y", SDP: audioSDP(netip.AddrPortFrom(bobIP, 5000), "")}); err != nil {
			t.Fatal(err)
		}
		if err := e.r.Delete(ctx, relay.DeleteRequest{CallID: "same", FromTag: "y"}); err != nil {
			t.Fatal(err)
		}
		if st := e.r.Stats(); st.Sessions != 1 {
			t.Errorf("after deleting by to-tag: %d sessions", st.Sessions)
		}
		if err := e.r.Delete(ctx, relay.DeleteRequest{CallID: "same", FromTag: "nobody"}); !errors.Is(err, relay.ErrNotFound) {
			t.Errorf("delete by unknown tag: %v", err)
		}
		if err := e.r.Delete(ctx, relay.DeleteRequest{CallID: "same"}); err != nil {
			t.Fatal(err)
		}
		if st := e.r.Stats(); st.Sessions != 0 || st.PortPairsInUse != 0 {
			t.Errorf("after delete: %+v", st)
		}
	})
}
