package ng

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/talkpad/talkpad/relay"
)

// str returns d[key] if it is a string.
func str(d map[string]any, key string) string {
	s, _ := d[key].(string)
	return s
}

// strList returns d[key] as a list of strings; a single string counts as a
// one-element list (Kamailio and OpenSIPS differ in places).
func strList(d map[string]any, key string) []string {
	switch v := d[key].(type) {
	case string:
		return strings.Fields(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// parseFlags maps the options of an offer or answer command to relay.Flags
// and the party's signalling source address.
//
// Kamailio's and OpenSIPS's rtpengine modules turn their flag strings into
// dictionary keys ("ICE=remove" becomes "ICE": "remove", "replace-origin"
// becomes "replace": ["origin"]) and pass the rest in the "flags" list; some
// versions send key=value pairs inside "flags" too. Both spellings are
// accepted. Options that do not apply to this relay (DTLS, SDES, recording,
// labels, via-branch for forking) are ignored.
func parseFlags(d map[string]any) (relay.Flags, netip.Addr, error) {
	var fl relay.Flags
	// received-from: ["IP4", "192.0.2.1"] is the SIP source the proxy saw.
	// Without it the party's address is unknown: the datagram's source is
	// the proxy, which says nothing about where the party's media comes from.
	var source netip.Addr
	if rf := strList(d, "received-from"); len(rf) == 2 {
		if a, err := netip.ParseAddr(rf[1]); err == nil {
			source = a.Unmap()
		}
	}
	kv := map[string]string{}
	for _, k := range []string{"ICE", "transport-protocol", "media address", "endpoint-learning", "learning"} {
		if v := str(d, k); v != "" {
			kv[k] = v
		}
	}
	for _, r := range strList(d, "replace") {
		if r == "origin" {
			fl.ReplaceOrigin = true
		}
	}
	if c, ok := d["codec"].(map[string]any); ok {
		fl.Transcode = append(fl.Transcode, strList(c, "transcode")...)
	}
	for _, f := range strList(d, "flags") {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
			continue
		}
		switch lf := strings.ToLower(f); {
		case lf == "trust-address":
			fl.TrustAddress = true
		case lf == "asymmetric":
			fl.Learning = relay.LearnOff
		case lf == "strict-source":
			fl.Learning = relay.LearnStrict
		case lf == "media-handover":
			fl.Learning = relay.LearnHandover
		case lf == "replace-origin":
			fl.ReplaceOrigin = true
		case strings.HasPrefix(lf, "codec-transcode-"):
			fl.Transcode = append(fl.Transcode, f[len("codec-transcode-"):])
		case strings.HasPrefix(lf, "transcode-"):
			fl.Transcode = append(fl.Transcode, f[len("transcode-"):])
		}
	}
	for k, v := range kv {
		switch k {
		case "ICE":
			// Only removal is possible: the relay has no ICE agent of its
			// own, so "force" cannot be honoured and the parties'
			// candidates never hold once the addresses are rewritten.
			if v != "remove" && v != "default" && v != "force" && v != "optional" {
				return fl, source, fmt.Errorf("unsupported ICE=%s", v)
			}
		case "transport-protocol":
			fl.TransportProtocol = v
		case "media address", "media-address":
			a, err := netip.ParseAddr(v)
			if err != nil {
				return fl, source, fmt.Errorf("bad media address %q", v)
			}
			fl.MediaAddress = a
		case "endpoint-learning", "learning":
			l, ok := relay.ParseLearning(v)
			if !ok {
				return fl, source, fmt.Errorf("unknown endpoint-learning %q", v)
			}
			fl.Learning = l
		}
	}
	if fl.TrustAddress {
		source = netip.Addr{}
	}
	return fl, source, nil
}
