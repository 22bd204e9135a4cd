package b2bua

// Regression tests for races and message sequences found in review.

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
)

func hasEnded(e *events) (CallInfo, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.all {
		if ev.Type == EventEnded {
			return ev.Call, true
		}
	}
	return CallInfo{}, false
}

// R1: callee rings, caller cancels, callee never answers the INVITE with 487.
func TestRaceCancelWithout487Hangs(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		done := make(chan struct{})
		go func() { r.b.ServeInvite(req, atx); close(done) }()
		btx := <-r.client.invites
		btx.reply(180, "")
		synctest.Wait()
		atx.cancel(req)
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		_, ended := hasEnded(r.ev)
		select {
		case <-done:
		default:
			t.Errorf("setup goroutine still blocked after 10 min; ended=%v; calls=%d", ended, len(r.b.Calls()))
		}
		close(btx.res) // unblock so the bubble can exit
		synctest.Wait()
	})
}

type answeredHook struct {
	grant
	hook func()
	err  error
}

func (a *answeredHook) Answered(ctx context.Context, c CallInfo) error {
	a.grant.Answered(ctx, c)
	if a.hook != nil {
		a.hook()
	}
	return a.err
}

// R2: CANCEL arrives while Authorizer.Answered runs: Active gauge goes negative, Ended with Answer set.
func TestRaceCancelDuringAnsweredActiveGauge(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		var atx *fakeServerTx
		var req *sip.Request
		a := &answeredHook{}
		a.hook = func() { atx.Terminate() } // tx gone (CANCEL after isCanceled check)
		r := newFakeRig(t, client, func(c *Config) { c.Authorizer = a })
		req = parseInvite(t, "")
		atx = newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(200, testSDP)
		synctest.Wait()
		info, _ := hasEnded(r.ev)
		t.Logf("active=%d ended=%+v authorizer ends=%d", r.b.Stats().Active, info.Cause, len(a.ends))
		if r.b.Stats().Active != 0 {
			t.Errorf("Active gauge = %d after the call ended", r.b.Stats().Active)
		}
		r.b.Close()
	})
}

// R3: Authorizer.Answered fails: caller gets two final responses (503 then 487).
func TestRaceAnsweredErrorTwoFinals(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		a := &answeredHook{err: errors.New("db down")}
		r := newFakeRig(t, client, func(c *Config) { c.Authorizer = a })
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(200, testSDP)
		synctest.Wait()
		var finals []int
		for len(atx.res) > 0 {
			if res := <-atx.res; res.StatusCode >= 200 {
				finals = append(finals, res.StatusCode)
			}
		}
		if len(finals) != 1 {
			t.Errorf("caller got final responses %v", finals)
		}
		r.b.Close()
	})
}

// R4: callee BYE after our ACK while Answered runs: 481 and the call goes on.
func TestRaceCalleeByeDuringAnswered(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		var r *fakeRig
		var byeRes *sip.Response
		a := &answeredHook{}
		r = newFakeRig(t, client, func(c *Config) { c.Authorizer = a })
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		var btx *fakeClientTx
		a.hook = func() {
			// callee got our ACK and hangs up at once
			bye := sip.NewRequest(sip.BYE, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
			from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: "x"}, Params: sip.NewParams()}
			from.Params.Add("tag", "callee-tag")
			r.b.mu.Lock()
			var bl *leg
			for _, c := range r.b.calls {
				bl = c.bl
			}
			r.b.mu.Unlock()
			to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: "y"}, Params: sip.NewParams()}
			to.Params.Add("tag", bl.localTag)
			cid := sip.CallIDHeader(bl.callID)
			bye.AppendHeader(from)
			bye.AppendHeader(to)
			bye.AppendHeader(&cid)
			bye.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.BYE})
			stx := newFakeServerTx()
			r.b.ServeInDialog(bye, stx)
			byeRes = <-stx.res
		}
		go r.b.ServeInvite(req, atx)
		btx = <-r.client.invites
		btx.reply(200, testSDP)
		synctest.Wait()
		t.Logf("callee BYE answered %d; caller final %d", byeRes.StatusCode, atx.final(t).StatusCode)
		if _, ended := hasEnded(r.ev); !ended {
			t.Errorf("callee hung up (BYE got %d) but the call is up", byeRes.StatusCode)
		}
		r.b.Close()
	})
}

// R5: answer in a reliable 183, 200 without SDP: the caller's 200 carries no answer.
func TestRaceAnswerInReliable183(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(183, testSDP, sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", "1"))
		synctest.Wait()
		btx.reply(200, "")
		synctest.Wait()
		ok := atx.final(t)
		if len(ok.Body()) == 0 {
			t.Errorf("200 to the caller has no SDP answer")
		}
		r.b.Close()
	})
}

// R6: glare between both legs' re-INVITEs: lock order l.mu -> other.mu.

func mkReq(method sip.RequestMethod, l *leg, seq uint32, body string) *sip.Request {
	r := sip.NewRequest(method, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", Host: "x"}, Params: sip.NewParams()}
	from.Params.Add("tag", l.remoteTag)
	to := &sip.ToHeader{Address: sip.Uri{Scheme: "sip", Host: "y"}, Params: sip.NewParams()}
	to.Params.Add("tag", l.localTag)
	cid := sip.CallIDHeader(l.callID)
	r.AppendHeader(from)
	r.AppendHeader(to)
	r.AppendHeader(&cid)
	r.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	if body != "" {
		ct := sip.ContentTypeHeader("application/sdp")
		r.AppendHeader(&ct)
		r.SetBody([]byte(body))
	}
	r.SetSource("127.0.0.1:5000")
	return r
}

// Offers from both parties at once, repeatedly: the legs' locks are
// always taken in the same order, so the call never deadlocks.
func TestRaceGlareDeadlockReal(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		btx := <-r.client.invites
		btx.reply(200, testSDP)
		synctest.Wait()
		r.b.mu.Lock()
		c := r.b.calls["call-1"]
		r.b.mu.Unlock()
		if c == nil {
			t.Fatal("no call")
		}
		c.mu.Lock()
		a, bl := c.a, c.bl
		c.mu.Unlock()
		for i := uint32(0); i < 2000; i++ {
			sa := uint32(10 + i)
			go r.b.ServeInDialog(mkReq(sip.UPDATE, a, sa, testSDP), newFakeServerTx())
			go r.b.ServeInDialog(mkReq(sip.UPDATE, bl, sa, testSDP), newFakeServerTx())
			synctest.Wait() // a deadlock would leave goroutines blocked for good
		}
		r.b.Hangup("call-1", CauseCallerHangup)
		synctest.Wait()
		if len(r.b.Calls()) != 0 {
			t.Fatal("call still up")
		}
		r.b.Close()
	})
}

// Caller's CANCEL arrives while the Authenticator runs: OnCancel/OnTerminate report the tx is gone.
type goneTx struct{ *fakeServerTx }

func (g goneTx) OnCancel(f sip.FnTxCancel) bool       { return false }
func (g goneTx) OnTerminate(f sip.FnTxTerminate) bool { return false }

func TestRaceCancelDuringAuthenticate(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		req := parseInvite(t, "")
		atx := goneTx{newFakeServerTx()}
		go r.b.ServeInvite(req, atx)
		synctest.Wait()
		select {
		case btx := <-r.client.invites:
			t.Errorf("callee rung after the caller canceled: %s", btx.req.StartLine())
		default:
		}
		r.b.Close()
	})
}
