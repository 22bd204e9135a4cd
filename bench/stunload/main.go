// Command stunload is the load generator of bench/stun.sh: it sends STUN
// Binding requests to a server over UDP and reports responses per second
// and latency percentiles. With -serve it is instead our STUN server, so
// that the script needs no other binary.
//
//	stunload -serve 127.0.0.1:3478 [-readers N] [-reuseport]
//	stunload -target 127.0.0.1:3478 -rate 0 -duration 5s      # as fast as it answers
//	stunload -target 127.0.0.1:3478 -rate 20000 -duration 5s  # fixed rate, for latency
//
// Each request carries its send time in its transaction ID, so latency
// needs no bookkeeping: the response echoes the ID.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pion "github.com/pion/stun/v3"

	"github.com/talkpad/talkpad/stun"
)

func main() {
	serve := flag.String("serve", "", "run our STUN server on this UDP address instead of generating load")
	readers := flag.Int("readers", 0, "with -serve: reader goroutines per socket (default GOMAXPROCS)")
	reuse := flag.Bool("reuseport", false, "with -serve: one SO_REUSEPORT socket per reader")
	target := flag.String("target", "127.0.0.1:3478", "server to load")
	rate := flag.Int("rate", 0, "requests per second; 0: closed loop, as fast as answers come")
	conns := flag.Int("conns", 8, "client sockets (distinct source ports)")
	window := flag.Int("window", 32, "closed loop: requests in flight per socket")
	duration := flag.Duration("duration", 5*time.Second, "measurement time")
	label := flag.String("label", "", "name printed with the result")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *serve != "" {
		err = runServer(ctx, *serve, *readers, *reuse)
	} else {
		var r result
		r, err = load(ctx, *target, *rate, *conns, *window, *duration)
		if err == nil {
			fmt.Printf("%s %v\n", *label, r)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "stunload:", err)
		os.Exit(1)
	}
}

func runServer(ctx context.Context, addr string, readers int, reuse bool) error {
	srv, err := stun.New(stun.Config{
		Addr: addr, DisableTCP: true, RateLimit: -1, Readers: readers, ReusePort: reuse,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	err = srv.ListenAndServe(ctx)
	st := srv.Stats()
	fmt.Fprintf(os.Stderr, "server: %d requests, %d answered, %d dropped for write errors\n",
		st.Requests, st.Success, st.Dropped.WriteFailed)
	return err
}

type result struct {
	sent, recv         uint64
	elapsed            time.Duration
	p50, p99, p999, mx time.Duration
}

func (r result) String() string {
	loss := 0.0
	if r.sent > 0 {
		loss = 100 * float64(r.sent-min(r.recv, r.sent)) / float64(r.sent)
	}
	return fmt.Sprintf("responses/s=%.0f sent=%d received=%d loss=%.2f%% p50=%v p99=%v p99.9=%v max=%v",
		float64(r.recv)/r.elapsed.Seconds(), r.sent, r.recv, loss,
		r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.p999.Round(time.Microsecond), r.mx.Round(time.Microsecond))
}

// client is one socket's share of the load.
type client struct {
	c    *net.UDPConn
	dst  netip.AddrPort
	req  []byte
	sent atomic.Uint64
	recv atomic.Uint64
	lat  []time.Duration // written by the receiver only
}

var epoch = time.Now()

// send stamps the request with the current time and sends it.
func (cl *client) send() {
	binary.BigEndian.PutUint64(cl.req[8:16], uint64(time.Since(epoch)))
	if _, err := cl.c.WriteToUDPAddrPort(cl.req, cl.dst); err == nil {
		cl.sent.Add(1)
	}
}

// receive reads responses until the socket is closed; in closed loop each
// response triggers the next request.
// Only responses to requests sent while measuring count, so that answers to
// warm-up requests do not inflate the figures.
func (cl *client) receive(closed bool, measuring *atomic.Bool, from *atomic.Int64) {
	buf := make([]byte, 1500)
	for {
		n, _, err := cl.c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if n < 20 {
			continue
		}
		now := time.Since(epoch)
		sentAt := time.Duration(binary.BigEndian.Uint64(buf[8:16]))
		if measuring.Load() && int64(sentAt) >= from.Load() {
			cl.recv.Add(1)
			cl.lat = append(cl.lat, now-sentAt)
		}
		if closed {
			cl.send()
		}
	}
}

func load(ctx context.Context, target string, rate, conns, window int, d time.Duration) (result, error) {
	dst, err := netip.ParseAddrPort(target)
	if err != nil {
		return result{}, err
	}
	var clients []*client
	for range conns {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: dst.Addr().AsSlice()})
		if err != nil {
			return result{}, err
		}
		_ = c.SetReadBuffer(4 << 20)
		m, _ := pion.Build(pion.TransactionID, pion.BindingRequest)
		clients = append(clients, &client{c: c, dst: dst, req: m.Raw, lat: make([]time.Duration, 0, 1<<20)})
	}
	var measuring atomic.Bool
	var from atomic.Int64
	from.Store(1 << 62)
	var wg sync.WaitGroup
	closedLoop := rate == 0
	for _, cl := range clients {
		wg.Go(func() { cl.receive(closedLoop, &measuring, &from) })
	}

	// Warm up for a second, then measure for d.
	warm := time.Second
	ctx, cancel := context.WithTimeout(ctx, warm+d)
	defer cancel()
	time.AfterFunc(warm, func() {
		from.Store(int64(time.Since(epoch)))
		for _, cl := range clients {
			cl.sent.Store(0)
		}
		measuring.Store(true)
	})
	start := time.Now().Add(warm)

	if closedLoop {
		// Keep window requests in flight per socket; a socket that went
		// quiet (lost datagrams) is primed again.
		last := make([]uint64, len(clients))
		for _, cl := range clients {
			for range window {
				cl.send()
			}
		}
		t := time.NewTicker(100 * time.Millisecond)
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case <-t.C:
				for i, cl := range clients {
					got := cl.recv.Load() + cl.sent.Load()
					if got == last[i] {
						for range window {
							cl.send()
						}
					}
					last[i] = got
				}
			}
		}
		t.Stop()
	} else {
		// Open loop: every millisecond, send what the rate owes.
		t := time.NewTicker(time.Millisecond)
		begin := time.Now()
		var owed int
		i := 0
	open:
		for {
			select {
			case <-ctx.Done():
				break open
			case <-t.C:
				due := int(time.Since(begin).Seconds() * float64(rate))
				for ; owed < due; owed++ {
					clients[i%len(clients)].send()
					i++
				}
			}
		}
		t.Stop()
	}
	measuring.Store(false)
	elapsed := time.Since(start)
	time.Sleep(100 * time.Millisecond) // late answers are not counted, but let them land
	var r result
	var lat []time.Duration
	for _, cl := range clients {
		cl.c.Close()
	}
	wg.Wait()
	for _, cl := range clients {
		r.sent += cl.sent.Load()
		r.recv += cl.recv.Load()
		lat = append(lat, cl.lat...)
	}
	r.elapsed = elapsed
	if len(lat) > 0 {
		slices.Sort(lat)
		pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		r.p50, r.p99, r.p999, r.mx = pct(0.50), pct(0.99), pct(0.999), lat[len(lat)-1]
	}
	return r, nil
}
