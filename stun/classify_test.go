package stun_test

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/talkpad/talkpad/stun"
	"github.com/talkpad/talkpad/stun/stuntest"
)

// The fake network uses loopback-range numbers only; nothing leaves the
// process. Clients live in 127.1.0.0/16 behind a NAT whose public address
// is 127.2.0.1; the server has 127.0.0.1 and 127.0.0.2.
var (
	fakePrimary = netip.MustParseAddrPort("127.0.0.1:3478")
	fakeAlt     = netip.MustParseAddrPort("127.0.0.2:3479")
	fakeInside  = netip.MustParsePrefix("127.1.0.0/16")
	fakePublic  = netip.MustParseAddr("127.2.0.1")
)

var quiet = slog.New(slog.DiscardHandler)

// fakeServer serves an RFC 5780 server (or, with lone, a plain one) on n.
func fakeServer(t *testing.T, n *stuntest.Network, cfg stun.Config, lone bool) *stun.Server {
	t.Helper()
	cfg.Logger = quiet
	srv, err := stun.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	listen := func(a netip.AddrPort) *stuntest.Conn {
		c, err := n.Listen(a)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	done := make(chan struct{})
	if lone {
		pc := listen(fakePrimary)
		go func() { defer close(done); srv.Serve(t.Context(), pc) }()
	} else {
		q := stun.Quad{
			Primary: listen(fakePrimary),
			AltPort: listen(netip.AddrPortFrom(fakePrimary.Addr(), fakeAlt.Port())),
			AltIP:   listen(netip.AddrPortFrom(fakeAlt.Addr(), fakePrimary.Port())),
			AltBoth: listen(fakeAlt),
		}
		go func() { defer close(done); srv.ServeQuad(t.Context(), q) }()
	}
	t.Cleanup(func() { srv.Close(); <-done })
	return srv
}

func TestClassifyNATs(t *testing.T) {
	E, A, P := stuntest.EndpointIndependent, stuntest.AddressDependent, stuntest.AddressAndPortDependent
	behaviour := map[stuntest.Behavior]stun.Behavior{
		E: stun.EndpointIndependent, A: stun.AddressDependent, P: stun.AddressAndPortDependent,
	}
	tests := []struct {
		name               string
		nat                bool
		mapping, filtering stuntest.Behavior
		want               stun.NATType
		relay              bool
	}{
		{"no NAT", false, E, E, stun.OpenInternet, false},
		{"full cone", true, E, E, stun.FullCone, false},
		{"restricted cone", true, E, A, stun.RestrictedCone, false},
		{"port-restricted cone", true, E, P, stun.PortRestrictedCone, false},
		{"symmetric, address-dependent", true, A, P, stun.Symmetric, true},
		{"symmetric, port-dependent", true, P, P, stun.Symmetric, true},
		{"symmetric with open filter", true, P, E, stun.Symmetric, true},
		{"address-dependent mapping and filter", true, A, A, stun.Symmetric, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := stuntest.NewNetwork()
				if tt.nat {
					n.AddNAT(stuntest.NATConfig{Inside: fakeInside, Public: fakePublic, Mapping: tt.mapping, Filtering: tt.filtering})
				}
				fakeServer(t, n, stun.Config{}, false)
				c, _ := stun.NewClassifier(stun.ClassifierConfig{ListenPacket: n.ListenPacket, LocalAddr: "127.1.0.2:0", Logger: quiet})
				start := time.Now()
				res, err := c.Classify(t.Context(), fakePrimary.String())
				if err != nil {
					t.Fatal(err)
				}
				if res.Type != tt.want || res.NeedsRelay() != tt.relay || res.Partial || res.BehindNAT != tt.nat {
					t.Fatalf("got\n%v", res)
				}
				if res.Mapping != behaviour[tt.mapping] || res.Filtering != behaviour[tt.filtering] {
					t.Errorf("mapping %v filtering %v, want %v %v", res.Mapping, res.Filtering, tt.mapping, tt.filtering)
				}
				if tt.nat && res.Public.Addr() != fakePublic {
					t.Errorf("public %v", res.Public)
				}
				// Filtering tests without an answer wait out the
				// default schedule: 0.2+0.4+0.8+0.8s.
				wantTime := time.Duration(0)
				if tt.filtering != E {
					wantTime = 2200 * time.Millisecond
				}
				if d := time.Since(start); d != wantTime {
					t.Errorf("took %v, want %v", d, wantTime)
				}
			})
		})
	}
}

func TestClassifyUDPBlocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := stuntest.NewNetwork()
		n.AddNAT(stuntest.NATConfig{Inside: fakeInside, Public: fakePublic, Drop: true})
		fakeServer(t, n, stun.Config{}, false)
		c, _ := stun.NewClassifier(stun.ClassifierConfig{
			ListenPacket: n.ListenPacket, LocalAddr: "127.1.0.2:0", Logger: quiet,
			RTO: 500 * time.Millisecond, Rc: 7, Rm: 16, // RFC 8489 defaults
		})
		start := time.Now()
		res, err := c.Classify(t.Context(), fakePrimary.String())
		if err != nil {
			t.Fatal(err)
		}
		if res.Type != stun.UDPBlocked || !res.NeedsRelay() {
			t.Errorf("got\n%v", res)
		}
		// RFC 8489 §6.2.1: "the client will have sent seven requests, at
		// times 0 ms, 500 ms, 1500 ms, 3500 ms, 7500 ms, 15500 ms, and
		// 31500 ms. If the client has not received a response after
		// 39500 ms, the client will consider the transaction to have
		// timed out."
		if d := time.Since(start); d != 39500*time.Millisecond {
			t.Errorf("gave up after %v, want 39.5s", d)
		}
	})
}

func TestClassifyWithoutRFC5780(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := stuntest.NewNetwork()
		n.AddNAT(stuntest.NATConfig{Inside: fakeInside, Public: fakePublic, Mapping: stuntest.AddressAndPortDependent})
		fakeServer(t, n, stun.Config{}, true)
		c, _ := stun.NewClassifier(stun.ClassifierConfig{ListenPacket: n.ListenPacket, LocalAddr: "127.1.0.2:0", Logger: quiet})
		res, err := c.Classify(t.Context(), fakePrimary.String())
		if err != nil {
			t.Fatal(err)
		}
		if !res.Partial || res.Type != stun.TypeUnknown || !res.BehindNAT || res.Public.Addr() != fakePublic ||
			res.Mapping != stun.BehaviorUnknown || !res.NeedsRelay() {
			t.Errorf("got\n%v", res)
		}
		if s := res.String(); !strings.Contains(s, "PARTIAL") || !strings.Contains(s, "RFC 5780") {
			t.Errorf("String() does not label the partial answer:\n%s", s)
		}
	})
}

func TestClassifyContextCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := stuntest.NewNetwork()
		n.AddNAT(stuntest.NATConfig{Inside: fakeInside, Public: fakePublic, Drop: true})
		c, _ := stun.NewClassifier(stun.ClassifierConfig{ListenPacket: n.ListenPacket, LocalAddr: "127.1.0.2:0", Logger: quiet})
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_, err := c.Classify(ctx, fakePrimary.String())
		if err != context.DeadlineExceeded {
			t.Errorf("err %v", err)
		}
	})
}
