package ng_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/talkpad/talkpad/relay"
	"github.com/talkpad/talkpad/relay/ng"
	"github.com/talkpad/talkpad/relay/relaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newServer(t *testing.T) (*ng.Server, *relay.Relay) {
	t.Helper()
	r, err := relay.New(relay.Config{
		Addr: netip.MustParseAddr("203.0.113.1"), Listen: relaytest.NewNetwork().Listen,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	s, err := ng.New(ng.Config{Relay: r, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s, r
}

// do sends one command and decodes the reply.
func do(t *testing.T, s *ng.Server, cookie string, cmd map[string]any) map[string]any {
	t.Helper()
	req, err := ng.Encode([]byte(cookie+" "), cmd)
	if err != nil {
		t.Fatal(err)
	}
	resp := s.Handle(context.Background(), req, "127.0.0.1:5060")
	c, body, ok := strings.Cut(string(resp), " ")
	if !ok || c != cookie {
		t.Fatalf("reply %q does not echo cookie %q", resp, cookie)
	}
	v, err := ng.Decode([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return v.(map[string]any)
}

const offerSDP = "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=ice-ufrag:abc\r\na=candidate:1 1 udp 1 10.0.0.7 4000 typ host\r\n"
const answerSDP = "v=0\r\no=- 2 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"

// The command dictionaries below are what Kamailio's rtpengine module sends
// for rtpengine_offer("replace-origin replace-session-connection ICE=remove
// RTP/AVP") and rtpengine_answer()/rtpengine_delete().
func TestKamailioCommands(t *testing.T) {
	s, r := newServer(t)
	if got := do(t, s, "1_1", map[string]any{"command": "ping"}); got["result"] != "pong" {
		t.Fatalf("ping: %v", got)
	}
	got := do(t, s, "2_1", map[string]any{
		"command": "offer", "call-id": "abc@pbx", "from-tag": "ft1", "via-branch": "z9hG4bK1",
		"sdp": offerSDP, "ICE": "remove", "transport-protocol": "RTP/AVP",
		"replace":       []any{"origin", "session-connection"},
		"received-from": []any{"IP4", "198.51.100.7"},
		"flags":         []any{"SIP-source-address"},
		"supports":      []any{"load limit"},
	})
	if got["result"] != "ok" {
		t.Fatalf("offer: %v", got)
	}
	sdp := got["sdp"].(string)
	if !strings.Contains(sdp, "c=IN IP4 203.0.113.1") || !strings.Contains(sdp, "o=- 1 1 IN IP4 203.0.113.1") || strings.Contains(sdp, "candidate") {
		t.Errorf("offer SDP:\n%s", sdp)
	}
	got = do(t, s, "3_1", map[string]any{
		"command": "answer", "call-id": "abc@pbx", "from-tag": "ft1", "to-tag": "tt1",
		"sdp": answerSDP, "received-from": []any{"IP4", "192.0.2.20"}, "flags": []any{"trust-address"},
	})
	if got["result"] != "ok" || !strings.Contains(got["sdp"].(string), "c=IN IP4 203.0.113.1") {
		t.Fatalf("answer: %v", got)
	}
	got = do(t, s, "4_1", map[string]any{"command": "query", "call-id": "abc@pbx"})
	tags, _ := got["tags"].(map[string]any)
	if got["result"] != "ok" || tags["ft1"] == nil || tags["tt1"] == nil || got["totals"] == nil {
		t.Errorf("query: %v", got)
	}
	got = do(t, s, "5_1", map[string]any{"command": "list"})
	if calls, _ := got["calls"].([]any); len(calls) != 1 || calls[0] != "abc@pbx" {
		t.Errorf("list: %v", got)
	}
	got = do(t, s, "6_1", map[string]any{"command": "delete", "call-id": "abc@pbx", "from-tag": "ft1"})
	if got["result"] != "ok" {
		t.Errorf("delete: %v", got)
	}
	if st := r.Stats(); st.Sessions != 0 || st.PortPairsInUse != 0 {
		t.Errorf("after delete: %+v", st)
	}
	got = do(t, s, "7_1", map[string]any{"command": "delete", "call-id": "abc@pbx"})
	if got["result"] != "error" || got["error-reason"] == nil {
		t.Errorf("second delete: %v", got)
	}
}

// OpenSIPS sends flags inside the "flags" list, codec options as a dict.
func TestOpenSIPSFlagsAndTranscode(t *testing.T) {
	s, _ := newServer(t)
	got := do(t, s, "o1", map[string]any{
		"command": "offer", "call-id": "x", "from-tag": "a", "sdp": offerSDP,
		"flags": []any{"ICE=remove", "strict-source"}, "codec": map[string]any{"transcode": []any{"PCMA"}},
	})
	if got["result"] != "ok" || !strings.Contains(got["sdp"].(string), "RTP/AVP 0 101 8") {
		t.Fatalf("offer: %v", got)
	}
}

func TestErrorsAndRetransmits(t *testing.T) {
	s, _ := newServer(t)
	for name, cmd := range map[string]map[string]any{
		"unknown":   {"command": "frobnicate"},
		"no sdp":    {"command": "offer", "call-id": "x", "from-tag": "a"},
		"bad sdp":   {"command": "offer", "call-id": "x", "from-tag": "a", "sdp": "v=0\r\nbogus"},
		"no call":   {"command": "answer", "call-id": "nope", "from-tag": "a", "to-tag": "b", "sdp": answerSDP},
		"srtp->rtp": {"command": "offer", "call-id": "y", "from-tag": "a", "sdp": strings.Replace(offerSDP, "RTP/AVP", "RTP/SAVP", 1), "transport-protocol": "RTP/AVP"},
		"bad ice":   {"command": "offer", "call-id": "z", "from-tag": "a", "sdp": offerSDP, "ICE": "juggle"},
		"bad learn": {"command": "offer", "call-id": "z", "from-tag": "a", "sdp": offerSDP, "endpoint-learning": "psychic"},
	} {
		if got := do(t, s, "e-"+strings.ReplaceAll(name, " ", "-"), cmd); got["result"] != "error" {
			t.Errorf("%s: %v", name, got)
		}
	}
	if resp := s.Handle(context.Background(), []byte("nocookie"), "p"); resp != nil {
		t.Errorf("datagram without cookie answered: %q", resp)
	}
	if resp := s.Handle(context.Background(), []byte("c1 d7:command"), "p"); !strings.Contains(string(resp), "error") {
		t.Errorf("truncated bencode: %q", resp)
	}
	// A retransmitted offer gets the same reply and does not allocate a
	// second set of ports.
	cmd := map[string]any{"command": "offer", "call-id": "r", "from-tag": "a", "sdp": offerSDP}
	a := do(t, s, "same", cmd)
	b := do(t, s, "same", cmd)
	if a["sdp"] != b["sdp"] {
		t.Errorf("retransmit got a different answer")
	}
}

func TestServeOnLoopback(t *testing.T) {
	s, _ := newServer(t)
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc) }()
	c, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("5323_1 d7:command4:pinge")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "5323_1 d6:result4:ponge" {
		t.Fatalf("ping reply %q %v", buf[:n], err)
	}
	cancel()
	if err := <-done; !errors.Is(err, ng.ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
}

func TestBencodeRoundTrip(t *testing.T) {
	in := map[string]any{"b": []any{"x", int64(-3), map[string]any{}}, "a": "", "c": int64(42)}
	b, err := ng.Encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "d1:a0:1:bl1:xi-3edee1:ci42ee" {
		t.Errorf("encoded %q", b)
	}
	for _, bad := range []string{"", "i12", "l", "d1:a", "5:abc", "d1:ai1e", "x", "i1ei2e", "99999999999:a", "ie", "d i1e1:ae"} {
		if _, err := ng.Decode([]byte(bad)); !errors.Is(err, ng.ErrBencode) {
			t.Errorf("Decode(%q) = %v", bad, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("d7:command5:offer7:call-id3:abc5:flagsl13:trust-addressee"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ng.Decode(b)
		if err != nil {
			return
		}
		out, err := ng.Encode(nil, v)
		if err != nil {
			t.Fatalf("decoded value does not encode: %v", err)
		}
		v2, err := ng.Decode(out)
		if err != nil {
			t.Fatalf("re-encoded value does not decode: %v", err)
		}
		out2, _ := ng.Encode(nil, v2)
		if string(out) != string(out2) {
			t.Fatalf("not stable: %q vs %q", out, out2)
		}
	})
}

// FuzzHandle: no datagram makes the server panic.
func FuzzHandle(f *testing.F) {
	f.Add([]byte("1 d7:command4:pinge"))
	f.Add([]byte("2 d7:command5:offer7:call-id1:x8:from-tag1:a3:sdp10:v=0\r\no=- 1e"))
	r, _ := relay.New(relay.Config{Listen: relaytest.NewNetwork().Listen, Logger: slog.New(slog.DiscardHandler)})
	defer r.Close()
	s, _ := ng.New(ng.Config{Relay: r, Logger: slog.New(slog.DiscardHandler)})
	f.Fuzz(func(t *testing.T, b []byte) {
		s.Handle(context.Background(), b, "peer")
	})
}
