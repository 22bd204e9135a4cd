// Command relayd runs the talkpad RTP relay standalone, controlled over the
// rtpengine ng protocol, so that Kamailio or OpenSIPS can use it in place of
// rtpengine:
//
//	relayd -ng 127.0.0.1:2223 -rtp-addr 203.0.113.5 -ports 30000-40000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/talkpad/talkpad/relay"
	"github.com/talkpad/talkpad/relay/ng"
)

type config struct {
	ngAddr        string
	rtpAddr       netip.Addr
	advertise     netip.Addr
	minPort       uint16
	maxPort       uint16
	timeout       time.Duration
	statsInterval time.Duration
	logger        *slog.Logger
	// started, if set, is called once both servers are up (for tests).
	started func(r *relay.Relay, ngAddr net.Addr)
}

func parsePorts(s string) (uint16, uint16, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("ports %q: want MIN-MAX", s)
	}
	a, err1 := strconv.ParseUint(lo, 10, 16)
	b, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || a == 0 || a > b {
		return 0, 0, fmt.Errorf("ports %q: want MIN-MAX within 1-65535", s)
	}
	return uint16(a), uint16(b), nil
}

func main() {
	ngAddr := flag.String("ng", "127.0.0.1:2223", "ng control address (UDP)")
	rtpAddr := flag.String("rtp-addr", "127.0.0.1", "local media address (IPv4 or IPv6)")
	adv := flag.String("advertise", "", "address written into SDP (default: -rtp-addr)")
	ports := flag.String("ports", "30000-40000", "media port range MIN-MAX")
	timeout := flag.Duration("timeout", 60*time.Second, "media timeout")
	stats := flag.Duration("stats", 0, "log relay statistics at this interval (0: never)")
	debug := flag.Bool("debug", false, "debug logging")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}

	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	cfg := config{ngAddr: *ngAddr, timeout: *timeout, statsInterval: *stats,
		logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))}
	var err error
	if cfg.rtpAddr, err = netip.ParseAddr(*rtpAddr); err != nil {
		fmt.Fprintln(os.Stderr, "relayd: -rtp-addr:", err)
		os.Exit(2)
	}
	if *adv != "" {
		if cfg.advertise, err = netip.ParseAddr(*adv); err != nil {
			fmt.Fprintln(os.Stderr, "relayd: -advertise:", err)
			os.Exit(2)
		}
	}
	if cfg.minPort, cfg.maxPort, err = parsePorts(*ports); err != nil {
		fmt.Fprintln(os.Stderr, "relayd:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "relayd:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// run serves until ctx ends, then releases everything.
func run(ctx context.Context, cfg config) error {
	log := cfg.logger
	if log == nil {
		log = slog.Default()
	}
	r, err := relay.New(relay.Config{
		Addr: cfg.rtpAddr, AdvertiseAddr: cfg.advertise,
		MinPort: cfg.minPort, MaxPort: cfg.maxPort, Timeout: cfg.timeout,
		Logger: log.With("component", "relay"),
		OnEvent: func(ev relay.Event) {
			log.Info("relay event", "type", ev.Type.String(), "call_id", ev.CallID, "tag", ev.Tag, "old", ev.Old, "new", ev.New)
		},
	})
	if err != nil {
		return err
	}
	srv, err := ng.New(ng.Config{Relay: r, Logger: log.With("component", "relay/ng")})
	if err != nil {
		r.Close()
		return err
	}
	pc, err := net.ListenPacket("udp", cfg.ngAddr)
	if err != nil {
		r.Close()
		return fmt.Errorf("listen ng: %w", err)
	}
	if uc, ok := pc.(*net.UDPConn); ok {
		// Session setup bursts from a busy proxy must not overflow.
		_ = uc.SetReadBuffer(4 << 20)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	go func() { errc <- r.Serve(ctx) }()
	go func() { errc <- srv.Serve(ctx, pc) }()
	log.Info("relayd up", "ng", pc.LocalAddr().String(), "rtp_addr", cfg.rtpAddr, "ports", fmt.Sprintf("%d-%d", cfg.minPort, cfg.maxPort))
	if cfg.started != nil {
		cfg.started(r, pc.LocalAddr())
	}
	var tick <-chan time.Time
	if cfg.statsInterval > 0 {
		t := time.NewTicker(cfg.statsInterval)
		defer t.Stop()
		tick = t.C
	}
	var first error
	for running := 2; running > 0; {
		select {
		case err := <-errc:
			running--
			cancel() // one stopped: stop the other
			if first == nil && !errors.Is(err, relay.ErrServerClosed) && !errors.Is(err, ng.ErrServerClosed) {
				first = err
			}
		case <-tick:
			st := r.Stats()
			log.Info("stats", "sessions", st.Sessions, "ports_in_use", st.PortPairsInUse, "rtp_packets", st.RTPPackets,
				"forwarded", st.Forwarded, "lost", st.Lost, "dropped", st.Drops.Total())
		}
	}
	return first
}
