package b2bua

import (
	"bytes"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzSDP feeds arbitrary bodies to the SDP checks and the WebRTC
// stripper: no panic, and stripping never adds lines nor keeps a WebRTC
// attribute.
func FuzzSDP(f *testing.F) {
	f.Add([]byte(testSDP))
	f.Add([]byte("v=0\r\nm=audio 1/2 RTP/AVP 0\r\n"))
	f.Add([]byte("v=0\no=- 1 1 IN IP4 x\ns=-\nm=audio 99999 RTP/AVP 0\nc=IN IP4 1.2.3.4\na=candidate:1 1 udp 1 1.2.3.4 5 typ host\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = checkSDP(b)
		out := StripWebRTC(b)
		if bytes.Count(out, []byte("\n")) > bytes.Count(b, []byte("\n"))+1 {
			t.Fatalf("stripping added lines")
		}
		for line := range lines(out) {
			for _, p := range webrtcAttrs {
				if bytes.HasPrefix(line, p) {
					t.Fatalf("kept %q", line)
				}
			}
		}
	})
}

// FuzzHeaders feeds arbitrary header values to the header helpers the
// B2BUA applies to network input.
func FuzzHeaders(f *testing.F) {
	f.Add("<sip:a@b;lr>, <sip:c@d>", "90;refresher=uac", "100rel, timer", "1")
	f.Add(`"x,y" <sip:a@b>,`, "abc", ",,", "-1")
	f.Fuzz(func(t *testing.T, rr, se, sup, rseq string) {
		_ = splitList(rr)
		res := sip.NewResponse(200, "OK")
		res.AppendHeader(sip.NewHeader("Record-Route", rr))
		res.AppendHeader(sip.NewHeader("Session-Expires", se))
		res.AppendHeader(sip.NewHeader("Require", sup))
		res.AppendHeader(sip.NewHeader("RSeq", rseq))
		_ = routeSetFrom(res, true)
		_, _, _ = sessionExpires(res)
		_ = hasOption(res, "Require", "100rel")
		_, _ = headerUint(res, "RSeq")
	})
}
