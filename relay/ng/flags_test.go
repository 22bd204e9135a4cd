package ng

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/talkpad/talkpad/relay"
)

func TestParseFlags(t *testing.T) {
	src := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name   string
		in     map[string]any
		want   relay.Flags
		source netip.Addr
		err    bool
	}{
		{"kamailio defaults", map[string]any{"received-from": []any{"IP4", "198.51.100.7"}, "replace": []any{"origin", "session-connection"}, "ICE": "remove"},
			relay.Flags{ReplaceOrigin: true}, src, false},
		{"trust-address drops received-from", map[string]any{"received-from": []any{"IP4", "198.51.100.7"}, "flags": []any{"trust-address"}},
			relay.Flags{TrustAddress: true}, netip.Addr{}, false},
		{"asymmetric", map[string]any{"flags": []any{"asymmetric"}}, relay.Flags{Learning: relay.LearnOff}, netip.Addr{}, false},
		{"strict-source", map[string]any{"flags": []any{"strict-source"}}, relay.Flags{Learning: relay.LearnStrict}, netip.Addr{}, false},
		{"media-handover", map[string]any{"flags": []any{"media-handover"}}, relay.Flags{Learning: relay.LearnHandover}, netip.Addr{}, false},
		{"endpoint-learning", map[string]any{"endpoint-learning": "delayed"}, relay.Flags{Learning: relay.LearnDelayed}, netip.Addr{}, false},
		{"key=value in flags", map[string]any{"flags": []any{"ICE=remove", "transport-protocol=RTP/AVP", "replace-origin"}},
			relay.Flags{TransportProtocol: "RTP/AVP", ReplaceOrigin: true}, netip.Addr{}, false},
		{"codec dict", map[string]any{"codec": map[string]any{"transcode": []any{"PCMA"}}}, relay.Flags{Transcode: []string{"PCMA"}}, netip.Addr{}, false},
		{"codec flag", map[string]any{"flags": []any{"codec-transcode-PCMU"}}, relay.Flags{Transcode: []string{"PCMU"}}, netip.Addr{}, false},
		{"media address", map[string]any{"media address": "203.0.113.9"}, relay.Flags{MediaAddress: netip.MustParseAddr("203.0.113.9")}, netip.Addr{}, false},
		{"IPv6 received-from", map[string]any{"received-from": []any{"IP6", "2001:db8::7"}}, relay.Flags{}, netip.MustParseAddr("2001:db8::7"), false},
		{"bad media address", map[string]any{"media address": "nowhere"}, relay.Flags{}, netip.Addr{}, true},
		{"bad ICE", map[string]any{"ICE": "sideways"}, relay.Flags{}, netip.Addr{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fl, source, err := parseFlags(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if fl.Learning != tc.want.Learning || fl.ReplaceOrigin != tc.want.ReplaceOrigin || fl.TrustAddress != tc.want.TrustAddress ||
				fl.TransportProtocol != tc.want.TransportProtocol || fl.MediaAddress != tc.want.MediaAddress ||
				!slices.Equal(fl.Transcode, tc.want.Transcode) || source != tc.source {
				t.Errorf("got %+v source %v, want %+v source %v", fl, source, tc.want, tc.source)
			}
		})
	}
}
