// Command server is talkpad's reference backend: a SIP registrar that
// browsers (over WebSocket) and softphones (over UDP and TCP) register with,
// backed by the in-memory store or PostgreSQL, and a B2BUA that connects
// their calls to each other and, through carrier trunks, to the phone
// network, billed per second, with media through the built-in relay when
// a party is behind symmetric NAT.
//
//	go run ./examples/server -users users.csv -config talkpad.toml
//
// Every flag can also be set through an environment variable named
// TALKPAD_ and the flag name in upper case with dashes as underscores
// (TALKPAD_SIP_UDP, TALKPAD_STORE, ...); a flag on the command line wins.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// sipgo logs through its package default (transaction warnings,
	// unmatched responses): give it the server's logger and level.
	sip.SetDefaultLogger(cfg.Logger.With("component", "sipgo"))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, nil); err != nil {
		slog.Error("server stopped", "error", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&cfg.SIPUDP, "sip-udp", "127.0.0.1:5060", "SIP over UDP listen address (empty disables)")
	fs.StringVar(&cfg.SIPTCP, "sip-tcp", "127.0.0.1:5060", "SIP over TCP listen address (empty disables)")
	fs.StringVar(&cfg.SIPWS, "sip-ws", "127.0.0.1:8088", "SIP over WebSocket (and the web page) listen address (empty disables)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate file: serve WSS instead of WS")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "private key file for -tls-cert")
	fs.StringVar(&cfg.WebRoot, "web-root", "", "directory served over HTTP on the WebSocket port (empty: a built-in page)")
	origins := fs.String("ws-origins", "", "comma-separated Origins allowed to open a WebSocket (empty allows any)")
	fs.StringVar(&cfg.Realm, "realm", "talkpad", "digest realm")
	domains := fs.String("domains", "", "comma-separated SIP domains served (empty: any)")
	algs := fs.String("auth-algorithms", "MD5,SHA-256", "digest algorithms offered, in order (MD5 is moved last over WebSocket, and offered alone to baresip 1.x)")
	fs.StringVar(&cfg.Store, "store", "memory", `"memory", or a postgres:// DSN`)
	fs.StringVar(&cfg.StoreSchema, "store-schema", "talkpad", "PostgreSQL schema for talkpad's tables")
	fs.StringVar(&cfg.Users, "users", "", "CSV file of username,password lines loaded into the credential store at start")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", 5*time.Second, "write-back interval to the store")
	fs.DurationVar(&cfg.MinExpires, "min-expires", 60*time.Second, "shortest registration accepted")
	fs.DurationVar(&cfg.MaxExpires, "max-expires", 7200*time.Second, "longest registration kept")
	fs.StringVar(&cfg.Node, "node", "", "this node's name in the bindings it owns (default: hostname)")
	fs.StringVar(&cfg.STUN, "stun", "127.0.0.1:3478", "STUN server listen address (empty disables)")
	fs.StringVar(&cfg.STUNAlt, "stun-alt", "", "alternate STUN IP:port for RFC 5780 NAT behaviour discovery (e.g. 127.0.0.2:3479)")
	fs.StringVar(&cfg.Admin, "admin", "", "HTTP address for /metrics (Prometheus), /api/lookup?aor= and /healthz (empty disables)")
	fs.StringVar(&cfg.CallConfig, "config", "", "TOML file of trunks, dial plan, accounts, tariffs and call handling (see talkpad.example.toml; empty: calls between users only)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.VisitAll(func(f *flag.Flag) {
		env := "TALKPAD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			f.Value.Set(v)
		}
	})
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	cfg.Origins = splitComma(*origins)
	cfg.Domains = splitComma(*domains)
	cfg.Algorithms = splitComma(*algs)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		return cfg, fmt.Errorf("-log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	if cfg.Node == "" {
		cfg.Node, _ = os.Hostname()
	}
	return cfg, nil
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
