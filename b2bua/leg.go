package b2bua

import (
	"strconv"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"
)

// leg is one side's dialog state. The A-leg is the caller's dialog, where
// the B2BUA is the UAS; the B-leg the callee's, where it is the UAC.
type leg struct {
	mu sync.Mutex

	callID    string
	localTag  string
	remoteTag string
	// localURI and remoteURI are the From and To of requests we send on
	// this leg.
	localURI, remoteURI sip.Uri
	localName           string
	// remoteTarget is the peer's Contact.
	remoteTarget sip.Uri
	routeSet     []sip.Uri
	// dest, if not empty, is where every request of this leg goes
	// ("ip:port"), over transport.
	dest      string
	transport string
	contact   sip.Uri

	localSeq  uint32
	remoteSeq uint32

	// inviting is set while a re-INVITE or UPDATE is in progress on this
	// leg, in either direction (glare gets 491).
	inviting bool
	// lastSDP is the last session description we sent on this leg.
	lastSDP []byte
	// rseq is the highest RSeq acknowledged with PRACK (B-leg).
	rseq uint32
	// earlyAnswer is the SDP of this B-leg's provisional responses as the
	// caller got it (rewritten when anchored).
	earlyAnswer []byte
}

// matches tells whether an in-dialog request belongs to the leg's dialog
// (RFC 3261 §12.2.2): its From tag is the peer's and its To tag ours. A
// CANCEL carries the INVITE's To, without our tag.
func (l *leg) matches(req *sip.Request) bool {
	from, to := req.From(), req.To()
	if from == nil || to == nil {
		return false
	}
	ft, _ := from.Params.Get("tag")
	tt, _ := to.Params.Get("tag")
	l.mu.Lock()
	defer l.mu.Unlock()
	if req.Method == sip.CANCEL && tt == "" {
		return ft == l.remoteTag
	}
	return ft == l.remoteTag && tt == l.localTag
}

// nextSeq returns the CSeq for a new request.
func (l *leg) nextSeq() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.localSeq++
	return l.localSeq
}

// request builds an in-dialog request on the leg (RFC 3261 §12.2.1.1).
// Via is added when it is sent.
func (l *leg) request(method sip.RequestMethod, seq uint32, body []byte) *sip.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	req := sip.NewRequest(method, *l.remoteTarget.Clone())
	from := &sip.FromHeader{DisplayName: l.localName, Address: *l.localURI.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	to := &sip.ToHeader{Address: *l.remoteURI.Clone(), Params: sip.NewParams()}
	if l.remoteTag != "" {
		to.Params.Add("tag", l.remoteTag)
	}
	cid := sip.CallIDHeader(l.callID)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: seq, MethodName: method})
	req.AppendHeader(&mf)
	for _, r := range l.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	if method == sip.INVITE || method == sip.UPDATE {
		req.AppendHeader(&sip.ContactHeader{Address: *l.contact.Clone()})
	}
	if len(body) > 0 {
		ct := sip.ContentTypeHeader("application/sdp")
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	if l.dest != "" {
		req.SetDestination(l.dest)
	}
	if l.transport != "" {
		req.SetTransport(l.transport)
	}
	return req
}

// routeSetFrom returns the route set of a dialog from the Record-Route
// headers of msg: in order for the UAS, reversed for the UAC.
func routeSetFrom(msg sip.Message, reverse bool) []sip.Uri {
	hs := msg.GetHeaders("Record-Route")
	var out []sip.Uri
	for _, h := range hs {
		switch rr := h.(type) {
		case *sip.RecordRouteHeader:
			out = append(out, *rr.Address.Clone())
		default:
			// A header sipgo kept unparsed: parse its comma-separated values.
			for _, v := range splitList(h.Value()) {
				var u sip.Uri
				if _, err := sip.ParseAddressValue(v, &u, nil); err == nil {
					out = append(out, u)
				}
			}
		}
	}
	if reverse {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out
}

// splitList splits a header value at commas outside <> and quotes.
func splitList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '"':
			quoted = !quoted
		case '<':
			if !quoted {
				depth++
			}
		case '>':
			if !quoted && depth > 0 {
				depth--
			}
		case ',':
			if !quoted && depth == 0 {
				out = append(out, strings.TrimSpace(v[start:i]))
				start = i + 1
			}
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// hasOption tells whether a Supported/Require-style header of msg lists
// the option tag.
func hasOption(msg sip.Message, header, tag string) bool {
	for _, h := range msg.GetHeaders(header) {
		for _, v := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), tag) {
				return true
			}
		}
	}
	return false
}

// headerUint parses a numeric header, e.g. RSeq.
func headerUint(msg sip.Message, name string) (uint32, bool) {
	hs := msg.GetHeaders(name)
	if len(hs) == 0 {
		return 0, false
	}
	h := hs[0]
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, false
	}
	return uint32(n), true
}

// isSDP tells whether msg carries a session description.
func isSDP(msg sip.Message) bool {
	if len(msg.Body()) == 0 {
		return false
	}
	cts := msg.GetHeaders("Content-Type")
	if len(cts) == 0 {
		return true // a body without a type is SDP in practice
	}
	v := strings.ToLower(strings.TrimSpace(cts[0].Value()))
	return strings.HasPrefix(v, "application/sdp")
}
