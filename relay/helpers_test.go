package relay_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"go.uber.org/goleak"

	"github.com/talkpad/talkpad/relay"
	"github.com/talkpad/talkpad/relay/relaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	relayIP = netip.MustParseAddr("203.0.113.1")
	aliceIP = netip.MustParseAddr("192.0.2.10")
	bobIP   = netip.MustParseAddr("198.51.100.20")
	evilIP  = netip.MustParseAddr("192.0.2.66")
)

// env is one relay on a fake network with two parties, run inside a
// synctest bubble.
type env struct {
	t      *testing.T
	n      *relaytest.Network
	r      *relay.Relay
	cancel context.CancelFunc
	done   chan error

	calls int // offsets the parties' ports of each call

	mu     sync.Mutex
	events []relay.Event
}

var alice4000 = netip.AddrPortFrom(aliceIP, 4000)

func newEnv(t *testing.T, cfg relay.Config) *env {
	t.Helper()
	e := &env{t: t, n: relaytest.NewNetwork(), done: make(chan error, 1)}
	cfg.Listen = e.n.Listen
	cfg.Logger = slog.New(slog.DiscardHandler)
	if !cfg.Addr.IsValid() {
		cfg.Addr = relayIP
	}
	if cfg.MinPort == 0 {
		cfg.MinPort, cfg.MaxPort = 30000, 30099
	}
	cfg.OnEvent = func(ev relay.Event) {
		e.mu.Lock()
		e.events = append(e.events, ev)
		e.mu.Unlock()
	}
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.r = r
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go func() { e.done <- r.Serve(ctx) }()
	t.Cleanup(e.stop)
	return e
}

func (e *env) stop() {
	e.cancel()
	<-e.done
	e.done <- nil // make stop idempotent
	if n := e.n.Bound(); n != 0 {
		e.t.Errorf("%d sockets still bound after Serve returned", n)
	}
}

func (e *env) takeEvents() []relay.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	ev := e.events
	e.events = nil
	return ev
}

// party is a fake endpoint.
type party struct {
	t    *testing.T
	conn *relaytest.Conn
	// relay is where this party sends media: the address in the SDP it got.
	relay netip.AddrPort
	seq   uint16
	ts    uint32
	ssrc  uint32
}

func (e *env) party(addr netip.AddrPort) *party {
	e.t.Helper()
	c, err := e.n.ListenConn(addr)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &party{t: e.t, conn: c, ssrc: uint32(addr.Port()), seq: 100, ts: 1000}
}

// send sends one 20 ms PCMU packet to the relay.
func (p *party) send() { p.sendFrom(p.conn) }

func (p *party) sendFrom(c *relaytest.Conn) {
	p.t.Helper()
	pkt := rtpPacket(p.seq, p.ts, p.ssrc, 0, 160)
	p.seq++
	p.ts += 160
	if _, err := c.WriteToUDPAddrPort(pkt, p.relay); err != nil {
		p.t.Fatal(err)
	}
}

// recv returns the packets that arrived, after letting the bubble settle.
func (p *party) recv() [][]byte {
	synctest.Wait()
	var out [][]byte
	for p.conn.Pending() > 0 {
		b := make([]byte, 2048)
		n, _, err := p.conn.ReadFromUDPAddrPort(b)
		if err != nil {
			p.t.Fatal(err)
		}
		out = append(out, b[:n])
	}
	return out
}

func rtpPacket(seq uint16, ts, ssrc uint32, pt uint8, n int) []byte {
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: ts, SSRC: ssrc},
		Payload: make([]byte, n),
	}
	b, err := pkt.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

// audioSDP builds a minimal SIP-phone style audio SDP.
func audioSDP(addr netip.AddrPort, extra string, pts ...int) []byte {
	if len(pts) == 0 {
		pts = []int{0, 101}
	}
	typ := "IP4"
	if addr.Addr().Is6() {
		typ = "IP6"
	}
	f := make([]string, len(pts))
	for i, p := range pts {
		f[i] = strconv.Itoa(p)
	}
	s := fmt.Sprintf("v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\nm=audio %d RTP/AVP %s\r\n",
		typ, addr.Addr(), typ, addr.Addr(), addr.Port(), strings.Join(f, " "))
	for _, p := range pts {
		switch p {
		case 0:
			s += "a=rtpmap:0 PCMU/8000\r\n"
		case 8:
			s += "a=rtpmap:8 PCMA/8000\r\n"
		case 101:
			s += "a=rtpmap:101 telephone-event/8000\r\n"
		}
	}
	return []byte(s + extra)
}

// mediaAddr returns the address of the first m= line of a rewritten SDP.
func mediaAddr(t testing.TB, b []byte) netip.AddrPort {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(b); err != nil {
		t.Fatalf("rewritten SDP does not parse: %v\n%s", err, b)
	}
	md := sd.MediaDescriptions[0]
	c := sd.ConnectionInformation
	if md.ConnectionInformation != nil {
		c = md.ConnectionInformation
	}
	return netip.AddrPortFrom(netip.MustParseAddr(c.Address.Address), uint16(md.MediaName.Port.Value))
}

// call sets up alice -> bob through the relay and returns both parties with
// their relay addresses filled in.
func (e *env) call(callID string, aliceSrc, bobSrc netip.Addr, fl relay.Flags) (alice, bob *party) {
	e.t.Helper()
	off := uint16(20 * e.calls)
	e.calls++
	alice = e.party(netip.AddrPortFrom(aliceIP, 4000+off))
	bob = e.party(netip.AddrPortFrom(bobIP, 5000+off))
	ctx := context.Background()
	offer, err := e.r.Offer(ctx, relay.OfferRequest{
		CallID: callID, FromTag: "a", SDP: audioSDP(alice.conn.AddrPort(), ""), SourceAddr: aliceSrc, Flags: fl,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	bob.relay = mediaAddr(e.t, offer)
	answer, err := e.r.Answer(ctx, relay.AnswerRequest{
		CallID: callID, FromTag: "a", ToTag: "b", SDP: audioSDP(bob.conn.AddrPort(), ""), SourceAddr: bobSrc, Flags: fl,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	alice.relay = mediaAddr(e.t, answer)
	return alice, bob
}
