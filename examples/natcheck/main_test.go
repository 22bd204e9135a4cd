package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/talkpad/talkpad/stun"
	"github.com/talkpad/talkpad/stun/stuntest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startServer runs an RFC 5780 server on 127.0.0.1 and 127.0.0.2, or a
// plain one on 127.0.0.1 only.
func startServer(t *testing.T, rfc5780 bool) string {
	t.Helper()
	socks, err := stuntest.LoopbackQuad(netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := stun.New(stun.Config{Logger: slog.New(slog.DiscardHandler)})
	done := make(chan error, 1)
	go func() {
		if rfc5780 {
			done <- srv.ServeQuad(context.Background(), stun.Quad{Primary: socks[0], AltPort: socks[1], AltIP: socks[2], AltBoth: socks[3]})
			return
		}
		for _, s := range socks[1:] {
			s.Close()
		}
		done <- srv.Serve(context.Background(), socks[0])
	}()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, stun.ErrServerClosed) {
			t.Error(err)
		}
	})
	return socks[0].LocalAddr().String()
}

func testConfig(server string) config {
	return config{
		server:  server,
		timeout: 10 * time.Second,
		classif: stun.ClassifierConfig{RTO: 50 * time.Millisecond, LocalAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)},
	}
}

func TestRunText(t *testing.T) {
	var out bytes.Buffer
	if err := run(t.Context(), testConfig(startServer(t, true)), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"NAT type:   open internet", "relay:      not needed", "alternate:  127.0.0.2:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunJSONPartial(t *testing.T) {
	cfg := testConfig(startServer(t, false))
	cfg.json = true
	var out bytes.Buffer
	if err := run(t.Context(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	var res jsonResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !res.Partial || res.Type != "unknown" || res.BehindNAT || len(res.Notes) == 0 || !strings.HasPrefix(res.Public, "127.0.0.1:") {
		t.Errorf("got %+v", res)
	}
}

func TestRunBadServer(t *testing.T) {
	if err := run(t.Context(), testConfig("127.0.0.1:notaport"), new(bytes.Buffer)); err == nil {
		t.Error("no error for a bad server address")
	}
}
