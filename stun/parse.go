package stun

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/pion/stun/v3"
)

// The server parses requests with its own single pass over the bytes rather
// than with stun.Message.Decode: Decode rejects RFC 3489 messages (no magic
// cookie), which the server must still answer, and it formats an error
// string for every bad datagram, which would make junk traffic allocate. The
// scan below never allocates and never reads past the datagram; it is fuzzed
// in parse_fuzz_test.go.

// dropReason says why a datagram was not answered. Each has a counter in
// Stats.Dropped.
type dropReason uint8

const (
	dropNone        dropReason = iota
	dropNotSTUN                // too short, wrong leading bits, length mismatch
	dropMalformed              // header fine, attributes do not add up
	dropFingerprint            // FINGERPRINT present but wrong or misplaced
	dropNotRequest             // a response: we never sent a request
	dropMethod                 // a request for a method other than Binding
	dropRateLimited            // source over its rate limit
	dropWriteFailed            // the response could not be sent
)

// maxUnknown caps how many unknown attribute types a 420 response lists. The
// cap keeps the error response from growing with the request (a reflection
// amplifier); clients only need the first to learn what is unsupported.
const maxUnknown = 8

// fingerprintXOR is the constant RFC 8489 §14.7 XORs into the CRC-32.
const fingerprintXOR = 0x5354554e

// request is what the server needs from a Binding request. It is reused by
// each reader goroutine, so parse resets every field.
type request struct {
	classic    bool // RFC 3489 client: no magic cookie
	indication bool // Binding indication (keep-alive): never answered

	txid [stun.TransactionIDSize]byte
	// cookie holds bytes 4..8 of the header: the magic cookie, or for a
	// classic client the first part of its 16-byte transaction ID, which
	// the response must echo.
	cookie [4]byte

	hasChange    bool
	changeIP     bool
	changePort   bool
	hasRespPort  bool
	respPort     uint16
	badAttr      bool // a known attribute with a malformed value: 400
	fingerprint  bool // request carried a valid FINGERPRINT
	nUnknown     int
	unknownTypes [maxUnknown]stun.AttrType
}

// known reports whether the server understands a comprehension-required
// attribute. Attributes of ICE connectivity checks and of long-term
// credentials are accepted and ignored: this server does not authenticate
// Binding requests, and refusing them would break ICE agents that use it.
func known(t stun.AttrType) bool {
	switch t {
	case stun.AttrChangeRequest, stun.AttrResponsePort,
		stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256,
		stun.AttrRealm, stun.AttrNonce, stun.AttrUserhash,
		stun.AttrPriority, stun.AttrUseCandidate:
		return true
	}
	return false
}

// parse checks that b is one complete, well-formed STUN Binding request or
// indication and fills r. stream is true for TCP/TLS, where RFC 3489
// messages never occur.
func parse(b []byte, r *request, stream bool) dropReason {
	*r = request{}
	if len(b) < headerSize || b[0]&0xC0 != 0 {
		return dropNotSTUN
	}
	length := int(binary.BigEndian.Uint16(b[2:4]))
	if length%4 != 0 || headerSize+length != len(b) {
		return dropNotSTUN
	}
	r.classic = binary.BigEndian.Uint32(b[4:8]) != magicCookie
	if r.classic && stream {
		return dropNotSTUN
	}
	var mt stun.MessageType
	mt.ReadValue(binary.BigEndian.Uint16(b[0:2]))
	copy(r.cookie[:], b[4:8])
	copy(r.txid[:], b[8:20])

	if drop := r.scanAttrs(b); drop != dropNone {
		return drop
	}

	switch {
	case mt.Method != stun.MethodBinding:
		if r.classic {
			// Without the cookie and the Binding method there is
			// nothing left that says this is STUN at all.
			return dropNotSTUN
		}
		if mt.Class == stun.ClassRequest {
			return dropMethod
		}
		return dropNotRequest
	case mt.Class == stun.ClassIndication && !r.classic:
		r.indication = true
		return dropNone
	case mt.Class != stun.ClassRequest:
		if r.classic {
			return dropNotSTUN
		}
		return dropNotRequest
	}
	return dropNone
}

// scanAttrs walks the attribute TLVs of b, whose header has been checked.
func (r *request) scanAttrs(b []byte) dropReason {
	off := headerSize
	for off < len(b) {
		if len(b)-off < 4 {
			return dropMalformed
		}
		t := stun.AttrType(binary.BigEndian.Uint16(b[off : off+2]))
		n := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
		padded := (n + 3) &^ 3
		if len(b)-off-4 < padded {
			return dropMalformed
		}
		v := b[off+4 : off+4+n]

		if t == stun.AttrFingerprint {
			// FINGERPRINT must be last and must match, or this is some
			// other protocol that happens to look like STUN (RFC 8489
			// §7.3 says such messages are discarded, not answered).
			if r.classic || n != 4 || off+8 != len(b) {
				return dropFingerprint
			}
			want := crc32.ChecksumIEEE(b[:off]) ^ fingerprintXOR
			if binary.BigEndian.Uint32(v) != want {
				return dropFingerprint
			}
			r.fingerprint = true
			return dropNone
		}

		switch {
		case t == stun.AttrChangeRequest:
			if n != 4 {
				r.badAttr = true
				break
			}
			r.hasChange = true
			r.changeIP = v[3]&changeIPFlag != 0
			r.changePort = v[3]&changePortFlag != 0
		case t == stun.AttrResponsePort && !r.classic:
			if n != 4 {
				r.badAttr = true
				break
			}
			r.hasRespPort = true
			r.respPort = binary.BigEndian.Uint16(v[:2])
		case t.Required() && !known(t):
			if r.nUnknown < maxUnknown {
				r.unknownTypes[r.nUnknown] = t
			}
			r.nUnknown++
		}
		off += 4 + padded
	}
	return dropNone
}
