package relay

import "encoding/binary"

// The forwarding path reads only the fixed RTP header fields it needs (version,
// payload type, sequence number, timestamp, SSRC) straight from the datagram.
// pion/rtp's Header.Unmarshal would also decode CSRC lists and header
// extensions into freshly allocated slices, which the relay never looks at; the
// fuzz test checks that both parsers agree on the fields we use.

// rtpHeader is the part of an RTP fixed header the relay uses.
type rtpHeader struct {
	PayloadType    uint8
	Marker         bool
	SequenceNumber uint16
	Timestamp      uint32
	SSRC           uint32
	// PayloadOffset is where the payload starts: after the CSRC list and the
	// header extension.
	PayloadOffset int
	// PayloadEnd is where the payload ends: before any padding.
	PayloadEnd int
}

// isRTCPMux reports whether a packet that arrived on an RTP port is RTCP
// multiplexed onto it (RFC 5761 section 4: the second byte of RTCP is a packet
// type 192-223, which as an RTP marker+payload type would be 64-95, a range
// RTP payload types must avoid).
func isRTCPMux(b []byte) bool {
	return len(b) >= 2 && b[1] >= 192 && b[1] <= 223
}

// parseRTP reads the RTP fixed header of b. It reports false for anything that
// is not a well-formed RTP version 2 packet.
func parseRTP(b []byte) (rtpHeader, bool) {
	var h rtpHeader
	if len(b) < 12 || b[0]>>6 != 2 {
		return h, false
	}
	cc := int(b[0] & 0x0f)
	off := 12 + 4*cc
	if len(b) < off {
		return h, false
	}
	if b[0]&0x10 != 0 { // header extension
		if len(b) < off+4 {
			return h, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
		if len(b) < off {
			return h, false
		}
	}
	end := len(b)
	if b[0]&0x20 != 0 { // padding: the last byte counts the padding bytes
		pad := int(b[len(b)-1])
		if pad == 0 || end-pad < off {
			return h, false
		}
		end -= pad
	}
	h.Marker = b[1]&0x80 != 0
	h.PayloadType = b[1] & 0x7f
	h.SequenceNumber = binary.BigEndian.Uint16(b[2:])
	h.Timestamp = binary.BigEndian.Uint32(b[4:])
	h.SSRC = binary.BigEndian.Uint32(b[8:])
	h.PayloadOffset = off
	h.PayloadEnd = end
	return h, true
}

// validRTCP reports whether b starts a plausible RTCP compound packet: version
// 2, a packet type in 192-223 (RFC 5761's RTCP range) and a length word that
// fits. It does not walk the whole compound packet: the relay forwards RTCP
// opaquely and only needs to keep garbage from latching or being counted.
func validRTCP(b []byte) bool {
	if len(b) < 4 || b[0]>>6 != 2 || b[1] < 192 || b[1] > 223 {
		return false
	}
	n := (int(binary.BigEndian.Uint16(b[2:])) + 1) * 4
	return n <= len(b)
}
