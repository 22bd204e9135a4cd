package relay_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/pion/rtp"

	"github.com/talkpad/talkpad/relay"
)

// Alice offers only PCMU, bob only accepts PCMA: with the transcode flag the
// relay offers bob PCMA too, answers alice with PCMU, and converts both ways.
func TestTranscodingCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice := e.party(netip.AddrPortFrom(aliceIP, 4000))
		bob := e.party(netip.AddrPortFrom(bobIP, 5000))
		ctx := context.Background()
		offer, err := e.r.Offer(ctx, relay.OfferRequest{CallID: "t", FromTag: "a", SDP: audioSDP(alice.conn.AddrPort(), "", 0),
			Flags: relay.Flags{Transcode: []string{"PCMA"}}})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(offer), "RTP/AVP 0 8\r\n") {
			t.Fatalf("offer to bob lacks PCMA:\n%s", offer)
		}
		bob.relay = mediaAddr(t, offer)
		answer, err := e.r.Answer(ctx, relay.AnswerRequest{CallID: "t", FromTag: "a", ToTag: "b", SDP: audioSDP(bob.conn.AddrPort(), "", 8)})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(answer), "RTP/AVP 0\r\n") || !strings.Contains(string(answer), "a=rtpmap:0 PCMU/8000") {
			t.Fatalf("answer to alice is not PCMU:\n%s", answer)
		}
		alice.relay = mediaAddr(t, answer)

		pcmu := rtpPacket(1, 0, 1, 0, 0)
		pcmu = append(pcmu, 0xFF, 0x80, 0x00) // +0, max, min in mu-law
		alice.conn.WriteToUDPAddrPort(pcmu, alice.relay)
		got := bob.recv()
		if len(got) != 1 {
			t.Fatalf("bob got %d packets", len(got))
		}
		var p rtp.Packet
		if err := p.Unmarshal(got[0]); err != nil || p.PayloadType != 8 || fmt.Sprintf("% x", p.Payload) != "d5 aa 2a" {
			t.Errorf("bob got PT %d payload % x (%v), want PCMA d5 aa 2a", p.PayloadType, p.Payload, err)
		}
		pcma := append(rtpPacket(1, 0, 2, 8, 0), 0xD5, 0xAA, 0x2A)
		bob.conn.WriteToUDPAddrPort(pcma, bob.relay)
		got = alice.recv()
		if len(got) != 1 {
			t.Fatalf("alice got %d packets", len(got))
		}
		if err := p.Unmarshal(got[0]); err != nil || p.PayloadType != 0 || fmt.Sprintf("% x", p.Payload) != "fe 80 00" {
			t.Errorf("alice got PT %d payload % x, want PCMU fe 80 00", p.PayloadType, p.Payload)
		}
		if st := e.r.Stats(); st.Transcoded != 2 {
			t.Errorf("transcoded = %d", st.Transcoded)
		}
	})
}

// Audio and video: each m= line gets its own ports; a rejected video gets
// none and port 0 in both directions.
func TestMultipleStreamsAndRejected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		ctx := context.Background()
		offerSDP := "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n" +
			"m=audio 4000 RTP/AVP 0\r\nm=video 4002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=video 4004 RTP/AVP 97\r\na=rtpmap:97 VP8/90000\r\n"
		out, err := e.r.Offer(ctx, relay.OfferRequest{CallID: "m", FromTag: "a", SDP: []byte(offerSDP)})
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out), "m="); n != 3 {
			t.Fatalf("%d m= lines", n)
		}
		answerSDP := "v=0\r\no=- 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\n" +
			"m=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=video 0 RTP/AVP 97\r\n"
		ans, err := e.r.Answer(ctx, relay.AnswerRequest{CallID: "m", FromTag: "a", ToTag: "b", SDP: []byte(answerSDP)})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(ans), "m=video 0 RTP/AVP 97") {
			t.Errorf("rejected stream not kept at port 0:\n%s", ans)
		}
		q, _ := e.r.Query(ctx, "m")
		if len(q.Streams) != 3 || q.Streams[1].Media != "video" || !q.Streams[2].Rejected || q.Streams[0].Rejected {
			t.Errorf("streams = %+v", q.Streams)
		}
		if st := e.r.Stats(); st.Streams != 2 || st.PortPairsInUse != 6 {
			// The rejected stream's ports stay reserved for a later
			// re-offer that enables it again.
			t.Errorf("stats = %+v", st)
		}
	})
}

// A relay on IPv6 writes c=IN IP6 and forwards between IPv6 parties.
func TestIPv6(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{Addr: netip.MustParseAddr("2001:db8::1")})
		a := e.party(netip.MustParseAddrPort("[2001:db8::10]:4000"))
		b := e.party(netip.MustParseAddrPort("[2001:db8::20]:5000"))
		ctx := context.Background()
		offer, err := e.r.Offer(ctx, relay.OfferRequest{CallID: "v6", FromTag: "a", SDP: audioSDP(a.conn.AddrPort(), ""), SourceAddr: a.conn.AddrPort().Addr()})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(offer), "c=IN IP6 2001:db8::1\r\n") {
			t.Fatalf("offer:\n%s", offer)
		}
		b.relay = mediaAddr(t, offer)
		ans, err := e.r.Answer(ctx, relay.AnswerRequest{CallID: "v6", FromTag: "a", ToTag: "b", SDP: audioSDP(b.conn.AddrPort(), "")})
		if err != nil {
			t.Fatal(err)
		}
		a.relay = mediaAddr(t, ans)
		a.send()
		b.send()
		if len(b.recv()) != 1 || len(a.recv()) != 1 {
			t.Error("IPv6 media not relayed")
		}
	})
}

// With rtcp-mux on both sides, RTCP on the RTP port goes to the other
// party's RTP port and is counted as RTCP.
func TestRTCPMux(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		a := e.party(netip.AddrPortFrom(aliceIP, 4000))
		b := e.party(netip.AddrPortFrom(bobIP, 5000))
		ctx := context.Background()
		offer, _ := e.r.Offer(ctx, relay.OfferRequest{CallID: "x", FromTag: "a", SDP: audioSDP(a.conn.AddrPort(), "a=rtcp-mux\r\n")})
		b.relay = mediaAddr(t, offer)
		ans, _ := e.r.Answer(ctx, relay.AnswerRequest{CallID: "x", FromTag: "a", ToTag: "b", SDP: audioSDP(b.conn.AddrPort(), "a=rtcp-mux\r\n")})
		a.relay = mediaAddr(t, ans)
		a.send()
		a.conn.WriteToUDPAddrPort([]byte{0x80, 201, 0, 1, 0, 0, 0, 1}, a.relay)
		if got := b.recv(); len(got) != 2 || got[1][1] != 201 {
			t.Fatalf("bob's RTP port got %d packets", len(got))
		}
		if st := e.r.Stats(); st.RTCPPackets != 1 || st.RTPPackets != 1 {
			t.Errorf("stats: %+v", st)
		}
	})
}

// Loss and jitter reach Query: packets 1, 2, 4 (3 lost).
func TestQueryLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, relay.Config{})
		alice, bob := e.call("c", aliceIP, bobIP, relay.Flags{})
		alice.send()
		alice.send()
		alice.seq++
		alice.ts += 160
		alice.send()
		bob.recv()
		q, err := e.r.Query(context.Background(), "c")
		if err != nil {
			t.Fatal(err)
		}
		l := q.Streams[0].Legs[0]
		if l.Expected != 4 || l.Lost != 1 || l.RTPPackets != 3 || l.Tag != "a" || l.SSRC != alice.ssrc {
			t.Errorf("leg = %+v", l)
		}
		if st := e.r.Stats(); st.Lost != 1 {
			t.Errorf("global lost = %d", st.Lost)
		}
	})
}
