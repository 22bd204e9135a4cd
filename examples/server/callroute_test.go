package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/talkpad/talkpad/b2bua"
	"github.com/talkpad/talkpad/store"
)

// fakeLocator serves bindings from a map keyed by AOR.
type fakeLocator struct {
	bindings map[string][]store.Binding
	err      error
	lookups  []string
}

func (f *fakeLocator) Lookup(_ context.Context, aor string) ([]store.Binding, error) {
	f.lookups = append(f.lookups, aor)
	if f.err != nil {
		return nil, f.err
	}
	return f.bindings[aor], nil
}

const routeTOML = `
[[trunk]]
name = "a"
uri = "sip:192.0.2.10:5070;transport=tcp"
username = "user-a"
password = "pass-a"
priority = 1
inbound = ["192.0.2.10", "198.51.100.0/24", "127.0.0.1:5090"]
timeout = "30s"
[[trunk]]
name = "b"
uri = "sip:gw.b.example"
from_domain = "talkpad.example"
strip_webrtc = false
priority = 2
inbound = ["198.51.100.128/25"]
transit = true
[[trunk]]
name = "c"
uri = "sips:[2001:db8::1]"
priority = 3

[[dialplan]]
match = '^0[1-9][0-9]{5,}$'
strip = 1
prepend = "+49"
trunks = ["b"]
[[dialplan]]
match = '^\+?[1-9][0-9]{6,14}$'

[[account]]
id = "acc-alice"
users = ["alice"]
number = "+49 30 111111"
[[account]]
id = "acc-dave"
users = ["dave"]

[[number]]
number = "+49 30 222222"
user = "bob"
[[number]]
number = "+4930333333"
user = "erin"
`

var (
	aliceSrc = netip.MustParseAddrPort("203.0.113.7:40000")
	bobSrc   = netip.MustParseAddrPort("203.0.113.8:50000")
)

func routeFixture(t *testing.T, anchor string) (*callRouter, *fakeLocator) {
	t.Helper()
	cfg, err := parseCallConfig([]byte("[calls]\nanchor = \"" + anchor + "\"\n" + routeTOML))
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour)
	loc := &fakeLocator{bindings: map[string][]store.Binding{
		"sip:alice@talkpad.test": {
			{AOR: "sip:alice@talkpad.test", Contact: "sip:alice@10.0.0.2:5060", Received: aliceSrc, Transport: "udp", Q: 1000, Expires: exp, NATType: "symmetric"},
			{AOR: "sip:alice@talkpad.test", Contact: "sip:alice@10.0.0.3:5060", Received: netip.MustParseAddrPort("203.0.113.9:1234"), Transport: "udp", Q: 500, Expires: exp},
		},
		"sip:bob@talkpad.test": {
			{AOR: "sip:bob@talkpad.test", Contact: "sip:bob@df7jal23ls0d.invalid;transport=ws", Received: bobSrc, Transport: "ws", Q: 1000, Expires: exp,
				Path: []string{"<sip:edge1.talkpad.test;lr>", "<sip:edge2.talkpad.test:5080;transport=tcp;lr>"}},
			{AOR: "sip:bob@talkpad.test", Contact: "sip:bob@phone.invalid", Q: 900, Expires: exp}, // unreachable: skipped
			{AOR: "sip:bob@talkpad.test", Contact: "sip:bob@192.0.2.55:5062;transport=tcp", Q: 800, Expires: exp, NATType: "symmetric"},
		},
		"sip:frank@talkpad.test": {
			{AOR: "sip:frank@talkpad.test", Contact: "sip:frank@laptop.invalid", Q: 1000, Expires: exp}, // none reachable
		},
	}}
	r, err := newCallRouter(cfg, loc, "talkpad.test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	r.rng = rand.New(rand.NewPCG(1, 2))
	return r, loc
}

func fromUser(user, callee string, src netip.AddrPort) *b2bua.Incoming {
	return &b2bua.Incoming{ID: "call-1", Identity: b2bua.Identity{User: user}, Caller: user, Callee: callee, Source: src, Transport: "UDP"}
}

func fromTrunk(trunk, callee string) *b2bua.Incoming {
	return &b2bua.Incoming{ID: "call-2", Identity: b2bua.Identity{Trunk: trunk}, Caller: "+4940555", Callee: callee,
		Source: netip.MustParseAddrPort("192.0.2.10:5060"), Transport: "UDP"}
}

// drain returns every target a picker yields, failing each in turn.
func drain(t *testing.T, p b2bua.TargetPicker) []b2bua.Target {
	t.Helper()
	var out []b2bua.Target
	var prev *b2bua.Attempt
	for range 20 {
		tg, ok := p.Next(context.Background(), prev)
		if !ok {
			return out
		}
		out = append(out, tg)
		prev = &b2bua.Attempt{Target: tg, Status: 503}
	}
	t.Fatal("picker never ends")
	return nil
}

func names(ts []b2bua.Target) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return strings.Join(s, ",")
}

func wantReject(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var rj *b2bua.Reject
	if !errors.As(err, &rj) || rj.Status != status || (reason != "" && rj.Reason != reason) {
		t.Fatalf("got %v, want reject %d %s", err, status, reason)
	}
}

func TestRouteUserToUser(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	rt, err := r.Route(context.Background(), fromUser("alice", "bob", aliceSrc))
	if err != nil {
		t.Fatal(err)
	}
	if rt.Account != "" || rt.Destination != "" {
		t.Errorf("a user-to-user call is billed: %+v", rt)
	}
	if !rt.Anchor {
		t.Error("alice calls from her symmetric-NAT binding: the route is not anchored")
	}
	if !rt.Parallel {
		t.Error("bob's devices do not ring at once")
	}
	ts := drain(t, rt.Targets)
	if len(ts) != 2 {
		t.Fatalf("targets: %+v", ts)
	}
	ws := ts[0]
	if ws.Name != "sip:bob@talkpad.test" || ws.URI.Host != "df7jal23ls0d.invalid" || ws.Destination != bobSrc ||
		ws.Transport != "WS" || ws.Anchor || ws.StripWebRTC || ws.From != nil {
		t.Errorf("ws target: %+v", ws)
	}
	if len(ws.RouteSet) != 2 || ws.RouteSet[0].Host != "edge1.talkpad.test" || ws.RouteSet[1].Port != 5080 ||
		!ws.RouteSet[0].UriParams.Has("lr") {
		t.Errorf("route set: %+v", ws.RouteSet)
	}
	tcp := ts[1]
	if tcp.URI.String() != "sip:bob@192.0.2.55:5062;transport=tcp" || tcp.Destination != netip.MustParseAddrPort("192.0.2.55:5062") ||
		tcp.Transport != "TCP" || !tcp.Anchor {
		t.Errorf("symmetric-NAT tcp target: %+v", tcp)
	}
}

func TestRouteAnchoring(t *testing.T) {
	for _, tc := range []struct {
		policy, caller string
		src            netip.AddrPort
		callee         string
		route          bool   // Route.Anchor
		targets        string // Anchor of each target
	}{
		{policy: "auto", caller: "alice", src: aliceSrc, callee: "bob", route: true, targets: "false,true"},
		// alice's other binding is not behind symmetric NAT.
		{policy: "auto", caller: "alice", src: netip.MustParseAddrPort("203.0.113.9:1234"), callee: "bob", route: false, targets: "false,true"},
		// A new port from the symmetric-NAT address still counts.
		{policy: "auto", caller: "alice", src: netip.MustParseAddrPort("[::ffff:203.0.113.7]:40001"), callee: "bob", route: true, targets: "false,true"},
		// The callee is behind symmetric NAT, the caller not (bob calls alice).
		{policy: "auto", caller: "bob", src: bobSrc, callee: "alice", route: false, targets: "true,false"},
		{policy: "always", caller: "bob", src: bobSrc, callee: "alice", route: true, targets: "true,false"},
		{policy: "never", caller: "alice", src: aliceSrc, callee: "bob", route: false, targets: "false,false"},
	} {
		r, _ := routeFixture(t, tc.policy)
		rt, err := r.Route(context.Background(), fromUser(tc.caller, tc.callee, tc.src))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, tg := range drain(t, rt.Targets) {
			if tg.Anchor {
				got = append(got, "true")
			} else {
				got = append(got, "false")
			}
		}
		if rt.Anchor != tc.route || strings.Join(got, ",") != tc.targets {
			t.Errorf("%s %s→%s from %s: route anchor %v targets %s; want %v %s",
				tc.policy, tc.caller, tc.callee, tc.src, rt.Anchor, strings.Join(got, ","), tc.route, tc.targets)
		}
	}
}

func TestRoutePSTN(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	for _, tc := range []struct {
		callee, dest, uriUser, trunks string
	}{
		// The E.164 rule: every trunk, by priority.
		{callee: "+1 (555) 123-4567", dest: "15551234567", uriUser: "+15551234567", trunks: "a,b,c"},
		{callee: "4940123456", dest: "4940123456", uriUser: "4940123456", trunks: "a,b,c"},
		// The national rule: strip the 0, prepend +49, trunk b only.
		{callee: "030 123456", dest: "4930123456", uriUser: "+4930123456", trunks: "b"},
	} {
		rt, err := r.Route(context.Background(), fromUser("alice", tc.callee, aliceSrc))
		if err != nil {
			t.Fatalf("%s: %v", tc.callee, err)
		}
		if rt.Account != "acc-alice" || rt.Destination != tc.dest || !rt.Anchor {
			t.Errorf("%s: route %+v", tc.callee, rt)
		}
		ts := drain(t, rt.Targets)
		if names(ts) != tc.trunks {
			t.Errorf("%s: trunks %s, want %s", tc.callee, names(ts), tc.trunks)
		}
		for _, tg := range ts {
			if tg.URI.User != tc.uriUser || tg.From == nil || tg.From.User != "+4930111111" {
				t.Errorf("%s: target %s: URI %s From %v", tc.callee, tg.Name, tg.URI.String(), tg.From)
			}
		}
	}

	rt, err := r.Route(context.Background(), fromUser("alice", "+15551234567", aliceSrc))
	if err != nil {
		t.Fatal(err)
	}
	ts := drain(t, rt.Targets)
	a, b, c := ts[0], ts[1], ts[2]
	if a.URI.String() != "sip:+15551234567@192.0.2.10:5070;transport=tcp" || a.Transport != "TCP" ||
		a.Destination != netip.MustParseAddrPort("192.0.2.10:5070") || a.Username != "user-a" || a.Password != "pass-a" ||
		!a.StripWebRTC || a.Timeout != 30*time.Second || a.From.String() != "sip:+4930111111@192.0.2.10" || a.Anchor {
		t.Errorf("trunk a target: %+v (From %s)", a, a.From)
	}
	if b.URI.String() != "sip:+15551234567@gw.b.example" || b.Transport != "UDP" || b.Destination.IsValid() ||
		b.StripWebRTC || b.Timeout != 0 || b.From.String() != "sip:+4930111111@talkpad.example" {
		t.Errorf("trunk b target: %+v (From %s)", b, b.From)
	}
	if c.Transport != "TLS" || c.Destination != netip.MustParseAddrPort("[2001:db8::1]:5061") {
		t.Errorf("trunk c target: %+v", c)
	}

	// dave's account has no number: his user name is the caller ID.
	rt, err = r.Route(context.Background(), fromUser("dave", "+15551234567", aliceSrc))
	if err != nil {
		t.Fatal(err)
	}
	if tg, _ := rt.Targets.Next(context.Background(), nil); rt.Account != "acc-dave" || tg.From.User != "dave" {
		t.Errorf("dave: %+v, From %s", rt, tg.From)
	}
}

func TestRouteRefusals(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		in     *b2bua.Incoming
		status int
		reason string
	}{
		{"no account", fromUser("bob", "+15551234567", bobSrc), 403, "No account"},
		{"anonymous", &b2bua.Incoming{Callee: "alice", Source: aliceSrc}, 403, "Forbidden"},
		{"number matching no rule", fromUser("alice", "12", aliceSrc), 404, "Not Found"},
		{"user name, not registered", fromUser("alice", "zoe", aliceSrc), 480, "Temporarily Unavailable"},
		{"configured user, not registered", fromUser("alice", "dave", aliceSrc), 480, ""},
		{"registered, unreachable", fromUser("alice", "frank", aliceSrc), 480, ""},
		{"number of a user without binding", fromUser("alice", "+4930333333", aliceSrc), 480, ""},
		{"bad user part", fromUser("alice", "a b", aliceSrc), 404, ""},
		{"empty callee", fromUser("alice", "", aliceSrc), 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := r.Route(ctx, tc.in)
			wantReject(t, err, tc.status, tc.reason)
		})
	}
}

func TestRouteKnownUsers(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	r.knownUser = func(_ context.Context, user string) (bool, error) { return user == "zoe" || user == "1001", nil }
	ctx := context.Background()
	_, err := r.Route(ctx, fromUser("alice", "zoe", aliceSrc))
	wantReject(t, err, 480, "")
	_, err = r.Route(ctx, fromUser("alice", "1001", aliceSrc))
	wantReject(t, err, 480, "")
	_, err = r.Route(ctx, fromUser("alice", "yann", aliceSrc))
	wantReject(t, err, 404, "Not Found")
	_, err = r.Route(ctx, fromUser("alice", "dave", aliceSrc)) // in the configuration
	wantReject(t, err, 480, "")

	r.knownUser = func(context.Context, string) (bool, error) { return false, errors.New("database down") }
	if _, err = r.Route(ctx, fromUser("alice", "yann", aliceSrc)); err == nil || errors.As(err, new(*b2bua.Reject)) {
		t.Errorf("a failing user check gives %v, want a plain error (500)", err)
	}
}

func TestRouteFromTrunk(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	ctx := context.Background()

	// A number of bob's, written with separators, with or without "+".
	for _, callee := range []string{"+4930222222", "4930222222", "+49-30-222222"} {
		rt, err := r.Route(ctx, fromTrunk("a", callee))
		if err != nil {
			t.Fatalf("%s: %v", callee, err)
		}
		ts := drain(t, rt.Targets)
		if rt.Account != "" || rt.Anchor || len(ts) != 2 || ts[0].Name != "sip:bob@talkpad.test" || !ts[1].Anchor {
			t.Errorf("%s: route %+v targets %+v", callee, rt, ts)
		}
	}
	// erin has a number but no binding.
	_, err := r.Route(ctx, fromTrunk("a", "+4930333333"))
	wantReject(t, err, 480, "")

	// Trunk a is not transit: PSTN to PSTN is refused.
	_, err = r.Route(ctx, fromTrunk("a", "+15551234567"))
	wantReject(t, err, 404, "Not Found")
	// Nor may a trunk reach users by name.
	_, err = r.Route(ctx, fromTrunk("a", "alice"))
	wantReject(t, err, 404, "")
	// An unknown trunk name is not transit either.
	_, err = r.Route(ctx, fromTrunk("nope", "+15551234567"))
	wantReject(t, err, 404, "")

	// Trunk b is transit: out through the other trunks, never back to b.
	rt, err := r.Route(ctx, fromTrunk("b", "+15551234567"))
	if err != nil {
		t.Fatal(err)
	}
	ts := drain(t, rt.Targets)
	if rt.Account != "" || rt.Destination != "15551234567" || names(ts) != "a,c" || ts[0].From != nil {
		t.Errorf("transit: route %+v targets %s", rt, names(ts))
	}
	// The national rule only has trunk b: nothing is left.
	_, err = r.Route(ctx, fromTrunk("b", "030123456"))
	wantReject(t, err, 404, "")

	// anchor = "always" anchors calls from trunks too.
	r, _ = routeFixture(t, "always")
	if rt, err := r.Route(ctx, fromTrunk("a", "+4930222222")); err != nil || !rt.Anchor {
		t.Errorf("always: %+v, %v", rt, err)
	}
}

func TestRouteUserNumberShortcut(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	rt, err := r.Route(context.Background(), fromUser("alice", "+49 30 222222", aliceSrc))
	if err != nil {
		t.Fatal(err)
	}
	if ts := drain(t, rt.Targets); rt.Account != "" || len(ts) != 2 || ts[0].Name != "sip:bob@talkpad.test" {
		t.Errorf("alice dialling bob's number: %+v %+v", rt, ts)
	}
}

func TestRouteLocatorError(t *testing.T) {
	r, loc := routeFixture(t, "never")
	loc.err = errors.New("boom")
	_, err := r.Route(context.Background(), fromUser("alice", "bob", aliceSrc))
	if err == nil || errors.As(err, new(*b2bua.Reject)) {
		t.Errorf("locator failure gives %v, want a plain error", err)
	}
}

func TestTrunkFor(t *testing.T) {
	r, _ := routeFixture(t, "auto")
	for src, want := range map[string]string{
		"192.0.2.10:5060":          "a",
		"[::ffff:192.0.2.10]:5060": "a",
		"198.51.100.7:5060":        "a", // 198.51.100.0/24
		"198.51.100.200:5060":      "b", // the longer 198.51.100.128/25
		"127.0.0.1:5090":           "a",
		"127.0.0.1:5091":           "",
		"203.0.113.1:5060":         "",
		"[2001:db8::1]:5061":       "",
	} {
		got, ok := r.trunkFor(netip.MustParseAddrPort(src))
		if got != want || ok != (want != "") {
			t.Errorf("trunkFor(%s) = %q, %v; want %q", src, got, ok, want)
		}
	}
	if id, ok := r.accountFor("alice"); !ok || id != "acc-alice" {
		t.Errorf("accountFor(alice) = %q, %v", id, ok)
	}
	if _, ok := r.accountFor("bob"); ok {
		t.Error("bob has an account")
	}
}

func TestNewCallRouter(t *testing.T) {
	if _, err := newCallRouter(nil, nil, "talkpad.test", nil); err == nil {
		t.Error("no locator accepted")
	}
	if _, err := newCallRouter(nil, &fakeLocator{}, "", nil); err != nil {
		t.Errorf("any domain (empty) refused: %v", err)
	}
	for _, d := range []string{"a b", "x@y"} {
		if _, err := newCallRouter(nil, &fakeLocator{}, d, nil); err == nil {
			t.Errorf("domain %q accepted", d)
		}
	}
	r, err := newCallRouter(nil, &fakeLocator{}, "talkpad.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The defaults: users only.
	_, err = r.Route(context.Background(), fromUser("alice", "+15551234567", aliceSrc))
	wantReject(t, err, 404, "")
}

func TestTrunkPickerOrder(t *testing.T) {
	mk := func(name string, prio, weight int) *trunkConfig {
		return &trunkConfig{Name: name, Priority: prio, Weight: weight}
	}
	build := func(t *trunkConfig) b2bua.Target { return b2bua.Target{Name: t.Name} }
	trunks := []*trunkConfig{
		mk("p2", 2, 10),
		mk("zero", 1, 0),
		mk("heavy", 1, 30),
		mk("light", 1, 10),
		mk("p3-zero", 3, 0),
	}
	rng := rand.New(rand.NewPCG(7, 11))
	const n = 20000
	first := map[string]int{}
	for range n {
		ts := drain(t, newTrunkPicker(trunks, build, rng.IntN))
		got := names(ts)
		if !strings.HasSuffix(got, ",zero,p2,p3-zero") || len(ts) != 5 {
			t.Fatalf("order %s: priorities or weight 0 not respected", got)
		}
		first[ts[0].Name]++
	}
	// heavy comes first 3 times in 4.
	if share := float64(first["heavy"]) / n; share < 0.73 || share > 0.77 {
		t.Errorf("heavy first in %.3f of calls, want 0.75 (%v)", share, first)
	}

	// Only weight 0 in a priority: config order.
	ts := drain(t, newTrunkPicker([]*trunkConfig{mk("x", 1, 0), mk("y", 1, 0)}, build, rng.IntN))
	if names(ts) != "x,y" {
		t.Errorf("all zero: %s", names(ts))
	}
	// Nothing to pick.
	if _, ok := newTrunkPicker(nil, build, rng.IntN).Next(context.Background(), nil); ok {
		t.Error("an empty picker yields a target")
	}
}

// TestTrunkPickerWeights checks three weighted trunks draw in proportion
// at every position, not just the first.
func TestTrunkPickerWeights(t *testing.T) {
	trunks := []*trunkConfig{{Name: "a", Weight: 1}, {Name: "b", Weight: 2}, {Name: "c", Weight: 7}}
	build := func(t *trunkConfig) b2bua.Target { return b2bua.Target{Name: t.Name} }
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 20000
	orders := map[string]int{}
	for range n {
		orders[names(drain(t, newTrunkPicker(trunks, build, rng.IntN)))]++
	}
	// P(c,b,a) = 0.7 · 2/3; P(a,b,c) = 0.1 · 2/9.
	for order, want := range map[string]float64{"c,b,a": 0.7 * 2 / 3, "c,a,b": 0.7 / 3, "b,c,a": 0.2 * 7 / 8, "a,b,c": 0.1 * 2 / 9} {
		if got := float64(orders[order]) / n; got < want-0.015 || got > want+0.015 {
			t.Errorf("order %s in %.3f of calls, want %.3f", order, got, want)
		}
	}
}
