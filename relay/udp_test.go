package relay_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/talkpad/talkpad/relay"
)

// TestRealUDP runs calls over real loopback sockets (the default Listen, on
// Linux the epoll poller) in IPv4 and IPv6, and checks that Close frees the
// ports for reuse. The port ranges sit below Linux's ephemeral range so that
// other programs' client sockets do not take them meanwhile.
func TestRealUDP(t *testing.T) {
	for _, tc := range []struct {
		name string
		ip   string
		min  uint16
	}{{"ipv4", "127.0.0.1", 21000}, {"ipv6", "::1", 21100}} {
		t.Run(tc.name, func(t *testing.T) {
			lo := netip.MustParseAddr(tc.ip)
			probe, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
			if err != nil {
				t.Skipf("no %s loopback: %v", tc.name, err)
			}
			probe.Close()
			r, err := relay.New(relay.Config{Addr: lo, MinPort: tc.min, MaxPort: tc.min + 19, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error)
			go func() { done <- r.Serve(ctx) }()

			a, _ := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
			b, _ := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, 0)))
			defer a.Close()
			defer b.Close()
			ap := a.LocalAddr().(*net.UDPAddr).AddrPort()
			bp := b.LocalAddr().(*net.UDPAddr).AddrPort()
			offer, err := r.Offer(ctx, relay.OfferRequest{CallID: "u", FromTag: "a", SDP: audioSDP(ap, ""), SourceAddr: lo})
			if err != nil {
				t.Fatal(err)
			}
			ans, err := r.Answer(ctx, relay.AnswerRequest{CallID: "u", FromTag: "a", ToTag: "b", SDP: audioSDP(bp, ""), SourceAddr: lo})
			if err != nil {
				t.Fatal(err)
			}
			toRelayFromA, toRelayFromB := mediaAddr(t, ans), mediaAddr(t, offer)
			buf := make([]byte, 2048)
			for i := range 20 {
				a.WriteToUDPAddrPort(rtpPacket(uint16(i), uint32(160*i), 1, 0, 160), toRelayFromA)
				b.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, from, err := b.ReadFromUDPAddrPort(buf)
				if err != nil || n != 172 || from != toRelayFromB {
					t.Fatalf("packet %d at b: n=%d from=%v err=%v", i, n, from, err)
				}
				b.WriteToUDPAddrPort(rtpPacket(uint16(i), uint32(160*i), 2, 0, 160), toRelayFromB)
				a.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, from, err = a.ReadFromUDPAddrPort(buf); err != nil || n != 172 || from != toRelayFromA {
					t.Fatalf("packet %d at a: n=%d from=%v err=%v", i, n, from, err)
				}
			}
			q, _ := r.Query(ctx, "u")
			if l := q.Streams[0].Legs[0]; l.RTPPackets != 20 || l.Peer != ap {
				t.Errorf("leg a: %+v", l)
			}
			cancel()
			<-done
			// Every port of the range is free again.
			for p := tc.min; p <= tc.min+19; p++ {
				c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, p)))
				if err != nil {
					t.Fatalf("port %d still bound after Close: %v", p, err)
				}
				c.Close()
			}
		})
	}
}
