package b2bua

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

const testSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// peer is a sipgo user agent listening on a loopback UDP port.
type peer struct {
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	addr   netip.AddrPort
	pc     net.PacketConn
}

func newPeer(t testing.TB, name string) *peer {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent(name), sipgo.WithUserAgentHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(pc.LocalAddr().String())
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientPort(int(addr.Port())))
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{ua: ua, srv: srv, client: client, addr: addr, pc: pc}
	t.Cleanup(func() {
		pc.Close()
		srv.Close()
		ua.Close()
	})
	return p
}

// serve starts the peer once its handlers are registered.
func (p *peer) serve() { go p.srv.ServeUDP(p.pc) }

// events collects call events.
type events struct {
	mu  sync.Mutex
	all []Event
	ch  chan Event
}

func newEvents() *events { return &events{ch: make(chan Event, 100)} }

func (e *events) add(ev Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	e.ch <- ev
}

func (e *events) ended(t *testing.T) CallInfo {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-e.ch:
			if ev.Type == EventEnded {
				return ev.Call
			}
		case <-timeout:
			t.Fatal("no EventEnded")
		}
	}
}

type harness struct {
	b      *B2BUA
	node   *peer
	caller *peer
	dc     *sipgo.DialogClientCache
	ev     *events
}

func newHarness(t testing.TB, targets func() TargetPicker, mod func(*Config)) *harness {
	t.Helper()
	node := newPeer(t, "b2bua")
	ev := newEvents()
	cfg := Config{
		Client:    node.client,
		Contact:   sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(node.addr.Port())},
		UDPSource: node.addr,
		Router: RouterFunc(func(ctx context.Context, in *Incoming) (*Route, error) {
			if in.Callee == "404" {
				return nil, &Reject{Status: 404, Reason: "Not Found"}
			}
			return &Route{Targets: targets()}, nil
		}),
		TargetTimeout: 2 * time.Second,
		OnEvent:       ev.add,
		Logger:        testLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.Register(node.srv)
	node.serve()
	caller := newPeer(t, "caller")
	dc := sipgo.NewDialogClientCache(caller.client, sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "alice", Host: "127.0.0.1", Port: int(caller.addr.Port())}})
	caller.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		if err := dc.ReadBye(req, tx); err != nil {
			respond(tx, req, 481, "No")
		}
	})
	caller.serve()
	t.Cleanup(func() {
		b.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.calls)+len(b.legs)+len(b.owner) != 0 {
			t.Errorf("call state left: %d calls, %d legs, %d owners", len(b.calls), len(b.legs), len(b.owner))
		}
	})
	return &harness{b: b, node: node, caller: caller, dc: dc, ev: ev}
}

func (h *harness) invite(t testing.TB, callee string) (*sipgo.DialogClientSession, error) {
	t.Helper()
	dc := h.dc
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	uri := sip.Uri{Scheme: "sip", User: callee, Host: "127.0.0.1", Port: int(h.node.addr.Port())}
	ct := sip.ContentTypeHeader("application/sdp")
	s, err := dc.Invite(ctx, uri, []byte(testSDP), &ct)
	if err != nil {
		return nil, err
	}
	if err := s.WaitAnswer(ctx, sipgo.AnswerOptions{}); err != nil {
		return s, err
	}
	return s, s.Ack(ctx)
}

// carrier answers INVITEs with the given status after ringing.
func carrier(t testing.TB, status int, onBye func()) *peer {
	p := newPeer(t, fmt.Sprintf("carrier-%d", status))
	p.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		var body []byte
		if status == 200 {
			body = []byte(strings.ReplaceAll(testSDP, "40000", "40002"))
		}
		res := sip.NewResponseFromRequest(req, status, "Status", body)
		res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: int(p.addr.Port())}})
		_ = tx.Respond(res)
	})
	p.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {})
	p.srv.OnBye(func(req *sip.Request, tx sip.ServerTransaction) {
		respond(tx, req, 200, "OK")
		if onBye != nil {
			onBye()
		}
	})
	p.serve()
	return p
}

func targetOf(p *peer, name string) Target {
	return Target{Name: name, URI: sip.Uri{Scheme: "sip", User: "+4930123", Host: "127.0.0.1", Port: int(p.addr.Port())}}
}

func TestAnsweredCallCallerHangsUp(t *testing.T) {
	byes := make(chan struct{}, 1)
	c := carrier(t, 200, func() { byes <- struct{}{} })
	h := newHarness(t, func() TargetPicker { return Targets{targetOf(c, "c1")} }, nil)
	s, err := h.invite(t, "+4930123")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.InviteResponse.Body()); !strings.Contains(got, "40002") {
		t.Fatalf("answer SDP not passed through: %q", got)
	}
	// A BYE that knows the Call-ID but not the dialog's tags ends nothing.
	forged := "BYE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-forged;rport\r\n" +
		"From: <sip:alice@127.0.0.1>;tag=guess\r\nTo: <sip:+4930123@127.0.0.1>;tag=guess2\r\n" +
		"Call-ID: " + s.InviteRequest.CallID().Value() + "\r\nCSeq: 99 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
	conn, err := net.Dial("udp", h.node.addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(forged))
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 481") {
		t.Fatalf("forged BYE got %q, %v", buf[:n], err)
	}
	if len(h.b.Calls()) != 1 {
		t.Fatal("the forged BYE ended the call")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-byes:
	case <-time.After(5 * time.Second):
		t.Fatal("carrier got no BYE")
	}
	info := h.ev.ended(t)
	if info.Cause != CauseCallerHangup || info.Status != 200 || info.Answer.IsZero() || info.Target != "c1" {
		t.Fatalf("ended: %+v", info)
	}
	if n := len(h.b.Calls()); n != 0 {
		t.Fatalf("%d calls left", n)
	}
}

func TestFailoverToSecondTarget(t *testing.T) {
	bad := carrier(t, 503, nil)
	good := carrier(t, 200, nil)
	h := newHarness(t, func() TargetPicker { return Targets{targetOf(bad, "bad"), targetOf(good, "good")} }, nil)
	s, err := h.invite(t, "+4930123")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Bye(ctx)
	info := h.ev.ended(t)
	if info.Target != "good" || info.Attempts != 2 {
		t.Fatalf("ended: %+v", info)
	}
	if st := h.b.Stats(); st.Failovers != 1 || st.Answered != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBusyIsPassedOn(t *testing.T) {
	c := carrier(t, 486, nil)
	h := newHarness(t, func() TargetPicker { return Targets{targetOf(c, "c1")} }, nil)
	_, err := h.invite(t, "+4930123")
	var de *sipgo.ErrDialogResponse
	if err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("want 486, got %v (%T)", err, de)
	}
	info := h.ev.ended(t)
	if info.Cause != CauseRejected || info.Status != 486 {
		t.Fatalf("ended: %+v", info)
	}
}

func TestRouterReject(t *testing.T) {
	h := newHarness(t, func() TargetPicker { return Targets{} }, nil)
	_, err := h.invite(t, "404")
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("want 404, got %v", err)
	}
	if info := h.ev.ended(t); info.Cause != CauseNoRoute {
		t.Fatalf("ended: %+v", info)
	}
}

func TestHangupByCause(t *testing.T) {
	byes := make(chan struct{}, 1)
	c := carrier(t, 200, func() { byes <- struct{}{} })
	h := newHarness(t, func() TargetPicker { return Targets{targetOf(c, "c1")} }, nil)
	s, err := h.invite(t, "+4930123")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.b.Hangup(s.InviteRequest.CallID().Value(), CauseCredit); err != nil {
		t.Fatal(err)
	}
	select {
	case <-byes:
	case <-time.After(5 * time.Second):
		t.Fatal("carrier got no BYE")
	}
	select {
	case <-s.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("caller got no BYE")
	}
	if info := h.ev.ended(t); info.Cause != CauseCredit {
		t.Fatalf("ended: %+v", info)
	}
}

// Over real transactions, a forked branch that rings is canceled with a
// CANCEL its server matches to the INVITE (same Via branch) when another
// answers.
func TestForkCancelMatchesInvite(t *testing.T) {
	canceled := make(chan struct{}, 1)
	ringer := newPeer(t, "ringer")
	ringer.srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.OnCancel(func(*sip.Request) { canceled <- struct{}{} })
		_ = tx.Respond(sip.NewResponseFromRequest(req, 180, "Ringing", nil))
		<-tx.Done()
	})
	ringer.srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {})
	ringer.serve()
	answerer := carrier(t, 200, nil)
	h := newHarness(t, func() TargetPicker { return Targets{targetOf(ringer, "desk"), targetOf(answerer, "browser")} }, func(c *Config) {
		r := c.Router
		c.Router = RouterFunc(func(ctx context.Context, in *Incoming) (*Route, error) {
			rt, err := r.Route(ctx, in)
			if rt != nil {
				rt.Parallel = true
			}
			return rt, err
		})
	})
	s, err := h.invite(t, "+4930123")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-canceled:
	case <-time.After(5 * time.Second):
		t.Fatal("the ringing device never matched a CANCEL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Bye(ctx)
	if info := h.ev.ended(t); info.Target != "browser" || info.Attempts != 2 {
		t.Fatalf("ended %+v", info)
	}
}
