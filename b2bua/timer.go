package b2bua

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// minSE is the smallest session interval RFC 4028 allows (§4).
const minSE = 90 * time.Second

// sessionExpires parses a Session-Expires header: the interval and the
// refresher parameter ("uac", "uas" or "").
func sessionExpires(msg sip.Message) (time.Duration, string, bool) {
	hs := msg.GetHeaders("Session-Expires")
	if len(hs) == 0 {
		hs = msg.GetHeaders("x") // compact form
	}
	if len(hs) == 0 {
		return 0, "", false
	}
	v := hs[0].Value()
	parts := strings.Split(v, ";")
	n, err := strconv.ParseUint(strings.TrimSpace(parts[0]), 10, 32)
	if err != nil {
		return 0, "", false
	}
	refresher := ""
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			refresher = strings.ToLower(strings.TrimSpace(val))
		}
	}
	return time.Duration(n) * time.Second, refresher, true
}

// expiryIn is when a session whose peer refreshes it is considered dead
// (RFC 4028 §10: the interval minus a third of it, at most 32 s less).
func expiryIn(se time.Duration) time.Duration {
	return se - min(32*time.Second, se/3)
}

// armSessionTimer (re)arms the session timer of leg l. With refresh the
// B2BUA refreshes the leg at half the interval; otherwise it waits for the
// peer's refresh and ends the call when none comes.
func (c *call) armSessionTimer(l *leg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stAnswered {
		return
	}
	st := c.sessionTimers[l]
	if st == nil || st.interval <= 0 {
		return
	}
	if st.timer != nil {
		st.timer.Stop()
	}
	if st.weRefresh {
		st.timer = time.AfterFunc(st.interval/2, func() { c.refresh(l) })
	} else {
		st.timer = time.AfterFunc(expiryIn(st.interval), func() {
			c.b.log.Info("session expired without refresh; ending the call", "call-id", c.id, "leg", l.callID)
			c.hangup(CauseKeepalive)
		})
	}
}

// sessionTimer is the RFC 4028 state of one leg.
type sessionTimer struct {
	interval  time.Duration
	weRefresh bool
	timer     *time.Timer
	useUpdate bool
}

// refresh sends a session refresh on leg l: UPDATE without a body when
// the peer allows it, else a re-INVITE with the last offer we sent.
func (c *call) refresh(l *leg) {
	c.mu.Lock()
	st := c.sessionTimers[l]
	answered := c.state == stAnswered
	c.mu.Unlock()
	if st == nil || !answered {
		return
	}
	l.mu.Lock()
	busy := l.inviting
	if !busy {
		l.inviting = true
	}
	sdp := l.lastSDP
	l.mu.Unlock()
	if busy {
		// An offer/answer exchange is under way; it refreshes too.
		c.mu.Lock()
		if c.state == stAnswered {
			st.timer.Stop()
			st.timer = time.AfterFunc(2*time.Second, func() { c.refresh(l) })
		}
		c.mu.Unlock()
		return
	}
	c.b.spawn(func() {
		defer func() {
			l.mu.Lock()
			l.inviting = false
			l.mu.Unlock()
		}()
		method := sip.INVITE
		var body []byte
		if st.useUpdate || len(sdp) == 0 {
			// UPDATE without a body refreshes without touching the media;
			// a re-INVITE must repeat the session we have (the last offer
			// or answer we sent on this leg).
			method = sip.UPDATE
		} else {
			body = sdp
		}
		req := l.request(method, l.nextSeq(), body)
		req.AppendHeader(sip.NewHeader("Session-Expires", strconv.Itoa(int(st.interval/time.Second))+";refresher=uac"))
		req.AppendHeader(sip.NewHeader("Supported", "timer"))
		seq := req.CSeq().SeqNo
		res, tx, err := c.b.transactFinal(req)
		switch {
		case err != nil || res == nil || res.StatusCode == 481 || res.StatusCode == 408:
			c.b.log.Info("session refresh failed; ending the call", "call-id", c.id, "leg", l.callID, "error", err)
			c.hangup(CauseKeepalive)
			return
		case res.StatusCode < 300:
			if method == sip.INVITE {
				c.ackB(l, seq, nil, tx)
			}
		}
		c.armSessionTimer(l)
	})
}

// allows tells whether msg's Allow header lists method.
func allows(msg sip.Message, method string) bool {
	return hasOption(msg, "Allow", method)
}
