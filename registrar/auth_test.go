package registrar

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/talkpad/talkpad/store"
)

func TestChallengeOffersMD5ThenSHA256(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	res := e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2:5060>"}), testLocal)
	wantStatus(t, res, 401)
	hs := headerVals(res, "WWW-Authenticate")
	if len(hs) != 2 {
		t.Fatalf("got %d challenges, want 2: %q", len(hs), hs)
	}
	var nonces []string
	for i, alg := range []string{"MD5", "SHA-256"} {
		c, err := digest.ParseChallenge(hs[i])
		if err != nil {
			t.Fatal(err)
		}
		if c.Algorithm != alg || c.Realm != testRealm || !c.SupportsQOP("auth") || c.Stale {
			t.Errorf("challenge %d = %+v, want %s, realm %s, qop auth", i, c, alg, testRealm)
		}
		nonces = append(nonces, c.Nonce)
	}
	if nonces[0] != nonces[1] {
		t.Error("challenges of one response carry different nonces")
	}
}

func TestAuthAlgorithms(t *testing.T) {
	for _, alg := range []string{"MD5", "SHA-256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			u := newUA("alice")
			u.alg = alg
			wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2:5060>"}), 200)
			// The same challenge answers the next request with nc=2.
			wantStatus(t, e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2:5060>"}), testLocal), 200)
			if s := e.auth.Stats(); s.OK != 2 {
				t.Errorf("OK = %d, want 2", s.OK)
			}
		})
	}
}

// RFC 7616 §3.9.1: the worked examples, MD5 and SHA-256, checked against
// HA1 values computed from the password as the store keeps them.
func TestRFC7616Examples(t *testing.T) {
	c := store.NewCredential("Mufasa", "http-auth@example.org", "Circle of Life")
	a := &Authenticator{}
	for _, tc := range []struct{ alg, response string }{
		{"MD5", "8ca523f5e9506fed4657c9700eebdbec"},
		{"SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		creds := &digest.Credentials{
			Username: "Mufasa", Realm: "http-auth@example.org", URI: "/dir/index.html",
			Algorithm: tc.alg, Nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", Nc: 1,
			Cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", QOP: "auth",
			Opaque: "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS", Response: tc.response,
		}
		if !a.responseOK(creds, c, "GET") {
			t.Errorf("%s: RFC 7616 example response rejected", tc.alg)
		}
		creds.Response = strings.ToUpper(tc.response)
		if !a.responseOK(creds, c, "GET") {
			t.Errorf("%s: upper-case hex response rejected", tc.alg)
		}
		creds.Response = tc.response[:len(tc.response)-1] + "0"
		if a.responseOK(creds, c, "GET") {
			t.Errorf("%s: altered response accepted", tc.alg)
		}
		if a.responseOK(&digest.Credentials{Algorithm: tc.alg, Response: tc.response}, c, "GET") {
			t.Errorf("%s: response accepted for other parameters", tc.alg)
		}
	}
}

func TestWrongPassword(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	u.pass = "guess"
	res := u.register(t, e, []string{"<sip:alice@10.0.0.2>"})
	wantStatus(t, res, 401)
	if s := e.auth.Stats(); s.Wrong != 1 {
		t.Errorf("Wrong = %d, want 1", s.Wrong)
	}
	if e.reg.Count() != 0 {
		t.Fatal("binding created with a wrong password")
	}
}

func TestUnknownUserLooksLikeWrongPassword(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("mallory")
	res := u.register(t, e, []string{"<sip:mallory@10.0.0.2>"})
	wantStatus(t, res, 401)
	if s := e.auth.Stats(); s.UnknownUser != 1 {
		t.Errorf("UnknownUser = %d, want 1", s.UnknownUser)
	}
}

func TestReplayRejected(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
	// Replay: the same nonce-count again, on a new request.
	u.nc--
	res := e.reg.Handle(u.build(t, []string{"<sip:mallory@198.51.100.66>"}), testLocal)
	wantStatus(t, res, 401)
	if s := e.auth.Stats(); s.Replay != 1 {
		t.Errorf("Replay = %d, want 1", s.Replay)
	}
	bs, _ := e.reg.Lookup(context.Background(), u.aor)
	if len(bs) != 1 || bs[0].Contact != "sip:alice@10.0.0.2" {
		t.Fatalf("replay changed the bindings: %+v", bs)
	}
}

func TestNonceCountWindow(t *testing.T) {
	var tr ncTracker
	now := time.Now()
	exp := now.Add(time.Minute)
	for _, tc := range []struct {
		nc   uint32
		want bool
	}{
		{1, true}, {1, false}, {3, true}, {2, true}, {2, false}, {100, true},
		{36, false /* 64 below the max */}, {37, true}, {37, false}, {0, false},
	} {
		if got := tr.use("n", tc.nc, now, exp); got != tc.want {
			t.Errorf("use(nc=%d) = %v, want %v", tc.nc, got, tc.want)
		}
	}
}

func TestStaleNonce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil, nil)
		u := newUA("alice")
		res := e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>"}), testLocal)
		u.learn(t, res)
		time.Sleep(5*time.Minute - time.Nanosecond)
		wantStatus(t, e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>"}), testLocal), 200)
		time.Sleep(time.Nanosecond)
		res = e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>"}), testLocal)
		wantStatus(t, res, 401)
		c, _ := digest.ParseChallenge(headerVals(res, "WWW-Authenticate")[0])
		if !c.Stale {
			t.Fatalf("expired nonce with a correct response: want stale=true, got %s", headerVals(res, "WWW-Authenticate")[0])
		}
		// A wrong password with an expired nonce is not stale: stale means
		// "your credentials were right, retry with this nonce".
		u.pass = "wrong"
		res = e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>"}), testLocal)
		c, _ = digest.ParseChallenge(headerVals(res, "WWW-Authenticate")[0])
		if c.Stale {
			t.Fatal("stale=true for a wrong password")
		}
		e.reg.Close()
	})
}

func TestForeignAOR(t *testing.T) {
	e := newEnv(t, nil, nil)
	u := newUA("alice")
	u.aor = "sip:bob@" + testRealm // alice's credentials, bob's AOR
	wantStatus(t, u.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 403)
	if bs, _ := e.reg.Lookup(context.Background(), "sip:bob@"+testRealm); len(bs) != 0 {
		t.Fatal("alice registered bob")
	}
}

func TestMalformedAuthorization(t *testing.T) {
	for _, h := range []string{
		`Digest username="alice"`,
		`Digest username="alice", realm="example.com", nonce="x", uri="sip:example.com"`,
		`Digest username="alice", realm="example.com", nonce="x", uri="sip:example.com", response="00", qop=auth`,
		`Digest username="alice", realm="example.com", nonce="x", uri="sip:example.com", response="00", algorithm=ROT13`,
		`Digest username="alice", realm="example.com", nonce="x", uri="sip:example.com", response="00", qop=auth, nc=zz, cnonce="c"`,
		`Digest username="alice, realm="example.com"`,
		`Digest ` + strings.Repeat("a", 5000),
	} {
		e := newEnv(t, nil, nil)
		u := newUA("alice")
		res := e.reg.Handle(u.build(t, []string{"<sip:alice@10.0.0.2>"}, "Authorization: "+h), testLocal)
		wantStatus(t, res, 400)
	}
}

func TestThrottle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil, func(c *AuthConfig) { c.FailureLimit = 3; c.FailureWindow = time.Minute })
		attacker := newUA("alice")
		attacker.src = "198.51.100.7:5060"
		attacker.pass = "guess"
		attacker.learn(t, e.reg.Handle(attacker.build(t, nil), testLocal))
		for range 3 {
			wantStatus(t, e.reg.Handle(attacker.build(t, []string{"<sip:x@198.51.100.7>"}), testLocal), 401)
		}
		// Now even the right password from the attacker's address learns
		// nothing.
		attacker.pass = "secret-alice"
		attacker.chal = nil
		wantStatus(t, attacker.register(t, e, []string{"<sip:x@198.51.100.7>"}), 403)
		// Bob behind the same address (a shared NAT) is not locked out by
		// guesses at alice's password.
		bob := newUA("bob")
		bob.src = "198.51.100.7:5070"
		wantStatus(t, bob.register(t, e, []string{"<sip:bob@198.51.100.7:5070>"}), 200)
		// Alice from her own address is not locked out.
		alice := newUA("alice")
		wantStatus(t, alice.register(t, e, []string{"<sip:alice@10.0.0.2>"}), 200)
		// Another address in the attacker's IPv6 /64 would share the
		// window; another IPv4 address does not.
		other := newUA("alice")
		other.src = "198.51.100.8:5060"
		wantStatus(t, other.register(t, e, []string{"<sip:alice@10.0.0.3>"}), 200)
		// The window ends.
		time.Sleep(time.Minute)
		attacker.chal = nil
		wantStatus(t, attacker.register(t, e, []string{"<sip:alice@198.51.100.7>"}), 200)
		if s := e.auth.Stats(); s.Throttled != 1 {
			t.Errorf("Throttled = %d, want 1", s.Throttled)
		}
		e.reg.Close()
	})
}

func TestDisabledAccount(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.creds.UpdateCredential(context.Background(), testRealm, "carol", store.SetDisabled(true)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, newUA("carol").register(t, e, []string{"<sip:carol@10.0.0.2>"}), 403)
}

func TestNonceForgery(t *testing.T) {
	m := nonceMaker{secret: []byte("k1"), realm: "r"}
	n := m.make(time.Unix(1000, 0))
	if ts, ok := m.check(n); !ok || !ts.Equal(time.Unix(1000, 0)) {
		t.Fatalf("own nonce rejected: %v %v", ts, ok)
	}
	other := nonceMaker{secret: []byte("k2"), realm: "r"}
	if _, ok := other.check(n); ok {
		t.Fatal("nonce accepted under another secret")
	}
	otherRealm := nonceMaker{secret: []byte("k1"), realm: "r2"}
	if _, ok := otherRealm.check(n); ok {
		t.Fatal("nonce accepted for another realm")
	}
	b := []byte(n)
	b[3] ^= 1
	if _, ok := m.check(string(b)); ok {
		t.Fatal("altered nonce accepted")
	}
	for _, bad := range []string{"", "short", strings.Repeat("A", nonceLen), n + "A"} {
		if _, ok := m.check(bad); ok {
			t.Fatalf("nonce %q accepted", bad)
		}
	}
}

func TestChallengeAlgorithmsPerClient(t *testing.T) {
	mk := func(transport, ua string) *sip.Request {
		raw := "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/" + transport + " 10.0.0.2;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n"
		if ua != "" {
			raw += "User-Agent: " + ua + "\r\n"
		}
		return parse(t, raw+"Content-Length: 0\r\n\r\n", "10.0.0.2:5060", transport)
	}
	both := []string{"MD5", "SHA-256"}
	for _, tc := range []struct {
		transport, ua string
		configured    []string
		want          string
	}{
		{"UDP", "sipsak 0.9.8.1", both, "MD5,SHA-256"},        // takes the first
		{"UDP", "", both, "MD5,SHA-256"},                      // sipp sends no User-Agent
		{"WS", "JsSIP 3.13.8", both, "SHA-256,MD5"},           // keeps the last
		{"WSS", "SIP.js/0.21.2", both, "SHA-256,MD5"},         // keeps the last
		{"UDP", "baresip v1.0.0 (x86_64/linux)", both, "MD5"}, // gives up on SHA-256
		{"UDP", "baresip v3.10.1 (x86_64/linux)", both, "MD5,SHA-256"},
		{"UDP", "baresip v1.0.0", []string{"SHA-256"}, "SHA-256"}, // MD5 not configured: as configured
		{"WS", "JsSIP", []string{"SHA-256", "MD5"}, "SHA-256,MD5"},
	} {
		got := strings.Join(DefaultChallengeAlgorithms(mk(tc.transport, tc.ua), tc.configured), ",")
		if got != tc.want {
			t.Errorf("%s %q %v: %s, want %s", tc.transport, tc.ua, tc.configured, got, tc.want)
		}
	}
}
