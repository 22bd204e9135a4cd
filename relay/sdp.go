package relay

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// sdpDesc is a parsed SDP body.
type sdpDesc = *sdp.SessionDescription

// mediaInfo is what the relay needs from one m= line of a party's SDP.
type mediaInfo struct {
	media    string
	port     uint16
	rejected bool // port 0 without bundle-only (RFC 3264 section 6)
	addr     netip.Addr
	rtcp     netip.AddrPort // explicit a=rtcp, or RTP port + 1
	rtcpMux  bool
	dir      string // sendrecv, sendonly, recvonly or inactive
	formats  ptSet
	clock    map[uint8]uint32
	rtp      bool // an RTP profile (numeric payload types)
}

// hold reports whether this side of the stream asks for a quiet stream: a
// direction other than sendrecv, or the RFC 2543 hold address 0.0.0.0.
func (m *mediaInfo) hold() bool {
	return m.dir != "sendrecv" || (m.addr.IsValid() && m.addr.IsUnspecified())
}

// staticClock is the RTP clock of the static payload types of RFC 3551 that
// may appear without an rtpmap.
func staticClock(pt uint8) uint32 {
	switch {
	case pt <= 18 && pt != 10 && pt != 11 && pt != 14:
		return 8000 // G.722's RTP clock is 8000 too, by an error kept forever
	case pt == 10 || pt == 11:
		return 44100
	case pt == 14 || pt >= 25 && pt <= 34:
		return 90000
	}
	return 0
}

// parseSDP parses an SDP body and extracts the media information. Malformed
// input returns an error wrapping ErrBadSDP, never a panic.
func parseSDP(b []byte) (sd *sdp.SessionDescription, media []mediaInfo, err error) {
	defer func() {
		// pion/sdp is fuzzed upstream, but a parser bug on hostile input must
		// not take the relay down: turn it into a bad-SDP error.
		if p := recover(); p != nil {
			sd, media, err = nil, nil, fmt.Errorf("%w: %v", ErrBadSDP, p)
		}
	}()
	if !bytes.HasPrefix(b, []byte("v=")) {
		return nil, nil, fmt.Errorf("%w: does not start with v=", ErrBadSDP)
	}
	sd = &sdp.SessionDescription{}
	if err := sd.Unmarshal(b); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	// pion/sdp is lenient about missing lines; the relay needs an o= line it
	// can write back (RFC 4566 makes it mandatory).
	if o := sd.Origin; o.NetworkType != "IN" || o.UnicastAddress == "" || o.Username == "" {
		return nil, nil, fmt.Errorf("%w: missing or malformed o= line", ErrBadSDP)
	}
	var sessAddr netip.Addr
	if sd.ConnectionInformation != nil {
		if sessAddr, err = connAddr(sd.ConnectionInformation); err != nil {
			return nil, nil, err
		}
	}
	sessDir := directionOf(sd.Attributes, "sendrecv")
	for _, md := range sd.MediaDescriptions {
		mi := mediaInfo{media: md.MediaName.Media, addr: sessAddr, clock: map[uint8]uint32{}}
		if md.MediaName.Port.Value < 0 || md.MediaName.Port.Value > 65535 {
			return nil, nil, fmt.Errorf("%w: m= port %d", ErrBadSDP, md.MediaName.Port.Value)
		}
		mi.port = uint16(md.MediaName.Port.Value)
		_, bundleOnly := md.Attribute("bundle-only")
		mi.rejected = mi.port == 0 && !bundleOnly
		if md.ConnectionInformation != nil {
			if mi.addr, err = connAddr(md.ConnectionInformation); err != nil {
				return nil, nil, err
			}
		}
		if !mi.rejected && !mi.addr.IsValid() {
			return nil, nil, fmt.Errorf("%w: m=%s has no connection address", ErrBadSDP, mi.media)
		}
		mi.dir = directionOf(md.Attributes, sessDir)
		_, mi.rtcpMux = md.Attribute("rtcp-mux")
		proto := strings.Join(md.MediaName.Protos, "/")
		mi.rtp = strings.Contains(proto, "RTP")
		if mi.rtp {
			for _, f := range md.MediaName.Formats {
				pt, err := strconv.ParseUint(f, 10, 8)
				if err != nil || pt > 127 {
					return nil, nil, fmt.Errorf("%w: payload type %q", ErrBadSDP, f)
				}
				mi.formats.add(uint8(pt))
				if c := staticClock(uint8(pt)); c != 0 {
					mi.clock[uint8(pt)] = c
				}
			}
			for _, a := range md.Attributes {
				if a.Key != "rtpmap" {
					continue
				}
				pt, rate, ok := parseRTPMap(a.Value)
				if ok {
					mi.clock[pt] = rate
				}
			}
		}
		mi.rtcp = netip.AddrPortFrom(mi.addr, mi.port+1)
		if v, ok := md.Attribute("rtcp"); ok {
			if mi.rtcp, err = parseRTCPAttr(v, mi.addr); err != nil {
				return nil, nil, err
			}
		}
		media = append(media, mi)
	}
	return sd, media, nil
}

// connAddr parses the address of a c= line. Host names are legal in SDP but
// the relay compares source addresses, so they are refused.
func connAddr(c *sdp.ConnectionInformation) (netip.Addr, error) {
	if c.Address == nil {
		return netip.Addr{}, fmt.Errorf("%w: c= without address", ErrBadSDP)
	}
	a, err := netip.ParseAddr(c.Address.Address)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: c= address %q", ErrBadSDP, c.Address.Address)
	}
	if (c.AddressType == "IP4") != a.Is4() || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: c= %s address %q", ErrBadSDP, c.AddressType, c.Address.Address)
	}
	return a, nil
}

func directionOf(attrs []sdp.Attribute, def string) string {
	for _, a := range attrs {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return def
}

// parseRTPMap reads "96 opus/48000/2".
func parseRTPMap(v string) (pt uint8, rate uint32, ok bool) {
	num, rest, ok := strings.Cut(v, " ")
	if !ok {
		return 0, 0, false
	}
	p, err := strconv.ParseUint(num, 10, 8)
	if err != nil || p > 127 {
		return 0, 0, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 {
		return 0, 0, false
	}
	r, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || r == 0 {
		return 0, 0, false
	}
	return uint8(p), uint32(r), true
}

// parseRTCPAttr reads RFC 3605 "a=rtcp:port [nettype addrtype address]".
func parseRTCPAttr(v string, def netip.Addr) (netip.AddrPort, error) {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: empty a=rtcp", ErrBadSDP)
	}
	port, err := strconv.ParseUint(f[0], 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: a=rtcp port %q", ErrBadSDP, f[0])
	}
	addr := def
	if len(f) >= 4 {
		if addr, err = netip.ParseAddr(f[3]); err != nil || addr.Zone() != "" {
			return netip.AddrPort{}, fmt.Errorf("%w: a=rtcp address %q", ErrBadSDP, f[3])
		}
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// rewrite says how to point a parsed SDP at the relay.
type rewrite struct {
	addr          netip.Addr // advertised relay address
	ports         []uint16   // RTP port per m= line; RTCP is the next one
	removeICE     bool
	replaceOrigin bool
	proto         string // replaces the m= transport when set
	// addPT lists per m= line a G.711 payload type to add to an offer so the
	// other party may pick it (transcoding); 255 means none.
	addPT []uint8
	// mapPT lists per m= line a payload type of an answer that the offerer
	// never offered, and the G.711 counterpart to show the offerer instead.
	mapPT [][2]uint8
}

// iceAttrs are the attributes that describe the party's own ICE agent. Once
// the relay's address replaces the party's, its candidates and credentials
// describe transports that no longer exist and would only send the other
// side's ICE agent chasing them.
var iceAttrs = map[string]bool{
	"candidate": true, "remote-candidates": true, "end-of-candidates": true,
	"ice-ufrag": true, "ice-pwd": true, "ice-options": true, "ice-lite": true,
	"ice-mismatch": true, "ice-pacing": true,
}

func filterAttrs(attrs []sdp.Attribute, removeICE bool) []sdp.Attribute {
	out := attrs[:0]
	for _, a := range attrs {
		if removeICE && iceAttrs[a.Key] {
			continue
		}
		// The relay gives every m= line its own ports, so a BUNDLE group
		// (all media on one port) no longer holds.
		if a.Key == "bundle-only" || (a.Key == "group" && strings.HasPrefix(a.Value, "BUNDLE")) {
			continue
		}
		out = append(out, a)
	}
	return out
}

func addrType(a netip.Addr) string {
	if a.Is4() {
		return "IP4"
	}
	return "IP6"
}

// setConn points a c= line at the relay unless it is a hold address.
func setConn(c *sdp.ConnectionInformation, relay netip.Addr) {
	if c == nil || c.Address == nil {
		return
	}
	if a, err := netip.ParseAddr(c.Address.Address); err == nil && a.IsUnspecified() {
		return
	}
	c.AddressType = addrType(relay)
	c.Address = &sdp.Address{Address: relay.String()}
}

// apply rewrites sd in place and marshals it.
func (rw *rewrite) apply(sd *sdp.SessionDescription, media []mediaInfo) ([]byte, error) {
	if rw.replaceOrigin {
		sd.Origin.AddressType = addrType(rw.addr)
		sd.Origin.UnicastAddress = rw.addr.String()
	}
	setConn(sd.ConnectionInformation, rw.addr)
	sd.Attributes = filterAttrs(sd.Attributes, rw.removeICE)
	for i, md := range sd.MediaDescriptions {
		mi := &media[i]
		md.Attributes = filterAttrs(md.Attributes, rw.removeICE)
		if mi.rejected {
			md.MediaName.Port.Value = 0
			continue
		}
		port := rw.ports[i]
		md.MediaName.Port = sdp.RangedPort{Value: int(port)}
		setConn(md.ConnectionInformation, rw.addr)
		if md.ConnectionInformation == nil && sd.ConnectionInformation == nil {
			md.ConnectionInformation = &sdp.ConnectionInformation{NetworkType: "IN"}
			setConn(md.ConnectionInformation, rw.addr)
		}
		if rw.proto != "" && mi.rtp {
			// The relay forwards SRTP opaquely; it cannot turn it into
			// plain RTP (or back), so only same-security changes such as
			// RTP/AVPF -> RTP/AVP are honoured.
			cur := strings.Join(md.MediaName.Protos, "/")
			if strings.Contains(cur, "SAVP") != strings.Contains(rw.proto, "SAVP") {
				return nil, fmt.Errorf("%w: transport %s -> %s needs SRTP termination", ErrUnsupported, cur, rw.proto)
			}
			md.MediaName.Protos = strings.Split(rw.proto, "/")
		}
		for j := range md.Attributes {
			a := &md.Attributes[j]
			if a.Key != "rtcp" {
				continue
			}
			v := strconv.Itoa(int(port) + 1)
			if f := strings.Fields(a.Value); len(f) >= 4 {
				v += " IN " + addrType(rw.addr) + " " + rw.addr.String()
			}
			a.Value = v
		}
		if i < len(rw.addPT) && rw.addPT[i] != 255 {
			pt := rw.addPT[i]
			md.MediaName.Formats = append(md.MediaName.Formats, strconv.Itoa(int(pt)))
			md.Attributes = append(md.Attributes, sdp.NewAttribute("rtpmap", g711Map(pt)))
		}
		if i < len(rw.mapPT) && rw.mapPT[i][0] != rw.mapPT[i][1] {
			from, to := strconv.Itoa(int(rw.mapPT[i][0])), strconv.Itoa(int(rw.mapPT[i][1]))
			for k, f := range md.MediaName.Formats {
				if f == from {
					md.MediaName.Formats[k] = to
				}
			}
			for j := range md.Attributes {
				a := &md.Attributes[j]
				if (a.Key == "rtpmap" || a.Key == "fmtp") && strings.HasPrefix(a.Value, from+" ") {
					if a.Key == "rtpmap" {
						a.Value = g711Map(rw.mapPT[i][1])
					} else {
						a.Value = to + a.Value[len(from):]
					}
				}
			}
		}
	}
	out, err := sd.Marshal()
	if err != nil {
		return nil, fmt.Errorf("%w: marshal: %v", ErrBadSDP, err)
	}
	return out, nil
}

func g711Map(pt uint8) string {
	if pt == ptPCMA {
		return "8 PCMA/8000"
	}
	return "0 PCMU/8000"
}
