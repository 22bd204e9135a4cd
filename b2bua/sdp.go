package b2bua

import (
	"bytes"
	"errors"
	"fmt"
)

// errBadSDP reports a session description the B2BUA refuses to pass on.
var errBadSDP = errors.New("b2bua: malformed SDP")

// checkSDP does the structural checks a B2BUA needs before passing a
// session description on (RFC 4566): v=0 first, o=, s=, a connection
// line for every stream, m= lines well formed. It does not judge codecs:
// that is the peers' business.
func checkSDP(b []byte) error {
	if len(b) == 0 {
		return fmt.Errorf("%w: empty", errBadSDP)
	}
	if len(b) > 64<<10 {
		return fmt.Errorf("%w: too long", errBadSDP)
	}
	var (
		n          int
		sessionC   bool
		media      int
		mediaC     bool
		haveO      bool
		haveS      bool
		lineNumber int
	)
	for line := range lines(b) {
		lineNumber++
		if len(line) == 0 {
			continue
		}
		if len(line) < 2 || line[1] != '=' {
			return fmt.Errorf("%w: line %d is not type=value", errBadSDP, lineNumber)
		}
		for _, c := range line {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return fmt.Errorf("%w: control character on line %d", errBadSDP, lineNumber)
			}
		}
		n++
		if n == 1 && !bytes.Equal(line, []byte("v=0")) {
			return fmt.Errorf("%w: does not start with v=0", errBadSDP)
		}
		switch line[0] {
		case 'o':
			if len(bytes.Fields(line[2:])) != 6 {
				return fmt.Errorf("%w: bad o= line", errBadSDP)
			}
			haveO = true
		case 's':
			haveS = true
		case 'c':
			f := bytes.Fields(line[2:])
			if len(f) != 3 || !bytes.Equal(f[0], []byte("IN")) {
				return fmt.Errorf("%w: bad c= line", errBadSDP)
			}
			if media == 0 {
				sessionC = true
			} else {
				mediaC = true
			}
		case 'm':
			if media > 0 && !sessionC && !mediaC {
				return fmt.Errorf("%w: stream %d has no connection address", errBadSDP, media)
			}
			f := bytes.Fields(line[2:])
			if len(f) < 4 {
				return fmt.Errorf("%w: bad m= line", errBadSDP)
			}
			port := f[1]
			if i := bytes.IndexByte(port, '/'); i >= 0 {
				port = port[:i]
			}
			p := 0
			for _, c := range port {
				if c < '0' || c > '9' {
					return fmt.Errorf("%w: bad port in m= line", errBadSDP)
				}
				p = p*10 + int(c-'0')
				if p > 65535 {
					return fmt.Errorf("%w: bad port in m= line", errBadSDP)
				}
			}
			media++
			mediaC = false
		}
	}
	if !haveO || !haveS {
		return fmt.Errorf("%w: missing o= or s=", errBadSDP)
	}
	if media == 0 {
		return fmt.Errorf("%w: no m= line", errBadSDP)
	}
	if !sessionC && !mediaC {
		return fmt.Errorf("%w: stream %d has no connection address", errBadSDP, media)
	}
	return nil
}

// lines yields the lines of b without their CRLF or LF ending.
func lines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			var line []byte
			if i < 0 {
				line, b = b, nil
			} else {
				line, b = b[:i], b[i+1:]
			}
			line = bytes.TrimSuffix(line, []byte("\r"))
			if !yield(line) {
				return
			}
		}
	}
}

// webrtcAttrs are the attributes only WebRTC endpoints use: ICE (RFC
// 8839), DTLS-SRTP (RFC 8842), BUNDLE and RTP header extensions, SSRC
// signalling, feedback. A telephone carrier ignores them at best; they
// make a browser's offer several kilobytes long.
var webrtcAttrs = [][]byte{
	[]byte("a=candidate:"), []byte("a=end-of-candidates"), []byte("a=ice-ufrag:"), []byte("a=ice-pwd:"),
	[]byte("a=ice-options:"), []byte("a=ice-lite"), []byte("a=fingerprint:"), []byte("a=setup:"),
	[]byte("a=tls-id:"), []byte("a=ssrc:"), []byte("a=ssrc-group:"), []byte("a=msid:"),
	[]byte("a=msid-semantic:"), []byte("a=extmap:"), []byte("a=extmap-allow-mixed"), []byte("a=rtcp-fb:"),
	[]byte("a=group:BUNDLE"), []byte("a=mid:"), []byte("a=rtcp-rsize"), []byte("a=identity:"),
}

// StripWebRTC returns sdp without the WebRTC-only attributes (ICE,
// DTLS-SRTP fingerprints and roles, BUNDLE, SSRC and MSID signalling,
// header extensions, RTCP feedback). Other lines are kept byte for byte.
func StripWebRTC(sdp []byte) []byte {
	out := make([]byte, 0, len(sdp))
	for line := range lines(sdp) {
		drop := false
		for _, p := range webrtcAttrs {
			if bytes.HasPrefix(line, p) {
				drop = true
				break
			}
		}
		if !drop && len(line) > 0 {
			out = append(out, line...)
			out = append(out, '\r', '\n')
		}
	}
	return out
}
