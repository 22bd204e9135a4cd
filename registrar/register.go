package registrar

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/store"
)

// maxPath bounds the Path vector accepted from one REGISTER.
const maxPath = 32

// ServeRegister handles a REGISTER request (RFC 3261 §10.3). Mount it on a
// sipgo server:
//
//	srv.OnRegister(reg.ServeRegister)
//
// Every answer, including errors, is sent on tx. It never panics on
// malformed input: the client gets 400.
func (r *Registrar) ServeRegister(req *sip.Request, tx sip.ServerTransaction) {
	res := r.Handle(req, localAddrOf(tx))
	if err := tx.Respond(res); err != nil {
		r.log.Debug("respond to REGISTER", "error", err)
	}
}

// localAddrOf returns the local socket a request arrived on, when sipgo's
// transaction knows it.
func localAddrOf(tx sip.ServerTransaction) netip.AddrPort {
	c, ok := tx.(interface{ Connection() sip.Connection })
	if !ok {
		return netip.AddrPort{}
	}
	conn := c.Connection()
	if conn == nil {
		return netip.AddrPort{}
	}
	return addrPortOf(conn.LocalAddr())
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Handle processes a REGISTER that arrived on the local socket local and
// returns the response to send. ServeRegister is Handle plus sending; use
// Handle directly to add headers or to answer through another layer.
func (r *Registrar) Handle(req *sip.Request, local netip.AddrPort) *sip.Response {
	r.inflight.RLock()
	defer r.inflight.RUnlock()
	if r.closed.Load() {
		res := sip.NewResponseFromRequest(req, sip.StatusServiceUnavailable, "Shutting Down", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		return res
	}
	res := r.handle(req, local)
	if res.StatusCode >= 300 && res.StatusCode != sip.StatusUnauthorized {
		r.stats.rejected.Add(1)
		if res.StatusCode == sip.StatusBadRequest {
			r.stats.malformed.Add(1)
		}
	}
	fixVia(req, res)
	return res
}

func (r *Registrar) reply(req *sip.Request, code int, reason string) *sip.Response {
	return sip.NewResponseFromRequest(req, code, reason, nil)
}

func (r *Registrar) handle(req *sip.Request, local netip.AddrPort) *sip.Response {
	if req.Method != sip.REGISTER {
		return r.reply(req, sip.StatusMethodNotAllowed, "Method Not Allowed")
	}
	to, callID, cseq := req.To(), req.CallID(), req.CSeq()
	if to == nil || callID == nil || cseq == nil || req.From() == nil || req.Via() == nil || *callID == "" {
		return r.reply(req, sip.StatusBadRequest, "Missing Mandatory Header")
	}
	if cseq.MethodName != sip.REGISTER {
		return r.reply(req, sip.StatusBadRequest, "CSeq Method Mismatch")
	}

	// Step 1: are we responsible for the Request-URI's domain?
	if !r.servesDomain(req.Recipient.Host) {
		return r.reply(req, sip.StatusNotFound, "Domain Not Served")
	}
	// Step 2: extensions the client requires of us.
	if unsupported := r.unsupported(tokens(req, "Require")); len(unsupported) > 0 {
		res := r.reply(req, sip.StatusBadExtension, "Bad Extension")
		res.AppendHeader(sip.NewHeader("Unsupported", strings.Join(unsupported, ", ")))
		return res
	}
	// Step 5 before 3: the AOR must be parseable to answer anything
	// sensible; its domain is checked after authentication so that an
	// unauthenticated client learns nothing about which users exist.
	aor, err := aorOf(&to.Address)
	if err != nil {
		return r.reply(req, sip.StatusBadRequest, "Bad To URI")
	}
	// Steps 3 and 4: authenticate, and authorize the user for this AOR.
	if !r.cfg.Insecure {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cred, res := r.cfg.Auth.Authenticate(ctx, req, false)
		cancel()
		if res != nil {
			return res
		}
		if !r.authorized(cred.Username, aor) {
			return r.reply(req, sip.StatusForbidden, "Not Allowed To Register This AOR")
		}
	}
	if !r.servesDomain(aorHost(aor)) {
		return r.reply(req, sip.StatusNotFound, "Not Found")
	}

	supported := tokens(req, "Supported", "k")
	path := headerValues(req, "Path")
	if len(path) > maxPath {
		return r.reply(req, sip.StatusBadRequest, "Path Too Long")
	}
	for _, p := range path {
		if !strings.HasPrefix(p, "<") || !strings.Contains(p, ">") || len(p) > 1024 {
			return r.reply(req, sip.StatusBadRequest, "Malformed Path")
		}
	}
	pathSupported := hasToken(supported, "path")
	if len(path) > 0 && !pathSupported && r.cfg.StrictPath {
		res := r.reply(req, sip.StatusBadExtension, "Bad Extension")
		res.AppendHeader(sip.NewHeader("Unsupported", "path"))
		return res
	}

	// Step 6: the contacts and their expiries.
	var hdrExpires *uint32
	if vs := headerValues(req, "Expires"); len(vs) > 0 {
		v, err := parseDelta(vs[0])
		if err != nil || len(vs) > 1 {
			return r.reply(req, sip.StatusBadRequest, "Bad Expires")
		}
		hdrExpires = &v
	}
	contacts := contactHeaders(req)
	now := time.Now()
	src := sourceAddr(req)
	transport := strings.ToLower(req.Transport())
	natType := ""
	if h := req.GetHeader(r.cfg.NATHeader); h != nil {
		if v := strings.ToLower(strings.TrimSpace(h.Value())); validNATType(v) {
			natType = v
		}
	}
	ua := ""
	if h := req.GetHeader("User-Agent"); h != nil {
		ua = h.Value()
		if len(ua) > 256 {
			ua = ua[:256]
		}
		ua = strings.ToValidUTF8(strings.ReplaceAll(ua, "\x00", ""), "\uFFFD")
	}

	if len(contacts) == 0 {
		// A query: list the bindings.
		r.stats.queries.Add(1)
		return r.ok(req, aor, now, path, pathSupported, false)
	}

	wildcard := false
	for _, c := range contacts {
		if c.Address.Wildcard {
			wildcard = true
		}
	}
	var upd update
	if wildcard {
		if len(contacts) != 1 || hdrExpires == nil || *hdrExpires != 0 {
			return r.reply(req, sip.StatusBadRequest, "Wildcard Contact Needs Expires: 0")
		}
		upd.removeAll = true
	} else {
		for _, c := range contacts {
			nc, res := r.newContact(req, c, hdrExpires)
			if res != nil {
				return res
			}
			upd.contacts = append(upd.contacts, nc)
		}
	}
	proto := store.Binding{
		AOR: aor, Received: src, Transport: transport, LocalAddr: local, Path: path,
		CallID: string(*callID), CSeq: cseq.SeqNo, UserAgent: ua, NATType: natType, Node: r.cfg.Node,
	}
	if res := r.apply(req, &upd, proto, now); res != nil {
		return res
	}
	r.stats.registrations.Add(1)
	outbound := false
	for _, c := range upd.contacts {
		if c.regID != 0 && c.instance != "" && hasToken(supported, "outbound") {
			outbound = true
		}
	}
	return r.ok(req, aor, now, path, pathSupported, outbound)
}

func contactHeaders(req *sip.Request) []*sip.ContactHeader {
	hs := req.GetHeaders("Contact")
	out := make([]*sip.ContactHeader, 0, len(hs))
	for _, h := range hs {
		if c, ok := h.(*sip.ContactHeader); ok {
			out = append(out, c)
		}
	}
	return out
}

func (r *Registrar) servesDomain(host string) bool {
	if len(r.cfg.Domains) == 0 {
		return true
	}
	host = strings.ToLower(strings.Trim(host, "[]"))
	for _, d := range r.cfg.Domains {
		if strings.Trim(d, "[]") == host {
			return true
		}
	}
	return false
}

// unsupported returns the required option tags we do not support.
func (r *Registrar) unsupported(required []string) []string {
	var out []string
	for _, t := range required {
		switch t {
		case "path", "outbound":
		default:
			out = append(out, t)
		}
	}
	return out
}

func (r *Registrar) authorized(username, aor string) bool {
	if r.cfg.Authorize != nil {
		return r.cfg.Authorize(username, aor)
	}
	return aorUser(aor) == username
}

// contact is one Contact of a REGISTER, checked.
type contact struct {
	uri      string
	expires  time.Duration
	q        int
	instance string
	regID    uint32
}

func (c contact) key() string {
	b := store.Binding{Contact: c.uri, Instance: c.instance, RegID: c.regID}
	return b.Key()
}

func (r *Registrar) newContact(req *sip.Request, h *sip.ContactHeader, hdrExpires *uint32) (contact, *sip.Response) {
	var c contact
	scheme := strings.ToLower(h.Address.Scheme)
	if (scheme != "sip" && scheme != "sips") || h.Address.Host == "" {
		return c, r.reply(req, sip.StatusBadRequest, "Unsupported Contact URI")
	}
	c.uri = h.Address.String()
	if len(c.uri) > 1024 {
		return c, r.reply(req, sip.StatusBadRequest, "Contact Too Long")
	}
	secs := uint32(r.cfg.DefaultExpires / time.Second)
	if hdrExpires != nil {
		secs = *hdrExpires
	}
	if v, ok := h.Params.Get("expires"); ok {
		e, err := parseDelta(v)
		if err != nil {
			return c, r.reply(req, sip.StatusBadRequest, "Bad Contact Expires")
		}
		secs = e
	}
	c.expires = time.Duration(secs) * time.Second
	if secs != 0 && c.expires < r.cfg.MinExpires {
		res := r.reply(req, sip.StatusIntervalToBrief, "Interval Too Brief")
		res.AppendHeader(sip.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires/time.Second))))
		return c, res
	}
	if c.expires > r.cfg.MaxExpires {
		c.expires = r.cfg.MaxExpires
	}
	c.q = 1000
	if v, ok := h.Params.Get("q"); ok {
		q, ok := parseQ(v)
		if !ok {
			return c, r.reply(req, sip.StatusBadRequest, "Bad q-value")
		}
		c.q = q
	}
	if v, ok := h.Params.Get("+sip.instance"); ok {
		c.instance = strings.Trim(v, `"`)
		if len(c.instance) > 256 || c.instance == "" {
			return c, r.reply(req, sip.StatusBadRequest, "Bad +sip.instance")
		}
		if v, ok := h.Params.Get("reg-id"); ok {
			id, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || id == 0 {
				return c, r.reply(req, sip.StatusBadRequest, "Bad reg-id")
			}
			c.regID = uint32(id)
		}
	}
	return c, nil
}

// update is the contact part of a REGISTER.
type update struct {
	removeAll bool
	contacts  []contact
}

// apply performs step 7 of RFC 3261 §10.3 for one AOR atomically: every
// contact's Call-ID/CSeq check passes and the AOR stays within MaxContacts,
// or nothing changes.
func (r *Registrar) apply(req *sip.Request, upd *update, proto store.Binding, now time.Time) *sip.Response {
	if r.cfg.Persistence != WriteThrough {
		var res *sip.Response
		r.table.update(proto.AOR, now, func(cur []store.Binding) ([]store.Binding, []change, bool) {
			var next []store.Binding
			var changes []change
			next, changes, res = r.compute(req, upd, proto, cur, now)
			return next, changes, res == nil
		})
		return res
	}
	// Write-through: the store write happens outside the lock, so commit
	// checks that nobody changed the AOR meanwhile, and a lost race
	// recomputes from the new state.
	for attempt := 0; ; attempt++ {
		cur, gen := r.table.snapshot(proto.AOR, now)
		next, changes, res := r.compute(req, upd, proto, cur, now)
		if res != nil {
			return res
		}
		var ups []store.Binding
		var dels []store.BindingKey
		for _, c := range changes {
			if c.kind == Removed {
				dels = append(dels, c.b.ID())
			} else {
				ups = append(ups, c.b)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.pers.writeThrough(ctx, ups, dels)
		cancel()
		if err != nil {
			r.log.Warn("write-through failed", "aor", proto.AOR, "error", err)
			res := r.reply(req, sip.StatusInternalServerError, "Location Store Unavailable")
			res.AppendHeader(sip.NewHeader("Retry-After", "5"))
			return res
		}
		if r.table.commit(proto.AOR, gen, true, next, changes, now) {
			return nil
		}
		if attempt >= 10 {
			res := r.reply(req, sip.StatusInternalServerError, "Concurrent Update")
			res.AppendHeader(sip.NewHeader("Retry-After", "1"))
			return res
		}
	}
}

// compute returns the AOR's bindings after the update and the changes that
// lead there, or the error response that aborts it.
func (r *Registrar) compute(req *sip.Request, upd *update, proto store.Binding, cur []store.Binding, now time.Time) ([]store.Binding, []change, *sip.Response) {
	var changes []change
	if upd.removeAll {
		for _, b := range cur {
			if b.CallID == proto.CallID && proto.CSeq <= b.CSeq {
				return nil, nil, r.reply(req, sip.StatusBadRequest, "Invalid CSeq Number")
			}
			changes = append(changes, change{kind: Removed, b: b, reason: "unregistered"})
		}
		return nil, changes, nil
	}
	next := slices.Clone(cur)
	for _, c := range upd.contacts {
		key := c.key()
		i := slices.IndexFunc(next, func(b store.Binding) bool { return b.Key() == key })
		if i >= 0 {
			old := next[i]
			if old.CallID == proto.CallID && proto.CSeq <= old.CSeq {
				return nil, nil, r.reply(req, sip.StatusBadRequest, "Invalid CSeq Number")
			}
		}
		if c.expires == 0 {
			if i >= 0 {
				changes = append(changes, change{kind: Removed, b: next[i], reason: "unregistered"})
				next = slices.Delete(next, i, i+1)
			}
			continue
		}
		b := proto.Clone()
		b.Contact, b.Q, b.Instance, b.RegID = c.uri, c.q, c.instance, c.regID
		b.Expires = now.Add(c.expires)
		b.Updated = now
		b.Version = r.table.nextVersion(now)
		if err := b.Validate(); err != nil {
			return nil, nil, r.reply(req, sip.StatusBadRequest, "Invalid Contact")
		}
		if i >= 0 {
			changes = append(changes, change{kind: Refreshed, old: next[i], b: b})
			next[i] = b
		} else {
			changes = append(changes, change{kind: Added, b: b})
			next = append(next, b)
		}
	}
	if r.cfg.MaxContacts > 0 && len(next) > r.cfg.MaxContacts && len(next) > len(cur) {
		return nil, nil, r.reply(req, sip.StatusServiceUnavailable, "Too Many Registered Contacts")
	}
	// A refresh keeps a binding's place; the list is re-sorted on read.
	return next, changes, nil
}

// ok builds the 200 OK listing every current binding of aor with its
// remaining expiry (RFC 3261 §10.3 step 8).
func (r *Registrar) ok(req *sip.Request, aor string, now time.Time, path []string, pathSupported, outbound bool) *sip.Response {
	res := r.reply(req, sip.StatusOK, "OK")
	for _, b := range r.table.lookup(aor, now) {
		remaining := b.Expires.Sub(now)
		secs := int64((remaining + time.Second - 1) / time.Second)
		var sb strings.Builder
		sb.Grow(len(b.Contact) + 64)
		sb.WriteByte('<')
		sb.WriteString(b.Contact)
		sb.WriteString(">;expires=")
		sb.WriteString(strconv.FormatInt(secs, 10))
		if b.Q != 1000 {
			sb.WriteString(";q=")
			sb.WriteString(formatQ(b.Q))
		}
		if b.Instance != "" {
			sb.WriteString(`;+sip.instance="`)
			sb.WriteString(b.Instance)
			sb.WriteByte('"')
			if b.RegID != 0 {
				sb.WriteString(";reg-id=")
				sb.WriteString(strconv.FormatUint(uint64(b.RegID), 10))
			}
		}
		res.AppendHeader(sip.NewHeader("Contact", sb.String()))
	}
	if len(path) > 0 && pathSupported {
		for _, p := range path {
			res.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	if outbound {
		res.AppendHeader(sip.NewHeader("Require", "outbound"))
	}
	res.AppendHeader(sip.NewHeader("Supported", "path, outbound"))
	res.AppendHeader(sip.NewHeader("Date", now.UTC().Format(http.TimeFormat)))
	return res
}

// fixVia adds received= to the response's top Via when the sent-by host is
// not the address the request came from (RFC 3261 §18.2.1), whether or not
// the client asked for rport; sipgo adds it only with rport.
func fixVia(req *sip.Request, res *sip.Response) {
	via := res.Via()
	if via == nil {
		return
	}
	if _, ok := via.Params.Get("received"); ok {
		return
	}
	src := sourceAddr(req)
	if !src.IsValid() {
		return
	}
	host := strings.Trim(via.Host, "[]")
	if a, err := netip.ParseAddr(host); err == nil && a.Unmap() == src.Addr() {
		return
	}
	if via.Params == nil {
		via.Params = sip.NewParams()
	}
	via.Params.Add("received", src.Addr().String())
}
