package b2bua

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

type callState uint8

const (
	stSetup callState = iota
	stAnswered
	stEnded
)

// SIP timers of RFC 3261 §17.
const (
	t1 = 500 * time.Millisecond
	t2 = 4 * time.Second
	// timerF bounds a non-INVITE transaction, and the wait for an ACK.
	timerF = 64 * t1
	// maxUDP is the size above which a request goes over TCP instead
	// (RFC 3261 §18.1.1: 200 bytes under a 1500-byte path MTU).
	maxUDP = 1300
)

// call is one back-to-back call.
type call struct {
	b  *B2BUA
	id string

	mu    sync.Mutex
	info  CallInfo
	state callState

	a        *leg
	aInvite  *sip.Request
	aTx      sip.ServerTransaction
	aTag     string
	aFromTag string
	aUDP     bool
	anchored bool

	bl *leg // the current or answered B-leg

	// canceled is closed when the call must stop before being answered:
	// the caller's CANCEL or early BYE, or Hangup.
	canceled    chan struct{}
	cancelOnce  sync.Once
	cancelCause string

	// acked is closed when the caller acknowledges the 2xx.
	acked     chan struct{}
	ackOnce   sync.Once
	lateOffer bool // the caller's INVITE had no SDP: the B-leg ACK waits for the caller's

	// pendingAck, set on a leg we answered a re-INVITE on with 2xx, sends
	// the ACK of the other leg when this leg's ACK arrives.
	pendingAck map[*leg]pendingACK

	timers         []*time.Timer // fixed ones: ACK wait, maximum duration
	keepaliveTimer *time.Timer
	// sessionTimers holds the RFC 4028 state of the legs that use them.
	sessionTimers map[*leg]*sessionTimer

	// forkLegs are the legs of a parallel fork, indexed until the call ends.
	forkLegs []*leg
	// reACK holds the 2xx answers to re-INVITEs waiting for their ACK.
	reACK map[*leg]*ackWait

	// calleeGone is set when the callee sent BYE before the caller got
	// the 200.
	calleeGone bool
	// endAtAnswer makes the call end at its answer instant: it was never
	// connected to the caller, there is nothing to bill.
	endAtAnswer bool
}

// newCall handles a new INVITE; it runs in sipgo's goroutine for the
// request until the call is answered or has failed.
func (b *B2BUA) newCall(req *sip.Request, tx sip.ServerTransaction) {
	// Cheap refusals first.
	cid, from, to, cseq := req.CallID(), req.From(), req.To(), req.CSeq()
	if cid == nil || from == nil || to == nil || cseq == nil || req.Contact() == nil || !from.Params.Has("tag") {
		b.stats.bad.Add(1)
		respond(tx, req, 400, "Bad Request (missing Call-ID, From tag, To, CSeq or Contact)")
		return
	}
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		respond(tx, req, 483, "Too Many Hops")
		return
	}
	if bad := unsupported(req); bad != "" {
		respond(tx, req, 420, "Bad Extension", sip.NewHeader("Unsupported", bad))
		return
	}
	if se, _, ok := sessionExpires(req); ok && se < minSE {
		respond(tx, req, 422, "Session Interval Too Small", sip.NewHeader("Min-SE", "90"))
		return
	}
	if len(req.Body()) > 0 {
		if !isSDP(req) {
			b.stats.bad.Add(1)
			respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
			return
		}
		if err := checkSDP(req.Body()); err != nil {
			b.stats.bad.Add(1)
			b.log.Debug("malformed SDP in INVITE", "call-id", string(*cid), "error", err)
			respond(tx, req, 400, "Bad Request (malformed SDP)")
			return
		}
	}
	b.mu.Lock()
	closed := b.closed
	_, dup := b.calls[string(*cid)]
	total := len(b.calls)
	b.mu.Unlock()
	if closed {
		respond(tx, req, 503, "Service Unavailable", retryAfter(b.cfg.RetryAfter))
		return
	}
	if dup {
		respond(tx, req, 482, "Loop Detected")
		return
	}
	if n := b.inSetup.Add(1); n > int64(b.cfg.MaxSetup) || (b.cfg.MaxCalls > 0 && total >= b.cfg.MaxCalls) {
		b.inSetup.Add(-1)
		b.stats.overload.Add(1)
		respond(tx, req, 503, "Service Unavailable", retryAfter(b.cfg.RetryAfter))
		return
	}
	setupDone := false
	defer func() {
		if !setupDone {
			b.inSetup.Add(-1)
		}
	}()
	_ = tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil))

	src, _ := netip.ParseAddrPort(req.Source())
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.NoAnswerTimeout+timerF)
	defer cancel()
	var id Identity
	if b.cfg.Authenticator != nil {
		var res *sip.Response
		id, res = b.cfg.Authenticator.AuthenticateInvite(ctx, req)
		if res != nil {
			if res.StatusCode == 401 || res.StatusCode == 407 {
				b.stats.challenged.Add(1)
			}
			_ = tx.Respond(res)
			return
		}
	}

	c := &call{
		b: b, id: string(*cid), aInvite: req, aTx: tx,
		aTag: sip.GenerateTagN(16), aFromTag: from.Params.GetOr("tag", ""),
		canceled: make(chan struct{}), acked: make(chan struct{}),
		pendingAck: map[*leg]pendingACK{}, sessionTimers: map[*leg]*sessionTimer{},
		reACK: map[*leg]*ackWait{},
	}
	// The caller's CANCEL (sipgo has answered it 200 and the INVITE 487),
	// or the end of its transaction, stops the setup. Registered once the
	// caller is known (a challenged INVITE costs nothing more), and
	// checked: they report false when it happened already, during the
	// authentication for instance.
	if !tx.OnCancel(func(*sip.Request) { c.cancel(CauseCanceled) }) {
		c.cancel(CauseCanceled)
	}
	if !tx.OnTerminate(func(string, error) {
		c.mu.Lock()
		st := c.state
		c.mu.Unlock()
		if st == stSetup {
			c.cancel(CauseCanceled)
		}
	}) {
		c.cancel(CauseCanceled)
	}
	transport := strings.ToUpper(req.Transport())
	c.aUDP = transport == "UDP" || transport == ""
	c.a = &leg{
		callID: c.id, localTag: c.aTag, remoteTag: c.aFromTag,
		localURI: *to.Address.Clone(), remoteURI: *from.Address.Clone(), localName: to.DisplayName,
		remoteTarget: *req.Contact().Address.Clone(), routeSet: routeSetFrom(req, false),
		transport: transport, contact: b.contactFor(transport), remoteSeq: cseq.SeqNo,
	}
	if len(c.a.routeSet) == 0 {
		// Send to where the caller is, not to its Contact: behind NAT, or
		// over its WebSocket, that is the only way back.
		c.a.dest = req.Source()
	}
	c.info = CallInfo{
		ID: c.id, Identity: id, Caller: from.Address.User, Callee: req.Recipient.User,
		Source: src, Setup: time.Now(),
	}
	c.lateOffer = len(req.Body()) == 0

	b.mu.Lock()
	if b.closed || b.calls[c.id] != nil {
		b.mu.Unlock()
		respond(tx, req, 503, "Service Unavailable", retryAfter(b.cfg.RetryAfter))
		return
	}
	b.calls[c.id] = c
	b.legs[c.a.callID] = c.a
	b.owner[c.a] = c
	b.mu.Unlock()
	b.stats.calls.Add(1)

	answered := c.setup(ctx, &Incoming{
		ID: c.id, Request: req, Source: src, Transport: transport, Identity: id,
		Caller: c.info.Caller, Callee: c.info.Callee,
	})
	setupDone = true
	b.inSetup.Add(-1)
	if !answered {
		b.stats.failed.Add(1)
	}
}

// unsupported returns the option tags of the request's Require header the
// B2BUA does not support.
func unsupported(req *sip.Request) string {
	var bad []string
	for _, h := range req.GetHeaders("Require") {
		for _, v := range strings.Split(h.Value(), ",") {
			v = strings.TrimSpace(v)
			switch strings.ToLower(v) {
			case "", "timer":
			default:
				bad = append(bad, v)
			}
		}
	}
	return strings.Join(bad, ", ")
}

// cancel stops a call in setup.
func (c *call) cancel(cause string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancelLocked(cause)
}

// cancelLocked is cancel with c.mu held.
func (c *call) cancelLocked(cause string) {
	c.cancelOnce.Do(func() {
		c.cancelCause = cause
		close(c.canceled)
	})
}

func (c *call) isCanceled() bool {
	select {
	case <-c.canceled:
		return true
	default:
		return false
	}
}

// outcome of one attempt.
type outcome struct {
	answered  bool
	finished  bool // the call was ended already (the caller has its final response)
	canceled  bool
	noAnswer  bool // the overall no-answer timeout passed
	status    int
	reason    string
	res       *sip.Response // the final response, when any
	err       error
	redirects []sip.Uri
}

// setup routes, authorizes and tries targets until one answers, the
// caller gives up, or none is left. It reports whether the call was
// answered.
func (c *call) setup(ctx context.Context, in *Incoming) bool {
	b := c.b
	route, err := b.cfg.Router.Route(ctx, in)
	if err != nil || route == nil || route.Targets == nil {
		st, reason, hs := rejection(err, 404, "Not Found")
		if err == nil {
			st, reason = 404, "Not Found"
		}
		b.log.Debug("call not routed", "call-id", c.id, "status", st, "error", err)
		c.failSetup(st, reason, CauseNoRoute, hs...)
		return false
	}
	c.mu.Lock()
	c.info.Account, c.info.Destination = route.Account, route.Destination
	c.info.MaxDuration = b.cfg.MaxDuration
	c.mu.Unlock()
	if route.Account != "" && b.cfg.Authorizer != nil {
		d, err := b.cfg.Authorizer.Authorize(ctx, c.snapshot())
		if err != nil {
			st, reason, hs := rejection(err, 403, "Forbidden")
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				st, reason = 503, "Service Unavailable"
			}
			b.log.Debug("call not authorized", "call-id", c.id, "account", route.Account, "error", err)
			c.failSetup(st, reason, CauseUnauthorized, hs...)
			return false
		}
		c.mu.Lock()
		if d > 0 && (c.info.MaxDuration == 0 || d < c.info.MaxDuration) {
			c.info.MaxDuration = d
		}
		c.mu.Unlock()
	}

	deadline := time.Now().Add(b.cfg.NoAnswerTimeout)
	if route.Parallel {
		// Ring every target at once (a user's devices); with a single
		// one, it is an ordinary attempt.
		var ts []Target
		var p *Attempt
		for len(ts) < maxForks {
			t, ok := route.Targets.Next(ctx, p)
			if !ok {
				break
			}
			ts = append(ts, t)
			p = &Attempt{Target: t}
		}
		if len(ts) > 1 {
			o := c.fork(ctx, route, ts, deadline)
			if o.answered || o.finished {
				return o.answered
			}
			c.finishSetup(o, true)
			return false
		}
		route.Targets = Targets(ts)
	}
	var (
		prev      *Attempt // the last attempt
		picked    *Attempt // the last attempt on a target of the picker
		last      outcome
		extra     []Target // from followed redirects
		redirects int
	)
	for {
		var t Target
		fromPicker := len(extra) == 0
		if !fromPicker {
			t, extra = extra[0], extra[1:]
		} else {
			var ok bool
			t, ok = route.Targets.Next(ctx, picked)
			if !ok {
				break
			}
		}
		if prev != nil {
			b.stats.failovers.Add(1)
		}
		if c.isCanceled() {
			last = outcome{canceled: true}
			break
		}
		started := time.Now()
		last = c.attempt(ctx, route, t, deadline)
		if last.answered || last.finished {
			return last.answered
		}
		if last.canceled || last.noAnswer {
			break
		}
		prev = &Attempt{Target: t, Status: last.status, Err: last.err, Took: time.Since(started)}
		if fromPicker {
			picked = prev
		}
		if len(last.redirects) > 0 && b.cfg.FollowRedirects {
			for _, u := range last.redirects {
				if redirects >= 5 {
					break
				}
				redirects++
				nt := t
				nt.URI = u
				nt.Name = t.Name + " -> " + u.String()
				nt.Destination = netip.AddrPort{}
				nt.RouteSet = nil
				extra = append(extra, nt)
			}
			continue
		}
		if !retryable(last) {
			break
		}
	}
	c.finishSetup(last, prev != nil)
	return false
}

// finishSetup answers the caller with the failure of the last attempt and
// ends the call. tried tells whether any target was tried.
func (c *call) finishSetup(last outcome, tried bool) {
	switch {
	case last.canceled:
		c.mu.Lock()
		cause := c.cancelCause
		c.mu.Unlock()
		if cause == "" {
			cause = CauseCanceled
		}
		st, reason := 487, "Request Terminated"
		if cause == CauseShutdown {
			st, reason = 503, "Service Unavailable"
		} else if cause != CauseCanceled {
			st, reason = 480, "Temporarily Unavailable"
		}
		c.failSetup(st, reason, cause)
	case last.noAnswer:
		c.failSetup(480, "Temporarily Unavailable", CauseNoAnswer)
	case last.status == 0 && last.err == nil && !tried:
		c.failSetup(480, "Temporarily Unavailable", CauseUnreachable) // no target at all
	default:
		st, reason := mapFailure(last)
		cause := CauseRejected
		if last.status == 0 || last.status == 408 {
			cause = CauseUnreachable
		}
		var hs []sip.Header
		if last.res != nil && last.status >= 300 && last.status < 400 {
			for _, h := range last.res.GetHeaders("Contact") {
				hs = append(hs, sip.HeaderClone(h))
			}
		}
		if last.res != nil {
			for _, name := range []string{"Reason", "Retry-After", "Warning", "Min-SE", "Unsupported"} {
				if h := last.res.GetHeader(name); h != nil && !(name == "Retry-After" && st != last.status) {
					hs = append(hs, sip.HeaderClone(h))
				}
			}
		}
		c.failSetup(st, reason, cause, hs...)
	}
}

// retryable tells whether a failed attempt is worth another target:
// no answer at all, a timeout, or a server failure (RFC 3261 §16.7 spirit).
func retryable(o outcome) bool {
	if o.status == 0 {
		return true
	}
	return o.status == 408 || (o.status >= 500 && o.status < 600)
}

// mapFailure chooses what the caller hears when the last target failed.
func mapFailure(o outcome) (int, string) {
	switch {
	case o.status == 0:
		return 408, "Request Timeout"
	case o.status == 401 || o.status == 407:
		// The carrier refused our own credentials: not the caller's business.
		return 502, "Bad Gateway"
	case o.status == 503:
		// RFC 3261 §16.7: a 503 is about the server that sent it; passing it
		// on would make the caller shun us.
		return 500, "Server Internal Error"
	}
	reason := o.reason
	if reason == "" {
		reason = reasonPhrase(o.status)
	}
	return o.status, reason
}

// rejection turns a Router or Authorizer error into a response.
func rejection(err error, defStatus int, defReason string) (int, string, []sip.Header) {
	var r *Reject
	if errors.As(err, &r) && r.Status >= 300 && r.Status < 700 {
		reason := r.Reason
		if reason == "" {
			reason = reasonPhrase(r.Status)
		}
		return r.Status, reason, r.Headers
	}
	if err != nil && !errors.As(err, &r) {
		if defStatus == 404 {
			return 500, "Server Internal Error", nil
		}
	}
	return defStatus, defReason, nil
}

// failSetup answers the caller with a final failure and ends the call.
func (c *call) failSetup(status int, reason, cause string, hs ...sip.Header) {
	res := sip.NewResponseFromRequest(c.aInvite, status, reason, nil)
	res.To().Params.Add("tag", c.aTag)
	for _, h := range hs {
		res.AppendHeader(h)
	}
	// After the caller's CANCEL sipgo has sent 487 itself: this fails.
	_ = c.aTx.Respond(res)
	c.mu.Lock()
	c.info.Status = status
	c.mu.Unlock()
	c.finish(cause)
}

// attempt tries one target.
func (c *call) attempt(ctx context.Context, route *Route, t Target, deadline time.Time) outcome {
	b := c.b
	anchored := b.cfg.Media != nil && (route.Anchor || t.Anchor)
	if (route.Anchor || t.Anchor) && b.cfg.Media == nil {
		b.log.Warn("call wants media anchoring but no MediaAnchor is configured", "call-id", c.id)
	}
	c.mu.Lock()
	wasAnchored := c.anchored
	c.anchored = anchored
	c.info.Anchored = anchored
	c.info.Target = t.Name
	c.info.Attempts++
	c.mu.Unlock()
	if wasAnchored && !anchored {
		_ = b.cfg.Media.Delete(ctx, c.id)
	}

	offer, err := c.bOffer(ctx, anchored)
	if err != nil {
		return outcome{status: 488, reason: "Not Acceptable Here", err: err}
	}
	bl, req := c.newBLeg(offer, t)

	c.mu.Lock()
	old := c.bl
	c.bl = bl
	c.info.BLegCallID = bl.callID
	info := c.info
	c.mu.Unlock()
	if old != nil {
		b.removeLeg(old)
	}
	b.addLeg(c, bl)
	b.stats.attempts.Add(1)
	b.emit(EventTrying, info)

	tx, err := b.client.TransactionRequest(ctx, req, b.addVia)
	if err != nil {
		b.log.Debug("cannot send INVITE to target", "call-id", c.id, "target", t.Name, "error", err)
		return outcome{err: err}
	}
	// A transaction that got its final response finishes by itself: sipgo
	// ACKs retransmitted failures, and retransmitted 2xx are ACKed by
	// ackB's hook. Only an abandoned one is terminated here.
	final := false
	defer func() {
		if !final {
			tx.Terminate()
		}
	}()

	tryTimer := time.NewTimer(b.cfg.TargetTimeout)
	defer tryTimer.Stop()
	wait := time.Until(deadline)
	targetLimit := false
	if t.Timeout > 0 && t.Timeout < wait {
		wait, targetLimit = t.Timeout, true
	}
	ringTimer := time.NewTimer(wait)
	defer ringTimer.Stop()

	var (
		gotResponse, gotProvisional, cancelSent, authTried bool
		canceled                                           = c.canceled
		stopReason                                         outcome
	)
	// RFC 3261 §9.1: an INVITE whose CANCEL got no final response in
	// 64*T1 is considered canceled.
	giveUp := time.NewTimer(time.Hour)
	giveUp.Stop()
	defer giveUp.Stop()
	sendCancel := func() {
		if cancelSent {
			return
		}
		cancelSent = true
		giveUp.Reset(timerF)
		b.sendCancel(req)
	}
	stopping := false
	for {
		select {
		case res, ok := <-tx.Responses():
			if !ok {
				return outcome{err: tx.Err()}
			}
			gotResponse = true
			tryTimer.Stop()
			switch {
			case res.StatusCode < 200:
				if res.StatusCode > 100 {
					gotProvisional = true
					c.early(bl, req, res)
				} else {
					gotProvisional = true // 100 is enough to CANCEL (RFC 3261 §9.1)
				}
				if stopping {
					sendCancel()
				}
			case res.StatusCode < 300:
				final = true
				if stopping {
					// The answer crossed our CANCEL: take the call and end it.
					c.lateAnswer(bl, req, res, tx)
					return stopReason
				}
				return c.answer(ctx, bl, req, res, tx)
			case (res.StatusCode == 401 || res.StatusCode == 407) && t.Username != "" && !authTried && !stopping:
				authTried = true
				ntx, err := b.client.TransactionDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: t.Username, Password: t.Password})
				if err != nil {
					return outcome{status: res.StatusCode, reason: res.Reason, res: res, err: err}
				}
				tx.Terminate()
				tx = ntx
				bl.mu.Lock()
				bl.localSeq = req.CSeq().SeqNo
				bl.mu.Unlock()
				tryTimer.Reset(b.cfg.TargetTimeout)
				gotResponse, gotProvisional = false, false
			default:
				final = true
				if stopping {
					return stopReason
				}
				o := outcome{status: res.StatusCode, reason: res.Reason, res: res}
				if res.StatusCode < 400 {
					for _, h := range res.GetHeaders("Contact") {
						if ch, ok := h.(*sip.ContactHeader); ok {
							o.redirects = append(o.redirects, *ch.Address.Clone())
						}
					}
				}
				return o
			}
		case <-tx.Done():
			if stopping {
				return stopReason
			}
			err := tx.Err()
			if errors.Is(err, sip.ErrTransactionTimeout) {
				return outcome{status: 408, reason: "Request Timeout", err: err}
			}
			return outcome{err: err}
		case <-canceled:
			canceled = nil
			stopping = true
			stopReason = outcome{canceled: true}
			if gotProvisional {
				sendCancel()
			} else {
				// RFC 3261 §9.1: wait for a provisional before canceling.
				tryTimer.Reset(b.cfg.TargetTimeout)
			}
		case <-ringTimer.C:
			if stopping {
				continue
			}
			stopping = true
			stopReason = outcome{noAnswer: !targetLimit, status: 408, reason: "Request Timeout"}
			if gotProvisional {
				sendCancel()
			} else {
				return stopReason
			}
		case <-giveUp.C:
			b.log.Debug("target never ended its INVITE after our CANCEL", "call-id", c.id, "target", t.Name)
			return stopReason
		case <-ctx.Done():
			if stopping {
				return stopReason
			}
			return outcome{status: 408, reason: "Request Timeout", err: ctx.Err()}
		case <-tryTimer.C:
			if stopping && !gotProvisional {
				return stopReason
			}
			if !gotResponse {
				b.log.Debug("target did not respond", "call-id", c.id, "target", t.Name)
				return outcome{err: sip.ErrTransactionTimeout}
			}
		}
	}
}

// bOffer returns the caller's offer for the B-leg: through the media
// anchor when the call is anchored.
func (c *call) bOffer(ctx context.Context, anchored bool) ([]byte, error) {
	sdp := c.aInvite.Body()
	if len(sdp) == 0 || !anchored {
		return sdp, nil
	}
	out, err := c.b.cfg.Media.Offer(ctx, MediaRequest{CallID: c.id, FromTag: c.aFromTag, SDP: sdp, Source: c.info.Source.Addr()})
	if err != nil {
		c.b.log.Warn("media anchor refused the offer", "call-id", c.id, "error", err)
	}
	return out, err
}

// newBLeg builds the leg and INVITE of one target, with offer as its
// body (WebRTC attributes stripped when the target asks; over TCP when the
// request is too big for UDP).
func (c *call) newBLeg(offer []byte, t Target) (*leg, *sip.Request) {
	b := c.b
	if len(offer) > 0 && t.StripWebRTC {
		offer = StripWebRTC(offer)
	}
	transport := strings.ToUpper(t.Transport)
	if transport == "" {
		transport = "UDP"
		if v, ok := t.URI.UriParams.Get("transport"); ok && v != "" {
			transport = strings.ToUpper(v)
		}
	}
	bl := &leg{
		callID: sip.GenerateTagN(24) + "@b2bua", localTag: sip.GenerateTagN(16),
		remoteTarget: *t.URI.Clone(), routeSet: t.RouteSet, transport: transport,
		localName: t.FromDisplay,
	}
	if t.From != nil {
		bl.localURI = *t.From.Clone()
	} else {
		f := c.aInvite.From().Address
		bl.localURI = sip.Uri{Scheme: "sip", User: f.User, Host: f.Host}
	}
	if t.To != nil {
		bl.remoteURI = *t.To.Clone()
	} else {
		bl.remoteURI = sip.Uri{Scheme: t.URI.Scheme, User: t.URI.User, Host: t.URI.Host, Port: t.URI.Port}
	}
	if bl.remoteURI.Scheme == "" {
		bl.remoteURI.Scheme = "sip"
	}
	if t.Destination.IsValid() {
		bl.dest = t.Destination.String()
	}
	bl.contact = b.contactFor(transport)
	bl.localSeq = 1
	req := c.bInvite(bl, offer, t)
	// Only a large body can push an INVITE past the limit: measure the
	// whole message then.
	if transport == "UDP" && len(offer) > maxUDP/2 && len(req.String())+200 > maxUDP {
		// RFC 3261 §18.1.1: too big for UDP.
		bl.transport = "TCP"
		bl.contact = b.contactFor("TCP")
		if t.URI.UriParams != nil {
			bl.remoteTarget.UriParams = t.URI.UriParams.Clone()
		}
		req = c.bInvite(bl, offer, t)
		req.SetTransport("TCP")
	}
	bl.lastSDP = offer
	return bl, req
}

// bInvite builds the B-leg INVITE.
func (c *call) bInvite(bl *leg, offer []byte, t Target) *sip.Request {
	b := c.b
	req := bl.request(sip.INVITE, bl.localSeq, offer)
	if mf := c.aInvite.MaxForwards(); mf != nil && mf.Val() > 1 {
		v := sip.MaxForwardsHeader(mf.Val() - 1)
		req.ReplaceHeader(&v)
	}
	req.AppendHeader(sip.NewHeader("Allow", allowHeader))
	// Reliable provisionals are acknowledged here, on the B-leg; without an
	// offer from the caller, the callee's offer could come in one, and its
	// answer would have to go in the PRACK: not offered then.
	rel := "100rel, "
	if c.lateOffer {
		rel = ""
	}
	if se := b.cfg.SessionExpires; se > 0 {
		req.AppendHeader(sip.NewHeader("Supported", rel+"timer"))
		req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
		req.AppendHeader(sip.NewHeader("Min-SE", "90"))
	} else if rel != "" {
		req.AppendHeader(sip.NewHeader("Supported", "100rel"))
	}
	req.AppendHeader(sip.NewHeader("User-Agent", b.cfg.UserAgent))
	for _, name := range []string{"Privacy"} {
		if h := c.aInvite.GetHeader(name); h != nil {
			req.AppendHeader(sip.HeaderClone(h))
		}
	}
	for _, h := range t.Headers {
		req.AppendHeader(sip.HeaderClone(h))
	}
	return req
}

const allowHeader = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, MESSAGE, NOTIFY"

// sendCancel cancels a client INVITE: the CANCEL carries the INVITE's
// own Via, so that the callee matches it to the INVITE (RFC 3261 §9.1).
func (b *B2BUA) sendCancel(inv *sip.Request) {
	creq := cancelRequest(inv)
	b.spawn(func() {
		cctx, cancel := context.WithTimeout(context.Background(), timerF)
		defer cancel()
		tx, err := b.client.TransactionRequest(cctx, creq, b.keepVia)
		if err != nil {
			return
		}
		defer tx.Terminate()
		select {
		case <-tx.Responses():
		case <-tx.Done():
		case <-cctx.Done():
		}
	})
}

// cancelRequest builds the CANCEL of a client INVITE (RFC 3261 §9.1).
func cancelRequest(inv *sip.Request) *sip.Request {
	req := sip.NewRequest(sip.CANCEL, *inv.Recipient.Clone())
	if v := inv.Via(); v != nil {
		req.AppendHeader(v.Clone())
	}
	for _, name := range []string{"Route"} {
		for _, h := range inv.GetHeaders(name) {
			req.AppendHeader(sip.HeaderClone(h))
		}
	}
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.SetBody(nil)
	req.SetDestination(inv.Destination())
	req.SetTransport(inv.Transport())
	return req
}

// early handles a provisional response of the B-leg: it records the
// early dialog, acknowledges a reliable one with PRACK (RFC 3262) and
// passes it on to the caller.
func (c *call) early(bl *leg, inv *sip.Request, res *sip.Response) {
	b := c.b
	bl.mu.Lock()
	if to := res.To(); to != nil {
		if tag, ok := to.Params.Get("tag"); ok && tag != bl.remoteTag {
			bl.remoteTag = tag
			bl.rseq = 0
		}
	}
	if ct := res.Contact(); ct != nil {
		bl.remoteTarget = *ct.Address.Clone()
	}
	if rr := routeSetFrom(res, true); len(rr) > 0 {
		bl.routeSet = rr
	}
	prack := false
	var rseq uint32
	if hasOption(res, "Require", "100rel") {
		if n, ok := headerUint(res, "RSeq"); ok && n > bl.rseq {
			bl.rseq, rseq, prack = n, n, true
		} else if ok {
			bl.mu.Unlock()
			return // a retransmission of a reliable provisional we acknowledged
		}
	}
	bl.mu.Unlock()
	if prack {
		cseq := inv.CSeq().SeqNo
		preq := bl.request(sip.PRACK, bl.nextSeq(), nil)
		preq.AppendHeader(sip.NewHeader("RAck", strconv.FormatUint(uint64(rseq), 10)+" "+strconv.FormatUint(uint64(cseq), 10)+" INVITE"))
		b.spawn(func() { c.b.transact(preq) })
	}
	if c.isCanceled() {
		return
	}
	body := []byte(nil)
	sdp := isSDP(res)
	if sdp {
		body = res.Body()
		c.mu.Lock()
		anchored := c.anchored
		c.mu.Unlock()
		if anchored {
			out, err := b.cfg.Media.Answer(context.Background(), MediaRequest{CallID: c.id, FromTag: c.aFromTag, ToTag: c.aTag, SDP: body, Source: sourceAddr(res)})
			if err != nil {
				b.log.Warn("media anchor refused early media", "call-id", c.id, "error", err)
				body, sdp = nil, false
			} else {
				body = out
			}
		}
	}
	out := c.aResponse(res.StatusCode, res.Reason, body)
	_ = c.aTx.Respond(out)
	if sdp {
		bl.mu.Lock()
		bl.earlyAnswer = body
		bl.mu.Unlock()
	}
	c.mu.Lock()
	first := c.info.Ringing.IsZero()
	if first {
		c.info.Ringing = time.Now()
	}
	info := c.info
	c.mu.Unlock()
	if sdp {
		b.emit(EventEarlyMedia, info)
	} else if first {
		b.emit(EventRinging, info)
	}
}

// aResponse builds a response to the caller's INVITE with the A-leg tag
// and the B2BUA's Contact.
func (c *call) aResponse(code int, reason string, body []byte) *sip.Response {
	res := sip.NewResponseFromRequest(c.aInvite, code, reason, nil)
	res.To().Params.Add("tag", c.aTag)
	if code > 100 {
		res.AppendHeader(&sip.ContactHeader{Address: *c.a.contact.Clone()})
	}
	if code >= 200 && code < 300 {
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
		res.AppendHeader(sip.NewHeader("Supported", "100rel, timer"))
		res.AppendHeader(sip.NewHeader("Server", c.b.cfg.UserAgent))
	}
	if len(body) > 0 {
		ct := sip.ContentTypeHeader("application/sdp")
		res.AppendHeader(&ct)
	}
	res.SetBody(body)
	return res
}

// sourceAddr is the signalling source of a received message.
func sourceAddr(msg sip.Message) netip.Addr {
	var src string
	switch m := msg.(type) {
	case *sip.Response:
		src = m.Source()
	case *sip.Request:
		src = m.Source()
	}
	ap, err := netip.ParseAddrPort(src)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr()
}

// completeDialog records the confirmed dialog of a B-leg 2xx.
func completeDialog(bl *leg, res *sip.Response) {
	bl.mu.Lock()
	defer bl.mu.Unlock()
	if to := res.To(); to != nil {
		bl.remoteTag, _ = to.Params.Get("tag")
	}
	if ct := res.Contact(); ct != nil {
		bl.remoteTarget = *ct.Address.Clone()
	}
	bl.routeSet = routeSetFrom(res, true)
	if len(bl.routeSet) > 0 && bl.dest != "" && !bl.routeSet[0].UriParams.Has("lr") {
		bl.dest = ""
	}
}

// ackB sends the ACK of a B-leg 2xx (RFC 3261 §13.2.2.4) and keeps
// answering retransmissions of that 2xx with it.
func (c *call) ackB(bl *leg, seq uint32, body []byte, tx sip.ClientTransaction) {
	ack := bl.request(sip.ACK, seq, body)
	send := func() {
		a := ack.Clone()
		a.SetDestination(ack.Destination())
		a.SetTransport(ack.Transport())
		if err := c.b.client.WriteRequest(a, c.b.addVia); err != nil {
			c.b.log.Debug("cannot send ACK", "call-id", c.id, "error", err)
		}
	}
	send()
	if tx == nil {
		return
	}
	bl.mu.Lock()
	tag := bl.remoteTag
	bl.mu.Unlock()
	var mu sync.Mutex
	forks := map[string]bool{}
	tx.OnRetransmission(func(res *sip.Response) {
		other := ""
		if to := res.To(); to != nil {
			other, _ = to.Params.Get("tag")
		}
		if other == tag || other == "" {
			send() // our ACK was lost
			return
		}
		// A 2xx from another fork of the INVITE (RFC 3261 §13.2.2.4): it
		// is acknowledged and ended, once.
		mu.Lock()
		seen := forks[other]
		forks[other] = true
		mu.Unlock()
		fork := &leg{callID: bl.callID, localTag: bl.localTag, localURI: bl.localURI, localName: bl.localName,
			remoteURI: bl.remoteURI, remoteTarget: bl.remoteTarget, transport: bl.transport, dest: bl.dest,
			contact: bl.contact, localSeq: seq}
		completeDialog(fork, res)
		fa := fork.request(sip.ACK, seq, nil)
		if err := c.b.client.WriteRequest(fa, c.b.addVia); err != nil {
			c.b.log.Debug("cannot ACK a forked 2xx", "call-id", c.id, "error", err)
		}
		if !seen {
			c.sendBye(fork)
		}
	})
}

// lateAnswer handles a 2xx that crossed our CANCEL: the call is taken
// and ended at once (RFC 3261 §9.1).
func (c *call) lateAnswer(bl *leg, inv *sip.Request, res *sip.Response, tx sip.ClientTransaction) {
	completeDialog(bl, res)
	c.ackB(bl, inv.CSeq().SeqNo, nil, tx)
	c.sendBye(bl)
}

// answer handles the B-leg 2xx: the caller gets the 200, the call is
// accounted and its timers start. When the call cannot be completed (the
// caller canceled or the callee hung up meanwhile, accounting failed) it
// is ended here, and the outcome says so.
func (c *call) answer(ctx context.Context, bl *leg, inv *sip.Request, res *sip.Response, tx sip.ClientTransaction) outcome {
	b := c.b
	completeDialog(bl, res)
	seq := inv.CSeq().SeqNo
	body := res.Body()
	hasSDP := isSDP(res)
	c.mu.Lock()
	anchored := c.anchored
	c.mu.Unlock()
	bl.mu.Lock()
	early := bl.earlyAnswer
	bl.mu.Unlock()
	if hasSDP && anchored {
		var err error
		if c.lateOffer {
			body, err = b.cfg.Media.Offer(ctx, MediaRequest{CallID: c.id, FromTag: c.aTag, ToTag: c.aFromTag, SDP: body, Source: sourceAddr(res)})
		} else {
			body, err = b.cfg.Media.Answer(ctx, MediaRequest{CallID: c.id, FromTag: c.aFromTag, ToTag: c.aTag, SDP: body, Source: sourceAddr(res)})
		}
		if err != nil {
			b.log.Warn("media anchor refused the answer", "call-id", c.id, "error", err)
			c.ackB(bl, seq, nil, tx)
			c.sendBye(bl)
			c.failSetup(500, "Server Internal Error", CauseError)
			return outcome{finished: true}
		}
	}
	if !hasSDP && !c.lateOffer && len(early) > 0 {
		// The callee answered in a reliable provisional (RFC 3262) and sent
		// the 200 without SDP; the caller, which got that answer only in an
		// unreliable one, must find it in the 200 (RFC 3261 §13.2.1).
		body = early
	}
	if !c.lateOffer {
		c.ackB(bl, seq, nil, tx)
	} else {
		c.mu.Lock()
		c.pendingAck[c.a] = pendingACK{seq: c.aInvite.CSeq().SeqNo, send: func(ackBody []byte) {
			if len(ackBody) > 0 && anchored {
				actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				out, err := b.cfg.Media.Answer(actx, MediaRequest{CallID: c.id, FromTag: c.aTag, ToTag: c.aFromTag, SDP: ackBody, Source: c.info.Source.Addr()})
				cancel()
				if err == nil {
					ackBody = out
				}
			}
			c.ackB(bl, seq, ackBody, tx)
		}}
		c.mu.Unlock()
	}
	// abandon ends the B-leg of a call that will not be completed.
	abandon := func() {
		if c.lateOffer {
			c.ackB(bl, seq, nil, tx)
		}
		c.mu.Lock()
		gone := c.calleeGone
		c.mu.Unlock()
		if !gone {
			c.sendBye(bl)
		}
	}
	if c.isCanceled() {
		abandon()
		return outcome{canceled: true}
	}
	c.mu.Lock()
	c.info.Answer = time.Now()
	c.info.Status = 200
	info := c.info
	c.mu.Unlock()
	if b.cfg.Authorizer != nil && info.Account != "" {
		if err := b.cfg.Authorizer.Answered(ctx, info); err != nil {
			b.log.Warn("cannot account the answered call; ending it", "call-id", c.id, "error", err)
			abandon()
			c.mu.Lock()
			c.info.Answer = time.Time{} // not accounted: nothing to end
			c.mu.Unlock()
			c.failSetup(503, "Service Unavailable", CauseError)
			return outcome{finished: true}
		}
	}
	ok := c.aResponse(200, "OK", body)
	c.mu.Lock()
	// RFC 4028 on the B-leg: the callee's 2xx says who refreshes.
	if se, refresher, has := sessionExpires(res); has && b.cfg.SessionExpires > 0 && se >= minSE {
		c.sessionTimers[bl] = &sessionTimer{interval: se, weRefresh: refresher != "uas", useUpdate: allows(res, "UPDATE")}
	}
	// On the A-leg the caller chose the refresher (RFC 4028 §9): itself,
	// unless it asked the B2BUA to refresh.
	if se, refresher, has := sessionExpires(c.aInvite); has && hasOption(c.aInvite, "Supported", "timer") && se >= minSE {
		if refresher != "uas" {
			refresher = "uac"
		}
		ok.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher="+refresher))
		ok.AppendHeader(sip.NewHeader("Require", "timer"))
		c.sessionTimers[c.a] = &sessionTimer{interval: se, weRefresh: refresher == "uas", useUpdate: allows(c.aInvite, "UPDATE")}
	}
	if c.isCanceled() {
		// The caller canceled, or the callee hung up, while the call was
		// being accounted: it ends now, with nothing to bill.
		cause := c.cancelCause
		c.endAtAnswer = true
		c.mu.Unlock()
		abandon()
		if cause == CauseCanceled {
			c.mu.Lock()
			c.info.Status = 487
			c.mu.Unlock()
			c.finish(cause)
		} else {
			c.failSetup(480, "Temporarily Unavailable", cause)
		}
		return outcome{finished: true}
	}
	c.state = stAnswered
	c.mu.Unlock()
	c.a.mu.Lock()
	c.a.lastSDP = body
	c.a.mu.Unlock()
	b.active.Add(1)
	b.stats.answered.Add(1)
	// Told before the caller gets the 200, so that no event of the call's
	// end can come first.
	b.emit(EventAnswered, info)
	if err := c.aTx.Respond(ok); err != nil {
		// The caller's transaction is gone (it canceled as the answer came).
		c.mu.Lock()
		c.info.Status = 487
		c.endAtAnswer = true
		c.mu.Unlock()
		c.sendBye(bl)
		c.endAnswered(CauseCanceled)
		return outcome{finished: true}
	}
	c.startTimers(ok)
	if c.aUDP {
		c.retransmitUntilACK(c.a, c.aTx, ok)
	}
	c.armSessionTimer(c.a)
	c.armSessionTimer(bl)
	return outcome{answered: true}
}

// startTimers arms the answered call's timers: the wait for the caller's
// ACK, the maximum duration, keep-alives.
func (c *call) startTimers(ok *sip.Response) {
	b := c.b
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stAnswered {
		return
	}
	c.timers = append(c.timers, time.AfterFunc(timerF, func() {
		select {
		case <-c.acked:
		default:
			b.log.Debug("caller never acknowledged the answer", "call-id", c.id)
			c.hangup(CauseAckTimeout)
		}
	}))
	if d := c.info.MaxDuration; d > 0 {
		// From the answer instant, not from now: accounting took a moment.
		c.timers = append(c.timers, time.AfterFunc(time.Until(c.info.Answer.Add(d)), func() { c.hangup(CauseMaxDuration) }))
	}
	if b.cfg.KeepAlive > 0 {
		c.keepaliveTimer = time.AfterFunc(b.cfg.KeepAlive, c.keepalive)
	}
}

// keepalive probes both legs with an in-dialog OPTIONS.
func (c *call) keepalive() {
	c.mu.Lock()
	if c.state != stAnswered {
		c.mu.Unlock()
		return
	}
	legs := []*leg{c.a, c.bl}
	c.keepaliveTimer.Reset(c.b.cfg.KeepAlive)
	c.mu.Unlock()
	for _, l := range legs {
		c.b.spawn(func() {
			res, err := c.b.transactResult(l.request(sip.OPTIONS, l.nextSeq(), nil))
			dead := err != nil || res == nil || res.StatusCode == 481 || res.StatusCode == 408
			if dead {
				c.b.log.Info("leg stopped answering keep-alives; ending the call", "call-id", c.id, "leg", l.callID)
				c.hangup(CauseKeepalive)
			}
		})
	}
}

// hangup ends the call for cause: in setup it stops the attempts; when
// answered it sends BYE to both legs.
func (c *call) hangup(cause string) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case stSetup:
		c.cancel(cause)
	case stAnswered:
		if c.endAnswered(cause) {
			c.sendBye(c.a)
			c.sendBye(c.bl)
		}
	}
}

// endAnswered finishes an answered call once; it reports whether this
// call did it.
func (c *call) endAnswered(cause string) bool {
	c.mu.Lock()
	if c.state == stEnded {
		c.mu.Unlock()
		return false
	}
	wasAnswered := c.state == stAnswered
	c.mu.Unlock()
	if wasAnswered {
		c.b.active.Add(-1)
	}
	return c.finish(cause)
}

// sendBye ends a leg's dialog.
func (c *call) sendBye(l *leg) {
	if l == nil {
		return
	}
	req := l.request(sip.BYE, l.nextSeq(), nil)
	c.b.spawn(func() { c.b.transact(req) })
}

// transact sends an in-dialog request and waits for its final response.
func (b *B2BUA) transact(req *sip.Request) {
	_, _ = b.transactResult(req)
}

func (b *B2BUA) transactResult(req *sip.Request) (*sip.Response, error) {
	res, _, err := b.transactFinal(req)
	return res, err
}

// transactFinal sends an in-dialog request and returns its final
// response and transaction. A transaction that got a final response is
// left to end by itself (an INVITE's, to have its retransmitted 2xx
// re-ACKed); others are terminated.
func (b *B2BUA) transactFinal(req *sip.Request) (*sip.Response, sip.ClientTransaction, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timerF+time.Second)
	defer cancel()
	req.AppendHeader(sip.NewHeader("User-Agent", b.cfg.UserAgent))
	tx, err := b.client.TransactionRequest(ctx, req, b.addVia)
	if err != nil {
		b.log.Debug("cannot send in-dialog request", "method", req.Method, "error", err)
		return nil, nil, err
	}
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return res, tx, nil
			}
		case <-tx.Done():
			return nil, nil, tx.Err()
		case <-ctx.Done():
			tx.Terminate()
			return nil, nil, ctx.Err()
		}
	}
}

// finish ends the call once: timers stop, the media session goes, the
// Authorizer and OnEvent hear of it, and the call is forgotten. It
// reports whether this call did it.
func (c *call) finish(cause string) bool {
	c.mu.Lock()
	if c.state == stEnded {
		c.mu.Unlock()
		return false
	}
	c.state = stEnded
	for _, t := range c.timers {
		t.Stop()
	}
	c.timers = nil
	if c.keepaliveTimer != nil {
		c.keepaliveTimer.Stop()
	}
	for _, st := range c.sessionTimers {
		if st.timer != nil {
			st.timer.Stop()
		}
	}
	for _, w := range c.reACK {
		w.timer.Stop()
	}
	c.info.End = time.Now()
	if c.endAtAnswer {
		c.info.End = c.info.Answer
	}
	c.info.Cause = cause
	if c.info.Status == 0 {
		c.info.Status = 500
	}
	info := c.info
	anchored := c.anchored
	c.mu.Unlock()
	c.ackOnce.Do(func() { close(c.acked) })
	b := c.b
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if anchored {
		if err := b.cfg.Media.Delete(ctx, c.id); err != nil {
			b.log.Debug("media anchor delete", "call-id", c.id, "error", err)
		}
	}
	if !info.Answer.IsZero() && b.cfg.Authorizer != nil && info.Account != "" {
		b.cfg.Authorizer.Ended(ctx, info)
	}
	b.removeCall(c)
	b.emit(EventEnded, info)
	return true
}

func (c *call) snapshot() CallInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// reasonPhrase is the RFC 3261 reason phrase of common status codes.
func reasonPhrase(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 402:
		return "Payment Required"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 408:
		return "Request Timeout"
	case 480:
		return "Temporarily Unavailable"
	case 484:
		return "Address Incomplete"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 500:
		return "Server Internal Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 600:
		return "Busy Everywhere"
	case 603:
		return "Decline"
	}
	switch {
	case code < 400:
		return "Redirection"
	case code < 500:
		return "Request Failure"
	case code < 600:
		return "Server Failure"
	}
	return "Global Failure"
}
