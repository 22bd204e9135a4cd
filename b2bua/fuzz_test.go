package b2bua

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo"
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

// FuzzServeInvite hands arbitrary SIP messages, as sipgo parses them, to
// the B2BUA: whatever the input, it answers or drops it without panicking,
// and no call state is left behind.
func FuzzServeInvite(f *testing.F) {
	f.Add([]byte(strings.Replace(strings.Replace(strings.Replace(inviteText, "%s", "", 1), "%d", strconv.Itoa(len(testSDP)), 1), "%s", testSDP, 1)))
	f.Add([]byte("INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:x@y>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: <sip:a@1.2.3.4>\r\nSession-Expires: 5\r\nRequire: timer, 100rel\r\nContent-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"))
	ua, err := sipgo.NewUA()
	if err != nil {
		f.Fatal(err)
	}
	defer ua.Close()
	client, err := sipgo.NewClient(ua)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		msg, err := sip.ParseMessage(data)
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok {
			return
		}
		req.SetSource("127.0.0.1:5000")
		req.SetTransport("UDP")
		r := newFakeRig(t, client, nil)
		r.client.autoInvite = 486
		atx := newFakeServerTx()
		switch req.Method {
		case sip.INVITE:
			r.b.ServeInvite(req, atx)
		case sip.ACK:
			r.b.ServeAck(req, atx)
		default:
			r.b.ServeInDialog(req, atx)
		}
		r.b.Close()
		r.b.mu.Lock()
		defer r.b.mu.Unlock()
		if len(r.b.calls)+len(r.b.legs)+len(r.b.owner) != 0 {
			t.Fatalf("call state left after %q", data)
		}
	})
}
