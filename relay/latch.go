package relay

import (
	"net/netip"
	"time"
)

// Learning selects how a leg learns where its party really sends from. The SDP
// address of a client behind NAT is its private address; symmetric RTP (RFC
// 4961, "comedia") answers to wherever the packets come from instead. The
// modes follow rtpengine's endpoint-learning option.
type Learning uint8

const (
	// LearnDefault uses Config.Learning.
	LearnDefault Learning = iota
	// LearnImmediate latches to the first eligible source and keeps it until
	// the next offer/answer re-arms the leg. It is the default.
	LearnImmediate
	// LearnDelayed follows the most recent eligible source for DelayedWindow
	// after the first packet, then keeps it: for clients whose first packets
	// come from a different socket than the rest (some SBCs, ICE leftovers).
	LearnDelayed
	// LearnHandover always follows the most recent eligible source (rtpengine's
	// media-handover): for roaming clients, at the price of weaker protection.
	LearnHandover
	// LearnStrict accepts packets only from the exact address and port in the
	// party's SDP and sends there: no learning at all, nothing NATed works.
	LearnStrict
	// LearnOff never learns: packets go to the SDP address and are accepted
	// from any source (asymmetric RTP).
	LearnOff
)

var learningNames = [...]string{"default", "immediate", "delayed", "handover", "strict", "off"}

func (l Learning) String() string {
	if int(l) < len(learningNames) {
		return learningNames[l]
	}
	return "unknown"
}

// ParseLearning maps a learning mode name (as in String, or rtpengine's
// spelling "strict-source") to its value.
func ParseLearning(s string) (Learning, bool) {
	if s == "strict-source" {
		return LearnStrict, true
	}
	for i, n := range learningNames {
		if n == s {
			return Learning(i), true
		}
	}
	return 0, false
}

type latchState uint8

const (
	unlatched latchState = iota
	latched
	// rearmed: a new offer/answer arrived after the leg had latched. Packets
	// are still sent to the old address until a new source latches.
	rearmed
)

// endpoint is the far end of one socket of a leg (its RTP or its RTCP port).
type endpoint struct {
	sdp   netip.AddrPort // what the party advertised; may be invalid or 0.0.0.0
	peer  netip.AddrPort // the latched address, valid unless unlatched
	state latchState
	// since is when the current latch began; DelayedWindow counts from it.
	since time.Time
	// oldMoved marks a re-arm after which the old address must not win the
	// latch back: the party announced a different endpoint, so packets still
	// arriving from the old one are strays.
	oldMoved bool
}

// latchResult says what accepting a packet did to an endpoint.
type latchResult uint8

const (
	latchDrop  latchResult = iota // not from an acceptable source
	latchKeep                     // accepted, no change
	latchNew                      // first latch
	latchMoved                    // re-latch to another address
)

// rearm makes the endpoint learn again. moved tells whether the party's
// signalled endpoint changed.
func (e *endpoint) rearm(moved bool) {
	if e.state == unlatched {
		return
	}
	e.state = rearmed
	e.oldMoved = moved
}

// destination is where packets for this party go: the latched address, or
// before any latch the SDP address when it is usable.
func (e *endpoint) destination() (netip.AddrPort, bool) {
	if e.state != unlatched {
		return e.peer, true
	}
	if e.sdp.IsValid() && e.sdp.Port() != 0 && !e.sdp.Addr().IsUnspecified() {
		return e.sdp, true
	}
	return netip.AddrPort{}, false
}

// latch applies the learning rules to a packet from src. eligible reports
// whether src's IP passed the RTP Bleed check of the leg.
func (e *endpoint) latch(mode Learning, src netip.AddrPort, eligible bool, now time.Time, window time.Duration) latchResult {
	switch mode {
	case LearnOff:
		return latchKeep
	case LearnStrict:
		if src == e.sdp {
			return latchKeep
		}
		return latchDrop
	}
	if !eligible {
		return latchDrop
	}
	switch e.state {
	case unlatched:
		e.peer, e.state, e.since = src, latched, now
		return latchNew
	case latched:
		if src == e.peer {
			return latchKeep
		}
		if mode == LearnHandover || (mode == LearnDelayed && now.Sub(e.since) < window) {
			e.peer = src
			return latchMoved
		}
		return latchDrop
	default: // rearmed
		if src == e.peer {
			if e.oldMoved {
				// A stray from the endpoint the party left: forward it
				// (it is still the party's media) but do not let it win.
				return latchKeep
			}
			e.state, e.since = latched, now
			return latchKeep
		}
		e.peer, e.state, e.since = src, latched, now
		return latchMoved
	}
}
