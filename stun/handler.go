package stun

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/pion/stun/v3"
)

// This file turns one request into one response. It is the hot path: it
// runs for every datagram and must not allocate. Everything it writes goes
// into the calling reader's worker, which is never shared.

// Roles of the four RFC 5780 sockets. Bit 1 means "alternate IP", bit 0
// "alternate port", so a CHANGE-REQUEST is an XOR of the receiving role.
const (
	rolePrimary = 0 // A1:P1
	roleAltPort = 1 // A1:P2
	roleAltIP   = 2 // A2:P1
	roleAltBoth = 3 // A2:P2
)

// quad is the set of four sockets of an RFC 5780 server, indexed by role.
type quad struct {
	socks [4]*udpSock
}

// origin is where a request arrived.
type origin struct {
	local  netip.AddrPort // the receiving socket's address; invalid if unknown
	quad   *quad          // nil: no RFC 5780 on this socket
	role   int
	stream bool // TCP or TLS
}

// Fixed reason phrases; package-level so that no response builds a string.
var (
	reasonBadRequest = []byte("Bad Request")
	reasonUnknown    = []byte("Unknown Attribute")
)

// worker is the per-goroutine state of a reader: the request being parsed,
// the response being built, and the read buffer.
type worker struct {
	req     request
	msg     stun.Message
	unknown stun.UnknownAttributes
	buf     []byte
}

// maxDatagram is the read buffer size. Larger datagrams are truncated by the
// kernel and then fail the length check, so they are dropped as NotSTUN.
const maxDatagram = 2048

func newWorker() *worker {
	w := &worker{buf: make([]byte, maxDatagram)}
	w.msg.Raw = make([]byte, 0, 256)
	w.msg.Attributes = make(stun.Attributes, 0, 16)
	w.unknown = make(stun.UnknownAttributes, 0, maxUnknown)
	return w
}

// answer processes one message b from src that arrived as o describes. It
// returns the bytes to send, the destination, and the role of the socket
// to send from; ok is false when nothing is to be sent. out aliases w.
func (s *Server) answer(w *worker, b []byte, src netip.AddrPort, o *origin) (out []byte, dst netip.AddrPort, from int, ok bool) {
	r := &w.req
	if d := parse(b, r, o.stream); d != dropNone {
		s.stats.drop(d)
		s.debug("dropped", d, src)
		return nil, dst, 0, false
	}
	if r.indication {
		s.stats.indications.Add(1)
		return nil, dst, 0, false
	}
	s.stats.requests.Add(1)
	if r.classic {
		s.stats.classic.Add(1)
	}
	if !src.IsValid() || src.Port() == 0 {
		s.stats.drop(dropNotSTUN)
		return nil, dst, 0, false
	}
	if s.limit != nil && !s.limit.allow(src.Addr().Unmap()) {
		s.stats.drop(dropRateLimited)
		s.debug("dropped", dropRateLimited, src)
		return nil, dst, 0, false
	}

	change := r.changeIP || r.changePort
	switch {
	case r.nUnknown > 0:
		return s.errorResponse(w, 420, src, o), src, o.role, true
	case change && o.quad == nil:
		// RFC 5780 §6.1: a server without an alternate address answers
		// CHANGE-REQUEST as an unknown attribute.
		r.nUnknown = 1
		r.unknownTypes[0] = stun.AttrChangeRequest
		return s.errorResponse(w, 420, src, o), src, o.role, true
	case r.badAttr,
		o.stream && (change || r.hasRespPort), // a TCP response has only one way back
		r.hasRespPort && r.respPort == 0:
		return s.errorResponse(w, 400, src, o), src, o.role, true
	}

	from = o.role
	if r.changeIP {
		from ^= roleAltIP
	}
	if r.changePort {
		from ^= roleAltPort
	}
	dst = src
	if r.hasRespPort {
		dst = netip.AddrPortFrom(src.Addr(), r.respPort)
	}
	s.stats.success.Add(1)
	return s.success(w, src, o, from), dst, from, true
}

// success builds a Binding success response. from is the role of the
// socket that will send it.
func (s *Server) success(w *worker, src netip.AddrPort, o *origin, from int) []byte {
	r, m := &w.req, &w.msg
	m.Reset()
	m.Type = stun.BindingSuccess
	m.TransactionID = r.txid
	m.WriteHeader()

	sent := o.local // RESPONSE-ORIGIN / SOURCE-ADDRESS
	var other netip.AddrPort
	if o.quad != nil {
		sent = o.quad.socks[from].local
		other = o.quad.socks[o.role^roleAltBoth].local
	}
	if r.classic {
		// RFC 8489 §12 and RFC 3489 §11.2: classic clients read
		// MAPPED-ADDRESS, and use CHANGED-ADDRESS to find the second
		// server address for their NAT tests.
		_ = AddrAttr{stun.AttrMappedAddress, src}.AddTo(m)
		if o.quad != nil {
			_ = AddrAttr{attrSourceAddress, sent}.AddTo(m)
			_ = AddrAttr{attrChangedAddress, other}.AddTo(m)
		}
		// The classic transaction ID is 16 bytes; its first four sit
		// where the magic cookie would be.
		copy(m.Raw[4:8], r.cookie[:])
		return m.Raw
	}
	_ = XORAddrAttr{stun.AttrXORMappedAddress, src}.AddTo(m)
	if sent.IsValid() && !sent.Addr().IsUnspecified() {
		_ = AddrAttr{stun.AttrResponseOrigin, sent}.AddTo(m)
	}
	if o.quad != nil {
		_ = AddrAttr{stun.AttrOtherAddress, other}.AddTo(m)
	}
	s.finish(m)
	return m.Raw
}

// errorResponse builds a Binding error response with code 400 or 420.
func (s *Server) errorResponse(w *worker, code int, src netip.AddrPort, o *origin) []byte {
	r, m := &w.req, &w.msg
	m.Reset()
	m.Type = stun.BindingError
	m.TransactionID = r.txid
	m.WriteHeader()
	if code == 420 {
		s.stats.unknownAttr.Add(1)
		_ = stun.ErrorCodeAttribute{Code: stun.CodeUnknownAttribute, Reason: reasonUnknown}.AddTo(m)
		w.unknown = w.unknown[:0]
		for i := range min(r.nUnknown, maxUnknown) {
			w.unknown = append(w.unknown, r.unknownTypes[i])
		}
		_ = w.unknown.AddTo(m)
	} else {
		s.stats.badRequest.Add(1)
		_ = stun.ErrorCodeAttribute{Code: stun.CodeBadRequest, Reason: reasonBadRequest}.AddTo(m)
	}
	s.debugCode(code, src, r)
	if r.classic {
		copy(m.Raw[4:8], r.cookie[:])
		return m.Raw
	}
	s.finish(m)
	return m.Raw
}

// finish appends SOFTWARE and FINGERPRINT, which RFC 8489 clients accept
// and which let clients that multiplex STUN with media recognise it.
func (s *Server) finish(m *stun.Message) {
	if s.software != nil {
		m.Add(stun.AttrSoftware, s.software)
	}
	_ = stun.Fingerprint.AddTo(m)
}

// debug logs a dropped message. The Enabled check keeps the hot path free
// of the allocations slog's variadic arguments would cost.
func (s *Server) debug(msg string, d dropReason, src netip.AddrPort) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	s.log.Debug(msg, "reason", d.String(), "src", src)
}

func (s *Server) debugCode(code int, src netip.AddrPort, r *request) {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	s.log.Debug("error response", "code", code, "src", src,
		"unknown", r.unknownTypes[:min(r.nUnknown, maxUnknown)], "change", r.hasChange, "responsePort", r.hasRespPort)
}

func (d dropReason) String() string {
	switch d {
	case dropNotSTUN:
		return "not-stun"
	case dropMalformed:
		return "malformed"
	case dropFingerprint:
		return "bad-fingerprint"
	case dropNotRequest:
		return "not-request"
	case dropMethod:
		return "method"
	case dropRateLimited:
		return "rate-limited"
	case dropWriteFailed:
		return "write-failed"
	}
	return "none"
}
