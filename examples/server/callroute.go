package main

// Call routing: where a new call goes, by who placed it and what they
// dialled, following the call configuration.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/b2bua"
	"github.com/talkpad/talkpad/registrar"
	"github.com/talkpad/talkpad/store"
)

// locator finds the registered contacts of an address-of-record; the
// registrar is one.
type locator interface {
	Lookup(ctx context.Context, aor string) ([]store.Binding, error)
}

// callRouter decides where calls go (b2bua.Router):
//
//   - From a trunk: a number of a [[number]] reaches its user; on a transit
//     trunk, a number the dial plan matches goes out to the other trunks;
//     anything else is 404.
//   - From a user: a registered user is called directly and free of charge
//     (so is a [[number]] of a user); a number the dial plan matches goes
//     out to the trunks, billed to the caller's account (403 without one);
//     otherwise 480 for a user who is not registered, 404 for anything
//     else.
//   - From anyone else: 403.
type callRouter struct {
	cfg    *callConfig
	loc    locator
	domain string
	log    *slog.Logger

	// knownUser, when set, tells whether a user exists (has credentials),
	// so that a call to an unknown user name gets 404 rather than 480.
	// Users named in the configuration are known anyway.
	knownUser func(ctx context.Context, user string) (bool, error)

	// rng orders trunks of equal priority; nil uses math/rand/v2's
	// global source. Guarded by mu: a rand.Rand is not safe for
	// concurrent use.
	mu  sync.Mutex
	rng *rand.Rand

	cfgUsers map[string]bool
	inPorts  map[netip.AddrPort]string
	inAddrs  map[netip.Addr]string
	inNets   []namedPrefix // longest prefix first
}

type namedPrefix struct {
	prefix netip.Prefix
	trunk  string
}

var _ b2bua.Router = (*callRouter)(nil)

// domainKey carries the domain of a call's Request-URI to aor when the
// router serves any domain.
type domainKey struct{}

// newCallRouter returns a router for cfg (the defaults when nil) that finds
// users' contacts with loc. domain is the SIP domain users register in:
// the AOR of user alice is "sip:alice@<domain>". Empty serves any domain,
// like a registrar without a domain list: the callee's AOR takes the host
// of the INVITE's Request-URI.
func newCallRouter(cfg *callConfig, loc locator, domain string, log *slog.Logger) (*callRouter, error) {
	if cfg == nil {
		cfg = defaultCallConfig()
	}
	if loc == nil {
		return nil, errors.New("call router: no locator")
	}
	if _, err := registrar.NormalizeAOR("sip:user@" + domain); err != nil && domain != "" {
		return nil, fmt.Errorf("call router: bad domain %q", domain)
	}
	if log == nil {
		log = slog.Default()
	}
	r := &callRouter{
		cfg: cfg, loc: loc, domain: domain, log: log,
		cfgUsers: make(map[string]bool),
		inPorts:  make(map[netip.AddrPort]string),
		inAddrs:  make(map[netip.Addr]string),
	}
	for _, a := range cfg.Accounts {
		for _, u := range a.Users {
			r.cfgUsers[u] = true
		}
	}
	for _, n := range cfg.Numbers {
		r.cfgUsers[n.User] = true
	}
	for _, t := range cfg.Trunks {
		for _, ap := range t.inPorts {
			r.inPorts[ap] = t.Name
		}
		for _, a := range t.inAddrs {
			r.inAddrs[a] = t.Name
		}
		for _, p := range t.inNets {
			r.inNets = append(r.inNets, namedPrefix{p, t.Name})
		}
	}
	slices.SortStableFunc(r.inNets, func(a, b namedPrefix) int { return b.prefix.Bits() - a.prefix.Bits() })
	return r, nil
}

// credentialUsers returns a knownUser function that looks users up in the
// credential store.
func credentialUsers(st store.Credentials, realm string) func(ctx context.Context, user string) (bool, error) {
	return func(ctx context.Context, user string) (bool, error) {
		_, err := st.GetCredential(ctx, realm, user)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, store.ErrNotFound):
			return false, nil
		}
		return false, err
	}
}

// trunkFor returns the trunk whose inbound list holds src: an IP:port
// entry equal to it, else an IP entry equal to its address, else the
// longest CIDR entry holding it.
func (r *callRouter) trunkFor(src netip.AddrPort) (string, bool) {
	a := src.Addr().Unmap()
	if name, ok := r.inPorts[netip.AddrPortFrom(a, src.Port())]; ok {
		return name, true
	}
	if name, ok := r.inAddrs[a]; ok {
		return name, true
	}
	for _, n := range r.inNets {
		if n.prefix.Contains(a) {
			return n.trunk, true
		}
	}
	return "", false
}

// accountFor returns the account user's calls bill to.
func (r *callRouter) accountFor(user string) (accountID string, ok bool) {
	a, ok := r.cfg.accountOf(user)
	if !ok {
		return "", false
	}
	return a.ID, true
}

// Refusals.
func notFound() error    { return &b2bua.Reject{Status: 404, Reason: "Not Found"} }
func unavailable() error { return &b2bua.Reject{Status: 480, Reason: "Temporarily Unavailable"} }
func forbidden(reason string) error {
	return &b2bua.Reject{Status: 403, Reason: reason}
}

// Route implements b2bua.Router.
func (r *callRouter) Route(ctx context.Context, in *b2bua.Incoming) (*b2bua.Route, error) {
	if r.domain == "" && in.Request != nil {
		ctx = context.WithValue(ctx, domainKey{}, in.Request.Recipient.Host)
	}
	var (
		rt  *b2bua.Route
		err error
	)
	switch {
	case in.Identity.Trunk != "":
		rt, err = r.fromTrunk(ctx, in)
	case in.Identity.User != "":
		rt, err = r.fromUser(ctx, in)
	default:
		err = forbidden("Forbidden")
	}
	if err != nil {
		r.log.Debug("call refused", "call", in.ID, "user", in.Identity.User, "trunk", in.Identity.Trunk,
			"callee", in.Callee, "err", err)
		return nil, err
	}
	r.log.Debug("call routed", "call", in.ID, "user", in.Identity.User, "trunk", in.Identity.Trunk,
		"callee", in.Callee, "account", rt.Account, "destination", rt.Destination, "anchor", rt.Anchor)
	return rt, nil
}

// fromTrunk routes a call from the phone network.
func (r *callRouter) fromTrunk(ctx context.Context, in *b2bua.Incoming) (*b2bua.Route, error) {
	anchor := r.cfg.Calls.Anchor == anchorAlways
	num := normalizeNumber(in.Callee)
	if user, ok := r.numberUser(num); ok {
		return r.toUser(ctx, user, anchor)
	}
	t, ok := r.cfg.trunk(in.Identity.Trunk)
	if !ok || !t.Transit {
		return nil, notFound()
	}
	rule := r.match(num)
	if rule == nil {
		return nil, notFound()
	}
	dialled := rule.apply(num)
	trunks := r.ruleTrunks(rule, t.Name)
	if dialled == "" || len(trunks) == 0 {
		return nil, notFound()
	}
	return &b2bua.Route{
		Destination: strings.TrimPrefix(dialled, "+"),
		Targets:     r.newPicker(trunks, dialled, ""),
		Anchor:      anchor,
	}, nil
}

// fromUser routes a call from an authenticated user.
func (r *callRouter) fromUser(ctx context.Context, in *b2bua.Incoming) (*b2bua.Route, error) {
	anchor := r.callerAnchor(ctx, in)
	targets, registered, err := r.userTargets(ctx, in.Callee)
	if err != nil {
		return nil, err
	}
	if len(targets) > 0 {
		return &b2bua.Route{Targets: targets, Anchor: anchor, Parallel: true}, nil
	}
	num := normalizeNumber(in.Callee)
	if user, ok := r.numberUser(num); ok {
		// A number of one of our users: no need to go out and back in.
		return r.toUser(ctx, user, anchor)
	}
	if rule := r.match(num); rule != nil {
		acc, ok := r.cfg.accountOf(in.Identity.User)
		if !ok {
			return nil, forbidden("No account")
		}
		dialled := rule.apply(num)
		trunks := r.ruleTrunks(rule, "")
		if dialled == "" || len(trunks) == 0 {
			return nil, notFound()
		}
		cid := acc.Number
		if cid == "" {
			cid = in.Identity.User
		}
		return &b2bua.Route{
			Account:     acc.ID,
			Destination: strings.TrimPrefix(dialled, "+"),
			Targets:     r.newPicker(trunks, dialled, cid),
			Anchor:      anchor,
		}, nil
	}
	if registered {
		// Registered, but no binding can be reached.
		return nil, unavailable()
	}
	if _, err := r.aor(ctx, in.Callee); err != nil || in.Callee == "" {
		return nil, notFound() // cannot be a user name
	}
	exists, sure, err := r.userExists(ctx, in.Callee)
	if err != nil {
		return nil, err
	}
	if exists || (!sure && !isNumber(num)) {
		return nil, unavailable()
	}
	return nil, notFound()
}

// userExists tells whether user is one of ours; sure is false when the
// router has no way to know.
func (r *callRouter) userExists(ctx context.Context, user string) (exists, sure bool, err error) {
	if r.cfgUsers[user] {
		return true, true, nil
	}
	if r.knownUser == nil {
		return false, false, nil
	}
	ok, err := r.knownUser(ctx, user)
	if err != nil {
		return false, false, fmt.Errorf("call router: is %q a user: %w", user, err)
	}
	return ok, true, nil
}

// numberUser returns the user a [[number]] maps num to; a leading "+" is
// not significant.
func (r *callRouter) numberUser(num string) (string, bool) {
	if !isNumber(num) {
		return "", false
	}
	u, ok := r.cfg.numberUser[strings.TrimPrefix(num, "+")]
	return u, ok
}

// match returns the first dial plan rule matching num, or nil.
func (r *callRouter) match(num string) *dialRule {
	for i := range r.cfg.DialPlan {
		if r.cfg.DialPlan[i].Match.MatchString(num) {
			return &r.cfg.DialPlan[i]
		}
	}
	return nil
}

// ruleTrunks returns the trunks of a rule, without the one named except.
func (r *callRouter) ruleTrunks(rule *dialRule, except string) []*trunkConfig {
	var ts []*trunkConfig
	if len(rule.Trunks) == 0 {
		for i := range r.cfg.Trunks {
			if r.cfg.Trunks[i].Name != except {
				ts = append(ts, &r.cfg.Trunks[i])
			}
		}
		return ts
	}
	for _, name := range rule.Trunks {
		if t, ok := r.cfg.trunk(name); ok && name != except {
			ts = append(ts, t)
		}
	}
	return ts
}

// toUser routes a call to user's bindings, 480 when it has none.
func (r *callRouter) toUser(ctx context.Context, user string, anchor bool) (*b2bua.Route, error) {
	targets, _, err := r.userTargets(ctx, user)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, unavailable()
	}
	return &b2bua.Route{Targets: targets, Anchor: anchor, Parallel: true}, nil
}

// aor returns user's address-of-record, normalised.
func (r *callRouter) aor(ctx context.Context, user string) (string, error) {
	domain := r.domain
	if domain == "" {
		domain, _ = ctx.Value(domainKey{}).(string)
	}
	return registrar.NormalizeAOR("sip:" + user + "@" + domain)
}

// userTargets returns a target per reachable binding of user, in the
// registrar's order (highest q first). registered reports whether user
// has bindings at all, reachable or not.
func (r *callRouter) userTargets(ctx context.Context, user string) (targets b2bua.Targets, registered bool, err error) {
	if user == "" {
		return nil, false, nil
	}
	aor, err := r.aor(ctx, user)
	if err != nil {
		return nil, false, nil // not a user name
	}
	bs, err := r.loc.Lookup(ctx, aor)
	if err != nil {
		if errors.Is(err, registrar.ErrBadAOR) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("call router: look up %s: %w", aor, err)
	}
	for _, b := range bs {
		t, err := r.bindingTarget(aor, b)
		if err != nil {
			r.log.Debug("binding skipped", "aor", aor, "contact", b.Contact, "err", err)
			continue
		}
		// b2bua.Targets finds its place by name and URI: keep them unique.
		if slices.ContainsFunc(targets, func(o b2bua.Target) bool { return o.URI.String() == t.URI.String() }) {
			continue
		}
		targets = append(targets, t)
	}
	return targets, len(bs) > 0, nil
}

// bindingTarget returns the target reaching binding b of aor.
func (r *callRouter) bindingTarget(aor string, b store.Binding) (b2bua.Target, error) {
	dst, transport, err := registrar.Destination(b)
	if err != nil {
		return b2bua.Target{}, err
	}
	t := b2bua.Target{
		Name:        aor,
		Destination: dst,
		Transport:   strings.ToUpper(transport),
		Anchor:      r.cfg.Calls.Anchor != anchorNever && b.NATType == "symmetric",
	}
	if t.Transport == "" {
		t.Transport = "UDP"
	}
	if err := sip.ParseUri(b.Contact, &t.URI); err != nil {
		return b2bua.Target{}, fmt.Errorf("contact: %w", err)
	}
	// The callee sees its own address-of-record in To, not its Contact.
	var to sip.Uri
	if err := sip.ParseUri(aor, &to); err == nil {
		t.To = &to
	}
	for _, p := range b.Path {
		s := p
		if i := strings.IndexByte(s, '<'); i >= 0 {
			s = s[i+1:]
			if j := strings.IndexByte(s, '>'); j >= 0 {
				s = s[:j]
			}
		}
		var u sip.Uri
		if err := sip.ParseUri(strings.TrimSpace(s), &u); err != nil {
			return b2bua.Target{}, fmt.Errorf("path %q: %w", p, err)
		}
		t.RouteSet = append(t.RouteSet, u)
	}
	return t, nil
}

// callerAnchor tells whether the caller's media must go through the relay:
// always or never by policy, else when the binding the caller called from
// reports a symmetric NAT.
func (r *callRouter) callerAnchor(ctx context.Context, in *b2bua.Incoming) bool {
	switch r.cfg.Calls.Anchor {
	case anchorAlways:
		return true
	case anchorNever:
		return false
	}
	aor, err := r.aor(ctx, in.Identity.User)
	if err != nil {
		return false
	}
	bs, err := r.loc.Lookup(ctx, aor)
	if err != nil {
		r.log.Debug("caller lookup failed", "aor", aor, "err", err)
		return false
	}
	src := netip.AddrPortFrom(in.Source.Addr().Unmap(), in.Source.Port())
	same := func(b store.Binding) bool {
		return netip.AddrPortFrom(b.Received.Addr().Unmap(), b.Received.Port()) == src
	}
	if i := slices.IndexFunc(bs, same); i >= 0 {
		return bs[i].NATType == "symmetric"
	}
	// No binding from this very port (a new connection): one from the
	// same address tells as much about its NAT.
	for _, b := range bs {
		if b.Received.Addr().Unmap() == src.Addr() {
			return b.NATType == "symmetric"
		}
	}
	return false
}

// newPicker returns the trunk targets of a call to number (as the trunk
// gets it), presenting callerID in From when it is not empty.
func (r *callRouter) newPicker(trunks []*trunkConfig, number, callerID string) *trunkPicker {
	build := func(t *trunkConfig) b2bua.Target { return trunkTarget(t, number, callerID) }
	r.mu.Lock()
	defer r.mu.Unlock()
	intn := rand.IntN
	if r.rng != nil {
		intn = r.rng.IntN
	}
	return newTrunkPicker(trunks, build, intn)
}

// trunkTarget returns the target sending a call to number on trunk t.
func trunkTarget(t *trunkConfig, number, callerID string) b2bua.Target {
	u := t.URI.Clone()
	u.User = number
	tr := "UDP"
	if strings.EqualFold(u.Scheme, "sips") {
		tr = "TLS"
	}
	if p, ok := u.UriParams.Get("transport"); ok {
		tr = strings.ToUpper(p)
	}
	target := b2bua.Target{
		Name:        t.Name,
		URI:         *u,
		Transport:   tr,
		Username:    t.Username,
		Password:    t.Password,
		StripWebRTC: t.StripWebRTC,
		Timeout:     t.Timeout,
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Host, "[]")); err == nil {
		port := u.Port
		if port == 0 {
			port = 5060
			if tr == "TLS" || tr == "WSS" {
				port = 5061
			}
		}
		target.Destination = netip.AddrPortFrom(a.Unmap(), uint16(port))
	}
	if callerID != "" {
		host := t.FromDomain
		if host == "" {
			host = u.Host
		}
		target.From = &sip.Uri{Scheme: "sip", User: normalizeNumber(callerID), Host: host}
	}
	return target
}

// trunkPicker yields a call's trunk targets, each once, in the order
// newTrunkPicker chose (b2bua.TargetPicker).
type trunkPicker struct {
	mu      sync.Mutex
	targets []b2bua.Target
	next    int
}

var _ b2bua.TargetPicker = (*trunkPicker)(nil)

// newTrunkPicker orders trunks by priority, lowest first; within a
// priority, by a weighted random draw without replacement (a trunk of
// weight 10 comes first twice as often as one of weight 5), the trunks of
// weight 0 last, in the order given. intn(n) returns a random number in
// [0, n).
func newTrunkPicker(trunks []*trunkConfig, build func(*trunkConfig) b2bua.Target, intn func(n int) int) *trunkPicker {
	sorted := slices.Clone(trunks)
	slices.SortStableFunc(sorted, func(a, b *trunkConfig) int { return a.Priority - b.Priority })
	p := &trunkPicker{targets: make([]b2bua.Target, 0, len(sorted))}
	for i := 0; i < len(sorted); {
		j := i
		for j < len(sorted) && sorted[j].Priority == sorted[i].Priority {
			j++
		}
		var weighted, spare []*trunkConfig
		total := 0
		for _, t := range sorted[i:j] {
			if t.Weight > 0 {
				weighted = append(weighted, t)
				total += t.Weight
			} else {
				spare = append(spare, t)
			}
		}
		for len(weighted) > 0 {
			x := intn(total)
			k := 0
			for x >= weighted[k].Weight {
				x -= weighted[k].Weight
				k++
			}
			p.targets = append(p.targets, build(weighted[k]))
			total -= weighted[k].Weight
			weighted = slices.Delete(weighted, k, k+1)
		}
		for _, t := range spare {
			p.targets = append(p.targets, build(t))
		}
		i = j
	}
	return p
}

// Next implements b2bua.TargetPicker: the next target not yet tried.
func (p *trunkPicker) Next(_ context.Context, _ *b2bua.Attempt) (b2bua.Target, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next >= len(p.targets) {
		return b2bua.Target{}, false
	}
	p.next++
	return p.targets[p.next-1], true
}
