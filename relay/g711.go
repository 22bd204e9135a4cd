package relay

// G.711 transcoding between mu-law (PCMU, static payload type 0) and A-law
// (PCMA, payload type 8). Both laws code one 8 kHz sample per byte, so a packet
// converts in place with one table lookup per byte: same length, same
// timestamps, only the payload type and the payload bytes change. That keeps
// transcoding on the zero-allocation forwarding path.
//
// The tables are the direct law-to-law conversions of ITU-T G.711 (Tables 3
// and 4 of the Recommendation), not a decode to linear and re-encode: the
// Recommendation's tables keep a mu->A->mu round trip transparent for the
// codes where that is possible and are what every interoperating transcoder
// uses.

const (
	ptPCMU = 0
	ptPCMA = 8
)

// g711U2A and g711A2U map the 7 magnitude bits of a sign-stripped,
// uncomplemented code (as the tables in G.711 are printed, 1-based) to the
// other law.
var g711U2A = [128]uint8{
	1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8,
	9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24,
	25, 27, 29, 31, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
	46, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62,
	64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
	// 80 rather than the 81 of some printed copies: the erratum that keeps
	// the table monotonic (A-law code 80 would otherwise be unreachable).
	80, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96,
	97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112,
	113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127, 128,
}

var g711A2U = [128]uint8{
	1, 3, 5, 7, 9, 11, 13, 15, 16, 17, 18, 19, 20, 21, 22, 23,
	24, 25, 26, 27, 28, 29, 30, 31, 32, 32, 33, 33, 34, 34, 35, 35,
	36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 48, 49, 49,
	50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 64,
	65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80,
	80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
	96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
	112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 127,
}

// ulawToAlaw and alawToUlaw are the full 256-entry wire-format tables built
// from the G.711 ones: mu-law codes are transmitted complemented, A-law codes
// with even bits inverted (XOR 0x55), and the sign bit set for positive values.
var ulawToAlaw, alawToUlaw [256]byte

func init() {
	for i := range 256 {
		u := byte(i)
		if u&0x80 != 0 {
			ulawToAlaw[i] = 0xD5 ^ (g711U2A[0xFF^u] - 1)
		} else {
			ulawToAlaw[i] = 0x55 ^ (g711U2A[0x7F^u] - 1)
		}
		a := byte(i)
		if a&0x80 != 0 {
			alawToUlaw[i] = 0xFF ^ g711A2U[a^0xD5]
		} else {
			alawToUlaw[i] = 0x7F ^ g711A2U[a^0x55]
		}
	}
}

// UlawToAlaw converts mu-law samples in src to A-law in dst, which must be at
// least as long as src; dst and src may be the same slice.
func UlawToAlaw(dst, src []byte) {
	dst = dst[:len(src)]
	for i, c := range src {
		dst[i] = ulawToAlaw[c]
	}
}

// AlawToUlaw converts A-law samples in src to mu-law in dst, which must be at
// least as long as src; dst and src may be the same slice.
func AlawToUlaw(dst, src []byte) {
	dst = dst[:len(src)]
	for i, c := range src {
		dst[i] = alawToUlaw[c]
	}
}

// transcodeG711 rewrites an RTP packet in place from payload type from to
// payload type to (PCMU<->PCMA). The caller has parsed the header.
func transcodeG711(pkt []byte, h *rtpHeader, to uint8) {
	p := pkt[h.PayloadOffset:h.PayloadEnd]
	if to == ptPCMA {
		UlawToAlaw(p, p)
	} else {
		AlawToUlaw(p, p)
	}
	pkt[1] = pkt[1]&0x80 | to
	h.PayloadType = to
}
