package relay

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// Drops counts packets the relay did not forward, by reason.
type Drops struct {
	// Malformed: neither valid RTP nor valid RTCP.
	Malformed uint64
	// UnexpectedSource: from an address the leg may not latch to (RTP
	// Bleed attempts, strays after a re-latch, strict-source mismatches).
	UnexpectedSource uint64
	// NoDestination: the other party's address is not known yet (no SDP
	// answer, or hold with 0.0.0.0).
	NoDestination uint64
	// SendError: the socket write failed.
	SendError uint64
}

func (d *Drops) add(o *Drops) {
	d.Malformed += o.Malformed
	d.UnexpectedSource += o.UnexpectedSource
	d.NoDestination += o.NoDestination
	d.SendError += o.SendError
}

// Total is the sum over all reasons.
func (d Drops) Total() uint64 {
	return d.Malformed + d.UnexpectedSource + d.NoDestination + d.SendError
}

// LegStats describes what the relay received from one party on one stream.
type LegStats struct {
	Tag string
	// Local is the relay's RTP address this party sends to.
	Local netip.AddrPort
	// Peer is the party's latched RTP address; invalid until latched.
	Peer netip.AddrPort
	// Advertised is the RTP address in the party's SDP.
	Advertised netip.AddrPort

	RTPPackets, RTPBytes   uint64
	RTCPPackets, RTCPBytes uint64
	// OtherPackets and OtherBytes count STUN and DTLS packets, which are
	// passed through untouched.
	OtherPackets, OtherBytes uint64
	// Forwarded counts packets sent on towards the other party.
	Forwarded uint64
	// Transcoded counts RTP packets converted between PCMU and PCMA.
	Transcoded uint64
	Drops      Drops

	// RFC 3550 receiver statistics of the party's current SSRC.
	SSRC     uint32
	Expected uint64
	Lost     uint64
	// Jitter is the interarrival jitter in RTP timestamp units and as time.
	JitterUnits uint32
	Jitter      time.Duration
}

// StreamStats describes one m= line.
type StreamStats struct {
	Index     int
	Media     string
	Rejected  bool
	Hold      bool
	LastMedia time.Time
	// Legs[0] is the party that made the first offer.
	Legs [2]LegStats
}

// SessionStats describes one session.
type SessionStats struct {
	CallID     string
	FromTag    string
	ToTag      string
	Created    time.Time
	LastSignal time.Time
	Streams    []StreamStats
}

// Stats are the relay-wide counters. Packet counters include sessions that
// have ended.
type Stats struct {
	Sessions        int
	Streams         int
	PortPairsInUse  int
	PortPairsTotal  int
	RTPPackets      uint64
	RTPBytes        uint64
	RTCPPackets     uint64
	RTCPBytes       uint64
	OtherPackets    uint64
	Forwarded       uint64
	Transcoded      uint64
	Lost            uint64
	Drops           Drops
	Latches         uint64
	Relatches       uint64
	SessionTimeouts uint64
}

// sessionTotals accumulates leg counters.
type sessionTotals struct {
	streams                                int
	rtpPackets, rtpBytes, rtcpPackets      uint64
	rtcpBytes, forwarded, transcoded, lost uint64
	otherPackets                           uint64
	drops                                  Drops
}

func (t *sessionTotals) addLeg(l *leg) {
	t.rtpPackets += l.c.rtpPackets
	t.rtpBytes += l.c.rtpBytes
	t.rtcpPackets += l.c.rtcpPackets
	t.rtcpBytes += l.c.rtcpBytes
	t.otherPackets += l.c.otherPackets
	t.forwarded += l.c.forwarded
	t.transcoded += l.c.transcoded
	t.lost += l.recv.lost()
	t.drops.add(&l.c.drops)
}

func (t *sessionTotals) add(o *sessionTotals) {
	t.streams += o.streams
	t.rtpPackets += o.rtpPackets
	t.rtpBytes += o.rtpBytes
	t.rtcpPackets += o.rtcpPackets
	t.rtcpBytes += o.rtcpBytes
	t.otherPackets += o.otherPackets
	t.forwarded += o.forwarded
	t.transcoded += o.transcoded
	t.lost += o.lost
	t.drops.add(&o.drops)
}

// Stats returns the relay-wide counters. It walks the live sessions, so it
// costs O(sessions); it is meant for a metrics scrape, not a packet loop.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	t := r.ended
	t.streams = 0
	sessions := r.allLocked()
	r.mu.Unlock()
	for _, s := range sessions {
		s.mu.Lock()
		streams := s.streams
		s.mu.Unlock()
		for _, st := range streams {
			st.mu.Lock()
			if !st.rejected {
				t.streams++
			}
			for i := range st.legs {
				t.addLeg(&st.legs[i])
			}
			st.mu.Unlock()
		}
	}
	inUse, total := r.pool.stats()
	return Stats{
		Sessions:        len(sessions),
		Streams:         t.streams,
		PortPairsInUse:  inUse,
		PortPairsTotal:  total,
		RTPPackets:      t.rtpPackets,
		RTPBytes:        t.rtpBytes,
		RTCPPackets:     t.rtcpPackets,
		RTCPBytes:       t.rtcpBytes,
		OtherPackets:    t.otherPackets,
		Forwarded:       t.forwarded,
		Transcoded:      t.transcoded,
		Lost:            t.lost,
		Drops:           t.drops,
		Latches:         r.latches.Load(),
		Relatches:       r.relatches.Load(),
		SessionTimeouts: r.timeouts.Load(),
	}
}

// Query returns the state and counters of the session of callID (the first
// one, should the call have several).
func (r *Relay) Query(ctx context.Context, callID string) (SessionStats, error) {
	r.mu.Lock()
	b := r.sessions[callID]
	r.mu.Unlock()
	if len(b) == 0 {
		return SessionStats{}, fmt.Errorf("%w: %s", ErrNotFound, callID)
	}
	return b[0].stats(), nil
}

// Sessions lists the call-ids of the live sessions.
func (r *Relay) Sessions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := make([]string, 0, len(r.sessions))
	for id := range r.sessions {
		ids = append(ids, id)
	}
	return ids
}

func (s *session) stats() SessionStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := SessionStats{
		CallID: s.callID, FromTag: s.tags[0], ToTag: s.tags[1],
		Created: s.created, LastSignal: s.lastSignal,
	}
	for _, st := range s.streams {
		st.mu.Lock()
		x := StreamStats{Index: st.index, Media: st.media, Rejected: st.rejected, LastMedia: st.lastMedia}
		for i := range st.legs {
			l := &st.legs[i]
			x.Hold = x.Hold || l.hold
			ls := LegStats{
				Tag:          s.tags[i],
				Advertised:   l.rtp.sdp,
				RTPPackets:   l.c.rtpPackets,
				RTPBytes:     l.c.rtpBytes,
				RTCPPackets:  l.c.rtcpPackets,
				RTCPBytes:    l.c.rtcpBytes,
				OtherPackets: l.c.otherPackets,
				OtherBytes:   l.c.otherBytes,
				Forwarded:    l.c.forwarded,
				Transcoded:   l.c.transcoded,
				Drops:        l.c.drops,
				SSRC:         l.recv.ssrc,
				Expected:     l.recv.expected(),
				Lost:         l.recv.lost(),
				JitterUnits:  l.recv.jitterUnits(),
				Jitter:       l.recv.jitterDuration(),
			}
			if l.pair.rtp != nil {
				ls.Local = netip.AddrPortFrom(s.r.cfg.AdvertiseAddr, l.pair.port)
			}
			if l.rtp.state != unlatched {
				ls.Peer = l.rtp.peer
			}
			x.Legs[i] = ls
		}
		st.mu.Unlock()
		ss.Streams = append(ss.Streams, x)
	}
	return ss
}

// String summarises a session for logs.
func (ss SessionStats) String() string {
	return fmt.Sprintf("call %s (%s/%s), %d streams", ss.CallID, ss.FromTag, ss.ToTag, len(ss.Streams))
}
