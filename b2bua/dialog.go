package b2bua

import (
	"context"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// inDialog handles a request inside one of the call's dialogs.
func (c *call) inDialog(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	c.mu.Lock()
	st := c.state
	other := c.bl
	if l != c.a {
		other = c.a
	}
	fromA := l == c.a
	current := fromA || l == c.bl
	if !current && st == stSetup {
		// A device of a fork still ringing: its early requests are
		// refused below like any callee's, not with 481.
		for _, f := range c.forkLegs {
			current = current || f == l
		}
		other = nil
	}
	c.mu.Unlock()
	if !current {
		// A leg of a fork that lost, or of an earlier attempt.
		if req.Method == sip.BYE {
			respond(tx, req, 200, "OK")
		} else {
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
		return
	}

	if req.Method == sip.CANCEL {
		// sipgo matched no INVITE transaction: nothing to cancel.
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
		return
	}
	// RFC 3261 §12.2.2: a request older than the last one is refused.
	if cseq := req.CSeq(); cseq != nil {
		l.mu.Lock()
		stale := l.remoteSeq != 0 && cseq.SeqNo <= l.remoteSeq
		if cseq.SeqNo > l.remoteSeq {
			l.remoteSeq = cseq.SeqNo
		}
		l.mu.Unlock()
		if stale && req.Method != sip.BYE {
			respond(tx, req, 500, "Server Internal Error (CSeq out of order)")
			return
		}
	}

	// Target refresh (RFC 3261 §12.2.2): a re-INVITE or UPDATE may move the
	// peer; the caller is reached where its requests come from.
	if req.Method == sip.INVITE || req.Method == sip.UPDATE {
		if ct := req.Contact(); ct != nil {
			l.mu.Lock()
			l.remoteTarget = *ct.Address.Clone()
			l.mu.Unlock()
		}
	}
	if fromA && req.Source() != "" {
		l.mu.Lock()
		if l.dest != "" {
			l.dest = req.Source()
		}
		l.mu.Unlock()
	}

	switch req.Method {
	case sip.BYE:
		// Decided under the call's lock, so that a BYE and the answer
		// cannot cross: either the setup sees the cancel, or the BYE sees
		// the answered call.
		c.mu.Lock()
		st = c.state
		switch {
		case st == stSetup && fromA:
			c.cancelLocked(CauseCanceled)
		case st == stSetup && l == c.bl:
			// The callee hangs up before the caller got the 200.
			c.calleeGone = true
			c.cancelLocked(CauseCalleeHangup)
		}
		c.mu.Unlock()
		switch {
		case st == stSetup && fromA:
			// A BYE in the early dialog (RFC 3261 §15): the caller gives up.
			respond(tx, req, 200, "OK")
			res := c.aResponse(487, "Request Terminated", nil)
			_ = c.aTx.Respond(res)
		case st == stSetup && l == c.bl:
			respond(tx, req, 200, "OK")
		case st == stAnswered:
			respond(tx, req, 200, "OK")
			cause := CauseCallerHangup
			if !fromA {
				cause = CauseCalleeHangup
			}
			if c.endAnswered(cause) {
				c.sendBye(other)
			}
		default:
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
	case sip.OPTIONS:
		res := sip.NewResponseFromRequest(req, 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", allowHeader))
		_ = tx.Respond(res)
	case sip.INVITE, sip.UPDATE:
		if st != stAnswered || other == nil {
			respond(tx, req, 491, "Request Pending")
			return
		}
		if req.Method == sip.UPDATE && len(req.Body()) == 0 {
			// A session refresh (RFC 4028) or a bare target refresh: it is
			// this leg's business, answered here; the B2BUA refreshes the
			// other leg itself.
			c.refreshed(l, req, tx)
			return
		}
		c.offer(l, other, fromA, req, tx)
	case sip.PRACK:
		// The B2BUA sends no reliable provisional responses.
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
	case sip.REFER:
		respond(tx, req, 501, "Not Implemented")
	default: // INFO, MESSAGE, NOTIFY: passed on untouched.
		if st != stAnswered || other == nil {
			// Not the end of the early dialog (which a 481 would mean):
			// the request is only refused until the answer.
			respond(tx, req, 403, "Forbidden (not before the answer)")
			return
		}
		c.relay(other, req, tx)
	}
}

// relay passes a request to the other leg and its final response back.
func (c *call) relay(other *leg, req *sip.Request, tx sip.ServerTransaction) {
	out := other.request(req.Method, other.nextSeq(), nil)
	for _, name := range []string{"Content-Type", "Info-Package", "Event", "Subscription-State", "Content-Disposition"} {
		if h := req.GetHeader(name); h != nil {
			out.RemoveHeader(name)
			out.AppendHeader(sip.HeaderClone(h))
		}
	}
	out.SetBody(req.Body())
	res, err := c.b.transactResult(out)
	if err != nil || res == nil {
		respond(tx, req, 408, "Request Timeout")
		return
	}
	back := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
	if ct := res.ContentType(); ct != nil && len(res.Body()) > 0 {
		back.AppendHeader(sip.HeaderClone(ct))
	}
	back.SetBody(res.Body())
	_ = tx.Respond(back)
	if res.StatusCode == 481 {
		c.hangup(CauseKeepalive)
	}
}

// partyTags returns the media anchor tags of the party on leg l (the
// caller is known by its From tag, the callee by the A-leg To tag).
func (c *call) partyTags(fromA bool) (self, peer string) {
	if fromA {
		return c.aFromTag, c.aTag
	}
	return c.aTag, c.aFromTag
}

// offer passes a re-INVITE or UPDATE from leg l to the other leg: hold,
// resume, codec changes, session refreshes.
func (c *call) offer(l, other *leg, fromA bool, req *sip.Request, tx sip.ServerTransaction) {
	b := c.b
	// Both legs' locks, always the caller's first: crossing offers from
	// the two sides must not deadlock.
	first, second := l, other
	if !fromA {
		first, second = other, l
	}
	first.mu.Lock()
	second.mu.Lock()
	if l.inviting || other.inviting {
		second.mu.Unlock()
		first.mu.Unlock()
		respond(tx, req, 491, "Request Pending") // RFC 3261 §14.2: glare
		return
	}
	l.inviting, other.inviting = true, true
	second.mu.Unlock()
	first.mu.Unlock()
	done := func() {
		first.mu.Lock()
		second.mu.Lock()
		l.inviting, other.inviting = false, false
		second.mu.Unlock()
		first.mu.Unlock()
	}
	if req.Method == sip.INVITE {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 100, "Trying", nil))
	}
	c.mu.Lock()
	anchored := c.anchored
	c.mu.Unlock()
	self, peer := c.partyTags(fromA)
	ctx, cancel := context.WithTimeout(context.Background(), timerF)
	defer cancel()

	body := req.Body()
	hasOffer := len(body) > 0
	if hasOffer {
		if !isSDP(req) {
			done()
			respond(tx, req, 415, "Unsupported Media Type", sip.NewHeader("Accept", "application/sdp"))
			return
		}
		if err := checkSDP(body); err != nil {
			done()
			b.stats.bad.Add(1)
			respond(tx, req, 488, "Not Acceptable Here")
			return
		}
		if anchored {
			out, err := b.cfg.Media.Offer(ctx, MediaRequest{CallID: c.id, FromTag: self, ToTag: peer, SDP: body, Source: sourceAddr(req)})
			if err != nil {
				done()
				respond(tx, req, 488, "Not Acceptable Here")
				return
			}
			body = out
		}
	}
	out := other.request(req.Method, other.nextSeq(), body)
	out.AppendHeader(sip.NewHeader("Allow", allowHeader))
	if ct := req.GetHeader("Content-Type"); ct != nil && len(body) > 0 {
		out.RemoveHeader("Content-Type")
		out.AppendHeader(sip.HeaderClone(ct))
	}
	seq := out.CSeq().SeqNo
	out.AppendHeader(sip.NewHeader("User-Agent", b.cfg.UserAgent))
	if len(body) > 0 {
		other.mu.Lock()
		other.lastSDP = body
		other.mu.Unlock()
	}
	otx, err := b.client.TransactionRequest(ctx, out, b.addVia)
	if err != nil {
		done()
		respond(tx, req, 500, "Server Internal Error")
		return
	}
	var res *sip.Response
wait:
	for {
		select {
		case r := <-otx.Responses():
			if r.StatusCode >= 200 {
				res = r
				break wait
			}
		case <-otx.Done():
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	done()
	if res == nil {
		otx.Terminate()
		respond(tx, req, 408, "Request Timeout")
		// RFC 3261 §14.1: a re-INVITE that times out ends the dialog.
		c.hangup(CauseKeepalive)
		return
	}
	if res.StatusCode >= 300 {
		back := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
		if h := res.GetHeader("Retry-After"); h != nil {
			back.AppendHeader(sip.HeaderClone(h))
		}
		_ = tx.Respond(back)
		if res.StatusCode == 481 || res.StatusCode == 408 {
			c.hangup(CauseKeepalive)
		}
		return
	}
	if ct := res.Contact(); ct != nil {
		other.mu.Lock()
		other.remoteTarget = *ct.Address.Clone()
		other.mu.Unlock()
	}
	answer := res.Body()
	if isSDP(res) && anchored {
		var err error
		if hasOffer {
			answer, err = b.cfg.Media.Answer(ctx, MediaRequest{CallID: c.id, FromTag: self, ToTag: peer, SDP: answer, Source: sourceAddr(res)})
		} else {
			answer, err = b.cfg.Media.Offer(ctx, MediaRequest{CallID: c.id, FromTag: peer, ToTag: self, SDP: answer, Source: sourceAddr(res)})
		}
		if err != nil {
			b.log.Warn("media anchor refused a re-INVITE answer", "call-id", c.id, "error", err)
		}
	}
	if req.Method == sip.INVITE {
		if hasOffer {
			c.ackB(other, seq, nil, otx)
		} else {
			// The offer is in the 2xx: the answer comes in l's ACK.
			c.mu.Lock()
			c.pendingAck[l] = pendingACK{seq: req.CSeq().SeqNo, send: func(ackBody []byte) {
				if len(ackBody) > 0 && anchored {
					if out, err := b.cfg.Media.Answer(context.Background(), MediaRequest{CallID: c.id, FromTag: peer, ToTag: self, SDP: ackBody, Source: sourceAddr(req)}); err == nil {
						ackBody = out
					}
				}
				c.ackB(other, seq, ackBody, otx)
			}}
			c.mu.Unlock()
		}
	}
	if len(answer) > 0 {
		l.mu.Lock()
		l.lastSDP = answer
		l.mu.Unlock()
	}
	back := sip.NewResponseFromRequest(req, res.StatusCode, res.Reason, nil)
	if se, _, has := sessionExpires(req); has && hasOption(req, "Supported", "timer") {
		back.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
		back.AppendHeader(sip.NewHeader("Require", "timer"))
		c.mu.Lock()
		if st := c.sessionTimers[l]; st != nil && !st.weRefresh && se >= minSE {
			st.interval = se
		}
		c.mu.Unlock()
	}
	// Both sessions were refreshed by this exchange.
	c.armSessionTimer(l)
	c.armSessionTimer(other)
	back.AppendHeader(&sip.ContactHeader{Address: *l.contact.Clone()})
	back.AppendHeader(sip.NewHeader("Allow", allowHeader))
	if len(answer) > 0 {
		ct := sip.ContentTypeHeader("application/sdp")
		back.AppendHeader(&ct)
	}
	back.SetBody(answer)
	_ = tx.Respond(back)
	if req.Method == sip.INVITE && (l.transport == "UDP" || l.transport == "") {
		c.retransmitUntilACK(l, tx, back)
	}
}

// retransmitUntilACK repeats a 2xx to an INVITE or re-INVITE over UDP,
// T1 doubling to T2, until its ACK comes or 64*T1 have passed (RFC 3261
// §13.3.1.4: the UAS core's job; sipgo's transaction does not do it).
func (c *call) retransmitUntilACK(l *leg, tx sip.ServerTransaction, ok *sip.Response) {
	acked := make(chan struct{})
	deadline := time.Now().Add(timerF)
	interval := t1
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stAnswered {
		return
	}
	if old := c.reACK[l]; old != nil {
		old.timer.Stop()
	}
	var seq uint32
	if cs := ok.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	w := &ackWait{acked: acked, seq: seq}
	var again func()
	again = func() {
		select {
		case <-acked:
			return
		default:
		}
		if time.Now().After(deadline) {
			return
		}
		_ = tx.Respond(ok)
		interval = min(2*interval, t2)
		c.mu.Lock()
		if c.state == stAnswered {
			w.timer.Reset(interval)
		}
		c.mu.Unlock()
	}
	w.timer = time.AfterFunc(interval, again)
	c.reACK[l] = w
}

// ackWait is a 2xx to a re-INVITE waiting for its ACK.
type ackWait struct {
	acked chan struct{}
	seq   uint32
	timer *time.Timer
}

// ack handles an ACK on leg l: the caller's ACK of the answer, or of a
// re-INVITE's 2xx, whose body may complete an offer/answer exchange.
func (c *call) ack(l *leg, req *sip.Request) {
	var seq uint32
	if cs := req.CSeq(); cs != nil {
		seq = cs.SeqNo
	}
	c.mu.Lock()
	p, ok := c.pendingAck[l]
	if ok && p.seq == seq {
		delete(c.pendingAck, l)
	} else {
		ok = false
	}
	if w := c.reACK[l]; w != nil && w.seq == seq {
		close(w.acked)
		w.timer.Stop()
		delete(c.reACK, l)
	}
	first := l == c.a && seq == c.aInvite.CSeq().SeqNo
	c.mu.Unlock()
	if first {
		c.ackOnce.Do(func() { close(c.acked) })
	}
	if ok {
		p.send(req.Body())
	}
}

// pendingACK completes an offer/answer exchange when the ACK of the 2xx
// with CSeq seq arrives: the ACK of the other leg carries its answer.
type pendingACK struct {
	seq  uint32
	send func(body []byte)
}

// refreshed answers a session refresh or target refresh without a body
// (UPDATE) on leg l itself, and re-arms l's session timer.
func (c *call) refreshed(l *leg, req *sip.Request, tx sip.ServerTransaction) {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(&sip.ContactHeader{Address: *l.contact.Clone()})
	res.AppendHeader(sip.NewHeader("Allow", allowHeader))
	if se, _, has := sessionExpires(req); has && hasOption(req, "Supported", "timer") && se >= minSE {
		// The refreshing party stays the refresher.
		res.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(se/time.Second))+";refresher=uac"))
		res.AppendHeader(sip.NewHeader("Require", "timer"))
		c.mu.Lock()
		if st := c.sessionTimers[l]; st != nil && !st.weRefresh {
			st.interval = se
		}
		c.mu.Unlock()
	}
	_ = tx.Respond(res)
	c.armSessionTimer(l)
}
