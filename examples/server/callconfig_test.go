package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/talkpad/talkpad/internal/pgtest"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
	"github.com/talkpad/talkpad/store/postgres"
)

func TestDefaultCallConfig(t *testing.T) {
	cfg := defaultCallConfig()
	c := cfg.Calls
	if c.MaxSetup != 2000 || c.RetryAfter != 5*time.Second || c.NoAnswerTimeout != 120*time.Second ||
		c.Keepalive != 0 || c.MaxDuration != 4*time.Hour || c.Redirects != "return" || c.Anchor != "auto" {
		t.Errorf("calls defaults: %+v", c)
	}
	r := cfg.Relay
	if r.Addr.String() != "127.0.0.1" || r.Advertise != r.Addr || r.PortMin != 30000 || r.PortMax != 40000 || r.Timeout != time.Minute {
		t.Errorf("relay defaults: %+v", r)
	}
	if cfg.CDR.CSV != "" || len(cfg.Trunks)+len(cfg.DialPlan)+len(cfg.Accounts)+len(cfg.Tariffs)+len(cfg.Numbers) != 0 {
		t.Errorf("default config is not empty: %+v", cfg)
	}
}

func TestExampleCallConfig(t *testing.T) {
	cfg, err := loadCallConfig("talkpad.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Trunks) != 2 || len(cfg.DialPlan) != 2 || len(cfg.Accounts) != 1 || len(cfg.Tariffs) != 2 || len(cfg.Numbers) != 1 {
		t.Fatalf("example: %d trunks, %d rules, %d accounts, %d tariffs, %d numbers",
			len(cfg.Trunks), len(cfg.DialPlan), len(cfg.Accounts), len(cfg.Tariffs), len(cfg.Numbers))
	}
	a := cfg.Trunks[0]
	if a.Name != "carrier-a" || a.URI.Host != "192.0.2.10" || a.URI.Port != 5060 || a.Weight != 10 || a.Priority != 1 ||
		!a.StripWebRTC || a.Transit || len(a.inAddrs) != 1 || len(a.inNets) != 1 || len(a.inPorts) != 1 {
		t.Errorf("trunk carrier-a: %+v", a)
	}
	b := cfg.Trunks[1]
	if b.Weight != defaultTrunkWeight || b.Priority != 2 || !b.StripWebRTC || b.Username != "talkpad" {
		t.Errorf("trunk carrier-b (defaults): %+v", b)
	}
	if acc := cfg.Accounts[0]; acc.Number != "+4930111111" || acc.Balance != 10_000_000 || acc.Currency != "EUR" {
		t.Errorf("account: %+v", acc)
	}
	if tr := cfg.Tariffs[0]; tr.Prefix != "49" || tr.Rate != 12_000 || tr.FirstIncrement != 60 || tr.NextIncrement != 60 {
		t.Errorf("tariff: %+v", tr)
	}
	if tr := cfg.Tariffs[1]; tr.Rate != 90_000 || tr.FirstIncrement != 30 || tr.NextIncrement != 1 {
		t.Errorf("tariff 2: %+v", tr)
	}
	if cfg.Numbers[0].Number != "+4930222222" || cfg.numberUser["4930222222"] != "bob" {
		t.Errorf("number: %+v", cfg.Numbers[0])
	}
	if got := cfg.DialPlan[1].apply("030123456"); got != "+4930123456" {
		t.Errorf("national rule gives %q", got)
	}
}

func TestLoadCallConfigMissingFile(t *testing.T) {
	_, err := loadCallConfig(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseCallConfigValues(t *testing.T) {
	cfg, err := parseCallConfig([]byte(`
[calls]
max_setup = 10
retry_after = "2s"
keepalive = "30s"
max_duration = "0s"
redirects = "follow"
anchor = "never"
[relay]
addr = "::1"
advertise = "203.0.113.5"
ports = "10000-10001"
timeout = "5s"
[cdr]
csv = "/tmp/cdr.csv"
[[trunk]]
name = "t"
uri = "sips:[2001:db8::1]:5071"
weight = 0
priority = 0
strip_webrtc = false
timeout = "30s"
transit = true
[[account]]
id = "a"
users = ["u"]
balance = 5
[[tariff]]
prefix = "+1"
rate = "1"
connect_fee = "0.5"
increment = "1/1"
min_duration = "10s"
`))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Calls
	if c.MaxSetup != 10 || c.RetryAfter != 2*time.Second || c.Keepalive != 30*time.Second || c.MaxDuration != 0 ||
		c.Redirects != "follow" || c.Anchor != "never" {
		t.Errorf("calls: %+v", c)
	}
	r := cfg.Relay
	if r.Addr.String() != "::1" || r.Advertise.String() != "203.0.113.5" || r.PortMin != 10000 || r.PortMax != 10001 || r.Timeout != 5*time.Second {
		t.Errorf("relay: %+v", r)
	}
	if cfg.CDR.CSV != "/tmp/cdr.csv" {
		t.Errorf("cdr: %+v", cfg.CDR)
	}
	tr := cfg.Trunks[0]
	if tr.Weight != 0 || tr.Priority != 0 || tr.StripWebRTC || tr.Timeout != 30*time.Second || !tr.Transit {
		t.Errorf("trunk: %+v", tr)
	}
	if a := cfg.Accounts[0]; a.Balance != 5_000_000 || a.Number != "" {
		t.Errorf("account: %+v", a)
	}
	st := cfg.Tariffs[0].tariff()
	if st.Prefix != "1" || st.PricePerMinute != 1_000_000 || st.ConnectFee != 500_000 || st.FirstIncrement != 1 ||
		st.NextIncrement != 1 || st.MinDuration != 10 || st.Validate() != nil {
		t.Errorf("tariff: %+v", st)
	}
}

func TestParseCallConfigErrors(t *testing.T) {
	const trunk = "[[trunk]]\nname = \"a\"\nuri = \"sip:gw.example\"\n"
	for _, tc := range []struct{ name, toml, want string }{
		{"syntax", "[calls", "config:"},
		{"unknown key", "[calls]\nmax_setupp = 1", "unknown keys: calls.max_setupp"},
		{"unknown table", "[call]\nanchor = \"auto\"", "unknown keys: call"},
		{"unknown trunk key", trunk + "passwd = \"x\"", "unknown keys: trunk.passwd"},
		{"max_setup 0", "[calls]\nmax_setup = 0", "calls.max_setup"},
		{"bad duration", "[calls]\nretry_after = \"5\"", "calls.retry_after: bad duration \"5\""},
		{"retry_after too small", "[calls]\nretry_after = \"500ms\"", "at least 1s"},
		{"zero no-answer", "[calls]\nno_answer_timeout = \"0s\"", "calls.no_answer_timeout: duration \"0s\" must be positive"},
		{"negative keepalive", "[calls]\nkeepalive = \"-1s\"", "calls.keepalive"},
		{"session timer too short", "[calls]\nsession_expires = \"60s\"", "calls.session_expires"},
		{"redirects", "[calls]\nredirects = \"drop\"", "calls.redirects"},
		{"anchor", "[calls]\nanchor = \"sometimes\"", "calls.anchor"},
		{"duration as number", "[calls]\nkeepalive = 30", "keepalive"},
		{"relay addr", "[relay]\naddr = \"localhost\"", "relay.addr"},
		{"relay advertise", "[relay]\nadvertise = \"relay.example\"", "relay.advertise"},
		{"relay wildcard", "[relay]\naddr = \"0.0.0.0\"", "relay.advertise: must be set"},
		{"relay ports", "[relay]\nports = \"40000-30000\"", "relay.ports"},
		{"relay ports one", "[relay]\nports = \"30000-30000\"", "relay.ports"},
		{"relay ports garbage", "[relay]\nports = \"30000\"", "relay.ports"},
		{"relay timeout", "[relay]\ntimeout = \"0s\"", "relay.timeout"},
		{"trunk no name", "[[trunk]]\nuri = \"sip:gw.example\"", "trunk 1: name must be set"},
		{"trunk name space", "[[trunk]]\nname = \"a b\"\nuri = \"sip:gw.example\"", "trunk 1 (\"a b\"): name"},
		{"trunk duplicate", trunk + trunk, "trunk 2 (\"a\"): duplicate trunk name"},
		{"trunk no uri", "[[trunk]]\nname = \"a\"", "trunk 1 (\"a\"): uri must be set"},
		{"trunk bad uri", "[[trunk]]\nname = \"a\"\nuri = \"sip:gw.example:port\"", "trunk 1 (\"a\"): bad uri"},
		{"trunk tel uri", "[[trunk]]\nname = \"a\"\nuri = \"tel:+4930123\"", "must be a sip: or sips: URI"},
		{"trunk transport", "[[trunk]]\nname = \"a\"\nuri = \"sip:gw.example;transport=sctp\"", "unknown transport"},
		{"trunk weight", trunk + "weight = -1", "negative weight"},
		{"trunk priority", trunk + "priority = -1", "negative priority"},
		{"trunk inbound", trunk + "inbound = [\"gw.example\"]", "inbound \"gw.example\" is not an IP"},
		{"trunk inbound twice", trunk + "inbound = [\"192.0.2.1\"]\n[[trunk]]\nname = \"b\"\nuri = \"sip:b.example\"\ninbound = [\"192.0.2.1\"]",
			"trunk 2 (\"b\"): inbound \"192.0.2.1\" is already trunk \"a\"'s"},
		{"trunk from_domain", trunk + "from_domain = \"a@b\"", "from_domain"},
		{"trunk timeout", trunk + "timeout = \"soon\"", "trunk 1 (\"a\"): timeout: bad duration"},
		{"dialplan no match", trunk + "[[dialplan]]\nstrip = 1", "dialplan rule 1: match must be set"},
		{"dialplan bad regexp", trunk + "[[dialplan]]\nmatch = \"^(\"", "dialplan rule 1: bad match regexp"},
		{"dialplan strip", trunk + "[[dialplan]]\nmatch = \".\"\nstrip = -1", "negative strip"},
		{"dialplan prepend", trunk + "[[dialplan]]\nmatch = \".\"\nprepend = \"49a\"", "prepend \"49a\""},
		{"dialplan unknown trunk", trunk + "[[dialplan]]\nmatch = \".\"\ntrunks = [\"b\"]", "dialplan rule 1: unknown trunk \"b\""},
		{"dialplan without trunks", "[[dialplan]]\nmatch = \".\"", "no [[trunk]]"},
		{"account no id", "[[account]]\nusers = [\"u\"]", "account 1: id must be set"},
		{"account duplicate", "[[account]]\nid = \"a\"\n[[account]]\nid = \"a\"", "account 2 (\"a\"): duplicate account id"},
		{"user in two accounts", "[[account]]\nid = \"a\"\nusers = [\"u\"]\n[[account]]\nid = \"b\"\nusers = [\"u\"]",
			"account 2 (\"b\"): user \"u\" is already in account \"a\""},
		{"bad user", "[[account]]\nid = \"a\"\nusers = [\"u@x\"]", "bad user name"},
		{"account number", "[[account]]\nid = \"a\"\nnumber = \"alice\"", "number \"alice\" is not a phone number"},
		{"balance negative", "[[account]]\nid = \"a\"\nbalance = \"-1\"", "balance \"-1\" is negative"},
		{"balance decimals", "[[account]]\nid = \"a\"\nbalance = \"1.0000001\"", "more than 6 decimals"},
		{"balance garbage", "[[account]]\nid = \"a\"\nbalance = \"ten\"", "account 1 (\"a\"): balance: bad amount"},
		{"balance float", "[[account]]\nid = \"a\"\nbalance = 10.5", "write it as a string"},
		{"currency", "[[account]]\nid = \"a\"\ncurrency = \"euro\"", "currency \"euro\""},
		{"tariff no prefix", "[[tariff]]\nrate = \"1\"", "tariff 1: prefix must be set"},
		{"tariff prefix", "[[tariff]]\nprefix = \"49x\"\nrate = \"1\"", "prefix must be digits"},
		{"tariff duplicate", "[[tariff]]\nprefix = \"49\"\nrate = \"1\"\n[[tariff]]\nprefix = \"+49\"\nrate = \"2\"", "tariff 2 (prefix \"+49\"): duplicate prefix"},
		{"tariff no rate", "[[tariff]]\nprefix = \"49\"", "rate must be set"},
		{"tariff rate", "[[tariff]]\nprefix = \"49\"\nrate = \"0,012\"", "tariff 1 (prefix \"49\"): rate: bad amount"},
		{"tariff negative rate", "[[tariff]]\nprefix = \"49\"\nrate = \"-0.01\"", "negative price"},
		{"tariff connect fee", "[[tariff]]\nprefix = \"49\"\nrate = \"1\"\nconnect_fee = \"1.1234567\"", "connect_fee: amount"},
		{"tariff increment", "[[tariff]]\nprefix = \"49\"\nrate = \"1\"\nincrement = \"60\"", "increment: \"60\""},
		{"tariff increment zero", "[[tariff]]\nprefix = \"49\"\nrate = \"1\"\nincrement = \"0/1\"", "increment"},
		{"tariff min_duration", "[[tariff]]\nprefix = \"49\"\nrate = \"1\"\nmin_duration = \"1.5s\"", "whole seconds"},
		{"number bad", "[[number]]\nnumber = \"bob\"\nuser = \"bob\"", "number 1 (\"bob\"): not a phone number"},
		{"number no user", "[[number]]\nnumber = \"+4930\"", "user must be set"},
		{"number twice", "[[number]]\nnumber = \"+49 30 1\"\nuser = \"a\"\n[[number]]\nnumber = \"49301\"\nuser = \"b\"",
			"number 2 (\"49301\"): number is mapped twice (already to user \"a\")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCallConfig([]byte(tc.toml))
			if err == nil {
				t.Fatalf("no error, want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

func TestParseMoney(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "10", want: 10_000_000},
		{in: "10.00", want: 10_000_000},
		{in: "0.0120", want: 12_000},
		{in: "0.000001", want: 1},
		{in: "1.5", want: 1_500_000},
		{in: "-2.25", want: -2_250_000},
		{in: "007.1", want: 7_100_000},
		{in: "9223372036853", want: 9_223_372_036_853_000_000},
		{in: "9223372036854", bad: true},
		{in: "0.0000001", bad: true},
		{in: "1.1234567", bad: true},
		{in: "", bad: true},
		{in: "-", bad: true},
		{in: ".5", bad: true},
		{in: "5.", bad: true},
		{in: "+5", bad: true},
		{in: "1e3", bad: true},
		{in: "1,5", bad: true},
		{in: " 1", bad: true},
		{in: "1.2.3", bad: true},
	} {
		got, err := parseMoney(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseMoney(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseMoney(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeNumber(t *testing.T) {
	for in, want := range map[string]string{
		"+49 (30) 123-45.6/7": "+49301234567",
		"alice":               "alice",
		"john.doe":            "johndoe",
		"+4930":               "+4930",
	} {
		if got := normalizeNumber(in); got != want {
			t.Errorf("normalizeNumber(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]bool{"+4930": true, "4930": true, "+": false, "": false, "49a": false, "*100": false} {
		if got := isNumber(in); got != want {
			t.Errorf("isNumber(%q) = %v", in, got)
		}
	}
}

const seedTOML = `
[[account]]
id = "acc-alice"
users = ["alice"]
balance = "10.00"
currency = "EUR"
[[account]]
id = "acc-free"
users = ["carol"]
[[tariff]]
prefix = "49"
rate = "0.0120"
[[tariff]]
prefix = "1"
rate = "0.02"
increment = "1/1"
`

const seedTOML2 = `
[[account]]
id = "acc-alice"
users = ["alice"]
balance = "99.00"
[[tariff]]
prefix = "49"
rate = "0.0150"
connect_fee = "0.10"
`

// testSeedBilling seeds, seeds again (a restart), then seeds an edited
// file: the balance is credited once, tariffs follow the file.
func testSeedBilling(t *testing.T, st store.Billing) {
	ctx := context.Background()
	cfg, err := parseCallConfig([]byte(seedTOML))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := seedBilling(ctx, st, cfg); err != nil {
			t.Fatal(err)
		}
	}
	a, err := st.GetAccount(ctx, "acc-alice")
	if err != nil || a.Balance != 10_000_000 || a.Currency != "EUR" {
		t.Fatalf("acc-alice after two seeds: %+v, %v", a, err)
	}
	es, err := st.ListEntries(ctx, "acc-alice", time.Time{}, time.Time{})
	if err != nil || len(es) != 1 || es[0].Key != "initial:acc-alice" || es[0].Kind != store.EntryTopUp {
		t.Fatalf("ledger: %+v, %v", es, err)
	}
	if a, err := st.GetAccount(ctx, "acc-free"); err != nil || a.Balance != 0 {
		t.Fatalf("acc-free: %+v, %v", a, err)
	}
	ts, err := st.ListTariffs(ctx)
	if err != nil || len(ts) != 2 || ts[0].Prefix != "1" || ts[0].FirstIncrement != 1 || ts[1].Prefix != "49" ||
		ts[1].PricePerMinute != 12_000 || ts[1].FirstIncrement != 60 {
		t.Fatalf("tariffs: %+v, %v", ts, err)
	}

	// The file is edited: the balance change credits nothing, the tariff
	// change takes effect, the dropped tariff goes.
	cfg2, err := parseCallConfig([]byte(seedTOML2))
	if err != nil {
		t.Fatal(err)
	}
	if err := seedBilling(ctx, st, cfg2); err != nil {
		t.Fatal(err)
	}
	if a, err := st.GetAccount(ctx, "acc-alice"); err != nil || a.Balance != 10_000_000 {
		t.Fatalf("acc-alice after an edit: %+v, %v", a, err)
	}
	ts, err = st.ListTariffs(ctx)
	if err != nil || len(ts) != 1 || ts[0].Prefix != "49" || ts[0].PricePerMinute != 15_000 || ts[0].ConnectFee != 100_000 {
		t.Fatalf("tariffs after an edit: %+v, %v", ts, err)
	}

	// No tariffs in the file: the stored ones stay.
	if err := seedBilling(ctx, st, defaultCallConfig()); err != nil {
		t.Fatal(err)
	}
	if ts, err := st.ListTariffs(ctx); err != nil || len(ts) != 1 {
		t.Fatalf("tariffs after seeding the defaults: %+v, %v", ts, err)
	}
}

func TestSeedBillingMemory(t *testing.T) {
	testSeedBilling(t, memory.New())
}

func TestSeedBillingPostgres(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := postgres.New(ctx, postgres.Config{DSN: dsn, Schema: pgtest.Schema(t, dsn), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	testSeedBilling(t, st)
}
