package relay

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"
)

// FuzzParseSDP: any input either fails with an error or yields media that
// rewrites into SDP that parses again with the same number of m= lines.
func FuzzParseSDP(f *testing.F) {
	files, _ := filepath.Glob("testdata/sdp/*.sdp")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, media, err := parseSDP(b)
		if err != nil {
			return
		}
		ports := make([]uint16, len(media))
		for i := range ports {
			ports[i] = 30000 + 2*uint16(i)
		}
		rw := rewrite{addr: netip.MustParseAddr("203.0.113.1"), ports: ports, removeICE: true, replaceOrigin: true}
		out, err := rw.apply(sd, media)
		if err != nil {
			return
		}
		_, media2, err := parseSDP(out)
		if err != nil {
			t.Fatalf("rewritten SDP does not parse: %v\n%q\n->\n%q", err, b, out)
		}
		if len(media2) != len(media) {
			t.Fatalf("m= lines %d -> %d", len(media), len(media2))
		}
	})
}

// FuzzParseRTP cross-checks the allocation-free header reader against
// pion/rtp: whenever pion accepts a version 2 packet, ours must too and agree
// on every field the relay uses.
func FuzzParseRTP(f *testing.F) {
	f.Add([]byte{0x80, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3})
	f.Add([]byte{0x90, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0xbe, 0xde, 0, 1, 1, 2, 3, 4, 0xaa})
	f.Add([]byte{0xa2, 0x60, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 9, 0, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseRTP(b)
		isRTCPMux(b)
		validRTCP(b)
		var p rtp.Packet
		if err := p.Unmarshal(bytes.Clone(b)); err != nil || p.Version != 2 {
			// pion also validates the contents of header extensions,
			// which the relay forwards untouched; nothing to compare.
			return
		}
		if !ok {
			t.Fatalf("pion accepts, we reject %x", b)
		}
		if p.PayloadType != h.PayloadType || p.SequenceNumber != h.SequenceNumber ||
			p.Timestamp != h.Timestamp || p.SSRC != h.SSRC || p.Marker != h.Marker {
			t.Fatalf("header mismatch: pion %+v ours %+v", p.Header, h)
		}
		if !bytes.Equal(p.Payload, b[h.PayloadOffset:h.PayloadEnd]) {
			t.Fatalf("payload mismatch: pion %x ours %x", p.Payload, b[h.PayloadOffset:h.PayloadEnd])
		}
	})
}

// FuzzRTCP: the RTCP check never reads out of bounds and its verdict
// matches the length arithmetic.
func FuzzRTCP(f *testing.F) {
	f.Add([]byte{0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x81, 201, 0, 7, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		if validRTCP(b) && (len(b) < 4 || b[0]>>6 != 2 || (int(b[2])<<8|int(b[3])+1)*4 > len(b)) {
			t.Fatalf("accepted %x", b)
		}
	})
}
