package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/b2bua"
	"github.com/talkpad/talkpad/billing"
	"github.com/talkpad/talkpad/internal/wsguard"
	"github.com/talkpad/talkpad/registrar"
	"github.com/talkpad/talkpad/relay"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
	"github.com/talkpad/talkpad/store/postgres"
	"github.com/talkpad/talkpad/stun"
)

// config is the server's configuration, from flags.
type config struct {
	SIPUDP, SIPTCP, SIPWS string
	TLSCert, TLSKey       string
	WebRoot               string
	Origins               []string
	Realm                 string
	Domains               []string
	Algorithms            []string
	Store                 string
	StoreSchema           string
	Users                 string
	FlushInterval         time.Duration
	MinExpires            time.Duration
	MaxExpires            time.Duration
	Node                  string
	STUN, STUNAlt         string
	Admin                 string
	// CallConfig is the TOML file of trunks, dial plan, accounts, tariffs
	// and call handling; empty runs calls between users only.
	CallConfig string
	Logger     *slog.Logger
}

// listening reports the addresses actually bound, for tests that listen on
// port 0.
type listening struct {
	UDP, TCP, WS, Admin net.Addr
	Registrar           *registrar.Registrar
	B2BUA               *b2bua.B2BUA
	Billing             *billing.Engine
	Relay               *relay.Relay
	Store               stores
}

// stores is what the server needs of a backend.
type stores interface {
	store.Credentials
	store.Bindings
	store.Billing
}

// run serves until ctx ends, then shuts down: listeners close, the
// registrar flushes its last changes, the store closes. ready, if not nil,
// is called once everything listens.
func run(ctx context.Context, cfg config, ready func(listening)) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	callCfg := defaultCallConfig()
	if cfg.CallConfig != "" {
		var err error
		if callCfg, err = loadCallConfig(cfg.CallConfig); err != nil {
			return err
		}
	}
	var st stores
	if cfg.Store == "" || cfg.Store == "memory" {
		st = memory.New()
		log.Info("using the in-memory store: registrations and users are lost on restart")
	} else {
		pg, err := postgres.New(ctx, postgres.Config{DSN: cfg.Store, Schema: cfg.StoreSchema, Logger: log.With("component", "store/postgres")})
		if err != nil {
			return err
		}
		defer pg.Close()
		st = pg
	}
	if cfg.Users != "" {
		n, err := loadUsers(ctx, st, cfg.Users, cfg.Realm)
		if err != nil {
			return err
		}
		log.Info("loaded users", "file", cfg.Users, "count", n)
	}

	// Credentials are cached and preloaded, so that users can still
	// register while the database is down.
	creds := registrar.NewCredentialCache(st, 30*time.Second, 0)
	if n, err := creds.Preload(ctx, st, cfg.Realm); err != nil {
		log.Warn("cannot preload credentials", "error", err)
	} else {
		log.Info("preloaded credentials", "count", n)
	}
	auth, err := registrar.NewAuthenticator(registrar.AuthConfig{
		Realm: cfg.Realm, Credentials: creds, Algorithms: cfg.Algorithms,
		Logger: log.With("component", "registrar/auth"),
	})
	if err != nil {
		return err
	}
	reg, err := registrar.New(ctx, registrar.Config{
		Auth: auth, Store: st, Domains: cfg.Domains, FlushInterval: cfg.FlushInterval,
		MinExpires: cfg.MinExpires, MaxExpires: cfg.MaxExpires, Node: cfg.Node,
		Logger: log.With("component", "registrar"),
	})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := reg.Shutdown(sctx); err != nil {
			log.Error("registrar shutdown", "error", err)
		}
	}()

	if err := seedBilling(ctx, st, callCfg); err != nil {
		return err
	}

	ua, err := sipgo.NewUA(sipgo.WithUserAgent("talkpad"))
	if err != nil {
		return err
	}
	defer ua.Close()
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		return err
	}
	srv.OnRegister(reg.ServeRegister)
	// The B2BUA starts once the listeners are bound (its Contacts name
	// them); until then calls get 503.
	var (
		calls    atomic.Pointer[b2bua.B2BUA]
		stackNow atomic.Pointer[callStack]
	)
	notYet := func(req *sip.Request, tx sip.ServerTransaction) {
		res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		tx.Respond(res)
	}
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.BYE, sip.CANCEL, sip.UPDATE, sip.PRACK, sip.INFO, sip.MESSAGE, sip.NOTIFY, sip.REFER} {
		srv.OnRequest(m, func(req *sip.Request, tx sip.ServerTransaction) {
			b := calls.Load()
			switch {
			case b == nil && req.IsAck():
			case b == nil:
				notYet(req, tx)
			case req.IsInvite():
				b.ServeInvite(req, tx)
			case req.IsAck():
				b.ServeAck(req, tx)
			default:
				if !b.ServeInDialog(req, tx) {
					res := sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil)
					tx.Respond(res)
				}
			}
		})
	}
	srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		if b := calls.Load(); b != nil && b.ServeInDialog(req, tx) {
			return
		}
		res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
		res.AppendHeader(sip.NewHeader("Allow", "REGISTER, OPTIONS, INVITE, ACK, CANCEL, BYE, UPDATE, PRACK, INFO, MESSAGE, NOTIFY"))
		tx.Respond(res)
	})

	var (
		stunSrv *stun.Server
		stunLs  *stun.Listeners
	)
	if cfg.STUN != "" {
		stunSrv, err = stun.New(stun.Config{Addr: cfg.STUN, AltAddr: cfg.STUNAlt, Logger: log.With("component", "stun")})
		if err != nil {
			return err
		}
		// Bind now, so that a taken port fails the start.
		if stunLs, err = stunSrv.Listen(ctx); err != nil {
			return err
		}
	}
	// Until they are served, a failed start must close the STUN sockets
	// itself.
	stunServing := false
	defer func() {
		if stunLs != nil && !stunServing {
			stunLs.Close()
		}
	}()

	var guard *wsguard.Listener
	var (
		wg      sync.WaitGroup
		closers []io.Closer
		up      listening
		errc    = make(chan error, 8)
	)
	up.Registrar = reg
	up.Store = st
	closeAll := func() {
		for _, c := range closers {
			c.Close()
		}
	}
	serve := func(name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil && !errors.Is(err, net.ErrClosed) && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}

	if cfg.SIPUDP != "" {
		pc, err := net.ListenPacket("udp", cfg.SIPUDP)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen SIP UDP: %w", err)
		}
		setReadBuffer(pc, log)
		up.UDP = pc.LocalAddr()
		conn := pc
		if stunSrv != nil {
			// STUN keep-alives of RFC 5626 on the SIP port.
			conn = stunSrv.ShareConn(conn)
		}
		// REGISTERs are answered statelessly on every core; sipgo gets the
		// rest.
		conn = reg.StatelessUDP(conn, 0)
		closers = append(closers, conn)
		serve("SIP UDP", func() error { return srv.ServeUDP(conn) })
	}
	if cfg.SIPTCP != "" {
		l, err := net.Listen("tcp", cfg.SIPTCP)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen SIP TCP: %w", err)
		}
		up.TCP = l.Addr()
		closers = append(closers, l)
		serve("SIP TCP", func() error { return srv.ServeTCP(reg.TrackListener(l, "tcp")) })
	}
	if cfg.SIPWS != "" {
		l, err := net.Listen("tcp", cfg.SIPWS)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen SIP WS: %w", err)
		}
		up.WS = l.Addr()
		secure := false
		if cfg.TLSCert != "" {
			cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
			if err != nil {
				l.Close()
				closeAll()
				return fmt.Errorf("load TLS certificate: %w", err)
			}
			l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			secure = true
		}
		guard = wsguard.New(l, wsguard.Config{
			AllowedOrigins: cfg.Origins, HTTP: webHandler(cfg.WebRoot),
			Logger: log.With("component", "wsguard"),
		})
		closers = append(closers, guard)
		// With TLS the listener terminates it, and sipgo's WS transport
		// runs on top and records "WS" as the transport either way.
		tracked := reg.TrackListener(guard, "ws")
		serve("SIP WS", func() error { return srv.ServeWS(tracked) })
		log.Info("WebSocket endpoint", "secure", secure, "origins", cfg.Origins)
	}
	if stunSrv != nil {
		stunServing = true
		serve("STUN", func() error {
			err := stunSrv.ServeListeners(ctx, stunLs)
			if errors.Is(err, stun.ErrServerClosed) || errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		})
	}
	if cfg.Admin != "" {
		l, err := net.Listen("tcp", cfg.Admin)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen admin: %w", err)
		}
		up.Admin = l.Addr()
		hs := &http.Server{Handler: adminHandler(reg, creds, stunSrv, guard, stackNow.Load), ReadHeaderTimeout: 10 * time.Second}
		closers = append(closers, hs)
		serve("admin", func() error {
			if err := hs.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	stack, err := startCalls(ctx, callStackConfig{
		cfg: cfg, calls: callCfg, st: st, reg: reg, auth: auth, ua: ua, up: &up, log: log,
	})
	if err != nil {
		closeAll()
		srv.Close()
		wg.Wait()
		return err
	}
	calls.Store(stack.b2b)
	stackNow.Store(stack)
	up.B2BUA, up.Billing, up.Relay = stack.b2b, stack.engine, stack.relay
	serve("relay", func() error { return stack.relay.Serve(ctx) })
	serve("billing", func() error {
		// Serve fails at once when it cannot load the tariffs (the
		// database is down): try again until it can, rather than stop the
		// server. Live calls are cut off by timers meanwhile.
		for {
			err := stack.engine.Serve(ctx)
			if ctx.Err() != nil || err == nil || errors.Is(err, billing.ErrClosed) {
				return nil
			}
			log.Warn("billing engine cannot start yet; retrying", "error", err)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	})

	log.Info("talkpad server listening", "udp", up.UDP, "tcp", up.TCP, "ws", up.WS, "admin", up.Admin, "stun", cfg.STUN, "realm", cfg.Realm)
	if ready != nil {
		ready(up)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	log.Info("shutting down")
	stack.shutdown()
	closeAll()
	if stunSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stunSrv.Shutdown(sctx)
		cancel()
	}
	srv.Close()
	wg.Wait()
	return runErr
}

// setReadBuffer asks for a large UDP receive buffer: at thousands of
// registrations per second the default (about 200 KB) overflows in bursts.
// Linux caps it at net.core.rmem_max; raise that sysctl to get it all.
func setReadBuffer(pc net.PacketConn, log *slog.Logger) {
	const want = 8 << 20
	if u, ok := pc.(*net.UDPConn); ok {
		if err := u.SetReadBuffer(want); err != nil {
			log.Warn("cannot set UDP receive buffer", "error", err)
		}
	}
}

// webHandler serves the web root, or a small page saying where SIP is.
func webHandler(root string) http.Handler {
	if root != "" {
		return http.FileServer(http.Dir(root))
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "talkpad: connect a SIP over WebSocket client (RFC 7118) to this address.\n")
	})
}
