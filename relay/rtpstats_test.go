package relay

import (
	"testing"
	"time"
)

// The expected values are worked out by hand from RFC 3550 A.1/A.3/A.8 for
// an 8 kHz clock (1 ms = 8 timestamp units):
//
//	seq ts  arrival  transit  |D|  J (x16, integer A.8)
//	1   0     0 ms     0       -     0
//	2   160  30 ms    80      80    0 + 80 - (0+8)>>4    = 80   (J = 5)
//	3   320  40 ms     0      80    80 + 80 - (88>>4=5)  = 155  (J = 9.6875)
//	5   640  80 ms     0       0    155 + 0 - (163>>4=10) = 145 (J = 9.06)
//
// seq 4 is lost: expected 5, received 4, lost 1.
func TestRTPReceiverRFC3550(t *testing.T) {
	var r rtpReceiver
	t0 := time.Unix(1000, 0)
	steps := []struct {
		seq        uint16
		ts         uint32
		at         time.Duration
		wantJitter uint32 // scaled by 16
	}{
		{1, 0, 0, 0},
		{2, 160, 30 * time.Millisecond, 80},
		{3, 320, 40 * time.Millisecond, 155},
		{5, 640, 80 * time.Millisecond, 145},
	}
	for _, s := range steps {
		h := rtpHeader{SequenceNumber: s.seq, Timestamp: s.ts, SSRC: 7}
		r.update(&h, 8000, t0.Add(s.at))
		if r.jitter != s.wantJitter {
			t.Errorf("after seq %d: jitter x16 = %d, want %d", s.seq, r.jitter, s.wantJitter)
		}
	}
	if r.expected() != 5 || r.received != 4 || r.lost() != 1 {
		t.Errorf("expected %d received %d lost %d, want 5 4 1", r.expected(), r.received, r.lost())
	}
	if r.jitterUnits() != 9 || r.jitterDuration() != 1125*time.Microsecond {
		t.Errorf("jitter %d units %v, want 9 units 1.125ms", r.jitterUnits(), r.jitterDuration())
	}
}

func TestRTPReceiverWrapAndRestart(t *testing.T) {
	var r rtpReceiver
	now := time.Unix(0, 0)
	for _, seq := range []uint16{65533, 65534, 65535, 1, 2} { // 0 lost across the wrap
		r.update(&rtpHeader{SequenceNumber: seq, SSRC: 1}, 8000, now)
	}
	if r.expected() != 6 || r.lost() != 1 || r.cycles != 1<<16 {
		t.Errorf("wrap: expected %d lost %d cycles %d", r.expected(), r.lost(), r.cycles)
	}
	// A duplicate is counted as received; lost is clamped, not negative.
	r.update(&rtpHeader{SequenceNumber: 2, SSRC: 1}, 8000, now)
	r.update(&rtpHeader{SequenceNumber: 2, SSRC: 1}, 8000, now)
	if r.lost() != 0 {
		t.Errorf("after duplicates lost = %d, want 0", r.lost())
	}
	// A jump of 20000 is ignored once, then accepted as a restart when the
	// next packet follows it (A.1 bad_seq).
	r.update(&rtpHeader{SequenceNumber: 20000, SSRC: 1}, 8000, now)
	if r.maxSeq != 2 {
		t.Fatalf("first packet after a jump moved maxSeq to %d", r.maxSeq)
	}
	r.update(&rtpHeader{SequenceNumber: 20001, SSRC: 1}, 8000, now)
	if r.maxSeq != 20001 || r.expected() != 1 || r.lost() != 0 {
		t.Errorf("restart: max %d expected %d lost %d", r.maxSeq, r.expected(), r.lost())
	}
	// A new SSRC starts over.
	r.update(&rtpHeader{SequenceNumber: 9, SSRC: 2}, 8000, now)
	if r.ssrc != 2 || r.expected() != 1 || r.received != 1 {
		t.Errorf("new ssrc: %+v", r)
	}
}

func TestParseRTP(t *testing.T) {
	cases := []struct {
		name string
		pkt  []byte
		ok   bool
		off  int
		end  int
	}{
		{"minimal", []byte{0x80, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, true, 12, 12},
		{"csrc", append([]byte{0x81, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 9, 9, 9, 9}, 1, 2), true, 16, 18},
		{"extension", []byte{0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 0xaa}, true, 20, 21},
		{"padding", []byte{0xa0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xaa, 0, 2}, true, 12, 13},
		{"version 1", []byte{0x40, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, false, 0, 0},
		{"short", []byte{0x80, 0, 0, 1}, false, 0, 0},
		{"csrc overrun", []byte{0x8f, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3}, false, 0, 0},
		{"padding overrun", []byte{0xa0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 40}, false, 0, 0},
		{"zero padding", []byte{0xa0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0}, false, 0, 0},
	}
	for _, c := range cases {
		h, ok := parseRTP(c.pkt)
		if ok != c.ok || (ok && (h.PayloadOffset != c.off || h.PayloadEnd != c.end)) {
			t.Errorf("%s: ok=%v off=%d end=%d, want %v %d %d", c.name, ok, h.PayloadOffset, h.PayloadEnd, c.ok, c.off, c.end)
		}
	}
	if !validRTCP([]byte{0x80, 200, 0, 1, 0, 0, 0, 1}) || validRTCP([]byte{0x80, 200, 0, 5, 0, 0, 0, 1}) || validRTCP([]byte{0x80, 96, 0, 1, 0, 0, 0, 0}) {
		t.Error("validRTCP")
	}
}
