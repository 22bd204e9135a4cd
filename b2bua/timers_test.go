package b2bua

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// fakeServerTx is the caller's INVITE transaction.
type fakeServerTx struct {
	mu       sync.Mutex
	res      chan *sip.Response
	onCancel sip.FnTxCancel
	done     chan struct{}
	closed   bool
}

func newFakeServerTx() *fakeServerTx {
	return &fakeServerTx{res: make(chan *sip.Response, 100), done: make(chan struct{})}
}

func (t *fakeServerTx) Respond(r *sip.Response) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("terminated")
	}
	t.res <- r
	return nil
}
func (t *fakeServerTx) Acks() <-chan *sip.Request { return nil }
func (t *fakeServerTx) OnCancel(f sip.FnTxCancel) bool {
	t.mu.Lock()
	t.onCancel = f
	t.mu.Unlock()
	return true
}
func (t *fakeServerTx) Terminate() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
}
func (t *fakeServerTx) OnTerminate(f sip.FnTxTerminate) bool { return true }
func (t *fakeServerTx) Done() <-chan struct{}                { return t.done }
func (t *fakeServerTx) Err() error                           { return nil }

// cancel plays the caller's CANCEL as sipgo does: 487, then the callback.
func (t *fakeServerTx) cancel(req *sip.Request) {
	t.mu.Lock()
	f := t.onCancel
	t.mu.Unlock()
	t.Respond(sip.NewResponseFromRequest(req, 487, "Request Terminated", nil))
	t.Terminate()
	if f != nil {
		f(nil)
	}
}

// final returns the next final response to the caller, skipping 1xx.
func (t *fakeServerTx) final(tb testing.TB) *sip.Response {
	tb.Helper()
	for {
		select {
		case r := <-t.res:
			if r.StatusCode >= 200 {
				return r
			}
		default:
			tb.Fatal("no final response to the caller")
			return nil
		}
	}
}

// fakeClientTx is a transaction the B2BUA started.
type fakeClientTx struct {
	req     *sip.Request
	res     chan *sip.Response
	done    chan struct{}
	once    sync.Once
	retrans sip.FnTxResponse
}

func (t *fakeClientTx) Responses() <-chan *sip.Response          { return t.res }
func (t *fakeClientTx) OnRetransmission(f sip.FnTxResponse) bool { t.retrans = f; return true }
func (t *fakeClientTx) Terminate()                               { t.once.Do(func() { close(t.done) }) }
func (t *fakeClientTx) OnTerminate(f sip.FnTxTerminate) bool     { return true }
func (t *fakeClientTx) Done() <-chan struct{}                    { return t.done }
func (t *fakeClientTx) Err() error                               { return nil }

// reply sends a response to the transaction's request.
func (t *fakeClientTx) reply(code int, body string, hs ...sip.Header) {
	r := sip.NewResponseFromRequest(t.req, code, "R", []byte(body))
	ownContact := false
	for _, h := range hs {
		if _, ok := h.(*sip.ContactHeader); ok {
			ownContact = true
		}
	}
	if code > 100 {
		r.To().Params.Add("tag", "callee-tag")
		if !ownContact {
			r.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.9", Port: 5060}})
		}
	}
	for _, h := range hs {
		r.AppendHeader(h)
	}
	t.res <- r
}

// fakeClient records what the B2BUA sends. In-dialog requests other than
// INVITE are answered by answer (200 by default).
type fakeClient struct {
	mu      sync.Mutex
	invites chan *fakeClientTx
	sent    []*sip.Request
	acks    []*sip.Request
	answer  func(req *sip.Request) int
	// autoInvite, if set, answers new INVITEs at once with this status.
	autoInvite int
}

func newFakeClient() *fakeClient {
	return &fakeClient{invites: make(chan *fakeClientTx, 10)}
}

func (f *fakeClient) TransactionRequest(ctx context.Context, req *sip.Request, _ ...sipgo.ClientRequestOption) (sip.ClientTransaction, error) {
	tx := &fakeClientTx{req: req, res: make(chan *sip.Response, 10), done: make(chan struct{})}
	f.mu.Lock()
	f.sent = append(f.sent, req)
	answer := f.answer
	f.mu.Unlock()
	if req.Method == sip.INVITE && !req.To().Params.Has("tag") {
		if f.autoInvite != 0 {
			tx.reply(f.autoInvite, "")
			return tx, nil
		}
		f.invites <- tx
		return tx, nil
	}
	code := 200
	if answer != nil {
		code = answer(req)
	}
	if code > 0 {
		tx.res <- sip.NewResponseFromRequest(req, code, "R", nil)
	}
	return tx, nil
}

func (f *fakeClient) TransactionDigestAuth(ctx context.Context, req *sip.Request, res *sip.Response, auth sipgo.DigestAuth) (sip.ClientTransaction, error) {
	return f.TransactionRequest(ctx, req)
}

func (f *fakeClient) WriteRequest(req *sip.Request, _ ...sipgo.ClientRequestOption) error {
	f.mu.Lock()
	f.acks = append(f.acks, req)
	f.mu.Unlock()
	return nil
}

// count returns how many requests of method went to the leg with callID
// ("" for any).
func (f *fakeClient) count(method sip.RequestMethod, callID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.sent {
		if r.Method == method && (callID == "" || r.CallID().Value() == callID) {
			n++
		}
	}
	return n
}

const inviteText = "INVITE sip:+4930123@127.0.0.1 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-1\r\n" +
	"From: <sip:alice@127.0.0.1>;tag=alice-tag\r\n" +
	"To: <sip:+4930123@127.0.0.1>\r\n" +
	"Call-ID: call-1\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Contact: <sip:alice@127.0.0.1:5000>\r\n" +
	"Max-Forwards: 70\r\n" +
	"%s" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: %d\r\n\r\n%s"

func parseInvite(t testing.TB, extra string) *sip.Request {
	t.Helper()
	text := strings.Replace(inviteText, "%s", extra, 1)
	text = strings.Replace(text, "%d", strconv.Itoa(len(testSDP)), 1)
	text = strings.Replace(text, "%s", testSDP, 1)
	msg, err := sip.ParseMessage([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource("127.0.0.1:5000")
	req.SetTransport("UDP")
	return req
}

// grant is an Authorizer granting a fixed duration.
type grant struct {
	d              time.Duration
	mu             sync.Mutex
	answered, ends []CallInfo
}

func (g *grant) Authorize(context.Context, CallInfo) (time.Duration, error) { return g.d, nil }
func (g *grant) Answered(_ context.Context, c CallInfo) error {
	g.mu.Lock()
	g.answered = append(g.answered, c)
	g.mu.Unlock()
	return nil
}
func (g *grant) Ended(_ context.Context, c CallInfo) {
	g.mu.Lock()
	g.ends = append(g.ends, c)
	g.mu.Unlock()
}

// fakeRig is a B2BUA on fake transactions, inside a synctest bubble.
type fakeRig struct {
	b      *B2BUA
	client *fakeClient
	ev     *events
}

func newFakeRig(t *testing.T, realClient *sipgo.Client, mod func(*Config)) *fakeRig {
	ev := newEvents()
	cfg := Config{
		Client:  realClient,
		Contact: sip.Uri{Scheme: "sip", Host: "127.0.0.1", Port: 5060},
		Router: RouterFunc(func(ctx context.Context, in *Incoming) (*Route, error) {
			return &Route{Account: "acc", Destination: "4930123", Targets: Targets{{Name: "carrier", URI: sip.Uri{Scheme: "sip", User: "+4930123", Host: "192.0.2.9"}}}}, nil
		}),
		OnEvent: ev.add,
		Logger:  testLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fc := newFakeClient()
	b.client = fc
	return &fakeRig{b: b, client: fc, ev: ev}
}

// answered sets up a call answered at once by the carrier and
// acknowledged by the caller (unless noAck).
func (r *fakeRig) answered(t *testing.T, extra string, okHeaders []sip.Header, noAck bool) (*sip.Request, *fakeServerTx, *fakeClientTx) {
	req := parseInvite(t, extra)
	atx := newFakeServerTx()
	go r.b.ServeInvite(req, atx)
	btx := <-r.client.invites
	btx.reply(180, "")
	btx.reply(200, strings.ReplaceAll(testSDP, "40000", "40002"), okHeaders...)
	synctest.Wait()
	res := atx.final(t)
	if res.StatusCode != 200 {
		t.Fatalf("caller got %d", res.StatusCode)
	}
	if !noAck {
		r.b.ServeAck(ackFor(t, res), nil)
	}
	return req, atx, btx
}

// ackFor is the caller's ACK of a 2xx.
func ackFor(t testing.TB, ok *sip.Response) *sip.Request {
	tag, _ := ok.To().Params.Get("tag")
	msg, err := sip.ParseMessage([]byte("ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-2\r\nFrom: <sip:alice@127.0.0.1>;tag=alice-tag\r\nTo: <sip:+4930123@127.0.0.1>;tag=" + tag + "\r\nCall-ID: call-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	return msg.(*sip.Request)
}

func testClient(t *testing.T) *sipgo.Client {
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMaxDurationEndsCallAtTheInstant(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		g := &grant{d: 30 * time.Second}
		r := newFakeRig(t, client, func(c *Config) { c.Authorizer = g })
		r.answered(t, "", nil, false)
		start := time.Now()
		time.Sleep(30*time.Second - time.Millisecond)
		synctest.Wait()
		if n := r.client.count(sip.BYE, ""); n != 0 {
			t.Fatalf("%d BYEs before the limit", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := r.client.count(sip.BYE, ""); n != 2 {
			t.Fatalf("want BYE on both legs at the limit, got %d", n)
		}
		info := r.ev.ended(t)
		if info.Cause != CauseMaxDuration || info.Duration() != 30*time.Second || info.End.Sub(start) != 30*time.Second {
			t.Fatalf("ended %+v (duration %v)", info, info.Duration())
		}
		if len(g.answered) != 1 || len(g.ends) != 1 || g.ends[0].Cause != CauseMaxDuration {
			t.Fatalf("authorizer saw answered=%d ended=%v", len(g.answered), g.ends)
		}
		r.b.Close()
	})
}

func TestNoAnswerTimeoutCancelsTarget(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.NoAnswerTimeout = 60 * time.Second })
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(180, "")
		time.Sleep(60*time.Second - time.Millisecond)
		synctest.Wait()
		if n := r.client.count(sip.CANCEL, ""); n != 0 {
			t.Fatal("CANCEL before the timeout")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := r.client.count(sip.CANCEL, ""); n != 1 {
			t.Fatalf("want one CANCEL, got %d", n)
		}
		btx.reply(487, "")
		synctest.Wait()
		if res := atx.final(t); res.StatusCode != 480 {
			t.Fatalf("caller got %d, want 480", res.StatusCode)
		}
		if info := r.ev.ended(t); info.Cause != CauseNoAnswer || !info.Answer.IsZero() {
			t.Fatalf("ended %+v", info)
		}
		r.b.Close()
	})
}

func TestAnswerRetransmittedUntilACKThenCallEnds(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		_, atx, _ := r.answered(t, "", nil, true)
		time.Sleep(timerF - time.Millisecond)
		synctest.Wait()
		n := 0
		for len(atx.res) > 0 {
			if (<-atx.res).StatusCode == 200 {
				n++
			}
		}
		// T1 doubling to T2: 0.5, 1.5, 3.5, 7.5, 11.5, ... 31.5 s.
		if n != 10 {
			t.Fatalf("2xx retransmitted %d times in 32 s, want 10", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if info := r.ev.ended(t); info.Cause != CauseAckTimeout {
			t.Fatalf("ended %+v", info)
		}
		if n := r.client.count(sip.BYE, ""); n != 2 {
			t.Fatalf("%d BYEs", n)
		}
		r.b.Close()
	})
}

func TestKeepaliveDetectsDeadLeg(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.KeepAlive = 30 * time.Second })
		r.client.answer = func(req *sip.Request) int {
			if req.Method == sip.OPTIONS && req.CallID().Value() != "call-1" {
				return 481 // the carrier forgot the call
			}
			return 200
		}
		r.answered(t, "", nil, false)
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if info := r.ev.ended(t); info.Cause != CauseKeepalive || info.Duration() != 30*time.Second {
			t.Fatalf("ended %+v", info)
		}
		if n := r.client.count(sip.BYE, "call-1"); n != 1 {
			t.Fatalf("caller got %d BYEs", n)
		}
		r.b.Close()
	})
}

func TestSessionTimerRefreshesBLegWithUpdate(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.SessionExpires = 90 * time.Second })
		_, _, btx := r.answered(t, "", []sip.Header{sip.NewHeader("Session-Expires", "90;refresher=uac"), sip.NewHeader("Allow", "INVITE, ACK, BYE, CANCEL, UPDATE")}, false)
		if se := btx.req.GetHeader("Session-Expires"); se == nil || !strings.HasPrefix(se.Value(), "90") {
			t.Fatalf("B-leg INVITE lacks Session-Expires: %v", se)
		}
		bID := btx.req.CallID().Value()
		time.Sleep(45*time.Second - time.Millisecond)
		synctest.Wait()
		if n := r.client.count(sip.UPDATE, bID); n != 0 {
			t.Fatal("refresh too early")
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if n := r.client.count(sip.UPDATE, bID); n != 1 {
			t.Fatalf("want a refresh UPDATE at 45 s, got %d", n)
		}
		time.Sleep(45 * time.Second)
		synctest.Wait()
		if n := r.client.count(sip.UPDATE, bID); n != 2 {
			t.Fatalf("want a second refresh at 90 s, got %d", n)
		}
		r.b.Close()
		if info := r.ev.ended(t); info.Cause != CauseShutdown {
			t.Fatalf("ended %+v", info)
		}
	})
}

func TestCallerSessionExpiresWithoutRefresh(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		req := parseInvite(t, "Session-Expires: 120\r\nSupported: timer\r\n")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(200, testSDP)
		synctest.Wait()
		ok := atx.final(t)
		if se := ok.GetHeader("Session-Expires"); se == nil || se.Value() != "120;refresher=uac" {
			t.Fatalf("200 Session-Expires = %v", se)
		}
		r.b.ServeAck(ackFor(t, ok), nil)
		time.Sleep(88 * time.Second) // 120 - min(32, 40)
		synctest.Wait()
		if info := r.ev.ended(t); info.Cause != CauseKeepalive || info.Duration() != 88*time.Second {
			t.Fatalf("ended %+v", info)
		}
		r.b.Close()
	})
}

func TestSessionIntervalTooSmall(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		atx := newFakeServerTx()
		r.b.ServeInvite(parseInvite(t, "Session-Expires: 30\r\nSupported: timer\r\n"), atx)
		if res := atx.final(t); res.StatusCode != 422 || res.GetHeader("Min-SE") == nil {
			t.Fatalf("got %d", res.StatusCode)
		}
		r.b.Close()
	})
}

func TestCancelCrossingAnswer(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(180, "")
		synctest.Wait()
		atx.cancel(req)
		synctest.Wait()
		if n := r.client.count(sip.CANCEL, ""); n != 1 {
			t.Fatalf("want CANCEL to the callee, got %d", n)
		}
		// The callee answered before it saw the CANCEL.
		btx.reply(200, testSDP)
		synctest.Wait()
		r.client.mu.Lock()
		acks := len(r.client.acks)
		r.client.mu.Unlock()
		if acks != 1 || r.client.count(sip.BYE, "") != 1 {
			t.Fatalf("late answer: %d ACKs, %d BYEs; want 1 and 1", acks, r.client.count(sip.BYE, ""))
		}
		if info := r.ev.ended(t); info.Cause != CauseCanceled || !info.Answer.IsZero() {
			t.Fatalf("ended %+v", info)
		}
		r.b.Close()
	})
}

func TestOverloadAnswers503(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.MaxSetup = 1; c.RetryAfter = 7 * time.Second })
		a1 := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), a1)
		btx := <-r.client.invites
		second := parseInvite(t, "")
		cid := sip.CallIDHeader("call-2")
		second.ReplaceHeader(&cid)
		a2 := newFakeServerTx()
		r.b.ServeInvite(second, a2)
		res := a2.final(t)
		if res.StatusCode != 503 || res.GetHeader("Retry-After") == nil || res.GetHeader("Retry-After").Value() != "7" {
			t.Fatalf("got %d %v", res.StatusCode, res.GetHeader("Retry-After"))
		}
		if st := r.b.Stats(); st.Overload != 1 || st.InSetup != 1 {
			t.Fatalf("stats %+v", st)
		}
		btx.reply(486, "")
		synctest.Wait()
		r.b.Close()
	})
}

// bigOffer is a browser's offer: ICE candidates and DTLS make it
// several kilobytes.
func bigOffer() string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS stream\r\n")
	b.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n")
	for i := 0; i < 24; i++ {
		b.WriteString("a=candidate:" + strconv.Itoa(1000000+i) + " 1 udp 2122260223 192.168.1." + strconv.Itoa(i+2) + " 5" + strconv.Itoa(1000+i) + " typ host generation 0 network-id 1 network-cost 10\r\n")
	}
	b.WriteString("a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef0123456789\r\na=ice-options:trickle\r\n")
	b.WriteString("a=fingerprint:sha-256 6B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\na=setup:actpass\r\na=mid:0\r\n")
	b.WriteString("a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\na=sendrecv\r\na=msid:stream track\r\na=rtcp-mux\r\n")
	b.WriteString("a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n")
	b.WriteString("a=ssrc:1001 cname:abcdefgh\r\na=ssrc:1001 msid:stream track\r\n")
	return b.String()
}

// A 3-4 KB browser offer goes to a carrier over UDP once the WebRTC
// attributes are stripped, and over TCP when they are kept.
func TestBigOfferStrippedOrTCP(t *testing.T) {
	client := testClient(t)
	offer := bigOffer()
	if len(offer) < 3000 {
		t.Fatalf("offer is only %d bytes", len(offer))
	}
	for _, strip := range []bool{true, false} {
		synctest.Test(t, func(t *testing.T) {
			r := newFakeRig(t, client, func(c *Config) {
				c.Router = RouterFunc(func(ctx context.Context, in *Incoming) (*Route, error) {
					return &Route{Targets: Targets{{Name: "carrier", URI: sip.Uri{Scheme: "sip", User: "+4930123", Host: "192.0.2.9"}, StripWebRTC: strip}}}, nil
				})
			})
			req := parseInvite(t, "")
			req.SetBody([]byte(offer))
			req.RemoveHeader("Content-Length")
			req.SetTransport("TCP")
			atx := newFakeServerTx()
			go r.b.ServeInvite(req, atx)
			btx := <-r.client.invites
			body := string(btx.req.Body())
			if strip {
				if btx.req.Transport() != "UDP" || strings.Contains(body, "a=candidate") || strings.Contains(body, "a=fingerprint") || !strings.Contains(body, "a=rtpmap:0 PCMU/8000") {
					t.Fatalf("stripped offer: transport %s, %d bytes:\n%s", btx.req.Transport(), len(body), body)
				}
			} else {
				if btx.req.Transport() != "TCP" || len(body) != len(offer) {
					t.Fatalf("kept offer went over %s with %d bytes", btx.req.Transport(), len(body))
				}
				if c := btx.req.Contact(); c == nil || !strings.Contains(c.Address.String(), "transport=tcp") {
					t.Fatalf("Contact %v does not say TCP", c)
				}
			}
			btx.reply(486, "")
			synctest.Wait()
			r.b.Close()
		})
	}
}

// anchorLog records what the B2BUA asks of its media anchor.
type anchorLog struct {
	mu  sync.Mutex
	ops []string
}

func (a *anchorLog) Offer(_ context.Context, m MediaRequest) ([]byte, error) {
	a.mu.Lock()
	a.ops = append(a.ops, "offer "+m.FromTag+">"+m.ToTag)
	a.mu.Unlock()
	return []byte(strings.ReplaceAll(string(m.SDP), "127.0.0.1", "203.0.113.1")), nil
}

func (a *anchorLog) Answer(_ context.Context, m MediaRequest) ([]byte, error) {
	a.mu.Lock()
	a.ops = append(a.ops, "answer "+m.FromTag+">"+m.ToTag)
	a.mu.Unlock()
	return []byte(strings.ReplaceAll(string(m.SDP), "127.0.0.1", "203.0.113.1")), nil
}

func (a *anchorLog) Delete(_ context.Context, id string) error {
	a.mu.Lock()
	a.ops = append(a.ops, "delete "+id)
	a.mu.Unlock()
	return nil
}

// Early media of an anchored call: the 183's answer and the 200's go to
// the same relay session (same call and tags), so the relay keeps the
// ports it latched on the 183.
func TestAnchoredEarlyMediaKeepsSession(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		anchor := &anchorLog{}
		r := newFakeRig(t, client, func(c *Config) {
			c.Media = anchor
			c.Router = RouterFunc(func(ctx context.Context, in *Incoming) (*Route, error) {
				return &Route{Anchor: true, Targets: Targets{{Name: "carrier", URI: sip.Uri{Scheme: "sip", User: "+4930123", Host: "192.0.2.9"}}}}, nil
			})
		})
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		if !strings.Contains(string(btx.req.Body()), "203.0.113.1") {
			t.Fatalf("offer to the carrier not anchored:\n%s", btx.req.Body())
		}
		btx.reply(183, testSDP)
		synctest.Wait()
		early := <-atx.res
		for early.StatusCode == 100 {
			early = <-atx.res
		}
		if early.StatusCode != 183 || !strings.Contains(string(early.Body()), "203.0.113.1") {
			t.Fatalf("caller got %d with\n%s", early.StatusCode, early.Body())
		}
		btx.reply(200, testSDP)
		synctest.Wait()
		if ok := atx.final(t); ok.StatusCode != 200 || !strings.Contains(string(ok.Body()), "203.0.113.1") {
			t.Fatalf("caller got %d", ok.StatusCode)
		}
		r.b.Hangup("call-1", CauseCallerHangup)
		synctest.Wait()
		r.b.Close()
		anchor.mu.Lock()
		defer anchor.mu.Unlock()
		want := []string{"offer alice-tag>", "answer alice-tag>", "answer alice-tag>", "delete call-1"}
		if len(anchor.ops) != 4 {
			t.Fatalf("anchor ops %v", anchor.ops)
		}
		for i, op := range anchor.ops {
			if !strings.HasPrefix(op, want[i]) {
				t.Fatalf("anchor ops %v, want %v", anchor.ops, want)
			}
		}
		if !strings.HasSuffix(anchor.ops[1], anchor.ops[2][len("answer alice-tag>"):]) {
			t.Fatalf("183 and 200 answered different parties: %v", anchor.ops)
		}
	})
}

// Shutdown refuses new calls, lets live ones end by themselves, and hangs
// up the rest when its context ends.
func TestShutdownDrainsThenHangsUp(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		r.answered(t, "", nil, false)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- r.b.Shutdown(ctx) }()
		synctest.Wait()
		// New calls are refused meanwhile.
		second := parseInvite(t, "")
		cid := sip.CallIDHeader("call-2")
		second.ReplaceHeader(&cid)
		atx := newFakeServerTx()
		r.b.ServeInvite(second, atx)
		if res := atx.final(t); res.StatusCode != 503 {
			t.Fatalf("new call during shutdown got %d", res.StatusCode)
		}
		select {
		case <-done:
			t.Fatal("Shutdown returned with a call up")
		default:
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		if info := r.ev.ended(t); info.Cause != CauseShutdown || info.Duration() != 10*time.Second {
			t.Fatalf("ended %+v", info)
		}
		if n := r.client.count(sip.BYE, ""); n != 2 {
			t.Fatalf("%d BYEs", n)
		}
	})
}

// A 2xx from a second fork of the B-leg INVITE is acknowledged with its
// own dialog's tags and ended with a BYE; the answered call goes on.
func TestForkedAnswerIsAckedAndEnded(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		_, _, btx := r.answered(t, "", nil, false)
		fork := sip.NewResponseFromRequest(btx.req, 200, "OK", []byte(testSDP))
		fork.To().Params.Add("tag", "fork-2")
		fork.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: "192.0.2.10", Port: 5060}})
		btx.retrans(fork)
		btx.retrans(fork) // retransmitted: ACKed again, not BYEd twice
		synctest.Wait()
		r.client.mu.Lock()
		var acks int
		for _, a := range r.client.acks {
			if tag, _ := a.To().Params.Get("tag"); tag == "fork-2" {
				acks++
			}
		}
		var byes int
		for _, q := range r.client.sent {
			if tag, _ := q.To().Params.Get("tag"); q.Method == sip.BYE && tag == "fork-2" {
				byes++
			}
		}
		r.client.mu.Unlock()
		if acks != 2 || byes != 1 {
			t.Fatalf("fork: %d ACKs, %d BYEs; want 2 and 1", acks, byes)
		}
		if len(r.b.Calls()) != 1 {
			t.Fatal("the answered call ended")
		}
		r.b.Close()
	})
}

// The 2xx to a caller's re-INVITE over UDP is repeated until its ACK.
func TestReinviteAnswerRetransmittedUntilACK(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		r.answered(t, "", nil, false)
		r.b.mu.Lock()
		tag := r.b.calls["call-1"].aTag
		r.b.mu.Unlock()
		text := "INVITE sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-re1\r\n" +
			"From: <sip:alice@127.0.0.1>;tag=alice-tag\r\nTo: <sip:+4930123@127.0.0.1>;tag=" + tag + "\r\n" +
			"Call-ID: call-1\r\nCSeq: 2 INVITE\r\nContact: <sip:alice@127.0.0.1:5000>\r\nContent-Type: application/sdp\r\n" +
			"Content-Length: " + strconv.Itoa(len(testSDP)) + "\r\n\r\n" + testSDP
		msg, err := sip.ParseMessage([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		re := msg.(*sip.Request)
		re.SetSource("127.0.0.1:5000")
		re.SetTransport("UDP")
		rtx := newFakeServerTx()
		r.b.ServeInvite(re, rtx)
		time.Sleep(4 * time.Second) // 0.5, 1.5, 3.5 s
		synctest.Wait()
		n := 0
		for len(rtx.res) > 0 {
			if (<-rtx.res).StatusCode == 200 {
				n++
			}
		}
		if n != 4 {
			t.Fatalf("re-INVITE 200 sent %d times in 4 s, want 4", n)
		}
		ack, _ := sip.ParseMessage([]byte("ACK sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5000;branch=z9hG4bK-re2\r\nFrom: <sip:alice@127.0.0.1>;tag=alice-tag\r\nTo: <sip:+4930123@127.0.0.1>;tag=" + tag + "\r\nCall-ID: call-1\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n"))
		r.b.ServeAck(ack.(*sip.Request), nil)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if len(rtx.res) != 0 {
			t.Fatal("200 repeated after the ACK")
		}
		r.b.Close()
	})
}
