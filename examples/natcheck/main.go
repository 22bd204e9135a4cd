// Command natcheck classifies the NAT between this host and a STUN server
// with RFC 5780 support, and says whether calls from here need the media
// relay.
//
//	natcheck [-rto 200ms] [-rc 4] [-rm 4] [-local ip:port] [-json] server[:port]
//
// The exit status is 0 when a classification was made (even "UDP
// blocked"), 1 on errors, 2 on bad usage.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"time"

	"github.com/talkpad/talkpad/stun"
)

// config is what the flags set.
type config struct {
	server  string
	classif stun.ClassifierConfig
	json    bool
	timeout time.Duration
}

func main() {
	var cfg config
	fs := flag.NewFlagSet("natcheck", flag.ContinueOnError)
	fs.DurationVar(&cfg.classif.RTO, "rto", 200*time.Millisecond, "initial retransmission timeout (RFC 8489 RTO)")
	fs.IntVar(&cfg.classif.Rc, "rc", 4, "requests per test before giving up (RFC 8489 Rc)")
	fs.IntVar(&cfg.classif.Rm, "rm", 4, "final wait, in RTOs (RFC 8489 Rm)")
	fs.StringVar(&cfg.classif.LocalAddr, "local", "", "local ip:port to test from (default: any)")
	fs.BoolVar(&cfg.json, "json", false, "print the result as JSON")
	fs.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "give up after this long")
	verbose := fs.Bool("v", false, "log each test")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: natcheck [flags] server[:port]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil || fs.NArg() != 1 {
		if err == nil {
			fs.Usage()
		}
		os.Exit(2)
	}
	cfg.server = fs.Arg(0)
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.classif.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "natcheck:", err)
		os.Exit(1)
	}
}

// run classifies the path to cfg.server and prints the result to w.
func run(ctx context.Context, cfg config, w io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := stun.NewClassifier(cfg.classif)
	if err != nil {
		return err
	}
	res, err := c.Classify(ctx, cfg.server)
	if err != nil {
		return err
	}
	if !cfg.json {
		_, err = fmt.Fprint(w, res)
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonResult{
		Server: res.Server.String(), Local: res.Local.String(), Public: addrString(res.Public),
		Other: addrString(res.Other), BehindNAT: res.BehindNAT,
		Mapping: res.Mapping.String(), Filtering: res.Filtering.String(), Type: res.Type.String(),
		NeedsRelay: res.NeedsRelay(), Partial: res.Partial, Notes: res.Notes,
	})
}

type jsonResult struct {
	Server     string   `json:"server"`
	Local      string   `json:"local"`
	Public     string   `json:"public,omitempty"`
	Other      string   `json:"other,omitempty"`
	BehindNAT  bool     `json:"behind_nat"`
	Mapping    string   `json:"mapping"`
	Filtering  string   `json:"filtering"`
	Type       string   `json:"type"`
	NeedsRelay bool     `json:"needs_relay"`
	Partial    bool     `json:"partial"`
	Notes      []string `json:"notes,omitempty"`
}

func addrString(a interface {
	IsValid() bool
	String() string
}) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
