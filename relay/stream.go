package relay

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxPacket is the read buffer of one socket goroutine. RTP over UDP stays
// below the path MTU in practice; anything longer is truncated by the kernel
// and then fails the header checks.
const maxPacket = 2048

// A stream is one m= line of a session: two legs, each with its own RTP/RTCP
// port pair on the relay. Party i sends to legs[i]'s ports and receives from
// them, so a packet read on legs[0] leaves through legs[1] towards party 1
// and vice versa.
//
// One mutex guards the whole stream. Its four socket goroutines take it once
// per packet for a few dozen nanoseconds; signalling takes it to re-arm or
// update a leg. Streams never share locks with each other, which is what lets
// the relay scale across cores: there is no global state on the packet path.
type stream struct {
	sess  *session
	index int

	mu        sync.Mutex
	media     string
	legs      [2]leg
	rejected  bool
	lastMedia time.Time
	closed    bool
}

// leg is the relay's view of one party of a stream.
type leg struct {
	pair     portPair
	srcIP    netip.Addr // where the party's signalling came from
	sdpIP    netip.Addr // connection address of its SDP
	learning Learning
	rtp      endpoint
	rtcp     endpoint
	rtcpMux  bool
	hold     bool
	formats  ptSet
	clock    [128]uint32 // RTP clock rate per payload type, from its SDP
	recv     rtpReceiver
	c        legCounters
}

type legCounters struct {
	rtpPackets, rtpBytes   uint64
	rtcpPackets, rtcpBytes uint64
	otherPackets           uint64 // STUN and DTLS
	otherBytes             uint64
	forwarded, transcoded  uint64
	drops                  Drops
}

// ptSet is a bitset of RTP payload types 0-127.
type ptSet [2]uint64

func (s *ptSet) add(pt uint8)     { s[pt>>6&1] |= 1 << (pt & 63) }
func (s ptSet) has(pt uint8) bool { return s[pt>>6&1]&(1<<(pt&63)) != 0 }
func (s ptSet) empty() bool       { return s[0] == 0 && s[1] == 0 }

// eligible is the RTP Bleed check: may a packet from ip latch this leg? When
// signalling told us where the party is (its SIP source address), only that
// address or the SDP's connection address qualify; otherwise any source does
// (plain comedia, as RTPProxy does).
func (l *leg) eligible(ip netip.Addr, anySource bool) bool {
	if anySource || !l.srcIP.IsValid() {
		return true
	}
	return ip == l.srcIP || (l.sdpIP.IsValid() && ip == l.sdpIP)
}

// readLoop is the goroutine of one socket. It owns buf for its whole life;
// nothing in the loop allocates.
func (s *stream) readLoop(side int, isRTCP bool, c Conn) {
	buf := make([]byte, maxPacket)
	for {
		n, src, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.isClosed() {
				return
			}
			continue
		}
		s.forward(side, isRTCP, buf[:n], src, time.Now())
	}
}

func (s *stream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// forward handles one packet received on legs[side]. It is the hot path.
func (s *stream) forward(side int, isRTCP bool, pkt []byte, src netip.AddrPort, now time.Time) {
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	r := s.sess.r

	s.mu.Lock()
	in, out := &s.legs[side], &s.legs[1-side]
	if s.closed {
		s.mu.Unlock()
		return
	}
	rtcpPkt := isRTCP
	var h rtpHeader
	// STUN (first byte 0-3) and DTLS (20-63) share the media ports with RTP
	// (RFC 7983). The relay takes no part in them, but endpoints that key
	// SRTP with DTLS or keep ICE consent alive need them passed through.
	opaque := len(pkt) > 0 && (pkt[0] < 4 || (pkt[0] >= 20 && pkt[0] < 64))
	switch {
	case opaque:
	case isRTCP || isRTCPMux(pkt):
		rtcpPkt = true
		if !validRTCP(pkt) {
			in.c.drops.Malformed++
			s.mu.Unlock()
			return
		}
	default:
		var ok bool
		if h, ok = parseRTP(pkt); !ok {
			in.c.drops.Malformed++
			s.mu.Unlock()
			return
		}
	}

	ep := &in.rtp
	if isRTCP {
		ep = &in.rtcp
	}
	old := ep.peer
	res := ep.latch(in.learning, src, in.eligible(src.Addr(), r.cfg.AllowAnySource), now, r.cfg.DelayedWindow)
	if res == latchDrop {
		in.c.drops.UnexpectedSource++
		s.mu.Unlock()
		return
	}
	s.lastMedia = now
	if opaque {
		in.c.otherPackets++
		in.c.otherBytes += uint64(len(pkt))
	} else if rtcpPkt {
		in.c.rtcpPackets++
		in.c.rtcpBytes += uint64(len(pkt))
	} else {
		in.c.rtpPackets++
		in.c.rtpBytes += uint64(len(pkt))
		in.recv.update(&h, in.clock[h.PayloadType], now)
		// Transcode when the receiving party did not declare this payload
		// type but declared the other G.711 law.
		if !out.formats.empty() && !out.formats.has(h.PayloadType) {
			switch {
			case h.PayloadType == ptPCMU && out.formats.has(ptPCMA):
				transcodeG711(pkt, &h, ptPCMA)
				in.c.transcoded++
			case h.PayloadType == ptPCMA && out.formats.has(ptPCMU):
				transcodeG711(pkt, &h, ptPCMU)
				in.c.transcoded++
			}
		}
	}

	var dst netip.AddrPort
	var ok bool
	var conn Conn
	if rtcpPkt && !out.rtcpMux {
		dst, ok = out.rtcp.destination()
		conn = out.pair.rtcp
	} else {
		dst, ok = out.rtp.destination()
		conn = out.pair.rtp
	}
	if !ok || conn == nil {
		in.c.drops.NoDestination++
	} else {
		in.c.forwarded++
	}
	s.mu.Unlock()

	if res == latchNew || res == latchMoved {
		ev := Event{Type: EventLatched, Stream: s.index, RTCP: isRTCP, Old: old, New: src, Time: now}
		if res == latchMoved {
			ev.Type = EventRelatched
		}
		s.sess.fill(&ev, side)
		r.emit(ev)
	}
	if !ok || conn == nil {
		return
	}
	if _, err := conn.WriteToUDPAddrPort(pkt, dst); err != nil {
		s.mu.Lock()
		in.c.forwarded--
		in.c.drops.SendError++
		s.mu.Unlock()
	}
}

// start launches the socket goroutines of both legs.
func (s *stream) start() {
	r := s.sess.r
	for side := range 2 {
		p := s.legs[side].pair
		if !r.poll.attach(p.rtp, s, side, false) {
			r.wg.Go(func() { s.readLoop(side, false, p.rtp) })
		}
		if !r.poll.attach(p.rtcp, s, side, true) {
			r.wg.Go(func() { s.readLoop(side, true, p.rtcp) })
		}
	}
}

// close frees the stream's ports; its goroutines end as their sockets close.
func (s *stream) close(pool *portPool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	pairs := [2]portPair{s.legs[0].pair, s.legs[1].pair}
	s.mu.Unlock()
	pool.free(pairs[0])
	pool.free(pairs[1])
}
