package stun

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// testQuad is an RFC 5780 origin without sockets, for calling answer
// directly.
func testQuad() *quad {
	q := &quad{}
	for role, a := range []string{"127.0.0.1:3478", "127.0.0.1:3479", "127.0.0.2:3478", "127.0.0.2:3479"} {
		q.socks[role] = &udpSock{origin: origin{local: netip.MustParseAddrPort(a), quad: q, role: role}}
	}
	return q
}

func mustServer(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// FuzzAnswer feeds arbitrary datagrams to the request path. It must never
// panic, and whatever it answers must be a well-formed STUN response to a
// Binding request with the same transaction ID.
func FuzzAnswer(f *testing.F) {
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest, ChangeRequest{IP: true}, ResponsePort(9), stun.Fingerprint)
	f.Add(req.Raw, false)
	req2, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.RawAttribute{Type: 0x7777, Value: []byte{1}})
	f.Add(req2.Raw, true)
	classic := make([]byte, 28)
	binary.BigEndian.PutUint16(classic[0:2], 1)
	binary.BigEndian.PutUint16(classic[2:4], 8)
	copy(classic[20:], []byte{0, 3, 0, 4, 0, 0, 0, 6})
	f.Add(classic, false)
	f.Add([]byte("INVITE sip:a@b SIP/2.0\r\n"), false)

	s := mustServer(f, Config{RateLimit: -1})
	q := testQuad()
	w := newWorker()
	src := netip.MustParseAddrPort("127.0.0.9:5000")
	f.Fuzz(func(t *testing.T, b []byte, stream bool) {
		o := q.socks[0].origin
		o.stream = stream
		out, _, from, ok := s.answer(w, b, src, &o)
		if !ok {
			return
		}
		if from < 0 || from > 3 {
			t.Fatalf("from role %d", from)
		}
		resp := append([]byte(nil), out...)
		if binary.BigEndian.Uint32(resp[4:8]) != magicCookie {
			binary.BigEndian.PutUint32(resp[4:8], magicCookie) // classic
		}
		m := &stun.Message{Raw: resp}
		if err := m.Decode(); err != nil {
			t.Fatalf("answer does not decode: %v\n% x", err, out)
		}
		if m.Type.Method != stun.MethodBinding || m.Type.Class == stun.ClassRequest ||
			string(out[4:20]) != string(b[4:20]) {
			t.Fatalf("bad answer %v to % x", m, b)
		}
	})
}

// BenchmarkAnswer measures the work per request without the socket: parse,
// rate limit, build an RFC 5780 response with SOFTWARE and FINGERPRINT.
func BenchmarkAnswer(b *testing.B) {
	s := mustServer(b, Config{RateLimit: 1e12})
	q := testQuad()
	w := newWorker()
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	src := netip.MustParseAddrPort("127.0.0.9:5000")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, ok := s.answer(w, req.Raw, src, &q.socks[0].origin); !ok {
			b.Fatal("no answer")
		}
	}
}

// BenchmarkUDP measures one request/response over real loopback sockets,
// through the server's reader goroutines. Allocations are counted over the
// whole process, so 0 allocs/op covers the server side too.
func BenchmarkUDP(b *testing.B) {
	s := mustServer(b, Config{RateLimit: -1, Logger: quietLog(), Readers: 1})
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(b.Context(), pc) }()
	defer func() { s.Close(); <-done }()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	dst := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.WriteToUDPAddrPort(req.Raw, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAnswerAllocs(t *testing.T) {
	s := mustServer(t, Config{})
	q := testQuad()
	w := newWorker()
	req, _ := stun.Build(stun.TransactionID, stun.BindingRequest, ChangeRequest{Port: true}, stun.Fingerprint)
	bad, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.RawAttribute{Type: 0x7001, Value: []byte{1}})
	src := netip.MustParseAddrPort("127.0.0.9:5000")
	s.answer(w, req.Raw, src, &q.socks[0].origin) // first use of the limiter's entry
	for name, b := range map[string][]byte{"success": req.Raw, "420": bad.Raw, "junk": []byte("junk junk junk junk junk")} {
		if n := testing.AllocsPerRun(100, func() { s.answer(w, b, src, &q.socks[0].origin) }); n != 0 {
			t.Errorf("%s: %v allocs per request", name, n)
		}
	}
}
