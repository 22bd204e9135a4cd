package stun_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	pion "github.com/pion/stun/v3"
	"go.uber.org/goleak"

	"github.com/talkpad/talkpad/stun"
	"github.com/talkpad/talkpad/stun/stuntest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var (
	ip1 = netip.MustParseAddr("127.0.0.1")
	ip2 = netip.MustParseAddr("127.0.0.2")
)

// quadServer is an RFC 5780 server on 127.0.0.1 and 127.0.0.2.
type quadServer struct {
	srv   *stun.Server
	addrs [4]netip.AddrPort // by role: primary, alt port, alt IP, alt both
	done  chan error
}

func startQuad(t *testing.T, cfg stun.Config) *quadServer {
	t.Helper()
	socks, err := stuntest.LoopbackQuad(ip1, ip2)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	srv, err := stun.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	qs := &quadServer{srv: srv, done: make(chan error, 1)}
	for i, c := range socks {
		qs.addrs[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	go func() {
		qs.done <- srv.ServeQuad(context.Background(), stun.Quad{
			Primary: socks[0], AltPort: socks[1], AltIP: socks[2], AltBoth: socks[3],
		})
	}()
	t.Cleanup(func() {
		srv.Close()
		if err := <-qs.done; !errors.Is(err, stun.ErrServerClosed) {
			t.Errorf("ServeQuad returned %v, want ErrServerClosed", err)
		}
	})
	return qs
}

// client is a UDP socket on 127.0.0.1 that collects responses.
func client(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends raw to dst from c and returns the decoded response and
// where it came from; nil if none arrives within wait.
func exchange(t *testing.T, c *net.UDPConn, dst netip.AddrPort, raw []byte, wait time.Duration) (*pion.Message, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(raw, dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil, netip.AddrPort{}
	}
	m := &pion.Message{Raw: buf[:n]}
	if binary.BigEndian.Uint32(buf[4:8]) != 0x2112A442 {
		// Classic response: decode it by faking the cookie.
		raw := append([]byte(nil), buf[:n]...)
		binary.BigEndian.PutUint32(raw[4:8], 0x2112A442)
		m.Raw = raw
	}
	if err := m.Decode(); err != nil {
		t.Fatalf("bad response: %v", err)
	}
	return m, from
}

func request(t *testing.T, setters ...pion.Setter) *pion.Message {
	t.Helper()
	m, err := pion.Build(append([]pion.Setter{pion.TransactionID, pion.BindingRequest}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func addrAttr(t *testing.T, m *pion.Message, typ pion.AttrType) netip.AddrPort {
	t.Helper()
	a := stun.AddrAttr{Type: typ}
	if err := a.GetFrom(m); err != nil {
		t.Fatalf("%v: %v", typ, err)
	}
	return a.Addr
}

func TestBindingRFC5780(t *testing.T) {
	qs := startQuad(t, stun.Config{Software: "test-sw"})
	c := client(t)
	self := c.LocalAddr().(*net.UDPAddr).AddrPort()

	tests := []struct {
		name   string
		to     int // role the request goes to
		change stun.ChangeRequest
		from   int // role the response must come from
		other  int // role OTHER-ADDRESS must name
	}{
		{"primary", 0, stun.ChangeRequest{}, 0, 3},
		{"change IP", 0, stun.ChangeRequest{IP: true}, 2, 3},
		{"change port", 0, stun.ChangeRequest{Port: true}, 1, 3},
		{"change both", 0, stun.ChangeRequest{IP: true, Port: true}, 3, 3},
		{"to alt both, change IP", 3, stun.ChangeRequest{IP: true}, 1, 0},
		{"to alt IP", 2, stun.ChangeRequest{}, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := request(t, tt.change, pion.Fingerprint)
			resp, from := exchange(t, c, qs.addrs[tt.to], req.Raw, 2*time.Second)
			if resp == nil {
				t.Fatal("no response")
			}
			if resp.Type != pion.BindingSuccess || resp.TransactionID != req.TransactionID {
				t.Fatalf("got %v", resp)
			}
			if from != qs.addrs[tt.from] {
				t.Errorf("response from %v, want %v", from, qs.addrs[tt.from])
			}
			var xor stun.XORAddrAttr
			xor.Type = pion.AttrXORMappedAddress
			if err := xor.GetFrom(resp); err != nil || xor.Addr != self {
				t.Errorf("XOR-MAPPED-ADDRESS %v (%v), want %v", xor.Addr, err, self)
			}
			if got := addrAttr(t, resp, pion.AttrResponseOrigin); got != qs.addrs[tt.from] {
				t.Errorf("RESPONSE-ORIGIN %v, want %v", got, qs.addrs[tt.from])
			}
			if got := addrAttr(t, resp, pion.AttrOtherAddress); got != qs.addrs[tt.other] {
				t.Errorf("OTHER-ADDRESS %v, want %v", got, qs.addrs[tt.other])
			}
			var sw pion.Software
			if err := sw.GetFrom(resp); err != nil || sw.String() != "test-sw" {
				t.Errorf("SOFTWARE %q (%v)", sw, err)
			}
			if err := pion.Fingerprint.Check(resp); err != nil {
				t.Errorf("FINGERPRINT: %v", err)
			}
		})
	}
	if st := qs.srv.Stats(); st.Requests != uint64(len(tests)) || st.Success != st.Requests {
		t.Errorf("stats %+v", st)
	}
}
