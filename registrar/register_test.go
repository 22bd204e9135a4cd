package registrar

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

func lookup(t testing.TB, e *env, aor string) []store.Binding {
	t.Helper()
	bs, err := e.reg.Lookup(context.Background(), aor)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func contactsOf(bs []store.Binding) string {
	var s []string
	for _, b := range bs {
		s = append(s, b.Contact)
	}
	return strings.Join(s, ",")
}

func TestRegisterRecordsWhereTheUserIs(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	u.src = "203.0.113.9:41234"
	u.via = "10.0.0.2:5060" // private address behind NAT
	res := u.register(t, e, []string{"<sip:alice@10.0.0.2:5060;transport=udp>"},
		"User-Agent: baresip v3", "X-NAT-Type: Symmetric")
	wantStatus(t, res, 200)
	bs := lookup(t, e, "sip:alice@EXAMPLE.com")
	if len(bs) != 1 {
		t.Fatalf("got %d bindings", len(bs))
	}
	b := bs[0]
	want := store.Binding{
		AOR: "sip:alice@example.com", Contact: "sip:alice@10.0.0.2:5060;transport=udp",
		Received: netip.MustParseAddrPort("203.0.113.9:41234"), Transport: "udp", LocalAddr: testLocal,
		CallID: u.callID, CSeq: u.cseq, Q: 1000, UserAgent: "baresip v3", NATType: "symmetric", Node: "local",
	}
	if b.AOR != want.AOR || b.Contact != want.Contact || b.Received != want.Received || b.Transport != want.Transport ||
		b.LocalAddr != want.LocalAddr || b.CallID != want.CallID || b.CSeq != want.CSeq || b.Q != want.Q ||
		b.UserAgent != want.UserAgent || b.NATType != want.NATType || b.Node != want.Node {
		t.Fatalf("binding\n got %+v\nwant %+v", b, want)
	}
	// The 200 echoes the contact with its expiry; Via says where the
	// request really came from (no rport: RFC 3261 §18.2.1 received=).
	if cs := headerVals(res, "Contact"); len(cs) != 1 || cs[0] != "<sip:alice@10.0.0.2:5060;transport=udp>;expires=3600" {
		t.Fatalf("200 Contact = %q", cs)
	}
	if v := res.Via(); v == nil || v.Params.GetOr("received", "") != "203.0.113.9" {
		t.Fatalf("Via without received=: %v", res.Via())
	}
	if len(headerVals(res, "Date")) != 1 {
		t.Error("200 without Date")
	}
}

func TestRport(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	u.src, u.via, u.rport = "203.0.113.9:41234", "10.0.0.2:5060", true
	res := u.register(t, e, []string{"<sip:alice@10.0.0.2:5060>"})
	wantStatus(t, res, 200)
	v := res.Via()
	if v.Params.GetOr("rport", "") != "41234" || v.Params.GetOr("received", "") != "203.0.113.9" {
		t.Fatalf("Via = %s, want rport=41234;received=203.0.113.9", v.Value())
	}
	// No received= when the sent-by is the source address.
	u2 := newUA("bob")
	res = u2.register(t, e, []string{"<sip:bob@203.0.113.10:40000>"})
	if _, ok := res.Via().Params.Get("received"); ok {
		t.Fatalf("received= added although sent-by matches the source: %s", res.Via().Value())
	}
}

func TestBindingSteps(t *testing.T) {
	type step struct {
		contacts []string
		extra    []string
		status   int
		want     string // contacts after the step, in lookup order
	}
	c1, c2 := "<sip:alice@10.0.0.2:5060>", "<sip:alice@10.0.0.3:5062>"
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		steps []step
	}{
		{"SeveralContacts", nil, []step{
			{[]string{c1, c2}, nil, 200, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"},
		}},
		{"CommaSeparatedContacts", nil, []step{
			{[]string{c1 + ", " + c2}, nil, 200, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"},
		}},
		{"QOrder", nil, []step{
			{[]string{c1 + ";q=0.5", c2 + ";q=0.9"}, nil, 200, "sip:alice@10.0.0.3:5062,sip:alice@10.0.0.2:5060"},
		}},
		{"ContactExpiresZeroRemoves", nil, []step{
			{[]string{c1, c2}, nil, 200, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"},
			{[]string{c1 + ";expires=0"}, nil, 200, "sip:alice@10.0.0.3:5062"},
		}},
		{"ExpiresHeaderZeroRemoves", nil, []step{
			{[]string{c1}, nil, 200, "sip:alice@10.0.0.2:5060"},
			{[]string{c1}, []string{"Expires: 0"}, 200, ""},
		}},
		{"WildcardRemovesAll", nil, []step{
			{[]string{c1, c2}, nil, 200, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"},
			{[]string{"*"}, []string{"Expires: 0"}, 200, ""},
		}},
		{"WildcardNeedsExpiresZero", nil, []step{
			{[]string{"*"}, nil, 400, ""},
			{[]string{"*"}, []string{"Expires: 10"}, 400, ""},
			{[]string{"*", c1}, []string{"Expires: 0"}, 400, ""},
		}},
		{"MinExpires", nil, []step{
			{[]string{c1 + ";expires=59"}, nil, 423, ""},
			{[]string{c1}, []string{"Expires: 30"}, 423, ""},
			{[]string{c1 + ";expires=60"}, nil, 200, "sip:alice@10.0.0.2:5060"},
		}},
		{"ContactParamBeatsHeader", nil, []step{
			{[]string{c1 + ";expires=120"}, []string{"Expires: 30"}, 200, "sip:alice@10.0.0.2:5060"},
		}},
		{"MaxContacts", func(c *Config) { c.MaxContacts = 2 }, []step{
			{[]string{c1, c2}, nil, 200, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"},
			{[]string{"<sip:alice@10.0.0.4>"}, nil, 503, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"},
			{[]string{c1}, nil, 200, "sip:alice@10.0.0.2:5060,sip:alice@10.0.0.3:5062"}, // refresh still fine
		}},
		{"BadExpires", nil, []step{
			{[]string{c1 + ";expires=soon"}, nil, 400, ""},
			{[]string{c1}, []string{"Expires: -1"}, 400, ""},
		}},
		{"BadQ", nil, []step{
			{[]string{c1 + ";q=1.5"}, nil, 400, ""},
			{[]string{c1 + ";q=abc"}, nil, 400, ""},
		}},
		{"NonSIPContact", nil, []step{
			{[]string{"<mailto:alice@example.com>"}, nil, 400, ""},
		}},
		{"RequireUnknown", nil, []step{
			{[]string{c1}, []string{"Require: foo, path"}, 420, ""},
		}},
		{"DomainNotServed", func(c *Config) { c.Domains = []string{"other.example"} }, []step{
			{[]string{c1}, nil, 404, ""},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.mod, nil)
			u := newUA("alice")
			for i, s := range tc.steps {
				res := u.register(t, e, s.contacts, s.extra...)
				if res.StatusCode != s.status {
					t.Fatalf("step %d: status %d %s, want %d\n%s", i, res.StatusCode, res.Reason, s.status, res)
				}
				if got := contactsOf(lookup(t, e, u.aor)); got != s.want {
					t.Fatalf("step %d: bindings %q, want %q", i, got, s.want)
				}
				if s.status == 423 && headerVals(res, "Min-Expires")[0] != "60" {
					t.Fatalf("423 without Min-Expires: 60")
				}
				if s.status == 420 && headerVals(res, "Unsupported")[0] != "foo" {
					t.Fatalf("420 Unsupported = %q", headerVals(res, "Unsupported"))
				}
			}
		})
	}
}

func TestMaxExpiresClamp(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	res := u.register(t, e, []string{"<sip:alice@10.0.0.2>;expires=99999"})
	wantStatus(t, res, 200)
	if got := headerVals(res, "Contact")[0]; got != "<sip:alice@10.0.0.2>;expires=7200" {
		t.Fatalf("Contact = %q, want expires clamped to 7200", got)
	}
}

func TestCSeqOrdering(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
	// An older CSeq with the same Call-ID is refused.
	u.cseq -= 3
	res := e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>;expires=0"}), testLocal)
	wantStatus(t, res, 400)
	if len(lookup(t, e, u.aor)) != 1 {
		t.Fatal("out-of-order REGISTER removed the binding")
	}
	// Nor may it remove everything with *.
	res = e.reg.Handle(u.build(t, []string{"*"}, "Expires: 0"), testLocal)
	wantStatus(t, res, 400)
	// A new Call-ID (the device rebooted) may use any CSeq.
	u2 := newUA("alice")
	u2.callID = "rebooted"
	wantStatus(t, u2.register(t, e, []string{"<sip:alice@10.0.0.2>;expires=0"}), 200)
	if len(lookup(t, e, u.aor)) != 0 {
		t.Fatal("binding not removed by a new Call-ID")
	}
}

func TestQueryListsBindings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil, nil)
		u := newUA("alice")
		wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>", "<sip:alice@10.0.0.3>;expires=600;q=0.7"}), 200)
		time.Sleep(100*time.Second + 500*time.Millisecond)
		res := e.reg.Handle(u.build(t, nil), testLocal)
		wantStatus(t, res, 200)
		got := strings.Join(headerVals(res, "Contact"), " | ")
		want := "<sip:alice@10.0.0.2>;expires=3500 | <sip:alice@10.0.0.3>;expires=500;q=0.7"
		if got != want {
			t.Fatalf("query 200 contacts:\n got %s\nwant %s", got, want)
		}
		if s := e.reg.Stats(); s.Queries != 1 {
			t.Errorf("Queries = %d", s.Queries)
		}
		e.reg.Close()
	})
}

func TestOutboundInstanceReplacesFlow(t *testing.T) {
	e := newEnv(t, nil, nil)
	inst := `+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"`
	u := newUA("alice")
	res := u.register(t, e, []string{"<sip:alice@10.0.0.2;ob>;" + inst + ";reg-id=1"}, "Supported: outbound, path")
	wantStatus(t, res, 200)
	if r := headerVals(res, "Require"); len(r) != 1 || r[0] != "outbound" {
		t.Errorf("Require = %q, want outbound", r)
	}
	// The same device from a new address and Call-ID: one flow, replaced.
	u2 := newUA("alice")
	u2.callID = "new-call-id"
	res = u2.register(t, e, []string{"<sip:alice@10.0.0.9;ob>;" + inst + ";reg-id=1"}, "Supported: outbound")
	wantStatus(t, res, 200)
	bs := lookup(t, e, u.aor)
	if len(bs) != 1 || bs[0].Contact != "sip:alice@10.0.0.9;ob" || bs[0].RegID != 1 {
		t.Fatalf("bindings after re-registration of the instance: %+v", bs)
	}
	if c := headerVals(res, "Contact")[0]; !strings.Contains(c, `+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1`) {
		t.Errorf("200 Contact lacks instance and reg-id: %s", c)
	}
}

func TestPath(t *testing.T) {
	pathHdrs := []string{"Path: <sip:edge1.example.com;lr>", "Path: <sip:edge2.example.com;lr>, <sip:edge3.example.com;lr;ob>"}
	want := []string{"<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>", "<sip:edge3.example.com;lr;ob>"}
	t.Run("Supported", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		u := newUA("alice")
		res := u.register(t, e, []string{"<sip:alice@10.0.0.2>"}, append(pathHdrs, "Supported: path")...)
		wantStatus(t, res, 200)
		if got := headerVals(res, "Path"); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("200 Path = %q, want %q", got, want)
		}
		if got := lookup(t, e, u.aor)[0].Path; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("stored Path = %q", got)
		}
	})
	t.Run("NotSupported", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		u := newUA("alice")
		res := u.register(t, e, []string{"<sip:alice@10.0.0.2>"}, pathHdrs...)
		wantStatus(t, res, 200)
		if got := headerVals(res, "Path"); len(got) != 0 {
			t.Fatalf("Path echoed to a client without path support: %q", got)
		}
		if got := lookup(t, e, u.aor)[0].Path; len(got) != 3 {
			t.Fatalf("Path not stored: %q", got)
		}
	})
	t.Run("Strict", func(t *testing.T) {
		e := newEnv(t, func(c *Config) { c.StrictPath = true }, nil)
		u := newUA("alice")
		res := u.register(t, e, []string{"<sip:alice@10.0.0.2>"}, pathHdrs...)
		wantStatus(t, res, 420)
		if got := headerVals(res, "Unsupported"); len(got) != 1 || got[0] != "path" {
			t.Fatalf("Unsupported = %q", got)
		}
	})
	t.Run("Malformed", func(t *testing.T) {
		e := newEnv(t, nil, nil)
		wantStatus(t, newUA("alice").register(t, e, []string{"<sip:alice@10.0.0.2>"}, "Path: edge1.example.com"), 400)
	})
}

func TestExpiryIsExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil, nil)
		var events []Event
		stop := e.reg.Watch(func(ev Event) { events = append(events, ev) })
		defer stop()
		u := newUA("alice")
		wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>;expires=3600"}), 200)
		start := time.Now()
		time.Sleep(3600*time.Second - time.Nanosecond)
		if len(lookup(t, e, u.aor)) != 1 {
			t.Fatal("binding gone before its expiry")
		}
		time.Sleep(time.Nanosecond)
		if len(lookup(t, e, u.aor)) != 0 {
			t.Fatalf("binding still there at its expiry instant (%v after registering)", time.Since(start))
		}
		synctest.Wait()
		if len(events) != 2 || events[0].Kind != Added || events[1].Kind != Expired {
			t.Fatalf("events = %+v, want added then expired", events)
		}
		if s := e.reg.Stats(); s.Expired != 1 || s.Active != 0 {
			t.Errorf("stats = %+v", s)
		}
		e.reg.Close()
	})
}

func TestRefreshPostponesExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil, nil)
		u := newUA("alice")
		wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>;expires=120"}), 200)
		time.Sleep(100 * time.Second)
		wantStatus(t, e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>;expires=120"}), testLocal), 200)
		time.Sleep(100 * time.Second)
		synctest.Wait()
		if len(lookup(t, e, u.aor)) != 1 {
			t.Fatal("refreshed binding expired at its old expiry")
		}
		time.Sleep(20 * time.Second)
		if len(lookup(t, e, u.aor)) != 0 {
			t.Fatal("refreshed binding outlived its new expiry")
		}
		e.reg.Close()
	})
}

func TestConnectionBound(t *testing.T) {
	e := newEnv(t, nil, nil)
	var removed []Event
	e.reg.Watch(func(ev Event) {
		if ev.Kind == Removed {
			removed = append(removed, ev)
		}
	})
	ws := newUA("alice")
	ws.transport, ws.src = "WS", "203.0.113.20:50001"
	wantStatus(t, ws.register(t, e, []string{"<sip:df7jal23@df7jal23ls0d.invalid;transport=ws>"}), 200)
	udp := newUA("alice")
	udp.callID = "udp-call"
	wantStatus(t, udp.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
	if n := len(lookup(t, e, ws.aor)); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
	// Another connection closing changes nothing.
	if n := e.reg.ConnClosed("ws", netip.MustParseAddrPort("203.0.113.20:50002")); n != 0 {
		t.Fatalf("unrelated close removed %d bindings", n)
	}
	if n := e.reg.ConnClosed("ws", netip.MustParseAddrPort("203.0.113.20:50001")); n != 1 {
		t.Fatalf("ConnClosed removed %d bindings, want 1", n)
	}
	bs := lookup(t, e, ws.aor)
	if len(bs) != 1 || bs[0].Transport != "udp" {
		t.Fatalf("after close: %+v", bs)
	}
	if len(removed) != 1 || removed[0].Reason != "connection closed" {
		t.Fatalf("removed events = %+v", removed)
	}
	// A REGISTER from that connection handled after it closed leaves
	// nothing behind.
	wantStatus(t, e.reg.Handle(ws.build(t, []string{"<sip:df7jal23@df7jal23ls0d.invalid;transport=ws>"}), testLocal), 200)
	if bs := lookup(t, e, ws.aor); len(bs) != 1 || bs[0].Transport != "udp" {
		t.Fatalf("a REGISTER from a closed connection left a binding: %+v", bs)
	}
}

func TestWriteBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &flakyStore{Store: memory.New()}
		e := newEnv(t, func(c *Config) { c.Store = st; c.FlushInterval = 5 * time.Second }, nil)
		u := newUA("alice")
		wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
		ctx := context.Background()
		if bs, _ := st.ListBindings(ctx, u.aor, time.Now()); len(bs) != 0 {
			t.Fatal("write-back wrote before the flush")
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if bs, _ := st.ListBindings(ctx, u.aor, time.Now()); len(bs) != 1 {
			t.Fatal("binding not flushed after one interval")
		}
		// The database goes away: registrations still work, nothing is lost.
		st.fail.Store(true)
		bob := newUA("bob")
		wantStatus(t, bob.register(t, e, []string{"<sip:bob@10.0.0.5>"}), 200)
		wantStatus(t, e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>;expires=0"}), testLocal), 200)
		time.Sleep(20 * time.Second)
		synctest.Wait()
		s := e.reg.Stats()
		if s.FlushErrors == 0 || s.Dirty != 2 {
			t.Fatalf("during the outage: %+v", s)
		}
		// It comes back: the next flush writes everything.
		st.fail.Store(false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if bs, _ := st.ListBindings(ctx, "sip:bob@example.com", time.Now()); len(bs) != 1 {
			t.Fatal("binding made during the outage never reached the store")
		}
		if bs, _ := st.ListBindings(ctx, u.aor, time.Now()); len(bs) != 0 {
			t.Fatal("removal made during the outage never reached the store")
		}
		// Close flushes what is left.
		carol := newUA("carol")
		wantStatus(t, carol.register(t, e, []string{"<sip:carol@10.0.0.6>"}), 200)
		if err := e.reg.Close(); err != nil {
			t.Fatal(err)
		}
		if bs, _ := st.ListBindings(ctx, "sip:carol@example.com", time.Now()); len(bs) != 1 {
			t.Fatal("Close did not flush")
		}
	})
}

func TestLoadAtStart(t *testing.T) {
	st := memory.New()
	now := time.Now()
	ctx := context.Background()
	st.UpsertBindings(ctx, []store.Binding{
		{AOR: "sip:alice@example.com", Contact: "sip:alice@10.0.0.2", Transport: "udp", Expires: now.Add(time.Hour), Q: 1000, Version: 5, Updated: now, Node: "local"},
		{AOR: "sip:bob@example.com", Contact: "sip:bob@10.0.0.3", Transport: "udp", Expires: now.Add(-time.Second), Q: 1000, Version: 5, Updated: now},
		{AOR: "sip:carol@example.com", Contact: "sip:c@x.invalid;transport=ws", Transport: "ws", Expires: now.Add(time.Hour), Q: 1000, Version: 5, Updated: now, Node: "local"},
	})
	e := newEnv(t, func(c *Config) { c.Store = st }, nil)
	if got := contactsOf(lookup(t, e, "sip:alice@example.com")); got != "sip:alice@10.0.0.2" {
		t.Fatalf("loaded bindings: %q", got)
	}
	if len(lookup(t, e, "sip:bob@example.com")) != 0 {
		t.Fatal("expired binding loaded")
	}
	if len(lookup(t, e, "sip:carol@example.com")) != 0 {
		t.Fatal("a WebSocket binding survived the restart of the node that held its connection")
	}
	if bs, _ := st.ListBindings(ctx, "sip:carol@example.com", now); len(bs) != 0 {
		t.Fatal("the dead WebSocket binding was left in the store")
	}
}

func TestWriteThrough(t *testing.T) {
	st := &flakyStore{Store: memory.New()}
	e := newEnv(t, func(c *Config) { c.Store = st; c.Persistence = WriteThrough }, nil)
	u := newUA("alice")
	wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
	if bs, _ := st.ListBindings(context.Background(), u.aor, time.Now()); len(bs) != 1 {
		t.Fatal("write-through did not write before answering")
	}
	st.fail.Store(true)
	res := e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.3>"}), testLocal)
	wantStatus(t, res, 500)
	if got := contactsOf(lookup(t, e, u.aor)); got != "sip:alice@10.0.0.2" {
		t.Fatalf("a failed write-through changed the table: %q", got)
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Insecure = true; c.Auth = nil }, nil)
	base := "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\r\nFrom: <sip:alice@example.com>;tag=1\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n"
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{base + "Contact: <sip:a@10.0.0.2>\r\nContent-Length: 0\r\n\r\n", 400}, // no To
		{strings.Replace(base, "CSeq: 1 REGISTER", "CSeq: 1 INVITE", 1) + "To: <sip:alice@example.com>\r\nContent-Length: 0\r\n\r\n", 400},
		{base + "To: <tel:+15551234>\r\nContent-Length: 0\r\n\r\n", 400},
		{base + "To: <sip:alice@example.com>\r\nExpires: 1, 2\r\nContent-Length: 0\r\n\r\n", 400},
	} {
		msg, err := sip.ParseMessage([]byte(tc.raw))
		if err != nil {
			continue // the parser refused it: sipgo drops it before us
		}
		req := msg.(*sip.Request)
		req.SetSource("10.0.0.2:5060")
		res := e.reg.Handle(req, testLocal)
		if res.StatusCode != tc.status {
			t.Errorf("status %d, want %d for\n%s", res.StatusCode, tc.status, tc.raw)
		}
	}
}

// TestExpiryQueueStaysSmall: refreshing does not grow the expiry queue.
func TestExpiryQueueStaysSmall(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	for range 50 {
		wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
	}
	if n := e.reg.table.exp.len(); n != 1 {
		t.Fatalf("expiry queue holds %d entries for one binding refreshed 50 times", n)
	}
}

// TestConcurrentRegistersOfOneAOR: parallel REGISTERs of one AOR must not
// overwrite each other, nor get past MaxContacts together.
func TestConcurrentRegistersOfOneAOR(t *testing.T) {
	for _, max := range []int{-1, 5} {
		e := newEnv(t, func(c *Config) { c.Insecure, c.Auth, c.MaxContacts = true, nil, max }, nil)
		const n = 50
		var wg sync.WaitGroup
		var ok atomic.Int32
		for i := range n {
			wg.Go(func() {
				u := newUA("alice")
				u.callID = fmt.Sprintf("par-%d", i)
				if e.reg.Handle(u.build(t, []string{fmt.Sprintf("<sip:alice@10.0.%d.1>", i)}), testLocal).StatusCode == 200 {
					ok.Add(1)
				}
			})
		}
		wg.Wait()
		got := len(lookup(t, e, "sip:alice@example.com"))
		if int(ok.Load()) != got {
			t.Fatalf("MaxContacts %d: %d REGISTERs got 200 but %d bindings exist", max, ok.Load(), got)
		}
		if max > 0 && got > max {
			t.Fatalf("MaxContacts %d exceeded: %d bindings", max, got)
		}
	}
}

// TestWriteThroughSweepsExpired: in write-through mode expired rows do not
// pile up in the store.
func TestWriteThroughSweepsExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memory.New()
		e := newEnv(t, func(c *Config) { c.Store = st; c.Persistence = WriteThrough; c.FlushInterval = 5 * time.Second }, nil)
		u := newUA("alice")
		wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>;expires=60"}), 200)
		time.Sleep(70 * time.Second)
		synctest.Wait()
		if n, _ := st.DeleteExpiredBindings(context.Background(), time.Now()); n != 0 {
			t.Fatalf("%d expired rows were left in the store", n)
		}
		if bs, _ := st.ListBindings(context.Background(), u.aor, time.Now().Add(-time.Hour)); len(bs) != 0 {
			t.Fatal("expired binding still stored")
		}
		e.reg.Close()
	})
}
