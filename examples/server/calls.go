package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/b2bua"
	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/registrar"
	"github.com/talkpad/talkpad/relay"
)

// callAuthenticator identifies callers: INVITEs from a trunk's address
// are the trunk's; everyone else proves who they are with digest
// (407, the registrar's verifier).
type callAuthenticator struct {
	auth   *registrar.Authenticator
	trunks interface {
		trunkFor(src netip.AddrPort) (string, bool)
	}
}

func (a callAuthenticator) AuthenticateInvite(ctx context.Context, req *sip.Request) (b2bua.Identity, *sip.Response) {
	if src, err := netip.ParseAddrPort(req.Source()); err == nil {
		if name, ok := a.trunks.trunkFor(src); ok {
			return b2bua.Identity{Trunk: name}, nil
		}
	}
	cred, res := a.auth.Authenticate(ctx, req, true)
	if res != nil {
		return b2bua.Identity{}, res
	}
	return b2bua.Identity{User: cred.Username}, nil
}

// billingAuthorizer puts the billing engine behind b2bua.Authorizer.
type billingAuthorizer struct {
	e   *billing.Engine
	log *slog.Logger
}

func (a billingAuthorizer) Authorize(ctx context.Context, c b2bua.CallInfo) (time.Duration, error) {
	// The grant is not passed on: the engine ends the call itself
	// (OnCutoff) at the instant the money runs out, or later when a top-up
	// extends it, so the B2BUA's own limit stays its configured cap.
	_, err := a.e.Authorize(ctx, c.Account, c.Destination)
	switch {
	case err == nil:
		return 0, nil
	case errors.Is(err, billing.ErrInsufficientFunds):
		return 0, &b2bua.Reject{Status: 402, Reason: "Payment Required", Err: err}
	case errors.Is(err, billing.ErrNoTariff):
		return 0, &b2bua.Reject{Status: 404, Reason: "No Tariff For Destination", Err: err}
	case errors.Is(err, billing.ErrDisabled), errors.Is(err, billing.ErrUnknownAccount):
		return 0, &b2bua.Reject{Status: 403, Reason: "Forbidden", Err: err}
	default:
		return 0, &b2bua.Reject{Status: 503, Reason: "Service Unavailable", Err: err,
			Headers: []sip.Header{sip.NewHeader("Retry-After", "30")}}
	}
}

func (a billingAuthorizer) Answered(ctx context.Context, c b2bua.CallInfo) error {
	return a.e.Start(ctx, billing.Call{
		ID: c.ID, Account: c.Account, Caller: c.Caller, Callee: c.Destination,
		Setup: c.Setup, Answer: c.Answer,
	})
}

func (a billingAuthorizer) Ended(ctx context.Context, c b2bua.CallInfo) {
	if _, err := a.e.Stop(ctx, c.ID, c.End, c.Cause); err != nil && !errors.Is(err, billing.ErrUnknownCall) {
		a.log.Error("cannot settle call", "call-id", c.ID, "error", err)
	}
}

// relayAnchor puts the relay behind b2bua.MediaAnchor.
type relayAnchor struct{ r *relay.Relay }

func (a relayAnchor) Offer(ctx context.Context, m b2bua.MediaRequest) ([]byte, error) {
	return a.r.Offer(ctx, relay.OfferRequest{CallID: m.CallID, FromTag: m.FromTag, ToTag: m.ToTag, SDP: m.SDP, SourceAddr: m.Source})
}

func (a relayAnchor) Answer(ctx context.Context, m b2bua.MediaRequest) ([]byte, error) {
	return a.r.Answer(ctx, relay.AnswerRequest{CallID: m.CallID, FromTag: m.FromTag, ToTag: m.ToTag, SDP: m.SDP, SourceAddr: m.Source})
}

func (a relayAnchor) Delete(ctx context.Context, callID string) error {
	return a.r.Delete(ctx, relay.DeleteRequest{CallID: callID})
}

// cdrHeader is the first line of the CDR CSV file.
var cdrHeader = []string{"call_id", "b_call_id", "caller", "callee", "user", "trunk", "account", "destination",
	"target", "attempts", "anchored", "setup", "ringing", "answer", "end", "duration_ms", "status", "cause"}

// cdrWriter appends one CSV line per ended call.
type cdrWriter struct {
	mu sync.Mutex
	f  *os.File
	w  *csv.Writer
}

func openCDRWriter(path string) (*cdrWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open CDR file: %w", err)
	}
	w := &cdrWriter{f: f, w: csv.NewWriter(f)}
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		w.w.Write(cdrHeader)
		w.w.Flush()
	}
	return w, nil
}

func (w *cdrWriter) write(c b2bua.CallInfo) error {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	rec := []string{c.ID, c.BLegCallID, c.Caller, c.Callee, c.Identity.User, c.Identity.Trunk, c.Account, c.Destination,
		c.Target, strconv.Itoa(c.Attempts), strconv.FormatBool(c.Anchored), ts(c.Setup), ts(c.Ringing), ts(c.Answer), ts(c.End),
		strconv.FormatInt(c.Duration().Milliseconds(), 10), strconv.Itoa(c.Status), c.Cause}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w.Write(rec)
	w.w.Flush()
	return w.w.Error()
}

func (w *cdrWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w.Flush()
	return w.f.Close()
}

// callStackConfig is what startCalls needs.
type callStackConfig struct {
	cfg   config
	calls *callConfig
	st    stores
	reg   *registrar.Registrar
	auth  *registrar.Authenticator
	ua    *sipgo.UserAgent
	up    *listening
	log   *slog.Logger
}

// callStack is the B2BUA with the billing engine and relay it uses.
type callStack struct {
	b2b    *b2bua.B2BUA
	engine *billing.Engine
	relay  *relay.Relay
	cdr    *cdrWriter
	wg     sync.WaitGroup // hang-ups started from relay events
	log    *slog.Logger
}

// startCalls builds the call stack on the bound listeners.
func startCalls(ctx context.Context, sc callStackConfig) (*callStack, error) {
	cc, log := sc.calls, sc.log
	s := &callStack{log: log}
	var err error
	s.engine, err = billing.New(billing.Config{
		Store: sc.st, Node: sc.cfg.Node, Logger: log.With("component", "billing"),
		OnCutoff: func(c billing.Cutoff) {
			if b := s.b2b; b != nil {
				if err := b.Hangup(c.CallID, c.Cause); err == nil {
					log.Info("call cut off", "call-id", c.CallID, "account", c.Account, "cause", c.Cause)
				}
			}
		},
	})
	if err != nil {
		return nil, err
	}
	// Serve reloads the rates too, but calls may come before it runs.
	if err := s.engine.ReloadTariffs(ctx); err != nil {
		log.Warn("cannot load tariffs yet; calls to the phone network are refused until they load", "error", err)
	}
	s.relay, err = relay.New(relay.Config{
		Addr: cc.Relay.Addr, AdvertiseAddr: cc.Relay.Advertise, MinPort: cc.Relay.PortMin, MaxPort: cc.Relay.PortMax,
		Timeout: cc.Relay.Timeout, Logger: log.With("component", "relay"),
		OnEvent: func(ev relay.Event) {
			switch ev.Type {
			case relay.EventMediaTimeout, relay.EventHoldTimeout, relay.EventLifetime:
				// Not from the relay's goroutine: hanging up deletes the
				// relay session.
				s.wg.Go(func() {
					if b := s.b2b; b != nil {
						b.Hangup(ev.CallID, b2bua.CauseMediaTimeout)
					}
				})
			}
		},
	})
	if err != nil {
		s.engine.Close()
		return nil, err
	}
	if cc.CDR.CSV != "" {
		if s.cdr, err = openCDRWriter(cc.CDR.CSV); err != nil {
			s.relay.Close()
			s.engine.Close()
			return nil, err
		}
	}
	domain := "" // any: the INVITE's Request-URI host, as the registrar accepts any
	if len(sc.cfg.Domains) > 0 {
		domain = sc.cfg.Domains[0]
	}
	router, err := newCallRouter(cc, sc.reg, domain, log.With("component", "router"))
	if err != nil {
		s.close()
		return nil, err
	}
	router.knownUser = credentialUsers(sc.st, sc.cfg.Realm)

	bc := b2bua.Config{
		Authenticator: callAuthenticator{auth: sc.auth, trunks: router},
		Router:        router,
		Authorizer:    billingAuthorizer{e: s.engine, log: log.With("component", "billing")},
		Media:         relayAnchor{s.relay},
		MaxSetup:      cc.Calls.MaxSetup, RetryAfter: cc.Calls.RetryAfter,
		NoAnswerTimeout: cc.Calls.NoAnswerTimeout, KeepAlive: cc.Calls.Keepalive,
		SessionExpires:  cc.Calls.SessionExpires,
		FollowRedirects: cc.Calls.Redirects == "follow",
		Contacts:        map[string]sip.Uri{},
		Logger:          log.With("component", "b2bua"),
		OnEvent: func(ev b2bua.Event) {
			if ev.Type != b2bua.EventEnded {
				return
			}
			c := ev.Call
			log.Info("call ended", "call-id", c.ID, "caller", c.Caller, "callee", c.Callee, "target", c.Target,
				"status", c.Status, "cause", c.Cause, "duration", c.Duration())
			if s.cdr != nil {
				if err := s.cdr.write(c); err != nil {
					log.Error("cannot write CDR", "error", err)
				}
			}
		},
	}
	if cc.Calls.MaxDuration > 0 {
		bc.MaxDuration = cc.Calls.MaxDuration
	}
	var host string
	add := func(tr string, a net.Addr) {
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return
		}
		u := sip.Uri{Scheme: "sip", Host: ap.Addr().String(), Port: int(ap.Port())}
		if tr != "UDP" {
			u.UriParams = sip.NewParams()
			u.UriParams.Add("transport", strings.ToLower(tr))
		} else {
			bc.UDPSource = ap
		}
		bc.Contacts[tr] = u
		if host == "" {
			host = ap.Addr().String()
		}
	}
	if sc.up.UDP != nil {
		add("UDP", sc.up.UDP)
		bc.Contact = bc.Contacts["UDP"]
	}
	if sc.up.TCP != nil {
		add("TCP", sc.up.TCP)
	}
	if sc.up.WS != nil {
		add("WS", sc.up.WS)
		add("WSS", sc.up.WS)
	}
	if bc.Contact.Host == "" && sc.up.TCP != nil {
		bc.Contact = bc.Contacts["TCP"]
	}
	client, err := sipgo.NewClient(sc.ua, sipgo.WithClientHostname(host))
	if err != nil {
		s.close()
		return nil, err
	}
	bc.Client = client
	if s.b2b, err = b2bua.New(bc); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// shutdown ends the calls (giving them a moment to end by themselves),
// settles them, and stops the relay.
func (s *callStack) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if s.b2b != nil {
		s.b2b.Shutdown(ctx)
	}
	s.wg.Wait()
	s.close()
}

func (s *callStack) close() {
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.relay != nil {
		s.relay.Shutdown(sctx)
	}
	if s.engine != nil {
		if err := s.engine.Close(); err != nil {
			s.log.Error("billing close", "error", err)
		}
	}
	if s.cdr != nil {
		s.cdr.Close()
	}
}
