package b2bua

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Sentinel errors.
var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("b2bua: invalid config")
	// ErrClosed is returned by operations on a B2BUA that was closed.
	ErrClosed = errors.New("b2bua: closed")
	// ErrNoCall is returned by Hangup for an unknown call.
	ErrNoCall = errors.New("b2bua: no such call")
)

// Identity is who placed a call, as the Authenticator found it.
type Identity struct {
	// User is the authenticated user name; empty for an anonymous or
	// trusted caller.
	User string
	// Trunk names the carrier trunk the call came from (recognised by its
	// source address), for calls from the phone network.
	Trunk string
}

// Authenticator identifies the caller of a new INVITE. The registrar's
// digest verifier does it for users (see the reference server); trunks are
// usually recognised by their source address.
type Authenticator interface {
	// AuthenticateInvite returns the caller's identity, or the response to
	// send instead: 407 with a challenge, 403, 400, 500.
	AuthenticateInvite(ctx context.Context, req *sip.Request) (Identity, *sip.Response)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, req *sip.Request) (Identity, *sip.Response)

// AuthenticateInvite calls f.
func (f AuthenticatorFunc) AuthenticateInvite(ctx context.Context, req *sip.Request) (Identity, *sip.Response) {
	return f(ctx, req)
}

// Incoming is a new call as the Router sees it.
type Incoming struct {
	// ID is the call's identifier in events, Hangup and the media anchor:
	// the A-leg Call-ID.
	ID string
	// Request is the caller's INVITE. The Router must not modify it.
	Request *sip.Request
	// Source is where the INVITE came from, over Transport ("UDP", "TCP",
	// "TLS", "WS", "WSS").
	Source    netip.AddrPort
	Transport string
	// Identity is what the Authenticator found.
	Identity Identity
	// Caller is the user part of the From URI; Callee the user part of the
	// Request-URI (the dialled number or user).
	Caller, Callee string
}

// Route is where a call goes, as the Router decided.
type Route struct {
	// Account pays for the call. Empty means the call is not authorized
	// nor accounted (a free user-to-user call).
	Account string
	// Destination is what the Authorizer rates: the dialled number,
	// E.164 with or without "+".
	Destination string
	// Targets yields the B-leg destinations in the order to try them.
	Targets TargetPicker
	// Anchor sends the media through the MediaAnchor (the caller is behind
	// symmetric NAT, or policy demands it). A Target can ask for it too.
	Anchor bool
	// Parallel rings every target the picker yields at once (up to 16: a
	// user's devices) instead of one after another: the first to answer
	// wins and the others are canceled. With one target it changes
	// nothing.
	Parallel bool
}

// Router decides where a new call goes. An error refuses the call: a
// *Reject chooses the response, any other error is answered 500.
type Router interface {
	Route(ctx context.Context, in *Incoming) (*Route, error)
}

// RouterFunc adapts a function to Router.
type RouterFunc func(ctx context.Context, in *Incoming) (*Route, error)

// Route calls f.
func (f RouterFunc) Route(ctx context.Context, in *Incoming) (*Route, error) { return f(ctx, in) }

// Target is one B-leg destination: a carrier trunk or a user's binding.
type Target struct {
	// Name identifies the target in events and CDRs (a trunk name, or the
	// callee's AOR).
	Name string
	// URI is the B-leg Request-URI, e.g. sip:+493012345@carrier.example.
	URI sip.Uri
	// To is the B-leg To URI. Defaults to URI without parameters.
	To *sip.Uri
	// From is the identity presented to the target: the caller's number
	// on a trunk. Defaults to the A-leg From URI (its user and host).
	From *sip.Uri
	// FromDisplay is the From display name; empty sends none.
	FromDisplay string
	// Destination, if valid, is where requests of this leg are sent
	// regardless of the Request-URI and Contact: the address a user
	// registered from (behind NAT), or a trunk's proxy.
	Destination netip.AddrPort
	// Transport is "UDP" (default), "TCP", "TLS", "WS" or "WSS".
	Transport string
	// RouteSet is put in front of the request as Route headers (the Path
	// of a binding).
	RouteSet []sip.Uri
	// Username and Password answer a 401/407 challenge of the target.
	Username, Password string
	// Headers are added to the B-leg INVITE (e.g. P-Asserted-Identity).
	Headers []sip.Header
	// Anchor forces media through the MediaAnchor for this target (the
	// callee is behind symmetric NAT).
	Anchor bool
	// StripWebRTC removes ICE, DTLS and other WebRTC-only SDP attributes
	// from offers sent to this target: a telephone carrier cannot use
	// them, and they make a browser's offer too big for UDP.
	StripWebRTC bool
	// Timeout ends an attempt that has not been answered in this long
	// (the target rings forever). Zero uses Config.NoAnswerTimeout.
	Timeout time.Duration
}

// Attempt is the outcome of trying one target.
type Attempt struct {
	Target Target
	// Status is the final SIP status the target gave, 0 when it gave none
	// (Err says why).
	Status int
	Err    error
	// Took is how long the attempt lasted.
	Took time.Duration
}

// TargetPicker yields the targets of one call, one at a time. The B2BUA
// calls Next with nil first, then with the failed attempt each time a
// target fails in a way worth trying another (408, 5xx, no answer, a
// transport error). A balancer with health checks learns from the
// attempts it is shown.
type TargetPicker interface {
	Next(ctx context.Context, prev *Attempt) (Target, bool)
}

// Targets is a fixed list of targets tried in order.
type Targets []Target

// Next implements TargetPicker.
func (t Targets) Next(_ context.Context, prev *Attempt) (Target, bool) {
	if prev == nil {
		if len(t) == 0 {
			return Target{}, false
		}
		return t[0], true
	}
	// From the end: with the same target listed twice, it is tried once.
	for i := len(t) - 1; i >= 0; i-- {
		if t[i].Name == prev.Target.Name && t[i].URI.String() == prev.Target.URI.String() {
			if i+1 < len(t) {
				return t[i+1], true
			}
			return Target{}, false
		}
	}
	return Target{}, false
}

// Authorizer decides whether a call may start and for how long, and is
// told when it is answered and when it ends. The billing engine does it
// through a small adapter (see the reference server).
type Authorizer interface {
	// Authorize returns the longest the call may last once answered, or
	// an error refusing it (a *Reject chooses the response; others are
	// answered 403, or 503 when the error is a context error).
	Authorize(ctx context.Context, call CallInfo) (time.Duration, error)
	// Answered is called when the call is answered, before the caller is
	// told. An error ends the call at once (BYE to the callee, 503 to the
	// caller).
	Answered(ctx context.Context, call CallInfo) error
	// Ended is called once when an answered call ends.
	Ended(ctx context.Context, call CallInfo)
}

// MediaRequest is an SDP offer or answer for the MediaAnchor. The parties
// are named by their tags: FromTag made the offer, ToTag answers it.
type MediaRequest struct {
	CallID  string
	FromTag string
	ToTag   string
	SDP     []byte
	// Source is the signalling source of the party that sent the SDP.
	Source netip.Addr
}

// MediaAnchor puts a call's media through a relay: it rewrites SDP so that
// both parties send their RTP to it. The relay package does it through a
// small adapter.
type MediaAnchor interface {
	Offer(ctx context.Context, req MediaRequest) ([]byte, error)
	Answer(ctx context.Context, req MediaRequest) ([]byte, error)
	Delete(ctx context.Context, callID string) error
}

// Reject is an error that chooses the SIP response refusing a call.
type Reject struct {
	Status int
	Reason string
	// Err is the underlying cause, if any.
	Err error
	// Headers are added to the response (e.g. Retry-After).
	Headers []sip.Header
}

func (r *Reject) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("b2bua: rejected %d %s: %v", r.Status, r.Reason, r.Err)
	}
	return fmt.Sprintf("b2bua: rejected %d %s", r.Status, r.Reason)
}

func (r *Reject) Unwrap() error { return r.Err }

// Causes of a call's end, in CallInfo.Cause.
const (
	CauseCallerHangup = "caller-bye"    // the caller sent BYE
	CauseCalleeHangup = "callee-bye"    // the callee sent BYE
	CauseCanceled     = "canceled"      // the caller canceled before answer
	CauseRejected     = "rejected"      // the callee (or every target) refused; Status says how
	CauseNoAnswer     = "no-answer"     // nobody answered in time
	CauseUnreachable  = "unreachable"   // no target could be reached
	CauseNoRoute      = "no-route"      // the Router refused the call
	CauseUnauthorized = "unauthorized"  // the Authorizer refused the call
	CauseMaxDuration  = "max-duration"  // the call reached its authorized length
	CauseKeepalive    = "keepalive"     // a leg stopped answering in-dialog keep-alives or session refreshes
	CauseShutdown     = "shutdown"      // the B2BUA shut down
	CauseError        = "error"         // an internal or accounting failure
	CauseOverload     = "overload"      // refused with 503: too many calls in setup
	CauseAckTimeout   = "ack-timeout"   // the caller never acknowledged the answer
	CauseMediaTimeout = "media-timeout" // the media relay saw no media (via Hangup)
	CauseCredit       = "credit"        // the money ran out (via Hangup)
)

// CallInfo is a snapshot of a call, in events and for the Authorizer.
type CallInfo struct {
	// ID is the A-leg Call-ID; BLegCallID the Call-ID of the current or
	// answered B-leg.
	ID, BLegCallID string
	Identity       Identity
	// Caller and Callee are the user parts of the A-leg From and
	// Request-URI.
	Caller, Callee string
	// Account and Destination are from the Route.
	Account, Destination string
	// Target is the name of the target tried last (or that answered).
	Target string
	// Attempts counts the targets tried.
	Attempts int
	Source   netip.AddrPort
	// Anchored tells whether the media goes through the MediaAnchor.
	Anchored bool
	// Setup is when the INVITE arrived; Ringing the first 180/183;
	// Answer the 200 (zero if never); End when the call ended.
	Setup, Ringing, Answer, End time.Time
	// MaxDuration is what the Authorizer granted (0: unlimited).
	MaxDuration time.Duration
	// Status is the final status of the call setup given to the caller
	// (200 when answered); Cause why the call ended.
	Status int
	Cause  string
}

// Duration is how long the call was connected (End - Answer), 0 if it was
// never answered or has not ended.
func (c CallInfo) Duration() time.Duration {
	if c.Answer.IsZero() || c.End.IsZero() {
		return 0
	}
	return c.End.Sub(c.Answer)
}

// EventType says what an Event reports.
type EventType uint8

// Event types, in the order a call goes through them.
const (
	EventTrying     EventType = iota + 1 // a target is being tried (once per attempt)
	EventRinging                         // 180 (or 183 without SDP) from the callee
	EventEarlyMedia                      // 183 with SDP
	EventAnswered                        // 200 to the caller
	EventEnded                           // the call ended; exactly once per call
)

func (t EventType) String() string {
	switch t {
	case EventTrying:
		return "trying"
	case EventRinging:
		return "ringing"
	case EventEarlyMedia:
		return "early-media"
	case EventAnswered:
		return "answered"
	case EventEnded:
		return "ended"
	}
	return fmt.Sprintf("EventType(%d)", uint8(t))
}

// Event reports a step of a call to Config.OnEvent.
type Event struct {
	Type EventType
	Call CallInfo
}
