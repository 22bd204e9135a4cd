package relay

import (
	"net/netip"
	"time"
)

// EventType says what an Event reports.
type EventType uint8

const (
	// EventLatched: a leg learned its party's address from the first
	// eligible packet.
	EventLatched EventType = iota + 1
	// EventRelatched: a leg moved to a new address (after a re-arm by a new
	// offer/answer, or within the delayed/handover learning rules).
	EventRelatched
	// EventMediaTimeout: no media on any active stream for Config.Timeout.
	// The session has been deleted; the call should be ended.
	EventMediaTimeout
	// EventHoldTimeout: a session whose streams are on hold stayed silent
	// for Config.HoldTimeout. The session has been deleted.
	EventHoldTimeout
	// EventLifetime: the session reached Config.MaxLifetime. The session has
	// been deleted.
	EventLifetime
)

var eventNames = [...]string{"", "latched", "relatched", "media-timeout", "hold-timeout", "lifetime"}

func (t EventType) String() string {
	if int(t) < len(eventNames) && t != 0 {
		return eventNames[t]
	}
	return "unknown"
}

// Event is delivered to Config.OnEvent.
type Event struct {
	Type    EventType
	CallID  string
	FromTag string // tag of the party that made the first offer
	ToTag   string
	// Tag is the party a latch event is about (the one whose packets
	// latched); empty for session events.
	Tag string
	// Stream is the m= line index of a latch event.
	Stream int
	// RTCP tells whether a latch event concerns the RTCP port.
	RTCP bool
	// Old and New are the addresses of a latch event; Old is invalid for a
	// first latch.
	Old, New netip.AddrPort
	Time     time.Time
}

func (r *Relay) emit(ev Event) {
	switch ev.Type {
	case EventLatched:
		r.latches.Add(1)
	case EventRelatched:
		r.relatches.Add(1)
	}
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(ev)
	}
}
