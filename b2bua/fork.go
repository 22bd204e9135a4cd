package b2bua

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// maxForks bounds the targets a Parallel route rings at once.
const maxForks = 16

// branch is one target rung by a parallel fork.
type branch struct {
	t   Target
	bl  *leg
	req *sip.Request
	tx  sip.ClientTransaction

	mu          sync.Mutex
	provisional bool // a 1xx came: the branch may be canceled
	cancel      bool // the branch must be canceled (as soon as it may be)
	cancelSent  bool
	won         bool // its 2xx answered the call
}

// forkEvent is a response (or the end) of a branch's transaction.
type forkEvent struct {
	br   *branch
	res  *sip.Response
	done bool
	err  error
}

// fork rings every target at once (RFC 3261 §16.7 behaviour, as a UAC per
// target): provisional responses of all branches reach the caller, the
// first 2xx wins and the other branches are canceled, a 6xx ends them
// all, and when every branch failed the best final response is chosen.
// Late 2xx from the losers are acknowledged and ended.
func (c *call) fork(ctx context.Context, route *Route, ts []Target, deadline time.Time) outcome {
	b := c.b
	want := route.Anchor
	for _, t := range ts {
		want = want || t.Anchor
	}
	anchored := b.cfg.Media != nil && want
	if c.isCanceled() {
		return outcome{canceled: true}
	}
	c.mu.Lock()
	c.anchored = anchored
	c.info.Anchored = anchored
	c.mu.Unlock()

	offer, err := c.bOffer(ctx, anchored)
	if err != nil {
		return outcome{status: 488, reason: "Not Acceptable Here", err: err}
	}

	// Unbuffered: an event is either taken by the loop below, which then
	// handles it, or left to its pump once the loop has stopped listening
	// (a late 2xx is then still ACKed and ended).
	events := make(chan forkEvent)
	quit := make(chan struct{}) // closed when the call no longer listens
	var branches []*branch
	for _, t := range ts {
		bl, req := c.newBLeg(offer, t)
		b.addLeg(c, bl)
		c.mu.Lock()
		c.forkLegs = append(c.forkLegs, bl)
		c.info.Target, c.info.BLegCallID = t.Name, bl.callID
		c.info.Attempts++
		info := c.info
		c.mu.Unlock()
		b.stats.attempts.Add(1)
		b.emit(EventTrying, info)
		tx, err := b.client.TransactionRequest(ctx, req, b.addVia)
		if err != nil {
			b.log.Debug("cannot send INVITE to target", "call-id", c.id, "target", t.Name, "error", err)
			b.removeLeg(bl)
			continue
		}
		br := &branch{t: t, bl: bl, req: req, tx: tx}
		branches = append(branches, br)
		b.spawn(func() { c.pump(br, events, quit) })
	}
	defer close(quit)
	if len(branches) == 0 {
		return outcome{status: 0}
	}

	ring := time.NewTimer(time.Until(deadline))
	defer ring.Stop()
	giveUp := time.NewTimer(time.Hour)
	giveUp.Stop()
	defer giveUp.Stop()
	var (
		pending  = len(branches)
		canceled = c.canceled
		stopping bool
		stopped  outcome
		best     *sip.Response
	)
	stopAll := func(why outcome) {
		if !stopping {
			stopping, stopped = true, why
			giveUp.Reset(timerF)
		}
		for _, br := range branches {
			c.cancelBranch(br)
		}
	}
	for pending > 0 {
		select {
		case ev := <-events:
			if ev.done {
				pending--
				continue
			}
			res := ev.res
			switch {
			case res.StatusCode < 200:
				if res.StatusCode > 100 && !stopping {
					c.early(ev.br.bl, ev.br.req, res)
				}
			case res.StatusCode < 300:
				pending--
				if stopping {
					c.lateAnswer(ev.br.bl, ev.br.req, res, ev.br.tx)
					continue
				}
				// The first answer wins; every other branch is canceled.
				ev.br.mu.Lock()
				ev.br.won = true
				ev.br.mu.Unlock()
				c.mu.Lock()
				c.bl = ev.br.bl
				c.info.Target, c.info.BLegCallID = ev.br.t.Name, ev.br.bl.callID
				c.mu.Unlock()
				for _, br := range branches {
					if br != ev.br {
						c.cancelBranch(br)
					}
				}
				return c.answer(ctx, ev.br.bl, ev.br.req, res, ev.br.tx)
			default:
				pending--
				if best == nil || betterFailure(res.StatusCode, best.StatusCode) {
					best = res
				}
				if res.StatusCode >= 600 {
					// A global failure ends the other branches (RFC 3261 §16.7).
					stopAll(outcome{status: res.StatusCode, reason: res.Reason, res: res})
				}
			}
		case <-canceled:
			canceled = nil
			stopAll(outcome{canceled: true})
		case <-ring.C:
			stopAll(outcome{noAnswer: true})
		case <-giveUp.C:
			return stopped
		case <-ctx.Done():
			stopAll(outcome{status: 408, reason: "Request Timeout", err: ctx.Err()})
			return stopped
		}
	}
	if stopping {
		return stopped
	}
	if best == nil {
		return outcome{status: 408, reason: "Request Timeout"}
	}
	return outcome{status: best.StatusCode, reason: best.Reason, res: best}
}

// betterFailure ranks final failures of forked branches (RFC 3261
// §16.7 step 6, with a B2BUA's preferences): a global failure, then a
// busy or unavailable callee, other client failures, redirections,
// server failures, and a timeout last.
func betterFailure(a, cur int) bool {
	rank := func(s int) int {
		switch {
		case s >= 600:
			return 0
		case s == 486:
			return 1
		case s == 480:
			return 2
		case s == 408:
			return 6
		case s >= 400:
			return 3
		case s >= 300:
			return 4
		}
		return 5
	}
	return rank(a) < rank(cur)
}

// cancelBranch cancels a branch: at once when it sent a provisional
// response, else as soon as it does (RFC 3261 §9.1).
func (c *call) cancelBranch(br *branch) {
	br.mu.Lock()
	br.cancel = true
	send := br.provisional && !br.cancelSent && !br.won
	if send {
		br.cancelSent = true
	}
	br.mu.Unlock()
	if send {
		c.b.sendCancel(br.req)
	}
}

// pump passes a branch's responses to the fork until the call stops
// listening; after that it finishes the branch itself: CANCEL when it
// rings, ACK and BYE for a late 2xx. It ends with the transaction.
func (c *call) pump(br *branch, events chan<- forkEvent, quit <-chan struct{}) {
	listening := true
	deliver := func(ev forkEvent) bool {
		if !listening {
			return false
		}
		select {
		case events <- ev:
			return true
		case <-quit:
			listening = false
			return false
		}
	}
	limit := time.NewTimer(c.b.cfg.NoAnswerTimeout + 2*timerF)
	defer limit.Stop()
	for {
		select {
		case res, ok := <-br.tx.Responses():
			if !ok {
				deliver(forkEvent{br: br, done: true})
				return
			}
			if res.StatusCode < 200 {
				br.mu.Lock()
				br.provisional = true
				br.mu.Unlock()
			}
			br.mu.Lock()
			cancel := br.cancel
			br.mu.Unlock()
			if cancel && res.StatusCode < 200 {
				c.cancelBranch(br)
			}
			if deliver(forkEvent{br: br, res: res}) {
				if res.StatusCode >= 200 {
					return
				}
				continue
			}
			// The call has moved on without this branch.
			switch {
			case res.StatusCode < 200:
				c.cancelBranch(br)
			case res.StatusCode < 300:
				c.lateAnswer(br.bl, br.req, res, br.tx)
				return
			default:
				return
			}
		case <-br.tx.Done():
			deliver(forkEvent{br: br, done: true, err: br.tx.Err()})
			return
		case <-quit:
			listening = false
			quit = nil
			c.cancelBranch(br)
			limit.Reset(timerF)
		case <-limit.C:
			br.tx.Terminate()
			deliver(forkEvent{br: br, done: true})
			return
		}
	}
}
