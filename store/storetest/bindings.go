package storetest

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talkpad/talkpad/store"
)

// RunBindingsTests runs the store.Bindings conformance suite.
func RunBindingsTests(t *testing.T, newStore func(t *testing.T) store.Bindings) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Bindings)
	}{
		{"RoundTrip", testBindingRoundTrip},
		{"EmptyLists", testBindingEmpty},
		{"Refresh", testBindingRefresh},
		{"StaleVersionSkipped", testBindingStaleVersion},
		{"DuplicateKeysInOneBatch", testBindingDuplicateInBatch},
		{"Order", testBindingOrder},
		{"InstanceKey", testBindingInstanceKey},
		{"ExpiryBoundary", testBindingExpiryBoundary},
		{"ListAll", testBindingListAll},
		{"DeleteExpired", testBindingDeleteExpired},
		{"Delete", testBindingDelete},
		{"InvalidBatchWritesNothing", testBindingInvalidBatch},
		{"LargePath", testBindingLargePath},
		{"Unicode", testBindingUnicode},
		{"LargeBatch", testBindingLargeBatch},
		{"ConcurrentUpsertSameAOR", testBindingConcurrentSameAOR},
		{"CanceledContext", testBindingCanceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newStore(t))
		})
	}
}

// base is the suite's "now": fixed, to the microsecond, in UTC.
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func binding(aor, contact string) store.Binding {
	return store.Binding{
		AOR:       aor,
		Contact:   contact,
		Received:  netip.MustParseAddrPort("203.0.113.7:40211"),
		Transport: "udp",
		LocalAddr: netip.MustParseAddrPort("192.0.2.1:5060"),
		CallID:    "call-" + contact,
		CSeq:      1,
		Expires:   base.Add(time.Hour),
		Q:         1000,
		Version:   1,
		Updated:   base,
	}
}

func keys(bs []store.Binding) string {
	var s []string
	for _, b := range bs {
		s = append(s, b.Key())
	}
	return strings.Join(s, ",")
}

func equalBinding(a, b store.Binding) bool {
	return a.AOR == b.AOR && a.Contact == b.Contact && a.Received == b.Received &&
		a.Transport == b.Transport && a.LocalAddr == b.LocalAddr &&
		strings.Join(a.Path, "\x00") == strings.Join(b.Path, "\x00") && len(a.Path) == len(b.Path) &&
		a.CallID == b.CallID && a.CSeq == b.CSeq && a.Expires.Equal(b.Expires) && a.Q == b.Q &&
		a.UserAgent == b.UserAgent && a.Instance == b.Instance && a.RegID == b.RegID &&
		a.NATType == b.NATType && a.Node == b.Node && a.Version == b.Version && a.Updated.Equal(b.Updated)
}

func testBindingRoundTrip(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	b := store.Binding{
		AOR:       "sip:alice@example.com",
		Contact:   "sip:alice@[2001:db8::10]:5062;transport=tcp;ob",
		Received:  netip.MustParseAddrPort("[2001:db8::10]:50123"),
		Transport: "tcp",
		LocalAddr: netip.MustParseAddrPort("[2001:db8::1]:5060"),
		Path:      []string{"<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr;ob>"},
		CallID:    "a84b4c76e66710@pc33.example.com",
		CSeq:      4294967295,
		Expires:   base.Add(3600 * time.Second),
		Q:         700,
		UserAgent: "baresip v3.10.1 (x86_64/linux)",
		Instance:  "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>",
		RegID:     2,
		NATType:   "symmetric",
		Node:      "proxy-a",
		Version:   1<<63 + 5,
		Updated:   base,
	}
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	got, err := s.ListBindings(ctx, b.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || !equalBinding(got[0], b) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, b)
	}
	// The stored copy must not alias the caller's slice.
	b.Path[0] = "<sip:changed>"
	got, err = s.ListBindings(ctx, b.AOR, base)
	mustNil(t, err)
	if got[0].Path[0] != "<sip:edge1.example.com;lr>" {
		t.Fatal("store aliases the caller's Path slice")
	}
	// Nanoseconds and time zones are normalised, not refused.
	c := binding("sip:tz@example.com", "sip:tz@192.0.2.9")
	c.Expires = base.Add(time.Hour + 999*time.Nanosecond).In(time.FixedZone("X", 3*3600))
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{c}))
	got, err = s.ListBindings(ctx, c.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || !got[0].Expires.Equal(base.Add(time.Hour)) {
		t.Fatalf("expiry with nanoseconds came back as %v, want %v", got, base.Add(time.Hour))
	}
	// Zero addresses (unknown) survive as zero.
	d := binding("sip:zero@example.com", "sip:zero@192.0.2.9")
	d.Received, d.LocalAddr, d.Transport = netip.AddrPort{}, netip.AddrPort{}, ""
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{d}))
	got, err = s.ListBindings(ctx, d.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || !equalBinding(got[0], d) {
		t.Fatalf("zero addresses:\n got %+v\nwant %+v", got, d)
	}
}

func testBindingEmpty(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	mustNil(t, s.UpsertBindings(ctx, nil))
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{}))
	mustNil(t, s.DeleteBindings(ctx, nil))
	got, err := s.ListBindings(ctx, "sip:nobody@example.com", base)
	mustNil(t, err)
	if len(got) != 0 {
		t.Fatalf("unknown AOR lists %d bindings", len(got))
	}
	all, err := s.ListAllBindings(ctx, base)
	mustNil(t, err)
	if len(all) != 0 {
		t.Fatalf("empty store lists %d bindings", len(all))
	}
	n, err := s.DeleteExpiredBindings(ctx, base)
	mustNil(t, err)
	if n != 0 {
		t.Fatalf("empty store deleted %d expired bindings", n)
	}
}

func testBindingRefresh(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	b := binding("sip:bob@example.com", "sip:bob@192.0.2.20")
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	b.CSeq, b.Version, b.Expires, b.Received = 2, 2, base.Add(2*time.Hour), netip.MustParseAddrPort("203.0.113.8:1024")
	b.Path = []string{"<sip:p.example.com;lr>"}
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	got, err := s.ListBindings(ctx, b.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || !equalBinding(got[0], b) {
		t.Fatalf("after refresh:\n got %+v\nwant %+v", got, b)
	}
	// Equal versions replace too: the latest write of a version wins.
	b.UserAgent = "same version, later write"
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	got, err = s.ListBindings(ctx, b.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || got[0].UserAgent != b.UserAgent {
		t.Fatalf("equal-version write not applied: %+v", got)
	}
}

func testBindingStaleVersion(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	b := binding("sip:carol@example.com", "sip:carol@192.0.2.30")
	b.Version, b.CSeq = 10, 10
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	old := b
	old.Version, old.CSeq, old.Node = 9, 9, "stale"
	other := binding("sip:carol@example.com", "sip:carol@192.0.2.31")
	// A stale write is skipped without failing the rest of the batch.
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{old, other}))
	got, err := s.ListBindings(ctx, b.AOR, base)
	mustNil(t, err)
	if len(got) != 2 {
		t.Fatalf("got %d bindings, want 2", len(got))
	}
	for _, g := range got {
		if g.Key() == b.Key() && (g.Version != 10 || g.Node == "stale") {
			t.Fatalf("stale version replaced a newer binding: %+v", g)
		}
	}
}

func testBindingDuplicateInBatch(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	v1 := binding("sip:dup@example.com", "sip:dup@192.0.2.40")
	v2 := v1
	v2.Version, v2.UserAgent = 2, "v2"
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{v1, v2}))
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{v1}))
	got, err := s.ListBindings(ctx, v1.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || got[0].Version != 2 || got[0].UserAgent != "v2" {
		t.Fatalf("duplicate keys in one batch: got %+v, want version 2", got)
	}
}

func testBindingOrder(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	aor := "sip:order@example.com"
	mk := func(c string, q int, updated time.Duration) store.Binding {
		b := binding(aor, c)
		b.Q, b.Updated = q, base.Add(updated)
		return b
	}
	bs := []store.Binding{
		mk("sip:a@192.0.2.1", 500, 3*time.Second),
		mk("sip:b@192.0.2.1", 1000, 1*time.Second),
		mk("sip:c@192.0.2.1", 1000, 2*time.Second),
		mk("sip:d@192.0.2.1", 0, 9*time.Second),
		mk("sip:e@192.0.2.1", 500, 3*time.Second),
	}
	mustNil(t, s.UpsertBindings(ctx, bs))
	got, err := s.ListBindings(ctx, aor, base)
	mustNil(t, err)
	want := "sip:c@192.0.2.1,sip:b@192.0.2.1,sip:a@192.0.2.1,sip:e@192.0.2.1,sip:d@192.0.2.1"
	if keys(got) != want {
		t.Fatalf("order:\n got %s\nwant %s", keys(got), want)
	}
}

func testBindingInstanceKey(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	aor := "sip:inst@example.com"
	a := binding(aor, "sip:inst@10.0.0.5:5060;ob")
	a.Instance, a.RegID = "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>", 1
	// Same instance and reg-id from a new address: replaces the flow.
	b := a
	b.Contact, b.Version = "sip:inst@10.0.0.6:5070;ob", 2
	// Same instance, another reg-id: a second flow.
	c := a
	c.Contact, c.RegID = "sip:inst@10.0.0.5:5060;ob", 2
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{a}))
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b, c}))
	got, err := s.ListBindings(ctx, aor, base)
	mustNil(t, err)
	if len(got) != 2 {
		t.Fatalf("got %d bindings, want 2 flows: %s", len(got), keys(got))
	}
	for _, g := range got {
		if g.RegID == 1 && g.Contact != b.Contact {
			t.Fatalf("flow 1 not replaced: %+v", g)
		}
	}
}

func testBindingExpiryBoundary(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	b := binding("sip:edge@example.com", "sip:edge@192.0.2.50")
	b.Expires = base.Add(3600 * time.Second)
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	for _, tc := range []struct {
		now  time.Time
		live bool
	}{
		{base, true},
		{b.Expires.Add(-time.Microsecond), true},
		{b.Expires.Add(-time.Nanosecond), true},
		{b.Expires, false},
		{b.Expires.Add(time.Microsecond), false},
	} {
		got, err := s.ListBindings(ctx, b.AOR, tc.now)
		mustNil(t, err)
		if (len(got) == 1) != tc.live {
			t.Errorf("ListBindings at expiry%+v: %d bindings, want live=%v", tc.now.Sub(b.Expires), len(got), tc.live)
		}
		all, err := s.ListAllBindings(ctx, tc.now)
		mustNil(t, err)
		if (len(all) == 1) != tc.live {
			t.Errorf("ListAllBindings at expiry%+v: %d bindings, want live=%v", tc.now.Sub(b.Expires), len(all), tc.live)
		}
	}
	n, err := s.DeleteExpiredBindings(ctx, b.Expires.Add(-time.Nanosecond))
	mustNil(t, err)
	if n != 0 {
		t.Fatalf("deleted %d bindings before their expiry", n)
	}
	n, err = s.DeleteExpiredBindings(ctx, b.Expires)
	mustNil(t, err)
	if n != 1 {
		t.Fatalf("deleted %d bindings at the expiry instant, want 1", n)
	}
}

func testBindingListAll(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	var bs []store.Binding
	for i := range 5 {
		b := binding(fmt.Sprintf("sip:u%d@example.com", 4-i), fmt.Sprintf("sip:c%d@192.0.2.1", i))
		if i == 2 {
			b.Expires = base // expired at base
		}
		bs = append(bs, b)
	}
	mustNil(t, s.UpsertBindings(ctx, bs))
	all, err := s.ListAllBindings(ctx, base)
	mustNil(t, err)
	var aors []string
	for _, b := range all {
		aors = append(aors, b.AOR)
	}
	want := "sip:u0@example.com,sip:u1@example.com,sip:u3@example.com,sip:u4@example.com"
	if got := strings.Join(aors, ","); got != want {
		t.Fatalf("ListAllBindings:\n got %s\nwant %s", got, want)
	}
}

func testBindingDeleteExpired(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	var bs []store.Binding
	for i := range 10 {
		b := binding("sip:exp@example.com", fmt.Sprintf("sip:c%d@192.0.2.1", i))
		b.Expires = base.Add(time.Duration(i) * time.Minute)
		bs = append(bs, b)
	}
	mustNil(t, s.UpsertBindings(ctx, bs))
	n, err := s.DeleteExpiredBindings(ctx, base.Add(4*time.Minute))
	mustNil(t, err)
	if n != 5 {
		t.Fatalf("deleted %d, want 5 (expiries 0..4 min)", n)
	}
	// Deleted, not merely hidden: an earlier "now" does not bring them back.
	got, err := s.ListBindings(ctx, "sip:exp@example.com", base.Add(-time.Hour))
	mustNil(t, err)
	if len(got) != 5 {
		t.Fatalf("%d bindings left, want 5", len(got))
	}
}

func testBindingDelete(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	a := binding("sip:del@example.com", "sip:a@192.0.2.1")
	b := binding("sip:del@example.com", "sip:b@192.0.2.1")
	c := binding("sip:other@example.com", "sip:a@192.0.2.1")
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{a, b, c}))
	mustNil(t, s.DeleteBindings(ctx, []store.BindingKey{
		a.ID(),
		{AOR: "sip:del@example.com", Key: "sip:missing@192.0.2.1"},
		{AOR: "sip:missing@example.com", Key: "sip:a@192.0.2.1"},
	}))
	got, err := s.ListBindings(ctx, a.AOR, base)
	mustNil(t, err)
	if keys(got) != b.Key() {
		t.Fatalf("after delete: %s, want %s", keys(got), b.Key())
	}
	got, err = s.ListBindings(ctx, c.AOR, base)
	mustNil(t, err)
	if len(got) != 1 {
		t.Fatal("delete of one AOR's binding removed another AOR's binding with the same contact")
	}
}

func testBindingInvalidBatch(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	good := binding("sip:inv@example.com", "sip:good@192.0.2.1")
	for _, bad := range []store.Binding{
		func() store.Binding { b := good; b.AOR = ""; return b }(),
		func() store.Binding { b := good; b.Contact = ""; return b }(),
		func() store.Binding { b := good; b.Contact = "sip:x"; b.Q = 1001; return b }(),
		func() store.Binding { b := good; b.Contact = "sip:y"; b.Expires = time.Time{}; return b }(),
		func() store.Binding { b := good; b.Contact = "sip:z"; b.Path = []string{""}; return b }(),
		func() store.Binding { b := good; b.Contact = "sip:\xff"; return b }(),
		func() store.Binding { b := good; b.Contact = "sip:a\x00b"; return b }(),
		func() store.Binding { b := good; b.Contact = "sip:ua"; b.UserAgent = "nul\x00"; return b }(),
	} {
		mustIs(t, s.UpsertBindings(ctx, []store.Binding{good, bad}), store.ErrInvalid)
	}
	got, err := s.ListBindings(ctx, good.AOR, base)
	mustNil(t, err)
	if len(got) != 0 {
		t.Fatalf("a batch refused as invalid wrote %d bindings", len(got))
	}
}

func testBindingLargePath(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	b := binding("sip:path@example.com", "sip:path@192.0.2.1")
	for i := range 100 {
		b.Path = append(b.Path, fmt.Sprintf("<sip:proxy%03d.%s.example.com;lr;transport=tcp;ftag=%040d>", i, strings.Repeat("x", 40), i))
	}
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	got, err := s.ListBindings(ctx, b.AOR, base)
	mustNil(t, err)
	if len(got) != 1 || !equalBinding(got[0], b) {
		t.Fatalf("large Path vector did not survive: %d entries back", len(got[0].Path))
	}
}

func testBindingUnicode(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	b := binding("sip:zoë@例え.jp", "sip:%F0%9F%99%82@192.0.2.1")
	b.UserAgent = "Téléphone 🙂"
	b.Path = []string{"<sip:прокси.example;lr>"}
	mustNil(t, s.UpsertBindings(ctx, []store.Binding{b}))
	got, err := s.ListBindings(ctx, "sip:zoë@例え.jp", base)
	mustNil(t, err)
	if len(got) != 1 || !equalBinding(got[0], b) {
		t.Fatalf("unicode binding:\n got %+v\nwant %+v", got, b)
	}
	// Different normalisations are different AORs: the store compares bytes.
	got, err = s.ListBindings(ctx, "sip:zoe\u0308@例え.jp", base)
	mustNil(t, err)
	if len(got) != 0 {
		t.Fatal("store folded a decomposed AOR into the composed one")
	}
}

func testBindingLargeBatch(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	var bs []store.Binding
	for i := range 1000 {
		bs = append(bs, binding(fmt.Sprintf("sip:user%04d@example.com", i), fmt.Sprintf("sip:user%04d@192.0.2.1:%d", i, 1024+i)))
	}
	// Repeated keys in one big batch: a lower version loses, a higher one
	// wins, whatever the order.
	var newer, stale []store.Binding
	for i := range 10 {
		o := bs[i]
		o.Version, o.UserAgent = 0, "stale"
		stale = append(stale, o)
		n := bs[10+i]
		n.Version, n.UserAgent = 5, "newer"
		newer = append(newer, n)
	}
	bs = append(append(newer, bs...), stale...)
	mustNil(t, s.UpsertBindings(ctx, bs))
	all, err := s.ListAllBindings(ctx, base)
	mustNil(t, err)
	if len(all) != 1000 {
		t.Fatalf("listed %d of 1000 bindings", len(all))
	}
	for i, b := range all[:20] {
		if i < 10 && b.UserAgent == "stale" || i >= 10 && b.UserAgent != "newer" {
			t.Fatalf("binding %d of a batch with repeated keys: %+v", i, b)
		}
	}
	if all[0].AOR != "sip:user0000@example.com" || all[999].AOR != "sip:user0999@example.com" {
		t.Fatalf("large batch order: first %s last %s", all[0].AOR, all[999].AOR)
	}
}

func testBindingConcurrentSameAOR(t *testing.T, s store.Bindings) {
	ctx := context.Background()
	aor := "sip:busy@example.com"
	const writers, rounds = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				own := binding(aor, fmt.Sprintf("sip:w%d@192.0.2.1", w))
				own.Version = uint64(r + 1)
				shared := binding(aor, "sip:shared@192.0.2.1")
				shared.Version = uint64(w*rounds + r + 1)
				shared.Node = fmt.Sprintf("w%d", w)
				// Opposite orders in one batch invite deadlocks in a
				// backend that does not order its writes.
				batch := []store.Binding{own, shared}
				if w%2 == 1 {
					batch = []store.Binding{shared, own}
				}
				errs <- s.UpsertBindings(ctx, batch)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		mustNil(t, err)
	}
	got, err := s.ListBindings(ctx, aor, base)
	mustNil(t, err)
	if len(got) != writers+1 {
		t.Fatalf("got %d bindings, want %d", len(got), writers+1)
	}
	for _, g := range got {
		if g.Contact == "sip:shared@192.0.2.1" && g.Version != writers*rounds {
			t.Fatalf("shared binding has version %d, want the highest written, %d", g.Version, writers*rounds)
		}
		if g.Contact != "sip:shared@192.0.2.1" && g.Version != rounds {
			t.Fatalf("binding %s has version %d, want %d", g.Contact, g.Version, rounds)
		}
	}
}

func testBindingCanceled(t *testing.T, s store.Bindings) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := binding("sip:cancel@example.com", "sip:cancel@192.0.2.1")
	if err := s.UpsertBindings(ctx, []store.Binding{b}); err == nil {
		t.Fatal("UpsertBindings with a canceled context succeeded")
	}
	if _, err := s.ListBindings(ctx, b.AOR, base); err == nil {
		t.Fatal("ListBindings with a canceled context succeeded")
	}
	got, err := s.ListBindings(context.Background(), b.AOR, base)
	mustNil(t, err)
	if len(got) != 0 {
		t.Fatal("a canceled upsert was written")
	}
}
