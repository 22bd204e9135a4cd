package b2bua

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
)

// parallelRoute rings two devices at once.
func parallelRoute(ctx context.Context, in *Incoming) (*Route, error) {
	return &Route{Parallel: true, Targets: Targets{
		{Name: "desk", URI: sip.Uri{Scheme: "sip", User: "bob", Host: "192.0.2.1"}},
		{Name: "browser", URI: sip.Uri{Scheme: "sip", User: "bob", Host: "192.0.2.2"}},
	}}, nil
}

// cancels counts the CANCELs sent for the INVITE of tx.
func (f *fakeClient) cancels(tx *fakeClientTx) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.sent {
		if r.Method == sip.CANCEL && r.CallID().Value() == tx.req.CallID().Value() {
			n++
		}
	}
	return n
}

func TestForkFirstAnswerWins(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.Router = RouterFunc(parallelRoute) })
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		desk, browser := <-r.client.invites, <-r.client.invites
		desk.reply(180, "")
		browser.reply(180, "")
		synctest.Wait()
		browser.reply(200, testSDP)
		synctest.Wait()
		if res := atx.final(t); res.StatusCode != 200 {
			t.Fatalf("caller got %d", res.StatusCode)
		}
		if n := r.client.cancels(desk); n != 1 {
			t.Fatalf("the other device got %d CANCELs", n)
		}
		// The desk phone answered before it saw the CANCEL: ACK and BYE.
		desk.reply(200, testSDP)
		synctest.Wait()
		if n := r.client.count(sip.BYE, desk.req.CallID().Value()); n != 1 {
			t.Fatalf("late answer got %d BYEs", n)
		}
		calls := r.b.Calls()
		if len(calls) != 1 || calls[0].Target != "browser" || calls[0].Attempts != 2 {
			t.Fatalf("calls %+v", calls)
		}
		r.b.Hangup("call-1", CauseCallerHangup)
		synctest.Wait()
		if n := r.client.count(sip.BYE, browser.req.CallID().Value()); n != 1 {
			t.Fatalf("winner got %d BYEs", n)
		}
		r.b.Close()
	})
}

func TestForkAllFailBestResponse(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.Router = RouterFunc(parallelRoute) })
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		desk, browser := <-r.client.invites, <-r.client.invites
		desk.reply(503, "")
		browser.reply(486, "")
		synctest.Wait()
		if res := atx.final(t); res.StatusCode != 486 {
			t.Fatalf("caller got %d, want 486", res.StatusCode)
		}
		if info := r.ev.ended(t); info.Cause != CauseRejected || info.Status != 486 {
			t.Fatalf("ended %+v", info)
		}
		r.b.Close()
	})
}

func TestForkCallerCancels(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.Router = RouterFunc(parallelRoute) })
		req := parseInvite(t, "")
		atx := newFakeServerTx()
		go r.b.ServeInvite(req, atx)
		desk, browser := <-r.client.invites, <-r.client.invites
		desk.reply(180, "")
		synctest.Wait()
		atx.cancel(req)
		synctest.Wait()
		if r.client.cancels(desk) != 1 || r.client.cancels(browser) != 0 {
			t.Fatalf("CANCELs: desk %d, browser %d (not ringing yet)", r.client.cancels(desk), r.client.cancels(browser))
		}
		browser.reply(180, "") // now it may be canceled
		synctest.Wait()
		if r.client.cancels(browser) != 1 {
			t.Fatal("the late ringer was not canceled")
		}
		desk.reply(487, "")
		browser.reply(487, "")
		synctest.Wait()
		if info := r.ev.ended(t); info.Cause != CauseCanceled {
			t.Fatalf("ended %+v", info)
		}
		r.b.Close()
	})
}

func TestForkGlobalFailureStopsOthers(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.Router = RouterFunc(parallelRoute) })
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		desk, browser := <-r.client.invites, <-r.client.invites
		browser.reply(180, "")
		desk.reply(603, "")
		synctest.Wait()
		if r.client.cancels(browser) != 1 {
			t.Fatal("603 did not cancel the other device")
		}
		browser.reply(487, "")
		synctest.Wait()
		if res := atx.final(t); res.StatusCode != 603 {
			t.Fatalf("caller got %d, want 603", res.StatusCode)
		}
		r.b.Close()
	})
}

// A 302 from a target is followed when configured: the next INVITE goes
// to the Contact it gave, then the picker resumes after the target.
func TestRedirectFollowed(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) {
			c.FollowRedirects = true
			c.Router = RouterFunc(func(ctx context.Context, in *Incoming) (*Route, error) {
				return &Route{Targets: Targets{
					{Name: "a", URI: sip.Uri{Scheme: "sip", User: "+4930123", Host: "192.0.2.1"}},
					{Name: "b", URI: sip.Uri{Scheme: "sip", User: "+4930123", Host: "192.0.2.2"}},
				}}, nil
			})
		})
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		first := <-r.client.invites
		first.reply(302, "", &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "+4930999", Host: "192.0.2.77"}})
		moved := <-r.client.invites
		if moved.req.Recipient.Host != "192.0.2.77" || moved.req.Recipient.User != "+4930999" {
			t.Fatalf("redirected INVITE went to %s", moved.req.Recipient.String())
		}
		moved.reply(503, "")
		next := <-r.client.invites
		if next.req.Recipient.Host != "192.0.2.2" {
			t.Fatalf("after the redirect, the picker's next target is %s", next.req.Recipient.String())
		}
		next.reply(486, "")
		synctest.Wait()
		if res := atx.final(t); res.StatusCode != 486 {
			t.Fatalf("caller got %d", res.StatusCode)
		}
		r.b.Close()
	})
}

// Without FollowRedirects, a 3xx goes back to the caller with its Contacts.
func TestRedirectReturned(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, nil)
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		first := <-r.client.invites
		first.reply(302, "", &sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "+4930999", Host: "192.0.2.77"}})
		synctest.Wait()
		res := atx.final(t)
		if res.StatusCode != 302 || len(res.GetHeaders("Contact")) == 0 {
			t.Fatalf("caller got %d with Contacts %v", res.StatusCode, res.GetHeaders("Contact"))
		}
		r.b.Close()
	})
}

// Two devices answer at once: the loser's 2xx must be ACKed and BYEd.
func TestForkSimultaneousAnswers(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.Router = RouterFunc(parallelRoute) })
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		desk, browser := <-r.client.invites, <-r.client.invites
		desk.reply(180, "")
		browser.reply(180, "")
		synctest.Wait()
		desk.reply(200, testSDP)
		browser.reply(200, testSDP)
		synctest.Wait()
		res := atx.final(t)
		if res.StatusCode != 200 {
			t.Fatalf("caller got %d", res.StatusCode)
		}
		r.b.ServeAck(ackFor(t, res), nil)
		time.Sleep(time.Minute)
		synctest.Wait()
		nd := r.client.count(sip.BYE, desk.req.CallID().Value())
		nb := r.client.count(sip.BYE, browser.req.CallID().Value())
		r.client.mu.Lock()
		acks := len(r.client.acks)
		r.client.mu.Unlock()
		if nd+nb != 1 || acks != 2 {
			t.Errorf("loser of the two 2xx not ACKed+BYEd: BYEs desk=%d browser=%d, ACKs=%d", nd, nb, acks)
		}
		r.b.Close()
	})
}

// After reliable early answers from two devices, the 200 without SDP of
// the winner carries that device's early answer, not the other's.
func TestForkEarlyAnswerOfTheWinner(t *testing.T) {
	client := testClient(t)
	synctest.Test(t, func(t *testing.T) {
		r := newFakeRig(t, client, func(c *Config) { c.Router = RouterFunc(parallelRoute) })
		atx := newFakeServerTx()
		go r.b.ServeInvite(parseInvite(t, ""), atx)
		desk, browser := <-r.client.invites, <-r.client.invites
		ct := sip.ContentTypeHeader("application/sdp")
		sdpDesk := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 40010 RTP/AVP 0\r\n"
		sdpBrowser := "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 40020 RTP/AVP 0\r\n"
		desk.reply(183, sdpDesk, sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", "1"), &ct)
		synctest.Wait()
		browser.reply(183, sdpBrowser, sip.NewHeader("Require", "100rel"), sip.NewHeader("RSeq", "1"), &ct)
		synctest.Wait()
		desk.reply(200, "")
		synctest.Wait()
		res := atx.final(t)
		if string(res.Body()) != sdpDesk {
			t.Errorf("the 200 of the desk phone carries another device's SDP")
		}
		r.b.ServeAck(ackFor(t, res), nil)
		r.b.Close()
	})
}
