package stun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pion/stun/v3"
)

// ClassifierConfig configures a Classifier. The zero value is ready to use.
type ClassifierConfig struct {
	// RTO is the initial retransmission timeout of RFC 8489 §6.2.1.
	// Defaults to 200ms: shorter than the RFC's 500ms, because a person is
	// waiting for the answer. Raise it for paths with a long RTT.
	RTO time.Duration
	// Rc is the number of requests sent per test before giving up
	// (RFC 8489: 7). Defaults to 4.
	Rc int
	// Rm is the multiple of RTO waited after the last request (RFC 8489:
	// 16). Defaults to 4. With the defaults a test without an answer
	// takes 0.2+0.4+0.8+0.8 = 2.2s; filtering tests routinely end that way.
	Rm int
	// ListenPacket opens the local UDP socket the tests run from; address
	// is LocalAddr. Defaults to net.ListenConfig's. Tests pass a fake
	// network's.
	ListenPacket func(ctx context.Context, network, address string) (net.PacketConn, error)
	// LocalAddr is the local address to bind. Defaults to an ephemeral
	// port on every address of the server's family.
	LocalAddr string
	// Software, when not empty, is sent as SOFTWARE in requests.
	Software string
	// Logger receives debug logs of each test. Nil means slog.Default()
	// with component=stun.
	Logger *slog.Logger
}

// Classifier runs the RFC 5780 NAT behaviour discovery tests against a
// STUN server. It holds no state between calls and is safe for concurrent
// use.
type Classifier struct {
	cfg ClassifierConfig
	log *slog.Logger
}

// NewClassifier returns a Classifier with cfg's defaults filled in.
func NewClassifier(cfg ClassifierConfig) (*Classifier, error) {
	if cfg.RTO == 0 {
		cfg.RTO = 200 * time.Millisecond
	}
	if cfg.Rc == 0 {
		cfg.Rc = 4
	}
	if cfg.Rm == 0 {
		cfg.Rm = 4
	}
	if cfg.RTO < 0 || cfg.Rc < 0 || cfg.Rm < 0 {
		return nil, fmt.Errorf("%w: negative RTO, Rc or Rm", ErrConfig)
	}
	if cfg.ListenPacket == nil {
		var lc net.ListenConfig
		cfg.ListenPacket = lc.ListenPacket
	}
	c := &Classifier{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.Default().With("component", "stun")
	}
	return c, nil
}

// Classify runs the tests against server with the default configuration.
// See Classifier.Classify.
func Classify(ctx context.Context, server string) (Result, error) {
	c, _ := NewClassifier(ClassifierConfig{})
	return c.Classify(ctx, server)
}

// Classify finds the NAT behaviour between this host and server ("host",
// "host:port" or "stun:host:port"; the port defaults to 3478). It runs:
//
//   - test I: a plain Binding request, for the public address and the
//     server's OTHER-ADDRESS;
//   - mapping tests II and III (RFC 5780 §4.3), from the same socket:
//     requests to the alternate IP with the primary port, then to the
//     alternate IP and port;
//   - filtering tests II and III (RFC 5780 §4.4), from a second socket:
//     CHANGE-REQUEST for a response from the other IP and port, and from
//     the other port only.
//
// The two groups use different local ports and run at the same time. They
// must not share one: a mapping test's request to the alternate address
// would open the NAT's filter for it, and a filtering test's unsolicited
// response leaves state in the NAT (a Linux conntrack entry) that makes
// the NAT pick a new port for the next mapping test, so each would make
// the other's answer wrong.
//
// No answer to test I is not an error: the Result says UDPBlocked. A
// server without RFC 5780 gives a Result with Partial set and the reason
// in Notes. Errors are for a bad server name, a socket that cannot be
// opened, or ctx ending.
func (c *Classifier) Classify(ctx context.Context, server string) (Result, error) {
	dst, err := resolve(ctx, server)
	if err != nil {
		return Result{}, err
	}
	local := c.cfg.LocalAddr
	if local == "" {
		local = "0.0.0.0:0"
		if dst.Addr().Unmap().Is6() {
			local = "[::]:0"
		}
	}
	s, err := c.open(ctx, local)
	if err != nil {
		return Result{}, err
	}
	defer s.close()

	res := Result{Server: dst, Local: addrPortOf(s.pc.LocalAddr())}
	if res.Local.Addr().IsUnspecified() {
		res.Local = netip.AddrPortFrom(routeSource(dst), res.Local.Port())
	}
	// The filtering socket binds the same IP on another port.
	second := func() (*session, error) {
		host, _, err := net.SplitHostPort(local)
		if err != nil {
			return nil, fmt.Errorf("stun: classify: %w", err)
		}
		return c.open(ctx, net.JoinHostPort(host, "0"))
	}
	err = c.run(ctx, s, second, &res)
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, err
}

func (c *Classifier) open(ctx context.Context, local string) (*session, error) {
	pc, err := c.cfg.ListenPacket(ctx, "udp", local)
	if err != nil {
		return nil, fmt.Errorf("stun: classify: %w", err)
	}
	var sw []byte
	if c.cfg.Software != "" {
		sw = []byte(c.cfg.Software)
	}
	return newSession(pc, c.cfg.RTO, c.cfg.Rc, c.cfg.Rm, sw), nil
}

func (c *Classifier) run(ctx context.Context, s *session, second func() (*session, error), res *Result) error {
	var mu sync.Mutex // note is called from both test groups
	note := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		res.Partial = true
		res.Notes = append(res.Notes, fmt.Sprintf(format, args...))
	}

	// Test I.
	r1, err := s.do(ctx, res.Server)
	if err != nil {
		if errors.Is(err, ErrTimeout) {
			res.Type = UDPBlocked
			res.Notes = append(res.Notes, "no answer to a Binding request: "+err.Error())
			return nil
		}
		return err
	}
	if r1.msg.Type.Class == stun.ClassErrorResponse {
		note("server answered test I with an error: %v", errorCode(r1.msg))
		return nil
	}
	res.Public = mappedAddr(r1.msg)
	if !res.Public.IsValid() {
		note("server sent no mapped address")
		return nil
	}
	res.BehindNAT = res.Public.Addr().Unmap() != res.Local.Addr().Unmap() || res.Public.Port() != res.Local.Port()
	res.Other = otherAddr(r1.msg)
	c.log.Debug("test I", "public", res.Public, "other", res.Other)
	switch o := res.Other; {
	case !o.IsValid():
		note("server does not support RFC 5780 (no OTHER-ADDRESS): only the public address and whether there is a NAT are known")
		return nil
	case o.Addr().Unmap() == res.Server.Addr().Unmap() || o.Port() == res.Server.Port():
		note("server's OTHER-ADDRESS %v does not differ from %v in both IP and port: behaviour tests skipped", o, res.Server)
		return nil
	}
	fs, err := second()
	if err != nil {
		return err
	}
	defer fs.close()

	var wg sync.WaitGroup
	var mapping, filtering Behavior
	var mapErr, filtErr error
	wg.Go(func() { mapping, mapErr = c.mappingTests(ctx, s, res.Server, res.Other, res.Public, note) })
	wg.Go(func() { filtering, filtErr = c.filteringTests(ctx, fs, res.Server, res.Other, note) })
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := errors.Join(mapErr, filtErr); err != nil {
		return err
	}
	res.Mapping, res.Filtering = mapping, filtering
	res.Type = classicType(res.BehindNAT, res.Mapping, res.Filtering)
	return nil
}

// mappingTests runs RFC 5780 §4.3 tests II and III on s, whose test I
// gave public. Test III only runs when test II's mapping differs.
func (c *Classifier) mappingTests(ctx context.Context, s *session, server, other, public netip.AddrPort, note func(string, ...any)) (Behavior, error) {
	altIP := netip.AddrPortFrom(other.Addr(), server.Port())
	m2, err := s.do(ctx, altIP)
	x2 := mappedAddr(m2.msg)
	c.log.Debug("mapping test II", "mapped", x2, "err", err)
	switch {
	case err != nil && !errors.Is(err, ErrTimeout):
		return BehaviorUnknown, err
	case !x2.IsValid():
		note("no mapped address from the alternate address %v (%v): mapping unknown", altIP, err)
		return BehaviorUnknown, nil
	case x2 == public:
		return EndpointIndependent, nil
	}
	m3, err := s.do(ctx, other)
	x3 := mappedAddr(m3.msg)
	c.log.Debug("mapping test III", "mapped", x3, "err", err)
	switch {
	case err != nil && !errors.Is(err, ErrTimeout):
		return BehaviorUnknown, err
	case !x3.IsValid():
		note("no mapped address from the alternate address %v (%v): mapping unknown", other, err)
		return BehaviorUnknown, nil
	case x3 == x2:
		return AddressDependent, nil
	}
	return AddressAndPortDependent, nil
}

// filteringTests runs RFC 5780 §4.4 tests II and III on s, concurrently:
// both go to the primary address, so neither opens the filter for the
// other's answer.
func (c *Classifier) filteringTests(ctx context.Context, s *session, server, other netip.AddrPort, note func(string, ...any)) (Behavior, error) {
	var f2, f3 reply
	var e2, e3 error
	var wg sync.WaitGroup
	wg.Go(func() { f2, e2 = s.do(ctx, server, ChangeRequest{IP: true, Port: true}) })
	wg.Go(func() { f3, e3 = s.do(ctx, server, ChangeRequest{Port: true}) })
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return BehaviorUnknown, err
	}
	altPort := netip.AddrPortFrom(server.Addr(), other.Port())
	return c.filtering(f2, e2, other, f3, e3, altPort, note), nil
}

// filtering interprets filtering tests II (change IP and port, expected
// from other) and III (change port, expected from altPort).
func (c *Classifier) filtering(f2 reply, e2 error, other netip.AddrPort, f3 reply, e3 error, altPort netip.AddrPort, note func(string, ...any)) Behavior {
	c.log.Debug("filtering tests", "II", f2.from, "III", f3.from, "errII", e2, "errIII", e3)
	for _, t := range []struct {
		r    reply
		err  error
		want netip.AddrPort
	}{{f2, e2, other}, {f3, e3, altPort}} {
		switch {
		case t.err != nil && !errors.Is(t.err, ErrTimeout):
			note("filtering test failed: %v", t.err)
			return BehaviorUnknown
		case t.err != nil:
			continue
		case t.r.msg.Type.Class == stun.ClassErrorResponse:
			note("server refused CHANGE-REQUEST (%v): filtering unknown", errorCode(t.r.msg))
			return BehaviorUnknown
		case t.r.from.Addr().Unmap() != t.want.Addr().Unmap() || t.r.from.Port() != t.want.Port():
			note("server answered CHANGE-REQUEST from %v instead of %v: filtering unknown", t.r.from, t.want)
			return BehaviorUnknown
		}
	}
	switch {
	case e2 == nil:
		return EndpointIndependent
	case e3 == nil:
		return AddressDependent
	}
	return AddressAndPortDependent
}

// mappedAddr returns XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from a server
// that predates RFC 5389; invalid if m is nil or has neither.
func mappedAddr(m *stun.Message) netip.AddrPort {
	if m == nil || m.Type.Class != stun.ClassSuccessResponse {
		return netip.AddrPort{}
	}
	x := XORAddrAttr{Type: stun.AttrXORMappedAddress}
	if x.GetFrom(m) == nil {
		return x.Addr
	}
	a := AddrAttr{Type: stun.AttrMappedAddress}
	if a.GetFrom(m) == nil {
		return a.Addr
	}
	return netip.AddrPort{}
}

// otherAddr returns OTHER-ADDRESS, or the RFC 3489 CHANGED-ADDRESS that
// means the same.
func otherAddr(m *stun.Message) netip.AddrPort {
	for _, t := range []stun.AttrType{stun.AttrOtherAddress, attrChangedAddress} {
		a := AddrAttr{Type: t}
		if a.GetFrom(m) == nil {
			return a.Addr
		}
	}
	return netip.AddrPort{}
}

func errorCode(m *stun.Message) string {
	var ec stun.ErrorCodeAttribute
	if ec.GetFrom(m) != nil {
		return "error response"
	}
	return ec.String()
}

// resolve turns a server name into an address.
func resolve(ctx context.Context, server string) (netip.AddrPort, error) {
	server = strings.TrimPrefix(server, "stun:")
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		host, port = strings.Trim(server, "[]"), "3478"
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("stun: server %q: bad port", server)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a, uint16(p)), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("stun: resolve %q: %w", host, err)
	}
	for _, ip := range ips { // prefer IPv4, the family NATs are about
		if ip.Unmap().Is4() {
			return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
		}
	}
	return netip.AddrPortFrom(ips[0], uint16(p)), nil
}

// routeSource finds which local IP the kernel would use to reach dst, by
// connecting a UDP socket (which sends nothing). An unspecified bind
// address does not tell; the NAT test needs the real one.
func routeSource(dst netip.AddrPort) netip.Addr {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(dst))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr()
}
