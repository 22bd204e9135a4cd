package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talkpad/talkpad/b2bua"
	"github.com/talkpad/talkpad/store"
)

// sippDir holds the call scenarios (see testdata/sipp/README.md).
var sippDir, _ = filepath.Abs("testdata/sipp")

// sippProc is a running sipp.
type sippProc struct {
	name string
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// startSipp runs sipp with a scenario of testdata/sipp in dir.
func startSipp(t *testing.T, dir, name, scenario string, args ...string) *sippProc {
	t.Helper()
	bin := needBinary(t, "sipp", "sip-tester")
	all := append([]string{"-sf", filepath.Join(sippDir, scenario), "-i", "127.0.0.1", "-nostdin", "-trace_err",
		"-timeout", "40s", "-timeout_error"}, args...)
	p := &sippProc{name: name, cmd: exec.Command(bin, all...), done: make(chan error, 1)}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for sipp to finish and fails the test unless it succeeded.
func (p *sippProc) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			logs, _ := filepath.Glob(filepath.Join(p.cmd.Dir, "*_errors.log"))
			var errs string
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				errs += string(b)
			}
			t.Fatalf("sipp %s failed: %v\n%s\n%s", p.name, err, tailString(p.out.String(), 3000), tailString(errs, 3000))
		}
	case <-time.After(d):
		t.Fatalf("sipp %s did not finish in %v", p.name, d)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// callRig is a reference server with a call configuration whose trunks
// are sipp carriers on loopback.
type callRig struct {
	t      *testing.T
	dir    string
	srv    *testServer
	cdr    string
	trunks map[string]int // trunk name -> port of its sipp
}

// newCallRig starts a server with users alice and bob (passwords
// "secret"), account acc-alice (balance) for alice, a per-second tariff
// of 0.60/min for prefix 49, and trunks on free ports (priority order).
func newCallRig(t *testing.T, balance string, extra string, trunks ...string) *callRig {
	t.Helper()
	needBinary(t, "sipp", "sip-tester")
	r := &callRig{t: t, dir: t.TempDir(), trunks: map[string]int{}}
	r.cdr = filepath.Join(r.dir, "cdr.csv")
	var b strings.Builder
	fmt.Fprintf(&b, "[calls]\nno_answer_timeout = \"20s\"\n%s\n[cdr]\ncsv = %q\n\n", extra, r.cdr)
	for i, spec := range trunks {
		// A trunk is its name, then optional TOML lines of its own.
		name, more, _ := strings.Cut(spec, "\n")
		port := freeUDPPort(t)
		r.trunks[name] = port
		fmt.Fprintf(&b, "[[trunk]]\nname = %q\nuri = \"sip:127.0.0.1:%d\"\npriority = %d\ninbound = [\"127.0.0.1:%d\"]\n%s\n\n", name, port, i+1, port, more)
	}
	fmt.Fprintf(&b, "[[dialplan]]\nmatch = '^\\+?49[0-9]+$'\n\n")
	fmt.Fprintf(&b, "[[account]]\nid = \"acc-alice\"\nusers = [\"alice\"]\nnumber = \"+4930111111\"\nbalance = %q\n\n", balance)
	fmt.Fprintf(&b, "[[tariff]]\nprefix = \"49\"\nrate = \"0.60\"\nincrement = \"1/1\"\n\n")
	fmt.Fprintf(&b, "[[number]]\nnumber = \"+4930222222\"\nuser = \"bob\"\n")
	cfg := baseConfig(t, "alice,secret", "bob,secret")
	cfg.CallConfig = filepath.Join(r.dir, "talkpad.toml")
	if err := os.WriteFile(cfg.CallConfig, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "callers.csv"), []byte("SEQUENTIAL\nalice;[authentication username=alice password=secret];+4930123456\nalice;[authentication username=alice password=secret];+4930123457\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r.srv = startServer(t, cfg)
	return r
}

// carrier starts a sipp carrier for trunk name, expecting calls calls.
func (r *callRig) carrier(name, scenario string, calls int, args ...string) *sippProc {
	dir := filepath.Join(r.dir, name)
	os.MkdirAll(dir, 0o755)
	return startSipp(r.t, dir, name, scenario, append([]string{"-p", fmt.Sprint(r.trunks[name]), "-m", fmt.Sprint(calls)}, args...)...)
}

// caller starts a sipp caller (alice, authenticated) dialling the server.
func (r *callRig) caller(scenario string, calls int, args ...string) *sippProc {
	dir := filepath.Join(r.dir, "caller")
	os.MkdirAll(dir, 0o755)
	all := append([]string{"-p", fmt.Sprint(freeUDPPort(r.t)), "-inf", filepath.Join(r.dir, "callers.csv"), "-m", fmt.Sprint(calls)}, args...)
	all = append(all, r.srv.udpAddr())
	return startSipp(r.t, dir, "caller", scenario, all...)
}

// cdrs reads the CDR CSV file.
func (r *callRig) cdrs() []map[string]string {
	r.t.Helper()
	f, err := os.Open(r.cdr)
	if err != nil {
		r.t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		r.t.Fatal(err)
	}
	var out []map[string]string
	for _, rec := range recs[1:] {
		m := map[string]string{}
		for i, k := range recs[0] {
			m[k] = rec[i]
		}
		out = append(out, m)
	}
	return out
}

// settled waits until the B2BUA has no call left and the billing engine
// has settled everything, then checks that no call state leaked.
func (r *callRig) settled() {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st := r.srv.up.B2BUA.Stats()
		if len(r.srv.up.B2BUA.Calls()) == 0 && st.InSetup == 0 && st.Active == 0 && r.srv.up.Billing.Stats().LiveCalls == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("calls left: %+v, billing %+v", r.srv.up.B2BUA.Calls(), r.srv.up.Billing.Stats())
}

func (r *callRig) balance() int64 {
	r.t.Helper()
	a, err := r.srv.up.Billing.Balance(context.Background(), "acc-alice")
	if err != nil {
		r.t.Fatal(err)
	}
	return a.Balance
}

func (r *callRig) storeCDRs() []store.CDR {
	r.t.Helper()
	cdrs, err := r.srv.up.Store.ListCDRs(context.Background(), store.CDRFilter{Account: "acc-alice"})
	if err != nil {
		r.t.Fatal(err)
	}
	return cdrs
}

// TestCallToPSTNBilled: alice calls a number, the carrier answers, alice
// hangs up after about 3 s; the call is billed to the second.
func TestCallToPSTNBilled(t *testing.T) {
	r := newCallRig(t, "10.00", "", "carrier")
	uas := r.carrier("carrier", "uas_answer.xml", 1)
	before := r.balance()
	uac := r.caller("uac_call.xml", 1, "-d", "3000")
	uac.wait(t, 30*time.Second)
	uas.wait(t, 10*time.Second)
	r.settled()
	cdrs := r.cdrs()
	if len(cdrs) != 1 || cdrs[0]["status"] != "200" || cdrs[0]["cause"] != b2bua.CauseCallerHangup || cdrs[0]["account"] != "acc-alice" {
		t.Fatalf("CDRs: %v", cdrs)
	}
	billed := r.storeCDRs()
	if len(billed) != 1 {
		t.Fatalf("billing CDRs: %+v", billed)
	}
	c := billed[0]
	if c.BilledSeconds < 3 || c.BilledSeconds > 4 || c.Cost != c.BilledSeconds*10_000 {
		t.Fatalf("billed %d s for %d micro-units; want 3-4 s at 10,000 per second", c.BilledSeconds, c.Cost)
	}
	if after := r.balance(); before-after != c.Cost {
		t.Fatalf("balance moved by %d, CDR cost %d", before-after, c.Cost)
	}
}

// TestCallScenarios runs the call flows of the acceptance list, each with
// a sipp caller and sipp carriers, and checks the CDR the server wrote.
func TestCallScenarios(t *testing.T) {
	cases := []struct {
		name     string
		trunks   []string // trunk scenarios in priority order
		caller   string
		args     []string
		status   string // CDR status
		cause    string
		target   string
		attempts string
	}{
		{name: "busy", trunks: []string{"uas_busy.xml"}, caller: "uac_busy.xml", status: "486", cause: b2bua.CauseRejected, target: "t0", attempts: "1"},
		{name: "no answer then caller cancels", trunks: []string{"uas_noanswer.xml"}, caller: "uac_cancel.xml", args: []string{"-d", "1000"}, status: "487", cause: b2bua.CauseCanceled, target: "t0", attempts: "1"},
		{name: "carrier hangs up first", trunks: []string{"uas_hangup.xml"}, caller: "uac_wait_bye.xml", args: []string{"-d", "1000"}, status: "200", cause: b2bua.CauseCalleeHangup, target: "t0", attempts: "1"},
		{name: "caller hangs up first", trunks: []string{"uas_answer.xml"}, caller: "uac_call.xml", args: []string{"-d", "500"}, status: "200", cause: b2bua.CauseCallerHangup, target: "t0", attempts: "1"},
		{name: "hold and resume", trunks: []string{"uas_hold.xml"}, caller: "uac_hold.xml", args: []string{"-d", "500"}, status: "200", cause: b2bua.CauseCallerHangup, target: "t0", attempts: "1"},
		{name: "reliable early media", trunks: []string{"uas_early_100rel.xml"}, caller: "uac_call.xml", args: []string{"-d", "500"}, status: "200", cause: b2bua.CauseCallerHangup, target: "t0", attempts: "1"},
		{name: "trunk 503 then the next answers", trunks: []string{"uas_503.xml", "uas_answer.xml"}, caller: "uac_call.xml", args: []string{"-d", "500"}, status: "200", cause: b2bua.CauseCallerHangup, target: "t1", attempts: "2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			names := make([]string, len(tc.trunks))
			for i := range names {
				names[i] = fmt.Sprintf("t%d", i)
			}
			r := newCallRig(t, "10.00", "", names...)
			var carriers []*sippProc
			for i, sc := range tc.trunks {
				carriers = append(carriers, r.carrier(names[i], sc, 1, "-d", "1000"))
			}
			uac := r.caller(tc.caller, 1, tc.args...)
			uac.wait(t, 30*time.Second)
			for _, c := range carriers {
				c.wait(t, 15*time.Second)
			}
			r.settled()
			cdrs := r.cdrs()
			if len(cdrs) != 1 {
				t.Fatalf("want one CDR, got %v", cdrs)
			}
			c := cdrs[0]
			if c["status"] != tc.status || c["cause"] != tc.cause || c["target"] != tc.target || c["attempts"] != tc.attempts {
				t.Fatalf("CDR %v; want status %s cause %s target %s attempts %s", c, tc.status, tc.cause, tc.target, tc.attempts)
			}
			if (c["answer"] != "") != (tc.status == "200") {
				t.Fatalf("CDR answer instant %q for status %s", c["answer"], tc.status)
			}
		})
	}
}

// TestCallCreditRunsOut: with 5 s of money, the call is cut at 5 s with a
// BYE to both legs, billed exactly 5 s.
func TestCallCreditRunsOut(t *testing.T) {
	r := newCallRig(t, "0.05", "", "carrier") // 5 s at 0.60/min
	uas := r.carrier("carrier", "uas_answer.xml", 1)
	start := time.Now()
	uac := r.caller("uac_wait_bye.xml", 1)
	uac.wait(t, 30*time.Second)
	uas.wait(t, 10*time.Second)
	took := time.Since(start)
	r.settled()
	if took > 15*time.Second {
		t.Fatalf("call lasted %v with 5 s of credit", took)
	}
	cdrs := r.cdrs()
	if len(cdrs) != 1 || cdrs[0]["cause"] != "credit" {
		t.Fatalf("CDRs %v", cdrs)
	}
	billed := r.storeCDRs()
	if len(billed) != 1 || billed[0].BilledSeconds != 5 || billed[0].Cost != 50_000 {
		t.Fatalf("billing CDR %+v", billed)
	}
	if b := r.balance(); b != 0 {
		t.Fatalf("balance left %d", b)
	}
	// Cut within a second of the money's end: answer + 5 s.
	ans, _ := time.Parse(time.RFC3339Nano, cdrs[0]["answer"])
	end, _ := time.Parse(time.RFC3339Nano, cdrs[0]["end"])
	if d := end.Sub(ans); d < 5*time.Second || d > 6*time.Second {
		t.Fatalf("ended %v after the answer", d)
	}
}

// TestCallTwoCallsShareBalance: two simultaneous calls on one account
// with 10 s of money both end at about 5 s.
func TestCallTwoCallsShareBalance(t *testing.T) {
	r := newCallRig(t, "0.10", "", "carrier")
	uas := r.carrier("carrier", "uas_answer.xml", 2)
	uac := r.caller("uac_wait_bye.xml", 2, "-r", "10", "-l", "2")
	uac.wait(t, 30*time.Second)
	uas.wait(t, 10*time.Second)
	r.settled()
	billed := r.storeCDRs()
	if len(billed) != 2 {
		t.Fatalf("billing CDRs %+v", billed)
	}
	var total int64
	for _, c := range billed {
		total += c.Cost
		if c.Cause != "credit" || c.BilledSeconds < 4 || c.BilledSeconds > 6 {
			t.Fatalf("CDR %+v", c)
		}
	}
	if total != 100_000 || r.balance() != 0 {
		t.Fatalf("charged %d, balance left %d", total, r.balance())
	}
}

// rawRequest sends a SIP request over UDP and returns the first final
// response's status line ("" when none comes).
func rawRequest(t *testing.T, server, msg string) string {
	t.Helper()
	c, err := net.Dial("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	msg = strings.ReplaceAll(msg, "LOCAL", local)
	msg = strings.ReplaceAll(msg, "\n", "\r\n")
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			return ""
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 1") {
			return line
		}
	}
}

const badSDPInvite = `INVITE sip:+4930123456@127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP LOCAL;branch=z9hG4bK-bad1;rport
Max-Forwards: 70
From: <sip:alice@127.0.0.1>;tag=bad1
To: <sip:+4930123456@127.0.0.1>
Call-ID: bad-sdp-1
CSeq: 1 INVITE
Contact: <sip:alice@LOCAL>
Content-Type: application/sdp
Content-Length: 27

v=0
m=audio notaport RTP
`

// TestCallBadInput: malformed requests, bad SDP, unknown users and
// trunks get the right errors and leave no call state behind.
func TestCallBadInput(t *testing.T) {
	r := newCallRig(t, "10.00", "", "carrier")
	srv := r.srv.udpAddr()
	cases := []struct {
		name, msg, want string
	}{
		{"bad SDP", badSDPInvite, "SIP/2.0 400"},
		{"no Contact", strings.Replace(badSDPInvite, "Contact: <sip:alice@LOCAL>\n", "", 1), "SIP/2.0 400"},
		{"no From tag", strings.Replace(badSDPInvite, ";tag=bad1", "", 1), "SIP/2.0 400"},
		{"Max-Forwards 0", strings.Replace(badSDPInvite, "Max-Forwards: 70", "Max-Forwards: 0", 1), "SIP/2.0 483"},
		{"unsupported extension", strings.Replace(badSDPInvite, "Max-Forwards: 70", "Max-Forwards: 70\nRequire: foo", 1), "SIP/2.0 420"},
		{"not SDP", strings.Replace(badSDPInvite, "application/sdp", "text/plain", 1), "SIP/2.0 415"},
		// An INVITE without credentials from an address that is no trunk
		// is challenged, like any user's.
		{"unknown trunk", strings.NewReplacer("v=0\nm=audio notaport RTP\n", "", "Content-Length: 27", "Content-Length: 0").Replace(badSDPInvite), "SIP/2.0 407"},
		{"BYE for no call", "BYE sip:x@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK-bye1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: nothing\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n", "SIP/2.0 481"},
	}
	for _, tc := range cases {
		if got := rawRequest(t, srv, tc.msg); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %s", tc.name, got, tc.want)
		}
	}
	// Malformed beyond parsing: dropped (sipgo answers 400 when it can).
	rawRequest(t, srv, "INVITE sip:x SIP/2.0\nVia: nonsense\n\n")

	// A user with a wrong password is refused.
	if err := os.WriteFile(filepath.Join(r.dir, "callers.csv"), []byte("SEQUENTIAL\nalice;[authentication username=alice password=wrong];+4930123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uac := r.caller("uac_fail.xml", 1)
	uac.wait(t, 20*time.Second)
	// Nobody is unknown to the router either: a user calling a name that
	// does not exist gets 404.
	if err := os.WriteFile(filepath.Join(r.dir, "callers.csv"), []byte("SEQUENTIAL\nalice;[authentication username=alice password=secret];nobody\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uac = r.caller("uac_fail.xml", 1)
	uac.wait(t, 20*time.Second)
	r.settled()
	st := r.srv.up.B2BUA.Stats()
	if st.BadRequests < 3 || st.Answered != 0 {
		t.Fatalf("stats %+v", st)
	}
	for _, c := range r.cdrs() {
		if c["status"] == "200" {
			t.Fatalf("a bad call was answered: %v", c)
		}
	}
}

// TestCallFromPSTNToUser: a carrier calls bob's number; the B2BUA reaches
// bob's registered phone (a sipp that registered, then answers).
func TestCallFromPSTNToUser(t *testing.T) {
	r := newCallRig(t, "10.00", "", "carrier")
	bobPort := freeUDPPort(t)
	dir := filepath.Join(r.dir, "bob")
	os.MkdirAll(dir, 0o755)
	inf := filepath.Join(dir, "bob.csv")
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\nbob;[authentication username=bob password=secret];127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := startSipp(t, dir, "bob-register", "../register.xml", "-p", fmt.Sprint(bobPort), "-inf", inf, "-m", "1", r.srv.udpAddr())
	reg.wait(t, 20*time.Second)
	bob := startSipp(t, dir, "bob", "uas_answer.xml", "-p", fmt.Sprint(bobPort), "-m", "1")
	// The carrier calls from its inbound address, without credentials.
	cdir := filepath.Join(r.dir, "pstn")
	os.MkdirAll(cdir, 0o755)
	pstn := startSipp(t, cdir, "pstn", "uac_bench.xml", "-p", fmt.Sprint(r.trunks["carrier"]), "-s", "+4930222222", "-m", "1", "-d", "500", r.srv.udpAddr())
	pstn.wait(t, 20*time.Second)
	bob.wait(t, 10*time.Second)
	r.settled()
	cdrs := r.cdrs()
	if len(cdrs) != 1 || cdrs[0]["status"] != "200" || cdrs[0]["trunk"] != "carrier" || cdrs[0]["account"] != "" || !strings.HasPrefix(cdrs[0]["target"], "sip:bob@") {
		t.Fatalf("CDRs %v", cdrs)
	}
}

// TestCallMediaTimeout: an anchored call whose media never flows is ended
// by the relay's media timeout, with a BYE to both sides.
func TestCallMediaTimeout(t *testing.T) {
	r := newCallRig(t, "10.00", "anchor = \"always\"\n\n[relay]\ntimeout = \"2s\"", "carrier")
	uas := r.carrier("carrier", "uas_answer.xml", 1)
	uac := r.caller("uac_wait_bye.xml", 1)
	uac.wait(t, 30*time.Second)
	uas.wait(t, 10*time.Second)
	r.settled()
	cdrs := r.cdrs()
	if len(cdrs) != 1 || cdrs[0]["cause"] != b2bua.CauseMediaTimeout || cdrs[0]["anchored"] != "true" {
		t.Fatalf("CDRs %v", cdrs)
	}
	if st := r.srv.up.Relay.Stats(); st.Sessions != 0 || st.SessionTimeouts != 1 {
		t.Fatalf("relay %+v", st)
	}
}

// TestCallTopUpExtendsCall: money added during a call moves its cut-off
// later: 5 s of credit, 5 s more added after 2 s, the call lasts 10 s.
func TestCallTopUpExtendsCall(t *testing.T) {
	r := newCallRig(t, "0.05", "", "carrier")
	uas := r.carrier("carrier", "uas_answer.xml", 1)
	uac := r.caller("uac_wait_bye.xml", 1)
	deadline := time.Now().Add(10 * time.Second)
	for r.srv.up.B2BUA.Stats().Active == 0 {
		if time.Now().After(deadline) {
			t.Fatal("call not answered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if _, err := r.srv.up.Billing.TopUp(context.Background(), "acc-alice", 50_000, "top-up-1", "test"); err != nil {
		t.Fatal(err)
	}
	uac.wait(t, 30*time.Second)
	uas.wait(t, 10*time.Second)
	r.settled()
	billed := r.storeCDRs()
	if len(billed) != 1 || billed[0].BilledSeconds != 10 || billed[0].Cause != "credit" || r.balance() != 0 {
		t.Fatalf("billing CDRs %+v, balance %d", billed, r.balance())
	}
}

// TestCallForksToDevices: bob has two phones; both ring at once, the
// second answers, the first is canceled.
func TestCallForksToDevices(t *testing.T) {
	r := newCallRig(t, "10.00", "", "carrier")
	dir := filepath.Join(r.dir, "bob")
	os.MkdirAll(dir, 0o755)
	inf := filepath.Join(dir, "bob.csv")
	if err := os.WriteFile(inf, []byte("SEQUENTIAL\nbob;[authentication username=bob password=secret];127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var phones [2]int
	for i := range phones {
		phones[i] = freeUDPPort(t)
		reg := startSipp(t, dir, fmt.Sprintf("bob-register-%d", i), "../register.xml", "-p", fmt.Sprint(phones[i]), "-inf", inf, "-m", "1", r.srv.udpAddr())
		reg.wait(t, 20*time.Second)
	}
	if bs, err := r.srv.Registrar().Lookup(context.Background(), "sip:bob@127.0.0.1"); err != nil || len(bs) != 2 {
		t.Fatalf("bob's bindings: %+v, %v", bs, err)
	}
	ringing := startSipp(t, dir, "bob-desk", "uas_noanswer.xml", "-p", fmt.Sprint(phones[0]), "-m", "1")
	answering := startSipp(t, dir, "bob-browser", "uas_answer.xml", "-p", fmt.Sprint(phones[1]), "-m", "1")
	if err := os.WriteFile(filepath.Join(r.dir, "callers.csv"), []byte("SEQUENTIAL\nalice;[authentication username=alice password=secret];bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	uac := r.caller("uac_call.xml", 1, "-d", "500")
	uac.wait(t, 30*time.Second)
	answering.wait(t, 10*time.Second)
	ringing.wait(t, 10*time.Second)
	r.settled()
	cdrs := r.cdrs()
	if len(cdrs) != 1 || cdrs[0]["status"] != "200" || cdrs[0]["attempts"] != "2" || cdrs[0]["cause"] != b2bua.CauseCallerHangup {
		t.Fatalf("CDRs %v", cdrs)
	}
}

// TestCallTrunkChallenges: the carrier challenges the B2BUA's INVITE with
// 401; the trunk's credentials answer it.
func TestCallTrunkChallenges(t *testing.T) {
	r := newCallRig(t, "10.00", "", "carrier\nusername = \"trunkuser\"\npassword = \"trunkpass\"")
	uas := r.carrier("carrier", "uas_auth.xml", 1)
	uac := r.caller("uac_call.xml", 1, "-d", "500")
	uac.wait(t, 30*time.Second)
	uas.wait(t, 10*time.Second)
	r.settled()
	if cdrs := r.cdrs(); len(cdrs) != 1 || cdrs[0]["status"] != "200" {
		t.Fatalf("CDRs %v", cdrs)
	}
}
