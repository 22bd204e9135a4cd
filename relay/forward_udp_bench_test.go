package relay_test

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"github.com/talkpad/talkpad/relay"
)

// BenchmarkForwardUDP sends packets through a relay on real loopback sockets
// and waits for each to arrive: one op is one forwarded packet including its
// two syscalls in the relay. Allocations count every goroutine of the
// process, so 0 allocs/op shows the relay's whole path is allocation-free.
func BenchmarkForwardUDP(b *testing.B) {
	lo := netip.MustParseAddr("127.0.0.1")
	r, err := relay.New(relay.Config{Addr: lo, MinPort: 21200, MaxPort: 21399, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	alice, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	bob, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer alice.Close()
	defer bob.Close()
	ap := alice.LocalAddr().(*net.UDPAddr).AddrPort()
	bp := bob.LocalAddr().(*net.UDPAddr).AddrPort()
	ctx := context.Background()
	if _, err := r.Offer(ctx, relay.OfferRequest{CallID: "b", FromTag: "a", SDP: audioSDP(ap, ""), SourceAddr: lo}); err != nil {
		b.Fatal(err)
	}
	ans, err := r.Answer(ctx, relay.AnswerRequest{CallID: "b", FromTag: "a", ToTag: "b", SDP: audioSDP(bp, ""), SourceAddr: lo})
	if err != nil {
		b.Fatal(err)
	}
	to := mediaAddr(b, ans)
	pkt := rtpPacket(1, 0, 42, 0, 160)
	buf := make([]byte, 2048)
	b.ReportAllocs()
	var seq uint16
	for b.Loop() {
		seq++
		pkt[2], pkt[3] = byte(seq>>8), byte(seq)
		if _, err := alice.WriteToUDPAddrPort(pkt, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := bob.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
