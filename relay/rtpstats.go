package relay

import "time"

// rtpReceiver keeps the RFC 3550 receiver statistics of one RTP source as
// Appendix A.1 (sequence number bookkeeping) and A.8 (interarrival jitter)
// describe them. It is plain integer arithmetic on values that the forwarding
// path already has in registers, so updating it costs nothing measurable and
// allocates nothing.
type rtpReceiver struct {
	started   bool
	ssrc      uint32
	baseSeq   uint32
	maxSeq    uint16
	cycles    uint32 // count of sequence number wraps, shifted by 16
	badSeq    uint32
	received  uint64
	clockRate uint32

	// Jitter state (A.8): transit of the previous packet and the jitter
	// estimate scaled by 16, both in RTP timestamp units.
	haveTransit bool
	transit     int32
	jitter      uint32
	// origin is the wall-clock reference for arrival times in timestamp units.
	origin time.Time
}

const (
	seqMod      = 1 << 16
	maxDropout  = 3000
	maxMisorder = 100
)

func (r *rtpReceiver) initSeq(seq uint16) {
	r.baseSeq = uint32(seq)
	r.maxSeq = seq
	r.badSeq = seqMod + 1 // so seq == badSeq is false
	r.cycles = 0
	r.received = 0
}

// update records one packet. clockRate is the RTP clock of its payload type
// (8000 for G.711); now is its arrival time.
func (r *rtpReceiver) update(h *rtpHeader, clockRate uint32, now time.Time) {
	if !r.started || h.SSRC != r.ssrc {
		// A new SSRC is a new source (RFC 3550 section 8.2): the old
		// sequence space and timing say nothing about it.
		*r = rtpReceiver{started: true, ssrc: h.SSRC, origin: now}
		r.initSeq(h.SequenceNumber)
	} else if !r.updateSeq(h.SequenceNumber) {
		return
	}
	r.received++
	r.updateJitter(h, clockRate, now)
}

// updateSeq is A.1's update_seq without the probation phase: the relay has
// already decided to forward the packet, so a source is valid from its first
// packet. It reports false for a packet that must not be counted.
func (r *rtpReceiver) updateSeq(seq uint16) bool {
	udelta := seq - r.maxSeq
	switch {
	case udelta == 0:
		// Duplicate of the highest packet.
	case udelta < maxDropout:
		// In order, with a permissible gap.
		if seq < r.maxSeq {
			r.cycles += seqMod
		}
		r.maxSeq = seq
	case uint32(udelta) <= seqMod-maxMisorder:
		// A very large jump: either the source restarted or this packet is
		// garbage. Two sequential packets after the jump decide (A.1).
		if uint32(seq) == r.badSeq {
			r.initSeq(seq)
		} else {
			r.badSeq = (uint32(seq) + 1) & (seqMod - 1)
			return false
		}
	default:
		// Duplicate or reordered packet: counted, no sequence change.
	}
	return true
}

func (r *rtpReceiver) updateJitter(h *rtpHeader, clockRate uint32, now time.Time) {
	if clockRate == 0 {
		clockRate = 8000
	}
	if clockRate != r.clockRate {
		// A payload type switch to another clock makes the transit
		// comparison meaningless; start the jitter estimate over.
		r.clockRate = clockRate
		r.haveTransit = false
	}
	arrival := tsUnits(now.Sub(r.origin), clockRate)
	transit := int32(arrival - h.Timestamp)
	if r.haveTransit {
		d := transit - r.transit
		if d < 0 {
			d = -d
		}
		// J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16, kept scaled by 16.
		r.jitter += uint32(d) - ((r.jitter + 8) >> 4)
	}
	r.transit = transit
	r.haveTransit = true
}

// tsUnits converts d to RTP timestamp units of a clock of rate Hz without
// overflowing for calls lasting days.
func tsUnits(d time.Duration, rate uint32) uint32 {
	if d < 0 {
		d = 0
	}
	sec := uint64(d / time.Second)
	rem := uint64(d % time.Second)
	return uint32(sec*uint64(rate) + rem*uint64(rate)/uint64(time.Second))
}

// expected is the number of packets expected from the source (A.3).
func (r *rtpReceiver) expected() uint64 {
	if !r.started {
		return 0
	}
	ext := uint64(r.cycles) + uint64(r.maxSeq)
	return ext - uint64(r.baseSeq) + 1
}

// lost is the cumulative number of packets lost (A.3); duplicates can make
// the raw difference negative, which RFC 3550 clamps for reports and we clamp
// at zero.
func (r *rtpReceiver) lost() uint64 {
	e := r.expected()
	if e < r.received {
		return 0
	}
	return e - r.received
}

// jitterUnits is the interarrival jitter in timestamp units.
func (r *rtpReceiver) jitterUnits() uint32 { return r.jitter >> 4 }

// jitterDuration is the jitter converted to wall-clock time.
func (r *rtpReceiver) jitterDuration() time.Duration {
	if r.clockRate == 0 {
		return 0
	}
	return time.Duration(uint64(r.jitter>>4) * uint64(time.Second) / uint64(r.clockRate))
}
