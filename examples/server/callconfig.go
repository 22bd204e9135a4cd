package main

// The call configuration file (-config): how calls are handled, the media
// relay, CDRs, carrier trunks, the dial plan, prepaid accounts, tariffs and
// the phone numbers that reach users. talkpad.example.toml documents every
// key.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/store"
)

// callConfig is the validated call configuration, with defaults filled.
type callConfig struct {
	Calls    callsConfig
	Relay    relayConfig
	CDR      cdrConfig
	Trunks   []trunkConfig
	DialPlan []dialRule
	Accounts []accountConfig
	Tariffs  []tariffConfig
	Numbers  []numberConfig

	// Indexes built by validation.
	trunkIndex   map[string]int    // trunk name → index in Trunks
	accountIndex map[string]int    // user → index in Accounts
	numberUser   map[string]string // number digits (no "+") → user
}

// callsConfig is [calls].
type callsConfig struct {
	// MaxSetup is how many calls may be in setup before new INVITEs are
	// answered 503 with Retry-After: RetryAfter.
	MaxSetup   int
	RetryAfter time.Duration
	// NoAnswerTimeout ends an unanswered call.
	NoAnswerTimeout time.Duration
	// Keepalive is the in-dialog OPTIONS interval; 0 disables them.
	Keepalive time.Duration
	// SessionExpires asks carriers for RFC 4028 session timers with this
	// interval, refreshed by the B2BUA; 0 disables.
	SessionExpires time.Duration
	// MaxDuration caps calls that are not billed; 0: no cap.
	MaxDuration time.Duration
	// Redirects is "return" or "follow".
	Redirects string
	// Anchor is "auto", "always" or "never".
	Anchor string
}

// Anchor policies.
const (
	anchorAuto   = "auto"
	anchorAlways = "always"
	anchorNever  = "never"
)

// relayConfig is [relay].
type relayConfig struct {
	Addr netip.Addr
	// Advertise is the address written into SDP; Addr when not set.
	Advertise netip.Addr
	// PortMin and PortMax bound the media ports, both included.
	PortMin, PortMax uint16
	// Timeout ends a call whose media stopped this long ago.
	Timeout time.Duration
}

// cdrConfig is [cdr].
type cdrConfig struct {
	// CSV, when set, is the file one line per ended call is appended to.
	CSV string
}

// trunkConfig is one [[trunk]]: a carrier.
type trunkConfig struct {
	Name string
	// URI is where calls to the trunk go; its user part is replaced by the
	// dialled number.
	URI                sip.Uri
	Username, Password string
	// Weight shares calls among trunks of one priority; 0 makes the trunk
	// a last resort within its priority.
	Weight int
	// Priority orders trunks: lower is tried first.
	Priority int
	// Inbound lists the sources recognised as this trunk, as written.
	Inbound []string
	// FromDomain is the host of the From URI; the URI's host when empty.
	FromDomain  string
	StripWebRTC bool
	// Timeout is the no-answer timeout of the trunk; 0 uses
	// [calls].no_answer_timeout.
	Timeout time.Duration
	// Transit lets calls from this trunk go out to other trunks.
	Transit bool

	// inbound parsed: exact sources, addresses and prefixes.
	inPorts []netip.AddrPort
	inAddrs []netip.Addr
	inNets  []netip.Prefix
}

// dialRule is one [[dialplan]] rule.
type dialRule struct {
	Match   *regexp.Regexp
	Strip   int
	Prepend string
	// Trunks names the trunks the rule uses; empty means all.
	Trunks []string
}

// apply transforms a dialled number by the rule: Strip leading characters
// removed (a leading "+" counts as one), then Prepend added.
func (d *dialRule) apply(number string) string {
	if d.Strip >= len(number) {
		return d.Prepend
	}
	return d.Prepend + number[d.Strip:]
}

// accountConfig is one [[account]].
type accountConfig struct {
	ID    string
	Users []string
	// Number is the caller ID presented on trunks, normalised (no visual
	// separators).
	Number string
	// Balance is the initial balance in micro-units, credited once.
	Balance  int64
	Currency string
}

// tariffConfig is one [[tariff]].
type tariffConfig struct {
	Prefix string
	// Rate (per minute) and ConnectFee are micro-units.
	Rate, ConnectFee int64
	// FirstIncrement and NextIncrement are seconds.
	FirstIncrement, NextIncrement int32
	MinDuration                   time.Duration
}

// tariff returns the tariff as the billing store keeps it: valid from the
// zero time, forever.
func (t tariffConfig) tariff() store.Tariff {
	return store.Tariff{
		Prefix:         t.Prefix,
		PricePerMinute: t.Rate,
		ConnectFee:     t.ConnectFee,
		FirstIncrement: t.FirstIncrement,
		NextIncrement:  t.NextIncrement,
		MinDuration:    int32(t.MinDuration / time.Second),
		Description:    "from the configuration file",
	}
}

// numberConfig is one [[number]]: a phone number reaching a user.
type numberConfig struct {
	// Number is normalised (no visual separators).
	Number string
	User   string
}

// Defaults of the configuration file.
const (
	defaultMaxSetup        = 2000
	defaultRetryAfter      = 5 * time.Second
	defaultNoAnswerTimeout = 120 * time.Second
	defaultMaxDuration     = 4 * time.Hour
	defaultRelayAddr       = "127.0.0.1"
	defaultRelayPorts      = "30000-40000"
	defaultRelayTimeout    = 60 * time.Second
	defaultTrunkWeight     = 10
	defaultTrunkPriority   = 1
	defaultCurrency        = "EUR"
	defaultIncrement       = "60/60"
)

// defaultCallConfig is the configuration without a -config file: no
// trunks, no accounts, calls between registered users only.
func defaultCallConfig() *callConfig {
	cfg, err := parseCallConfig(nil)
	if err != nil {
		panic("default call configuration: " + err.Error())
	}
	return cfg
}

// loadCallConfig reads and validates the configuration file at path.
func loadCallConfig(path string) (*callConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := parseCallConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// The file as TOML has it. Pointers tell a key left out (default) from a
// zero written down.
type rawCallConfig struct {
	Calls struct {
		MaxSetup        *int    `toml:"max_setup"`
		RetryAfter      *string `toml:"retry_after"`
		NoAnswerTimeout *string `toml:"no_answer_timeout"`
		Keepalive       *string `toml:"keepalive"`
		SessionExpires  *string `toml:"session_expires"`
		MaxDuration     *string `toml:"max_duration"`
		Redirects       *string `toml:"redirects"`
		Anchor          *string `toml:"anchor"`
	} `toml:"calls"`
	Relay struct {
		Addr      *string `toml:"addr"`
		Advertise string  `toml:"advertise"`
		Ports     *string `toml:"ports"`
		Timeout   *string `toml:"timeout"`
	} `toml:"relay"`
	CDR struct {
		CSV string `toml:"csv"`
	} `toml:"cdr"`
	Trunks []struct {
		Name        string   `toml:"name"`
		URI         string   `toml:"uri"`
		Username    string   `toml:"username"`
		Password    string   `toml:"password"`
		Weight      *int     `toml:"weight"`
		Priority    *int     `toml:"priority"`
		Inbound     []string `toml:"inbound"`
		FromDomain  string   `toml:"from_domain"`
		StripWebRTC *bool    `toml:"strip_webrtc"`
		Timeout     *string  `toml:"timeout"`
		Transit     bool     `toml:"transit"`
	} `toml:"trunk"`
	DialPlan []struct {
		Match   *string  `toml:"match"`
		Strip   int      `toml:"strip"`
		Prepend string   `toml:"prepend"`
		Trunks  []string `toml:"trunks"`
	} `toml:"dialplan"`
	Accounts []struct {
		ID       string      `toml:"id"`
		Users    []string    `toml:"users"`
		Number   string      `toml:"number"`
		Balance  decimalText `toml:"balance"`
		Currency *string     `toml:"currency"`
	} `toml:"account"`
	Tariffs []struct {
		Prefix      *string     `toml:"prefix"`
		Rate        decimalText `toml:"rate"`
		ConnectFee  decimalText `toml:"connect_fee"`
		Increment   *string     `toml:"increment"`
		MinDuration *string     `toml:"min_duration"`
	} `toml:"tariff"`
	Numbers []struct {
		Number string `toml:"number"`
		User   string `toml:"user"`
	} `toml:"number"`
}

// decimalText is a money amount as written: a string ("0.0120") or an
// integer. A TOML float is refused, since it cannot hold every decimal
// exactly.
type decimalText struct {
	s   string
	set bool
}

// UnmarshalTOML implements toml.Unmarshaler.
func (d *decimalText) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case string:
		d.s = v
	case int64:
		d.s = strconv.FormatInt(v, 10)
	case float64:
		return fmt.Errorf("amount %v: write it as a string, e.g. \"10.00\", so that it is exact", v)
	default:
		return fmt.Errorf("amount: want a decimal string such as \"10.00\", not %T", v)
	}
	d.set = true
	return nil
}

// parseCallConfig decodes and validates a configuration file's content;
// empty data gives the defaults.
func parseCallConfig(data []byte) (*callConfig, error) {
	var raw rawCallConfig
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		keys := make([]string, len(un))
		for i, k := range un {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config: unknown keys: %s", strings.Join(keys, ", "))
	}
	cfg := &callConfig{
		trunkIndex:   make(map[string]int),
		accountIndex: make(map[string]int),
		numberUser:   make(map[string]string),
	}
	if err := cfg.fillCalls(&raw); err != nil {
		return nil, err
	}
	if err := cfg.fillRelay(&raw); err != nil {
		return nil, err
	}
	cfg.CDR.CSV = raw.CDR.CSV
	if err := cfg.fillTrunks(&raw); err != nil {
		return nil, err
	}
	if err := cfg.fillDialPlan(&raw); err != nil {
		return nil, err
	}
	if err := cfg.fillAccounts(&raw); err != nil {
		return nil, err
	}
	if err := cfg.fillTariffs(&raw); err != nil {
		return nil, err
	}
	if err := cfg.fillNumbers(&raw); err != nil {
		return nil, err
	}
	return cfg, nil
}

// duration parses an optional duration, def when it is absent; it must not
// be negative, and must be positive when positive is set.
func duration(where string, s *string, def time.Duration, positive bool) (time.Duration, error) {
	if s == nil {
		return def, nil
	}
	d, err := time.ParseDuration(*s)
	if err != nil {
		return 0, fmt.Errorf("config: %s: bad duration %q (write e.g. \"30s\", \"2m\", \"4h\")", where, *s)
	}
	if d < 0 || (positive && d == 0) {
		return 0, fmt.Errorf("config: %s: duration %q must be positive", where, *s)
	}
	return d, nil
}

func (cfg *callConfig) fillCalls(raw *rawCallConfig) error {
	c := &cfg.Calls
	rc := &raw.Calls
	c.MaxSetup = defaultMaxSetup
	if rc.MaxSetup != nil {
		if *rc.MaxSetup < 1 {
			return fmt.Errorf("config: calls.max_setup: %d, must be at least 1", *rc.MaxSetup)
		}
		c.MaxSetup = *rc.MaxSetup
	}
	var err error
	if c.RetryAfter, err = duration("calls.retry_after", rc.RetryAfter, defaultRetryAfter, true); err != nil {
		return err
	}
	if c.RetryAfter < time.Second {
		return fmt.Errorf("config: calls.retry_after: %s, must be at least 1s (Retry-After counts seconds)", c.RetryAfter)
	}
	if c.NoAnswerTimeout, err = duration("calls.no_answer_timeout", rc.NoAnswerTimeout, defaultNoAnswerTimeout, true); err != nil {
		return err
	}
	if c.Keepalive, err = duration("calls.keepalive", rc.Keepalive, 0, false); err != nil {
		return err
	}
	if c.SessionExpires, err = duration("calls.session_expires", rc.SessionExpires, 0, false); err != nil {
		return err
	}
	if c.SessionExpires != 0 && c.SessionExpires < 90*time.Second {
		return fmt.Errorf("config: calls.session_expires: %s, must be 0 or at least 90s (RFC 4028 Min-SE)", c.SessionExpires)
	}
	if c.MaxDuration, err = duration("calls.max_duration", rc.MaxDuration, defaultMaxDuration, false); err != nil {
		return err
	}
	c.Redirects = "return"
	if rc.Redirects != nil {
		if *rc.Redirects != "return" && *rc.Redirects != "follow" {
			return fmt.Errorf("config: calls.redirects: %q, want \"return\" or \"follow\"", *rc.Redirects)
		}
		c.Redirects = *rc.Redirects
	}
	c.Anchor = anchorAuto
	if rc.Anchor != nil {
		switch *rc.Anchor {
		case anchorAuto, anchorAlways, anchorNever:
			c.Anchor = *rc.Anchor
		default:
			return fmt.Errorf("config: calls.anchor: %q, want \"auto\", \"always\" or \"never\"", *rc.Anchor)
		}
	}
	return nil
}

func (cfg *callConfig) fillRelay(raw *rawCallConfig) error {
	r := &cfg.Relay
	rr := &raw.Relay
	addr := defaultRelayAddr
	if rr.Addr != nil {
		addr = *rr.Addr
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return fmt.Errorf("config: relay.addr: %q is not an IP address", addr)
	}
	r.Addr = a.Unmap()
	r.Advertise = r.Addr
	if rr.Advertise != "" {
		a, err := netip.ParseAddr(rr.Advertise)
		if err != nil {
			return fmt.Errorf("config: relay.advertise: %q is not an IP address", rr.Advertise)
		}
		r.Advertise = a.Unmap()
	}
	if r.Advertise.IsUnspecified() {
		return fmt.Errorf("config: relay.advertise: must be set to the address peers send media to when relay.addr is %s", r.Addr)
	}
	ports := defaultRelayPorts
	if rr.Ports != nil {
		ports = *rr.Ports
	}
	lo, hi, ok := strings.Cut(ports, "-")
	pmin, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 16)
	pmax, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 16)
	if !ok || err1 != nil || err2 != nil || pmin == 0 || pmax < pmin+1 {
		return fmt.Errorf("config: relay.ports: %q, want a range of at least two ports such as \"30000-40000\"", ports)
	}
	r.PortMin, r.PortMax = uint16(pmin), uint16(pmax)
	if r.Timeout, err = duration("relay.timeout", rr.Timeout, defaultRelayTimeout, true); err != nil {
		return err
	}
	return nil
}

// validName reports whether s can name a trunk or an account: printable,
// without spaces.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

func (cfg *callConfig) fillTrunks(raw *rawCallConfig) error {
	inbound := make(map[string]string) // normalised entry → trunk
	for i, rt := range raw.Trunks {
		where := fmt.Sprintf("trunk %d", i+1)
		if rt.Name != "" {
			where = fmt.Sprintf("trunk %d (%q)", i+1, rt.Name)
		}
		if !validName(rt.Name) {
			return fmt.Errorf("config: %s: name must be set, without spaces", where)
		}
		if _, dup := cfg.trunkIndex[rt.Name]; dup {
			return fmt.Errorf("config: %s: duplicate trunk name", where)
		}
		t := trunkConfig{
			Name: rt.Name, Username: rt.Username, Password: rt.Password,
			Weight: defaultTrunkWeight, Priority: defaultTrunkPriority,
			FromDomain: rt.FromDomain, StripWebRTC: true, Transit: rt.Transit,
		}
		if rt.URI == "" {
			return fmt.Errorf("config: %s: uri must be set, e.g. \"sip:gw.carrier.example:5060;transport=udp\"", where)
		}
		if err := sip.ParseUri(rt.URI, &t.URI); err != nil {
			return fmt.Errorf("config: %s: bad uri %q: %v", where, rt.URI, err)
		}
		if s := strings.ToLower(t.URI.Scheme); (s != "sip" && s != "sips") || t.URI.Host == "" || t.URI.Wildcard {
			return fmt.Errorf("config: %s: uri %q must be a sip: or sips: URI with a host", where, rt.URI)
		}
		if tr := strings.ToUpper(t.URI.UriParams.GetOr("transport", "udp")); !slices.Contains([]string{"UDP", "TCP", "TLS", "WS", "WSS"}, tr) {
			return fmt.Errorf("config: %s: uri %q: unknown transport %q", where, rt.URI, tr)
		}
		if rt.Weight != nil {
			if *rt.Weight < 0 {
				return fmt.Errorf("config: %s: negative weight %d", where, *rt.Weight)
			}
			t.Weight = *rt.Weight
		}
		if rt.Priority != nil {
			if *rt.Priority < 0 {
				return fmt.Errorf("config: %s: negative priority %d", where, *rt.Priority)
			}
			t.Priority = *rt.Priority
		}
		if rt.StripWebRTC != nil {
			t.StripWebRTC = *rt.StripWebRTC
		}
		if strings.ContainsAny(rt.FromDomain, " @;:<>\"") {
			return fmt.Errorf("config: %s: from_domain %q must be a host name or address", where, rt.FromDomain)
		}
		var err error
		if t.Timeout, err = duration(where+": timeout", rt.Timeout, 0, false); err != nil {
			return err
		}
		for _, in := range rt.Inbound {
			var key string
			if ap, err := netip.ParseAddrPort(in); err == nil {
				ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
				t.inPorts = append(t.inPorts, ap)
				key = ap.String()
			} else if a, err := netip.ParseAddr(in); err == nil {
				t.inAddrs = append(t.inAddrs, a.Unmap())
				key = a.Unmap().String()
			} else if p, err := netip.ParsePrefix(in); err == nil {
				p = p.Masked()
				t.inNets = append(t.inNets, p)
				key = p.String()
			} else {
				return fmt.Errorf("config: %s: inbound %q is not an IP, CIDR or IP:port", where, in)
			}
			if other, dup := inbound[key]; dup {
				return fmt.Errorf("config: %s: inbound %q is already trunk %q's", where, in, other)
			}
			inbound[key] = t.Name
		}
		t.Inbound = slices.Clone(rt.Inbound)
		cfg.trunkIndex[t.Name] = len(cfg.Trunks)
		cfg.Trunks = append(cfg.Trunks, t)
	}
	return nil
}

var prependChars = regexp.MustCompile(`^\+?[0-9*#]*$`)

func (cfg *callConfig) fillDialPlan(raw *rawCallConfig) error {
	for i, rd := range raw.DialPlan {
		where := fmt.Sprintf("dialplan rule %d", i+1)
		if rd.Match == nil || *rd.Match == "" {
			return fmt.Errorf("config: %s: match must be set, e.g. '^\\+?[1-9][0-9]{6,14}$'", where)
		}
		re, err := regexp.Compile(*rd.Match)
		if err != nil {
			return fmt.Errorf("config: %s: bad match regexp %q: %v", where, *rd.Match, err)
		}
		if rd.Strip < 0 {
			return fmt.Errorf("config: %s: negative strip %d", where, rd.Strip)
		}
		if !prependChars.MatchString(rd.Prepend) {
			return fmt.Errorf("config: %s: prepend %q: digits only, with an optional leading \"+\"", where, rd.Prepend)
		}
		if len(cfg.Trunks) == 0 {
			return fmt.Errorf("config: %s: there is no [[trunk]] to send calls to", where)
		}
		for _, name := range rd.Trunks {
			if _, ok := cfg.trunkIndex[name]; !ok {
				return fmt.Errorf("config: %s: unknown trunk %q", where, name)
			}
		}
		cfg.DialPlan = append(cfg.DialPlan, dialRule{Match: re, Strip: rd.Strip, Prepend: rd.Prepend, Trunks: slices.Clone(rd.Trunks)})
	}
	return nil
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

func (cfg *callConfig) fillAccounts(raw *rawCallConfig) error {
	ids := make(map[string]bool)
	for i, ra := range raw.Accounts {
		where := fmt.Sprintf("account %d", i+1)
		if ra.ID != "" {
			where = fmt.Sprintf("account %d (%q)", i+1, ra.ID)
		}
		if !validName(ra.ID) {
			return fmt.Errorf("config: %s: id must be set, without spaces", where)
		}
		if ids[ra.ID] {
			return fmt.Errorf("config: %s: duplicate account id", where)
		}
		ids[ra.ID] = true
		a := accountConfig{ID: ra.ID, Currency: defaultCurrency}
		for _, u := range ra.Users {
			if !validName(u) || strings.ContainsAny(u, "@:;") {
				return fmt.Errorf("config: %s: bad user name %q", where, u)
			}
			if j, dup := cfg.accountIndex[u]; dup {
				return fmt.Errorf("config: %s: user %q is already in account %q", where, u, cfg.Accounts[j].ID)
			}
			cfg.accountIndex[u] = len(cfg.Accounts)
		}
		a.Users = slices.Clone(ra.Users)
		if ra.Number != "" {
			n := normalizeNumber(ra.Number)
			if !isNumber(n) {
				return fmt.Errorf("config: %s: number %q is not a phone number", where, ra.Number)
			}
			a.Number = n
		}
		if ra.Balance.set {
			b, err := parseMoney(ra.Balance.s)
			if err != nil {
				return fmt.Errorf("config: %s: balance: %w", where, err)
			}
			if b < 0 {
				return fmt.Errorf("config: %s: balance %q is negative", where, ra.Balance.s)
			}
			a.Balance = b
		}
		if ra.Currency != nil {
			if !currencyCode.MatchString(*ra.Currency) {
				return fmt.Errorf("config: %s: currency %q, want an ISO 4217 code such as \"EUR\"", where, *ra.Currency)
			}
			a.Currency = *ra.Currency
		}
		cfg.Accounts = append(cfg.Accounts, a)
	}
	return nil
}

func (cfg *callConfig) fillTariffs(raw *rawCallConfig) error {
	seen := make(map[string]bool)
	for i, rt := range raw.Tariffs {
		where := fmt.Sprintf("tariff %d", i+1)
		if rt.Prefix == nil {
			return fmt.Errorf("config: %s: prefix must be set (\"\" for a default rate)", where)
		}
		where = fmt.Sprintf("tariff %d (prefix %q)", i+1, *rt.Prefix)
		prefix := strings.TrimPrefix(*rt.Prefix, "+")
		for _, c := range prefix {
			if c < '0' || c > '9' {
				return fmt.Errorf("config: %s: prefix must be digits", where)
			}
		}
		if seen[prefix] {
			return fmt.Errorf("config: %s: duplicate prefix", where)
		}
		seen[prefix] = true
		t := tariffConfig{Prefix: prefix}
		if !rt.Rate.set {
			return fmt.Errorf("config: %s: rate must be set, e.g. \"0.0120\" per minute", where)
		}
		var err error
		if t.Rate, err = parseMoney(rt.Rate.s); err != nil {
			return fmt.Errorf("config: %s: rate: %w", where, err)
		}
		if rt.ConnectFee.set {
			if t.ConnectFee, err = parseMoney(rt.ConnectFee.s); err != nil {
				return fmt.Errorf("config: %s: connect_fee: %w", where, err)
			}
		}
		if t.Rate < 0 || t.ConnectFee < 0 {
			return fmt.Errorf("config: %s: negative price", where)
		}
		inc := defaultIncrement
		if rt.Increment != nil {
			inc = *rt.Increment
		}
		if t.FirstIncrement, t.NextIncrement, err = parseIncrement(inc); err != nil {
			return fmt.Errorf("config: %s: increment: %w", where, err)
		}
		if t.MinDuration, err = duration(where+": min_duration", rt.MinDuration, 0, false); err != nil {
			return err
		}
		if t.MinDuration%time.Second != 0 || t.MinDuration > math.MaxInt32*time.Second {
			return fmt.Errorf("config: %s: min_duration %s must be whole seconds", where, t.MinDuration)
		}
		cfg.Tariffs = append(cfg.Tariffs, t)
	}
	return nil
}

func (cfg *callConfig) fillNumbers(raw *rawCallConfig) error {
	for i, rn := range raw.Numbers {
		where := fmt.Sprintf("number %d (%q)", i+1, rn.Number)
		n := normalizeNumber(rn.Number)
		if !isNumber(n) {
			return fmt.Errorf("config: %s: not a phone number", where)
		}
		if !validName(rn.User) || strings.ContainsAny(rn.User, "@:;") {
			return fmt.Errorf("config: %s: user must be set to a user name", where)
		}
		key := strings.TrimPrefix(n, "+")
		if u, dup := cfg.numberUser[key]; dup {
			return fmt.Errorf("config: %s: number is mapped twice (already to user %q)", where, u)
		}
		cfg.numberUser[key] = rn.User
		cfg.Numbers = append(cfg.Numbers, numberConfig{Number: n, User: rn.User})
	}
	return nil
}

// microUnits is one currency unit in micro-units.
const microUnits = 1_000_000

// parseMoney converts a decimal amount of currency units ("10", "0.0120",
// "-1.5") to micro-units exactly, without floating point. More than six
// decimals is an error: it cannot be represented.
func parseMoney(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	whole, frac, hasDot := strings.Cut(body, ".")
	if whole == "" || (hasDot && frac == "") || !allDigits(whole) || !allDigits(frac) {
		return 0, fmt.Errorf("bad amount %q: write a decimal such as \"10.00\" or \"0.0120\"", s)
	}
	if len(frac) > 6 {
		return 0, fmt.Errorf("amount %q has more than 6 decimals (the smallest unit is a millionth)", s)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/microUnits-1 {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
	}
	v := w*microUnits + f
	if neg {
		v = -v
	}
	return v, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// parseIncrement parses "first/next" billing increments in seconds.
func parseIncrement(s string) (first, next int32, err error) {
	a, b, ok := strings.Cut(s, "/")
	f, err1 := strconv.ParseInt(a, 10, 32)
	n, err2 := strconv.ParseInt(b, 10, 32)
	if !ok || err1 != nil || err2 != nil || f < 1 || n < 1 {
		return 0, 0, fmt.Errorf("%q, want first/next seconds, both at least 1, such as \"1/1\", \"30/6\" or \"60/60\"", s)
	}
	return int32(f), int32(n), nil
}

// normalizeNumber removes the visual separators people write in phone
// numbers (spaces, "-", ".", "/", parentheses), keeping a leading "+".
// Anything else is kept, so a user name comes back unchanged.
func normalizeNumber(s string) string {
	if !strings.ContainsAny(s, " -./()\t") {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch r {
		case ' ', '-', '.', '/', '(', ')', '\t':
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// isNumber reports whether s (normalised) is a phone number: digits, with
// an optional leading "+".
func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "+")
	return s != "" && allDigits(s)
}

// accountOf returns the account users bill to.
func (cfg *callConfig) accountOf(user string) (*accountConfig, bool) {
	i, ok := cfg.accountIndex[user]
	if !ok {
		return nil, false
	}
	return &cfg.Accounts[i], true
}

// trunk returns the trunk called name.
func (cfg *callConfig) trunk(name string) (*trunkConfig, bool) {
	i, ok := cfg.trunkIndex[name]
	if !ok {
		return nil, false
	}
	return &cfg.Trunks[i], true
}

// initialKey is the ledger key of an account's initial balance: posted
// once, so restarts do not credit it again.
func initialKey(account string) string { return "initial:" + account }

// seedBilling brings the billing store in line with the configuration:
// accounts missing from it are created and credited their initial balance
// once (a ledger entry with key "initial:<id>", so a restart, or a balance
// changed in the file later, credits nothing more: top up instead).
// Existing accounts are left as they are. Tariffs are inserted or replaced;
// when the file lists tariffs it owns the rate table: stored tariffs it no
// longer lists are deleted. A running billing engine must reload its
// tariffs after this.
func seedBilling(ctx context.Context, st store.Billing, cfg *callConfig) error {
	now := time.Now()
	for _, a := range cfg.Accounts {
		err := st.CreateAccount(ctx, store.Account{ID: a.ID, Currency: a.Currency})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("config: create account %q: %w", a.ID, err)
		}
		if a.Balance == 0 {
			continue
		}
		_, err = st.PostEntry(ctx, store.LedgerEntry{
			Account: a.ID,
			Key:     initialKey(a.ID),
			Kind:    store.EntryTopUp,
			Amount:  a.Balance,
			Note:    "initial balance from the configuration file",
			Time:    now,
		})
		if err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("config: initial balance of %q: %w", a.ID, err)
		}
	}
	if len(cfg.Tariffs) == 0 {
		return nil
	}
	ts := make([]store.Tariff, len(cfg.Tariffs))
	keep := make(map[store.TariffKey]bool, len(ts))
	for i, t := range cfg.Tariffs {
		ts[i] = t.tariff()
		keep[ts[i].Key()] = true
	}
	if err := st.UpsertTariffs(ctx, ts); err != nil {
		return fmt.Errorf("config: tariffs: %w", err)
	}
	stored, err := st.ListTariffs(ctx)
	if err != nil {
		return fmt.Errorf("config: tariffs: %w", err)
	}
	var drop []store.TariffKey
	for _, t := range stored {
		if !keep[t.Key()] {
			drop = append(drop, t.Key())
		}
	}
	if len(drop) > 0 {
		if err := st.DeleteTariffs(ctx, drop); err != nil {
			return fmt.Errorf("config: delete old tariffs: %w", err)
		}
	}
	return nil
}
