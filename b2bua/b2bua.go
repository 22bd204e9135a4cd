package b2bua

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Config configures a B2BUA. Client and Router are required; the zero
// value of every other field is a sensible default.
type Config struct {
	// Client sends the B-leg INVITEs and every request the B2BUA makes
	// inside a dialog. It must share its user agent (hence its transports
	// and connections) with the server the B2BUA is registered on, so
	// that requests to users behind NAT reuse their connections.
	Client *sipgo.Client
	// Contact is the B2BUA's own SIP URI, put in Contact headers: where
	// both parties send their in-dialog requests. Contacts overrides it
	// per transport ("UDP", "TCP", "TLS", "WS", "WSS"), so that a leg
	// over TCP gets a TCP contact.
	Contact  sip.Uri
	Contacts map[string]sip.Uri
	// UDPSource, if valid, is the local address UDP requests leave from:
	// the server's listening SIP socket, so that requests to users behind
	// NAT come through the pinhole their REGISTER opened (and from the
	// address their Contact was bound at). sipgo otherwise opens a new
	// socket for destinations it has not heard from.
	UDPSource netip.AddrPort

	// Authenticator identifies callers. Nil treats every caller as
	// anonymous (Identity{}); the Router must then decide alone.
	Authenticator Authenticator
	// Router decides where calls go. Required.
	Router Router
	// Authorizer authorizes and accounts calls that have an Account. Nil
	// lets every call through, unlimited.
	Authorizer Authorizer
	// Media anchors calls whose Route or Target asks for it. Nil keeps
	// all media direct (and logs the calls that wanted anchoring).
	Media MediaAnchor

	// MaxSetup is how many calls may be in setup (INVITE received, not
	// answered or failed yet) at once; past it new INVITEs are answered
	// 503 with Retry-After, rather than piling up. Defaults to 1000.
	MaxSetup int
	// MaxCalls caps the calls in progress, set up or answered. 0 is no cap.
	MaxCalls int
	// RetryAfter is the Retry-After of an overload 503. Defaults to 5s.
	RetryAfter time.Duration
	// NoAnswerTimeout ends a call that nobody answered in this long
	// (480 to the caller). Defaults to 2 minutes.
	NoAnswerTimeout time.Duration
	// TargetTimeout moves on to the next target when one has not answered
	// anything, not even 100 Trying, in this long. Defaults to 5s.
	TargetTimeout time.Duration
	// KeepAlive sends an in-dialog OPTIONS on both legs of answered calls
	// this often; a leg that answers 481 or 408, or not at all, ends the
	// call. Zero disables.
	KeepAlive time.Duration
	// SessionExpires enables RFC 4028 session timers: the B2BUA asks for
	// them on the B-leg and refreshes that leg itself (UPDATE when the
	// callee allows it, else re-INVITE), and honours a caller's request
	// for them on the A-leg, ending the call when the caller stops
	// refreshing. Zero disables; otherwise at least 90s.
	SessionExpires time.Duration
	// MaxDuration caps every answered call; the Authorizer may grant less.
	// Zero is no cap.
	MaxDuration time.Duration
	// FollowRedirects makes the B2BUA try the Contacts of a 3xx from a
	// target (up to 5 per call) instead of passing the 3xx to the caller.
	FollowRedirects bool
	// UserAgent is sent in requests and responses. Defaults to "talkpad".
	UserAgent string

	// OnEvent receives the events of every call, in order per call,
	// ending with exactly one EventEnded. It is called synchronously from
	// the call's goroutines and must not block.
	OnEvent func(Event)
	// Logger defaults to slog.Default() with component=b2bua.
	Logger *slog.Logger
}

// requester is what the B2BUA needs of sipgo's client (tests fake it).
type requester interface {
	TransactionRequest(ctx context.Context, req *sip.Request, options ...sipgo.ClientRequestOption) (sip.ClientTransaction, error)
	TransactionDigestAuth(ctx context.Context, req *sip.Request, res *sip.Response, auth sipgo.DigestAuth) (sip.ClientTransaction, error)
	WriteRequest(req *sip.Request, options ...sipgo.ClientRequestOption) error
}

// Stats are counters of a B2BUA.
type Stats struct {
	// InSetup and Active are calls in setup and answered calls right now.
	InSetup, Active int64
	// Calls counts new INVITEs handled; Answered those answered; Failed
	// those that ended unanswered for any reason.
	Calls, Answered, Failed uint64
	// Challenged counts INVITEs answered 407; Overload those refused 503
	// because too many calls were in setup.
	Challenged, Overload uint64
	// Attempts counts B-leg INVITEs sent; Failovers those that went to a
	// next target after a failure.
	Attempts, Failovers uint64
	// BadRequests counts malformed INVITEs and SDP refused with 400/488.
	BadRequests uint64
	// NoDialog counts in-dialog requests for unknown dialogs (481).
	NoDialog uint64
	// Ends counts ended calls by cause.
	Ends map[string]uint64
}

// B2BUA handles calls. Create it with New and Register it on a sipgo
// server; its methods are safe for concurrent use.
type B2BUA struct {
	cfg    Config
	log    *slog.Logger
	client requester

	mu     sync.Mutex
	calls  map[string]*call // by A-leg Call-ID
	legs   map[string]*leg  // by Call-ID, both legs
	owner  map[*leg]*call
	closed bool
	idle   chan struct{} // closed when the last call ends after closing

	wg       sync.WaitGroup // goroutines started by the B2BUA (BYEs, PRACKs, keep-alives)
	spawnMu  sync.Mutex
	draining bool // Shutdown is waiting for wg: spawn runs work inline

	inSetup, active atomic.Int64
	stats           struct {
		calls, answered, failed, challenged, overload, attempts, failovers, bad, noDialog atomic.Uint64
	}
	endsMu sync.Mutex
	ends   map[string]uint64
}

// New returns a B2BUA.
func New(cfg Config) (*B2BUA, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("%w: Client is required", ErrConfig)
	}
	if cfg.Router == nil {
		return nil, fmt.Errorf("%w: Router is required", ErrConfig)
	}
	if cfg.Contact.Host == "" && len(cfg.Contacts) == 0 {
		return nil, fmt.Errorf("%w: Contact is required", ErrConfig)
	}
	if cfg.SessionExpires != 0 && cfg.SessionExpires < 90*time.Second {
		return nil, fmt.Errorf("%w: SessionExpires below 90s (RFC 4028 Min-SE)", ErrConfig)
	}
	if cfg.MaxSetup <= 0 {
		cfg.MaxSetup = 1000
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 5 * time.Second
	}
	if cfg.NoAnswerTimeout <= 0 {
		cfg.NoAnswerTimeout = 2 * time.Minute
	}
	if cfg.TargetTimeout <= 0 {
		cfg.TargetTimeout = 5 * time.Second
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "talkpad"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default().With("component", "b2bua")
	}
	return &B2BUA{
		cfg: cfg, log: log, client: cfg.Client,
		calls: make(map[string]*call), legs: make(map[string]*leg), owner: make(map[*leg]*call),
		ends: make(map[string]uint64),
	}, nil
}

// Register installs the B2BUA's handlers on srv: INVITE, ACK, BYE, CANCEL,
// UPDATE, PRACK, INFO, MESSAGE, NOTIFY and REFER. OPTIONS stays with the
// caller, who should pass in-dialog ones to ServeInDialog.
func (b *B2BUA) Register(srv *sipgo.Server) {
	srv.OnInvite(b.ServeInvite)
	srv.OnAck(b.ServeAck)
	srv.OnBye(b.serveInDialogOr481)
	srv.OnCancel(b.serveInDialogOr481)
	srv.OnUpdate(b.serveInDialogOr481)
	srv.OnPrack(b.serveInDialogOr481)
	srv.OnInfo(b.serveInDialogOr481)
	srv.OnMessage(b.serveInDialogOr481)
	srv.OnNotify(b.serveInDialogOr481)
	srv.OnRefer(b.serveInDialogOr481)
}

func (b *B2BUA) serveInDialogOr481(req *sip.Request, tx sip.ServerTransaction) {
	if !b.ServeInDialog(req, tx) {
		b.stats.noDialog.Add(1)
		respond(tx, req, 481, "Call/Transaction Does Not Exist")
	}
}

// ServeInDialog handles req if it belongs to one of the B2BUA's dialogs
// and reports whether it did. Use it for methods the B2BUA does not
// Register, such as OPTIONS.
func (b *B2BUA) ServeInDialog(req *sip.Request, tx sip.ServerTransaction) bool {
	cid := req.CallID()
	if cid == nil {
		return false
	}
	b.mu.Lock()
	l := b.legs[string(*cid)]
	c := b.owner[l]
	b.mu.Unlock()
	if c == nil || !l.matches(req) {
		return false
	}
	c.inDialog(l, req, tx)
	return true
}

// ServeAck handles ACKs for the B2BUA's 2xx answers.
func (b *B2BUA) ServeAck(req *sip.Request, tx sip.ServerTransaction) {
	cid := req.CallID()
	if cid == nil {
		return
	}
	b.mu.Lock()
	l := b.legs[string(*cid)]
	c := b.owner[l]
	b.mu.Unlock()
	if c != nil && l.matches(req) {
		c.ack(l, req)
	}
}

// ServeInvite handles INVITEs: new calls, and re-INVITEs of live ones.
func (b *B2BUA) ServeInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		if !b.ServeInDialog(req, tx) {
			b.stats.noDialog.Add(1)
			respond(tx, req, 481, "Call/Transaction Does Not Exist")
		}
		return
	}
	b.newCall(req, tx)
}

// Hangup ends the call with the given A-leg Call-ID (CallInfo.ID): BYE to
// both legs when answered, CANCEL and 487/480 when in setup. cause is
// recorded in the call's EventEnded (e.g. CauseCredit, CauseMediaTimeout).
func (b *B2BUA) Hangup(id, cause string) error {
	b.mu.Lock()
	c := b.calls[id]
	b.mu.Unlock()
	if c == nil {
		return ErrNoCall
	}
	c.hangup(cause)
	return nil
}

// Calls returns a snapshot of the calls in progress.
func (b *B2BUA) Calls() []CallInfo {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	out := make([]CallInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.snapshot())
	}
	return out
}

// Stats returns the B2BUA's counters.
func (b *B2BUA) Stats() Stats {
	s := Stats{
		InSetup: b.inSetup.Load(), Active: b.active.Load(),
		Calls: b.stats.calls.Load(), Answered: b.stats.answered.Load(), Failed: b.stats.failed.Load(),
		Challenged: b.stats.challenged.Load(), Overload: b.stats.overload.Load(),
		Attempts: b.stats.attempts.Load(), Failovers: b.stats.failovers.Load(),
		BadRequests: b.stats.bad.Load(), NoDialog: b.stats.noDialog.Load(),
		Ends: map[string]uint64{},
	}
	b.endsMu.Lock()
	for k, v := range b.ends {
		s.Ends[k] = v
	}
	b.endsMu.Unlock()
	return s
}

// Shutdown stops taking calls (new INVITEs get 503) and waits for the
// calls in progress to end by themselves; when ctx ends first, it hangs
// the rest up (CauseShutdown). It returns once every call has ended and
// every goroutine the B2BUA started has finished.
func (b *B2BUA) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	if b.idle == nil {
		b.idle = make(chan struct{})
		if len(b.calls) == 0 {
			close(b.idle)
		}
	}
	idle := b.idle
	b.mu.Unlock()
	var err error
	select {
	case <-idle:
	case <-ctx.Done():
		err = ctx.Err()
		b.hangupAll()
		<-idle
	}
	b.spawnMu.Lock()
	b.draining = true
	b.spawnMu.Unlock()
	b.wg.Wait()
	return err
}

// spawn runs f on a goroutine Shutdown waits for; once Shutdown waits, f
// runs on the caller's goroutine instead.
func (b *B2BUA) spawn(f func()) {
	b.spawnMu.Lock()
	if b.draining {
		b.spawnMu.Unlock()
		f()
		return
	}
	b.wg.Add(1)
	b.spawnMu.Unlock()
	go func() {
		defer b.wg.Done()
		f()
	}()
}

// Close hangs up every call (CauseShutdown) and returns once they have
// ended and every goroutine the B2BUA started has finished.
func (b *B2BUA) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Shutdown(ctx)
	return nil
}

func (b *B2BUA) hangupAll() {
	b.mu.Lock()
	cs := make([]*call, 0, len(b.calls))
	for _, c := range b.calls {
		cs = append(cs, c)
	}
	b.mu.Unlock()
	for _, c := range cs {
		c.hangup(CauseShutdown)
	}
}

// addLeg indexes a leg's Call-ID.
func (b *B2BUA) addLeg(c *call, l *leg) {
	b.mu.Lock()
	b.legs[l.callID] = l
	b.owner[l] = c
	b.mu.Unlock()
}

func (b *B2BUA) removeLeg(l *leg) {
	b.mu.Lock()
	if b.legs[l.callID] == l {
		delete(b.legs, l.callID)
	}
	delete(b.owner, l)
	b.mu.Unlock()
}

// removeCall forgets a finished call and its legs.
func (b *B2BUA) removeCall(c *call) {
	b.mu.Lock()
	if b.calls[c.id] == c {
		delete(b.calls, c.id)
	}
	for _, l := range append([]*leg{c.a, c.bl}, c.forkLegs...) {
		if l != nil {
			if b.legs[l.callID] == l {
				delete(b.legs, l.callID)
			}
			delete(b.owner, l)
		}
	}
	if b.closed && len(b.calls) == 0 && b.idle != nil {
		select {
		case <-b.idle:
		default:
			close(b.idle)
		}
	}
	b.mu.Unlock()
}

func (b *B2BUA) emit(t EventType, info CallInfo) {
	if t == EventEnded {
		b.endsMu.Lock()
		b.ends[info.Cause]++
		b.endsMu.Unlock()
	}
	if b.cfg.OnEvent != nil {
		b.cfg.OnEvent(Event{Type: t, Call: info})
	}
}

// contactFor returns the Contact to give a leg over transport.
func (b *B2BUA) contactFor(transport string) sip.Uri {
	if u, ok := b.cfg.Contacts[transport]; ok {
		return *u.Clone()
	}
	u := *b.cfg.Contact.Clone()
	if u.Host == "" {
		for _, c := range b.cfg.Contacts {
			u = *c.Clone()
			break
		}
	}
	if transport != "" && transport != "UDP" {
		if u.UriParams == nil {
			u.UriParams = sip.NewParams()
		}
		if _, ok := u.UriParams.Get("transport"); !ok {
			u.UriParams.Add("transport", lowerTransport(transport))
		}
	}
	return u
}

func lowerTransport(t string) string {
	switch t {
	case "TCP":
		return "tcp"
	case "TLS":
		return "tls"
	case "WS":
		return "ws"
	case "WSS":
		return "wss"
	}
	return "udp"
}

// addVia adds the B2BUA's Via to a request it originates, and binds UDP
// requests to Config.UDPSource.
func (b *B2BUA) addVia(c *sipgo.Client, r *sip.Request) error {
	b.bindSource(r)
	return sipgo.ClientRequestAddVia(c, r)
}

// keepVia sends a request whose Via is already set (CANCEL).
func (b *B2BUA) keepVia(_ *sipgo.Client, r *sip.Request) error {
	b.bindSource(r)
	return nil
}

func (b *B2BUA) bindSource(r *sip.Request) {
	if !b.cfg.UDPSource.IsValid() || !strings.EqualFold(r.Transport(), "UDP") {
		return
	}
	ip := b.cfg.UDPSource.Addr().AsSlice()
	r.Laddr = sip.Addr{IP: net.IP(ip), Port: int(b.cfg.UDPSource.Port())}
}

// respond answers req on tx with a fresh response.
func respond(tx sip.ServerTransaction, req *sip.Request, code int, reason string, hs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range hs {
		res.AppendHeader(h)
	}
	_ = tx.Respond(res)
}

func retryAfter(d time.Duration) sip.Header {
	s := int(d / time.Second)
	if s < 1 {
		s = 1
	}
	return sip.NewHeader("Retry-After", strconv.Itoa(s))
}
