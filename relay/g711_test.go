package relay

import (
	"slices"
	"testing"
)

// ulawLinear and alawLinear decode G.711 codes as ITU-T G.711 Tables 1a/2a
// define them (in the 16-bit scale every implementation uses: mu-law
// magnitudes 0..32124, A-law 8..32256). They are written independently of
// the conversion tables under test.
func ulawLinear(u byte) int {
	u = ^u
	mag := ((int(u&0x0f) << 3) + 0x84) << ((u & 0x70) >> 4)
	if u&0x80 != 0 {
		return 0x84 - mag
	}
	return mag - 0x84
}

func alawLinear(a byte) int {
	a ^= 0x55
	mag := int(a&0x0f) << 4
	switch seg := (a & 0x70) >> 4; seg {
	case 0:
		mag += 8
	case 1:
		mag += 0x108
	default:
		mag = (mag + 0x108) << (seg - 1)
	}
	if a&0x80 != 0 {
		return mag
	}
	return -mag
}

func TestG711Decode(t *testing.T) {
	// Values from the G.711 decoder tables.
	for _, c := range []struct {
		code byte
		ulaw bool
		want int
	}{
		{0xFF, true, 0}, {0x7F, true, 0}, {0x80, true, 32124}, {0x00, true, -32124},
		{0xFE, true, 8}, {0xEF, true, 132}, {0xDF, true, 396},
		{0xD5, false, 8}, {0x55, false, -8}, {0xAA, false, 32256}, {0x2A, false, -32256},
		{0xC5, false, 264}, {0xF5, false, 528},
	} {
		got := alawLinear(c.code)
		if c.ulaw {
			got = ulawLinear(c.code)
		}
		if got != c.want {
			t.Errorf("decode(%#x, ulaw=%v) = %d, want %d", c.code, c.ulaw, got, c.want)
		}
	}
}

// nearest returns the codes of a law ordered by distance to v.
func rank(v int, decode func(byte) int) []byte {
	codes := make([]byte, 256)
	for i := range codes {
		codes[i] = byte(i)
	}
	slices.SortStableFunc(codes, func(a, b byte) int {
		da, db := decode(a)-v, decode(b)-v
		return max(da, -da) - max(db, -db)
	})
	return codes
}

func TestG711Transcode(t *testing.T) {
	check := func(name string, table *[256]byte, from, to func(byte) int) {
		prev := -1 << 20
		order := make([]byte, 256)
		for i := range order {
			order[i] = byte(i)
		}
		// Walk source codes in increasing linear order: the conversion
		// must be monotonic and preserve the sign.
		slices.SortStableFunc(order, func(a, b byte) int { return from(a) - from(b) })
		for _, c := range order {
			v, w := from(c), to(table[c])
			if w < prev {
				t.Errorf("%s not monotonic at %#x", name, c)
			}
			prev = w
			if (v > 0 && w < 0) || (v < 0 && w > 0) {
				t.Errorf("%s(%#x): sign flipped %d -> %d", name, c, v, w)
			}
			// G.711's tables pick the nearest code or, to keep round trips
			// transparent, the one next to it.
			if r := rank(v, to); table[c] != r[0] && table[c] != r[1] && to(table[c]) != to(r[0]) && to(table[c]) != to(r[1]) {
				t.Errorf("%s(%#x): %d -> %d, nearest is %d", name, c, v, w, to(r[0]))
			}
		}
	}
	check("ulaw->alaw", &ulawToAlaw, ulawLinear, alawLinear)
	check("alaw->ulaw", &alawToUlaw, alawLinear, ulawLinear)

	// Spot checks from the tables of G.711 (codes on the wire).
	for _, c := range []struct{ in, want byte }{{0xFF, 0xD5}, {0x80, 0xAA}, {0x00, 0x2A}, {0x7F, 0x55}} {
		if got := ulawToAlaw[c.in]; got != c.want {
			t.Errorf("ulawToAlaw[%#x] = %#x, want %#x", c.in, got, c.want)
		}
	}
	for _, c := range []struct{ in, want byte }{{0xD5, 0xFE}, {0xAA, 0x80}, {0x2A, 0x00}, {0x55, 0x7E}} {
		if got := alawToUlaw[c.in]; got != c.want {
			t.Errorf("alawToUlaw[%#x] = %#x, want %#x", c.in, got, c.want)
		}
	}
	// A round trip through the other law is transparent for all but the
	// 16 codes where the two laws' resolution differs most.
	n := 0
	for i := range 256 {
		if ulawToAlaw[alawToUlaw[i]] == byte(i) {
			n++
		}
	}
	if n != 240 {
		t.Errorf("A->mu->A transparent for %d codes, want 240", n)
	}
}

func TestTranscodeInPlace(t *testing.T) {
	pkt := []byte{0x80, 0x00, 0, 1, 0, 0, 0, 160, 0, 0, 0, 1, 0xFF, 0x80, 0x00}
	h, ok := parseRTP(pkt)
	if !ok {
		t.Fatal("parse")
	}
	transcodeG711(pkt, &h, ptPCMA)
	if pkt[1] != ptPCMA || pkt[12] != 0xD5 || pkt[13] != 0xAA || pkt[14] != 0x2A {
		t.Errorf("transcoded packet % x", pkt)
	}
	transcodeG711(pkt, &h, ptPCMU)
	if pkt[1] != ptPCMU || pkt[12] != 0xFE || pkt[13] != 0x80 || pkt[14] != 0x00 {
		t.Errorf("back to PCMU: % x", pkt)
	}
}
