package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

const testRealm = "example.com"

var testLocal = netip.MustParseAddrPort("192.0.2.1:5060")

// env is a registrar with a memory credential store holding alice, bob
// and carol (password "secret-<name>").
type env struct {
	t     testing.TB
	reg   *Registrar
	auth  *Authenticator
	creds *memory.Store
	binds store.Bindings
}

func newEnv(t testing.TB, mod func(*Config), amod func(*AuthConfig)) *env {
	t.Helper()
	creds := memory.New()
	for _, u := range []string{"alice", "bob", "carol"} {
		if err := creds.CreateCredential(context.Background(), store.NewCredential(u, testRealm, "secret-"+u)); err != nil {
			t.Fatal(err)
		}
	}
	acfg := AuthConfig{Realm: testRealm, Credentials: creds, Secret: []byte("test secret"), Logger: slog.New(slog.DiscardHandler)}
	if amod != nil {
		amod(&acfg)
	}
	auth, err := NewAuthenticator(acfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Auth: auth, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	reg, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return &env{t: t, reg: reg, auth: auth, creds: creds, binds: cfg.Store}
}

// ua is a test user agent: one Call-ID, increasing CSeq, digest answers.
type ua struct {
	user, pass string
	aor        string // To URI
	callID     string
	cseq       uint32
	src        string // source address sipgo would record
	transport  string
	alg        string // algorithm to answer with; "" = first offered
	nc         int
	chal       *digest.Challenge
	via        string // sent-by host:port; defaults to src
	rport      bool
}

func newUA(user string) *ua {
	return &ua{
		user: user, pass: "secret-" + user, aor: "sip:" + user + "@" + testRealm,
		callID: "call-" + user + "@test", src: "203.0.113.10:40000", transport: "UDP",
	}
}

// build returns a REGISTER with the given Contact header values and extra
// header lines, answering the last challenge if there is one.
func (u *ua) build(t testing.TB, contacts []string, extra ...string) *sip.Request {
	t.Helper()
	u.cseq++
	via := u.via
	if via == "" {
		via = u.src
	}
	rport := ""
	if u.rport {
		rport = ";rport"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "REGISTER sip:%s SIP/2.0\r\n", testRealm)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK-%s-%d%s\r\n", u.transport, via, u.user, u.cseq, rport)
	fmt.Fprintf(&b, "Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <%s>;tag=f-%s\r\n", u.aor, u.user)
	fmt.Fprintf(&b, "To: <%s>\r\n", u.aor)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", u.callID)
	fmt.Fprintf(&b, "CSeq: %d REGISTER\r\n", u.cseq)
	for _, c := range contacts {
		fmt.Fprintf(&b, "Contact: %s\r\n", c)
	}
	if u.chal != nil {
		u.nc++
		chal := *u.chal
		cred, err := digest.Digest(&chal, digest.Options{
			Method: "REGISTER", URI: "sip:" + testRealm, Username: u.user, Password: u.pass, Count: u.nc,
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "Authorization: %s\r\n", cred.String())
	}
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("Content-Length: 0\r\n\r\n")
	return parse(t, b.String(), u.src, u.transport)
}

func parse(t testing.TB, raw, src, transport string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse:\n%s\n%v", raw, err)
	}
	req := msg.(*sip.Request)
	req.SetSource(src)
	req.SetTransport(transport)
	return req
}

// learn takes the challenge for u's algorithm from a 401.
func (u *ua) learn(t testing.TB, res *sip.Response) {
	t.Helper()
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		if u.alg == "" || strings.EqualFold(c.Algorithm, u.alg) {
			u.chal, u.nc = c, 0
			return
		}
	}
	t.Fatalf("no %q challenge in\n%s", u.alg, res)
}

// register sends a REGISTER, answering one challenge, and returns the
// final response.
func (u *ua) register(t testing.TB, e *env, contacts []string, extra ...string) *sip.Response {
	t.Helper()
	res := e.reg.Handle(u.build(t, contacts, extra...), testLocal)
	if res.StatusCode == 401 {
		u.learn(t, res)
		res = e.reg.Handle(u.build(t, contacts, extra...), testLocal)
	}
	return res
}

func wantStatus(t testing.TB, res *sip.Response, code int) {
	t.Helper()
	if res.StatusCode != code {
		t.Fatalf("status %d %s, want %d\n%s", res.StatusCode, res.Reason, code, res)
	}
}

func headerVals(res *sip.Response, name string) []string {
	var out []string
	for _, h := range res.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

// flakyStore is a bindings store that fails while fail is set.
type flakyStore struct {
	*memory.Store
	fail  atomic.Bool
	mu    sync.Mutex
	calls int
}

var errDown = errors.New("store down")

func (f *flakyStore) UpsertBindings(ctx context.Context, bs []store.Binding) error {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.fail.Load() {
		return errDown
	}
	return f.Store.UpsertBindings(ctx, bs)
}

func (f *flakyStore) DeleteBindings(ctx context.Context, ids []store.BindingKey) error {
	if f.fail.Load() {
		return errDown
	}
	return f.Store.DeleteBindings(ctx, ids)
}

func (f *flakyStore) DeleteExpiredBindings(ctx context.Context, now time.Time) (int, error) {
	if f.fail.Load() {
		return 0, errDown
	}
	return f.Store.DeleteExpiredBindings(ctx, now)
}
