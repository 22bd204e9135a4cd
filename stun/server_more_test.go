package stun_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	pion "github.com/pion/stun/v3"

	"github.com/talkpad/talkpad/stun"
	"github.com/talkpad/talkpad/stun/stuntest"
)

func TestErrorsAndDrops(t *testing.T) {
	qs := startQuad(t, stun.Config{OmitSoftware: true})
	c := client(t)
	unknown := pion.RawAttribute{Type: 0x7001, Value: []byte{1, 2, 3, 4}}
	optional := pion.RawAttribute{Type: 0xC001, Value: []byte{1}}

	t.Run("420 lists unknown comprehension-required attributes", func(t *testing.T) {
		req := request(t, unknown, optional, pion.RawAttribute{Type: pion.AttrPadding, Value: make([]byte, 8)})
		resp, _ := exchange(t, c, qs.addrs[0], req.Raw, 2*time.Second)
		if resp == nil || resp.Type != pion.BindingError {
			t.Fatalf("got %v", resp)
		}
		var ec pion.ErrorCodeAttribute
		var ua pion.UnknownAttributes
		if ec.GetFrom(resp) != nil || ec.Code != 420 || ua.GetFrom(resp) != nil {
			t.Fatalf("got %v %v", ec, ua)
		}
		if len(ua) != 2 || ua[0] != 0x7001 || ua[1] != pion.AttrPadding {
			t.Errorf("UNKNOWN-ATTRIBUTES %v", ua)
		}
		if resp.Contains(pion.AttrSoftware) {
			t.Error("SOFTWARE sent although OmitSoftware")
		}
	})
	t.Run("comprehension-optional attributes are ignored", func(t *testing.T) {
		resp, _ := exchange(t, c, qs.addrs[0], request(t, optional).Raw, 2*time.Second)
		if resp == nil || resp.Type != pion.BindingSuccess {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("400 for a malformed CHANGE-REQUEST", func(t *testing.T) {
		req := request(t, pion.RawAttribute{Type: pion.AttrChangeRequest, Value: []byte{0, 0}})
		resp, _ := exchange(t, c, qs.addrs[0], req.Raw, 2*time.Second)
		var ec pion.ErrorCodeAttribute
		if resp == nil || ec.GetFrom(resp) != nil || ec.Code != 400 {
			t.Fatalf("got %v", resp)
		}
	})
	t.Run("RESPONSE-PORT", func(t *testing.T) {
		other := client(t)
		port := other.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		req := request(t, stun.ResponsePort(port))
		c.WriteToUDPAddrPort(req.Raw, qs.addrs[0])
		buf := make([]byte, 1500)
		other.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, _, err := other.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatal(err)
		}
		m := &pion.Message{Raw: buf[:n]}
		x := stun.XORAddrAttr{Type: pion.AttrXORMappedAddress}
		if m.Decode() != nil || x.GetFrom(m) != nil || x.Addr != c.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Errorf("mapped %v, want the requester's address", x.Addr)
		}
	})

	before := qs.srv.Stats()
	bad := map[string][]byte{
		"short":       {0, 1, 0, 0},
		"text":        []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"),
		"length":      append(request(t).Raw, 0, 0, 0, 0),
		"response":    mustBuild(t, pion.BindingSuccess),
		"method":      mustBuild(t, pion.NewType(pion.MethodAllocate, pion.ClassRequest)),
		"fingerprint": badFingerprint(t),
		"attr":        truncatedAttr(t),
	}
	for _, b := range bad {
		if resp, _ := exchange(t, c, qs.addrs[0], b, 50*time.Millisecond); resp != nil {
			t.Errorf("answered junk with %v", resp)
		}
	}
	// An indication is a keep-alive: counted, never answered.
	ind := mustBuild(t, pion.NewType(pion.MethodBinding, pion.ClassIndication))
	if resp, _ := exchange(t, c, qs.addrs[0], ind, 50*time.Millisecond); resp != nil {
		t.Errorf("answered an indication")
	}
	st := qs.srv.Stats()
	d := st.Dropped
	if d.NotSTUN-before.Dropped.NotSTUN != 3 || d.NotRequest != 1 || d.Method != 1 || d.BadFingerprint != 1 || d.Malformed != 1 {
		t.Errorf("drops %+v", d)
	}
	if st.Indications != 1 || st.Errors.UnknownAttribute != 1 || st.Errors.BadRequest != 1 {
		t.Errorf("stats %+v", st)
	}
}

func mustBuild(t *testing.T, typ pion.MessageType) []byte {
	t.Helper()
	m, err := pion.Build(pion.TransactionID, typ)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func badFingerprint(t *testing.T) []byte {
	b := request(t, pion.Fingerprint).Raw
	b[len(b)-1] ^= 1
	return b
}

func truncatedAttr(t *testing.T) []byte {
	b := request(t).Raw
	b = append(b, 0x80, 0x22, 0x00, 0x10) // SOFTWARE claiming 16 bytes, none follow
	binary.BigEndian.PutUint16(b[2:4], 4)
	return b
}

// TestClassicClient plays an RFC 3489 client: a 16-byte transaction ID and
// no magic cookie. It must get MAPPED-ADDRESS and, on an RFC 5780 server,
// CHANGED-ADDRESS, with the whole ID echoed.
func TestClassicClient(t *testing.T) {
	qs := startQuad(t, stun.Config{})
	c := client(t)
	req := make([]byte, 28)
	binary.BigEndian.PutUint16(req[0:2], 0x0001)
	binary.BigEndian.PutUint16(req[2:4], 8)
	rand.Read(req[4:20])
	copy(req[20:], []byte{0, 3, 0, 4, 0, 0, 0, 2}) // CHANGE-REQUEST: change port
	c.WriteToUDPAddrPort(req, qs.addrs[0])
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if from != qs.addrs[1] {
		t.Errorf("answered from %v, want %v", from, qs.addrs[1])
	}
	if string(buf[4:20]) != string(req[4:20]) {
		t.Error("transaction ID not echoed")
	}
	raw := append([]byte(nil), buf[:n]...)
	binary.BigEndian.PutUint32(raw[4:8], 0x2112A442)
	m := &pion.Message{Raw: raw}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if m.Contains(pion.AttrXORMappedAddress) || m.Contains(pion.AttrFingerprint) {
		t.Error("RFC 5389 attributes sent to a classic client")
	}
	if got := addrAttr(t, m, pion.AttrMappedAddress); got != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Errorf("MAPPED-ADDRESS %v", got)
	}
	if got := addrAttr(t, m, pion.AttrChangedAddress); got != qs.addrs[3] {
		t.Errorf("CHANGED-ADDRESS %v", got)
	}
	if qs.srv.Stats().Classic != 1 {
		t.Error("classic request not counted")
	}
}

// TestLoneSocket: without RFC 5780, CHANGE-REQUEST gets 420, and IPv6
// works.
func TestLoneSocketIPv6(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	srv, _ := stun.New(stun.Config{Logger: quiet})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(t.Context(), pc) }()
	defer func() { srv.Close(); <-done }()

	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	to := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	resp, _ := exchange(t, c, to, request(t).Raw, 2*time.Second)
	x := stun.XORAddrAttr{Type: pion.AttrXORMappedAddress}
	if resp == nil || x.GetFrom(resp) != nil || x.Addr != c.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("got %v", resp)
	}
	if resp.Contains(pion.AttrOtherAddress) {
		t.Error("OTHER-ADDRESS without RFC 5780")
	}
	resp, _ = exchange(t, c, to, request(t, stun.ChangeRequest{IP: true}).Raw, 2*time.Second)
	var ua pion.UnknownAttributes
	if resp == nil || ua.GetFrom(resp) != nil || len(ua) != 1 || ua[0] != pion.AttrChangeRequest {
		t.Errorf("CHANGE-REQUEST without RFC 5780: %v", resp)
	}
}

// TestRateLimit runs in a synctest bubble: the burst is answered, the rest
// dropped, and the allowance comes back with time.
func TestRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := stuntest.NewNetwork()
		srv := fakeServer(t, n, stun.Config{RateLimit: 10, RateBurst: 5}, true)
		c, _ := n.Listen(netip.MustParseAddrPort("127.0.0.9:1000"))
		defer c.Close()
		req := request(t).Raw
		count := func() int {
			synctest.Wait()
			got := 0
			c.SetReadDeadline(time.Now())
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.ReadFrom(buf); err != nil {
					return got
				}
				got++
			}
		}
		send := func(k int) {
			for range k {
				c.WriteTo(req, net.UDPAddrFromAddrPort(fakePrimary))
			}
		}
		send(20)
		if got := count(); got != 5 {
			t.Errorf("burst: %d answered, want 5", got)
		}
		time.Sleep(time.Second) // 10 more tokens at 10/s, capped by the burst of 5
		send(20)
		if got := count(); got != 5 {
			t.Errorf("after 1s: %d answered, want 5", got)
		}
		time.Sleep(300 * time.Millisecond)
		send(20)
		if got := count(); got != 3 {
			t.Errorf("after 0.3s: %d answered, want 3", got)
		}
		if d := srv.Stats().Dropped.RateLimited; d != 47 {
			t.Errorf("rate-limited %d, want 47", d)
		}
	})
}

func TestTCPAndTLS(t *testing.T) {
	cert := selfSigned(t)
	srv, _ := stun.New(stun.Config{Logger: quiet, IdleTimeout: 5 * time.Second})
	tcp, _ := net.Listen("tcp", "127.0.0.1:0")
	tl, _ := net.Listen("tcp", "127.0.0.1:0")
	tlsL := tls.NewListener(tl, &tls.Config{Certificates: []tls.Certificate{cert}})
	done := make(chan error, 2)
	go func() { done <- srv.ServeStream(t.Context(), tcp) }()
	go func() { done <- srv.ServeStream(t.Context(), tlsL) }()

	dial := map[string]func() (net.Conn, error){
		"tcp": func() (net.Conn, error) { return net.Dial("tcp", tcp.Addr().String()) },
		"tls": func() (net.Conn, error) {
			return tls.Dial("tcp", tl.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		},
	}
	for name, d := range dial {
		t.Run(name, func(t *testing.T) {
			conn, err := d()
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Two requests in one write, then one split over two
			// writes: framing must follow the length field.
			r1, r2, r3 := request(t), request(t, pion.Fingerprint), request(t)
			conn.Write(append(append([]byte(nil), r1.Raw...), r2.Raw...))
			conn.Write(r3.Raw[:7])
			time.Sleep(10 * time.Millisecond)
			conn.Write(r3.Raw[7:])
			for _, want := range []*pion.Message{r1, r2, r3} {
				conn.SetReadDeadline(time.Now().Add(2 * time.Second))
				hdr := make([]byte, 20)
				if _, err := io.ReadFull(conn, hdr); err != nil {
					t.Fatal(err)
				}
				rest := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
				if _, err := io.ReadFull(conn, rest); err != nil {
					t.Fatal(err)
				}
				m := &pion.Message{Raw: append(hdr, rest...)}
				if err := m.Decode(); err != nil || m.TransactionID != want.TransactionID {
					t.Fatalf("got %v (%v)", m, err)
				}
				x := stun.XORAddrAttr{Type: pion.AttrXORMappedAddress}
				if x.GetFrom(m) != nil || x.Addr != conn.LocalAddr().(*net.TCPAddr).AddrPort() {
					t.Errorf("mapped %v, want %v", x.Addr, conn.LocalAddr())
				}
			}
			// CHANGE-REQUEST cannot be honoured on a stream: 400 or
			// 420 (no RFC 5780 here), never a success.
			conn.Write(request(t, stun.ChangeRequest{Port: true}).Raw)
			buf := make([]byte, 1500)
			n, _ := conn.Read(buf)
			if n < 20 || binary.BigEndian.Uint16(buf[0:2]) != pion.BindingError.Value() {
				t.Errorf("CHANGE-REQUEST over %s: % x", name, buf[:n])
			}
			// Junk closes the connection.
			conn.Write([]byte("GET / HTTP/1.1\r\n\r\n.."))
			if _, err := conn.Read(buf); err == nil {
				t.Error("connection still open after junk")
			}
		})
	}
	srv.Close()
	for range 2 {
		if err := <-done; !errors.Is(err, stun.ErrServerClosed) {
			t.Errorf("ServeStream: %v", err)
		}
	}
	if st := srv.Stats(); st.Accepted != 2 || st.Conns != 0 {
		t.Errorf("stats %+v", st)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestListenAndServe opens every socket from Config and stops with ctx, or
// with Shutdown.
func TestListenAndServe(t *testing.T) {
	socks, err := stuntest.LoopbackQuad(ip1, ip2)
	if err != nil {
		t.Fatal(err)
	}
	a, b := socks[0].LocalAddr().String(), socks[3].LocalAddr().String()
	for _, s := range socks {
		s.Close() // free the ports for ListenAndServe
	}
	for _, reuse := range []bool{false, true} {
		srv, err := stun.New(stun.Config{Addr: a, AltAddr: b, Logger: quiet, ReusePort: reuse, Readers: 2,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}, TLSAddr: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- srv.ListenAndServe(ctx) }()
		c := client(t)
		var resp *pion.Message
		for range 50 { // the server binds in its own goroutine
			if resp, _ = exchange(t, c, netip.MustParseAddrPort(a), request(t, stun.ChangeRequest{IP: true}).Raw, 100*time.Millisecond); resp != nil {
				break
			}
		}
		if resp == nil || addrAttr(t, resp, pion.AttrResponseOrigin) != netip.AddrPortFrom(ip2, netip.MustParseAddrPort(a).Port()) {
			t.Fatalf("reuse=%v: got %v", reuse, resp)
		}
		if reuse {
			srv.Shutdown(t.Context())
			if err := <-done; !errors.Is(err, stun.ErrServerClosed) {
				t.Errorf("after Shutdown: %v", err)
			}
		} else {
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				t.Errorf("after cancel: %v", err)
			}
			srv.Close()
		}
		cancel()
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []stun.Config{
		{Addr: ":3478", AltAddr: "127.0.0.2:3479"},
		{Addr: "127.0.0.1:3478", AltAddr: "127.0.0.2:3478"},
		{Addr: "127.0.0.1:3478", AltAddr: "127.0.0.1:3479"},
		{Addr: "127.0.0.1:3478", AltAddr: "[::1]:3479"},
		{TLSConfig: &tls.Config{}},
	} {
		if _, err := stun.New(cfg); !errors.Is(err, stun.ErrConfig) {
			t.Errorf("%+v: err %v", cfg, err)
		}
	}
}

// TestListenPortZero: Listen first, learn the ports, then serve.
func TestListenPortZero(t *testing.T) {
	srv, _ := stun.New(stun.Config{Addr: "127.0.0.1:0", Logger: quiet})
	ls, err := srv.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	udp := ls.UDP[0][0].LocalAddr().(*net.UDPAddr).AddrPort()
	if tcp := ls.TCP.Addr().(*net.TCPAddr).AddrPort(); tcp != udp {
		t.Errorf("TCP on %v, UDP on %v", tcp, udp)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(t.Context(), ls) }()
	if resp, _ := exchange(t, client(t), udp, request(t).Raw, 2*time.Second); resp == nil {
		t.Error("no answer")
	}
	srv.Close()
	if err := <-done; !errors.Is(err, stun.ErrServerClosed) {
		t.Errorf("ServeListeners: %v", err)
	}
}
