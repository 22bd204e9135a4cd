package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
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
	for i, name := range trunks {
		port := freeUDPPort(t)
		r.trunks[name] = port
		fmt.Fprintf(&b, "[[trunk]]\nname = %q\nuri = \"sip:127.0.0.1:%d\"\npriority = %d\ninbound = [\"127.0.0.1:%d\"]\n\n", name, port, i+1, port)
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
