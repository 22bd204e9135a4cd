package relay

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

func TestRewriteRealSDP(t *testing.T) {
	v4 := netip.MustParseAddr("203.0.113.1")
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		file     string
		relay    netip.Addr
		rejected []bool   // per m= line
		dirs     []string // per m= line
		connAddr []string // effective c= address per m= line after rewrite
		rtcp     []string // a=rtcp value per m= line after rewrite ("" = none)
		mux      []bool
	}{
		{"chrome-offer.sdp", v4, []bool{false, false}, []string{"sendrecv", "sendrecv"},
			[]string{"203.0.113.1", "203.0.113.1"}, []string{"30001 IN IP4 203.0.113.1", "30003 IN IP4 203.0.113.1"}, []bool{true, true}},
		{"firefox-offer.sdp", v4, []bool{false}, []string{"sendrecv"},
			[]string{"203.0.113.1"}, []string{"30001 IN IP4 203.0.113.1"}, []bool{true}},
		{"baresip-offer.sdp", v4, []bool{false, false}, []string{"sendrecv", "sendrecv"},
			[]string{"203.0.113.1", "203.0.113.1"}, []string{"", ""}, []bool{true, false}},
		{"carrier-offer.sdp", v4, []bool{false}, []string{"sendrecv"},
			[]string{"203.0.113.1"}, []string{""}, []bool{false}},
		{"carrier-answer-rejected-video.sdp", v4, []bool{false, true}, []string{"sendrecv", "sendrecv"},
			[]string{"203.0.113.1", "203.0.113.1"}, []string{"30001", ""}, []bool{false, false}},
		{"ipv6-offer.sdp", v6, []bool{false}, []string{"sendrecv"},
			[]string{"2001:db8::1"}, []string{"30001 IN IP6 2001:db8::1"}, []bool{false}},
		{"hold-rfc2543.sdp", v4, []bool{false}, []string{"sendonly"},
			[]string{"0.0.0.0"}, []string{""}, []bool{false}},
		{"hold-inactive.sdp", v4, []bool{false}, []string{"inactive"},
			[]string{"203.0.113.1"}, []string{""}, []bool{false}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", "sdp", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			sd, media, err := parseSDP(in)
			if err != nil {
				t.Fatal(err)
			}
			if len(media) != len(tc.rejected) {
				t.Fatalf("%d m= lines, want %d", len(media), len(tc.rejected))
			}
			orig, _, _ := parseSDP(in)
			ports := make([]uint16, len(media))
			for i := range ports {
				ports[i] = 30000 + 2*uint16(i)
			}
			rw := rewrite{addr: tc.relay, ports: ports, removeICE: true}
			out, err := rw.apply(sd, media)
			if err != nil {
				t.Fatal(err)
			}
			text := string(out)
			for _, bad := range []string{"a=candidate", "a=ice-ufrag", "a=ice-pwd", "a=ice-options", "a=end-of-candidates", "a=group:BUNDLE"} {
				if strings.Contains(text, bad) {
					t.Errorf("rewritten SDP still has %s", bad)
				}
			}
			var got sdp.SessionDescription
			if err := got.Unmarshal(out); err != nil {
				t.Fatalf("rewritten SDP does not parse: %v\n%s", err, out)
			}
			for i, md := range got.MediaDescriptions {
				om := orig.MediaDescriptions[i]
				if !slices.Equal(md.MediaName.Formats, om.MediaName.Formats) || !slices.Equal(md.MediaName.Protos, om.MediaName.Protos) {
					t.Errorf("m=%d: formats/proto changed: %v %v", i, md.MediaName.Protos, md.MediaName.Formats)
				}
				wantPort := int(ports[i])
				if tc.rejected[i] {
					wantPort = 0
				}
				if md.MediaName.Port.Value != wantPort {
					t.Errorf("m=%d: port %d, want %d", i, md.MediaName.Port.Value, wantPort)
				}
				c := got.ConnectionInformation
				if md.ConnectionInformation != nil {
					c = md.ConnectionInformation
				}
				if !tc.rejected[i] && (c == nil || c.Address.Address != tc.connAddr[i]) {
					t.Errorf("m=%d: c= %v, want %s", i, c, tc.connAddr[i])
				}
				if !tc.rejected[i] && c.AddressType != addrType(netip.MustParseAddr(tc.connAddr[i])) {
					t.Errorf("m=%d: c= address type %s", i, c.AddressType)
				}
				if d := directionOf(md.Attributes, directionOf(got.Attributes, "sendrecv")); d != tc.dirs[i] {
					t.Errorf("m=%d: direction %s, want %s", i, d, tc.dirs[i])
				}
				if v, _ := md.Attribute("rtcp"); v != tc.rtcp[i] {
					t.Errorf("m=%d: a=rtcp:%q, want %q", i, v, tc.rtcp[i])
				}
				if _, ok := md.Attribute("rtcp-mux"); ok != tc.mux[i] {
					t.Errorf("m=%d: rtcp-mux %v", i, ok)
				}
				// Everything that is not transport stays: fingerprints,
				// rtpmaps, fmtps, ssrc, msid.
				for _, a := range om.Attributes {
					if iceAttrs[a.Key] || a.Key == "rtcp" || a.Key == "bundle-only" {
						continue
					}
					if !slices.Contains(md.Attributes, a) {
						t.Errorf("m=%d: attribute %s lost", i, a)
					}
				}
			}
			// The result parses again and rewrites identically (idempotent
			// apart from the addresses it already has).
			sd2, media2, err := parseSDP(out)
			if err != nil {
				t.Fatalf("re-parse: %v", err)
			}
			out2, err := rw.apply(sd2, media2)
			if err != nil || string(out2) != string(out) {
				t.Errorf("second rewrite differs:\n%s\n---\n%s", out, out2)
			}
		})
	}
}

func TestParseSDPMediaInfo(t *testing.T) {
	in, _ := os.ReadFile("testdata/sdp/firefox-offer.sdp")
	_, media, err := parseSDP(in)
	if err != nil {
		t.Fatal(err)
	}
	m := media[0]
	if m.addr != netip.MustParseAddr("203.0.113.45") || m.port != 49838 || !m.rtcpMux ||
		m.rtcp != netip.MustParseAddrPort("203.0.113.45:49839") || m.clock[109] != 48000 || m.clock[0] != 8000 ||
		!m.formats.has(109) || m.formats.has(110) || m.hold() {
		t.Errorf("media = %+v", m)
	}
	in, _ = os.ReadFile("testdata/sdp/hold-rfc2543.sdp")
	if _, media, _ = parseSDP(in); !media[0].hold() {
		t.Error("0.0.0.0 + sendonly not seen as hold")
	}
}

func TestParseSDPErrors(t *testing.T) {
	base := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
	for name, body := range map[string]string{
		"empty":           "",
		"garbage":         "hello world",
		"no address":      base + "m=audio 4000 RTP/AVP 0\r\n",
		"hostname":        base + "c=IN IP4 pbx.example.com\r\nm=audio 4000 RTP/AVP 0\r\n",
		"family mismatch": base + "c=IN IP4 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\n",
		"bad pt":          base + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 300\r\n",
		"bad rtcp":        base + "c=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:abc\r\n",
		"bad port":        base + "c=IN IP4 192.0.2.1\r\nm=audio 99999 RTP/AVP 0\r\n",
	} {
		if _, _, err := parseSDP([]byte(body)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestTranscodeSDP(t *testing.T) {
	in, _ := os.ReadFile("testdata/sdp/ipv6-offer.sdp") // PCMA only
	_, media, _ := parseSDP(in)
	if pt := transcodePT(&media[0], []string{"PCMU"}); pt != ptPCMU {
		t.Fatalf("transcodePT = %d", pt)
	}
	sd, media, _ := parseSDP(in)
	rw := rewrite{addr: netip.MustParseAddr("2001:db8::1"), ports: []uint16{30000}, addPT: []uint8{ptPCMU}}
	out, err := rw.apply(sd, media)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "m=audio 30000 RTP/AVP 8 101 0\r\n") || !strings.Contains(string(out), "a=rtpmap:0 PCMU/8000") {
		t.Errorf("offer with added PCMU:\n%s", out)
	}
}
