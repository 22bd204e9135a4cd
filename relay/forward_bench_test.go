package relay

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

// discardConn is a socket that accepts and forgets every write.
type discardConn struct{ addr netip.AddrPort }

func (discardConn) ReadFromUDPAddrPort([]byte) (int, netip.AddrPort, error) {
	return 0, netip.AddrPort{}, net.ErrClosed
}
func (discardConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) { return len(b), nil }
func (d discardConn) LocalAddr() net.Addr                                      { return net.UDPAddrFromAddrPort(d.addr) }
func (discardConn) Close() error                                               { return nil }

// benchStream returns a stream of an answered session whose sockets discard
// everything, with both legs latched.
func benchStream(b *testing.B, transcode bool) (*stream, netip.AddrPort) {
	b.Helper()
	r, err := New(Config{
		Listen: func(a netip.AddrPort) (Conn, error) { return discardConn{a}, nil },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	ctx := context.Background()
	a := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	bsdp := "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
	if transcode {
		bsdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 5000 RTP/AVP 8\r\n"
	}
	if _, err := r.Offer(ctx, OfferRequest{CallID: "bench", FromTag: "a", SDP: []byte(a), Flags: Flags{Transcode: []string{"PCMA"}}}); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Answer(ctx, AnswerRequest{CallID: "bench", FromTag: "a", ToTag: "b", SDP: []byte(bsdp)}); err != nil {
		b.Fatal(err)
	}
	s := r.sessions["bench"][0].streams[0]
	src := netip.MustParseAddrPort("192.0.2.1:4000")
	return s, src
}

// BenchmarkForward measures the per-packet work of the relay between the
// socket read and the socket write: header parse, latch check, RFC 3550
// statistics, destination lookup.
func BenchmarkForward(b *testing.B) {
	for _, tc := range []struct {
		name      string
		transcode bool
	}{{"passthrough", false}, {"transcode", true}} {
		b.Run(tc.name, func(b *testing.B) {
			s, src := benchStream(b, tc.transcode)
			pkt := make([]byte, 12+160)
			pkt[0] = 0x80
			now := time.Now()
			var seq uint16
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				seq++
				pkt[1] = 0 // transcoding rewrote it
				pkt[2], pkt[3] = byte(seq>>8), byte(seq)
				now = now.Add(20 * time.Millisecond)
				s.forward(0, false, pkt, src, now)
			}
			if s.legs[0].c.forwarded == 0 {
				b.Fatal("nothing forwarded")
			}
		})
	}
}
