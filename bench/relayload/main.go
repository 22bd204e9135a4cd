//go:build linux

// Command relayload is a load generator for RTP relays that speak the
// rtpengine ng protocol (our relayd, rtpengine). For each N in -sessions it
// sets up N calls over ng, sends 50 packets/s per direction with 160-byte
// payloads through the relay for -duration, and reports forwarded packets/s,
// loss, the latency the relay adds (p50/p99, one-way, loopback) and, with
// -pid, the relay's CPU time per forwarded packet. It prints the largest N
// with less than 0.1% loss at the end.
//
//	relayload -ng 127.0.0.1:2223 -sessions 100,200,400 -duration 10s -pid 1234
//
// Only loopback or other local addresses should be targeted.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/talkpad/talkpad/relay/ng"
)

func main() {
	ngAddr := flag.String("ng", "127.0.0.1:2223", "relay ng control address")
	local := flag.String("local", "127.0.0.1", "local address of the simulated phones")
	steps := flag.String("sessions", "50,100,200,400", "comma-separated session counts to run")
	duration := flag.Duration("duration", 10*time.Second, "measurement time per step")
	pps := flag.Int("pps", 50, "packets per second per direction per session")
	payload := flag.Int("payload", 160, "RTP payload bytes")
	pid := flag.Int("pid", 0, "relay process id, to report its CPU time per packet")
	label := flag.String("label", "relay", "name printed with the results")
	stopLoss := flag.Float64("stop-loss", 5, "stop rising N once loss exceeds this percentage")
	direct := flag.Bool("direct", false, "phones send to each other without a relay: the baseline that relay latency adds to")
	flag.Parse()
	directMode = *direct

	ns, err := parseSteps(*steps)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayload:", err)
		os.Exit(2)
	}
	lip, err := netip.ParseAddr(*local)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayload: -local:", err)
		os.Exit(2)
	}
	ctl, err := dialNG(*ngAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relayload:", err)
		os.Exit(1)
	}
	defer ctl.close()
	if directMode {
		// no relay to ping
	} else if err := ctl.ping(); err != nil {
		fmt.Fprintln(os.Stderr, "relayload: relay does not answer ping:", err)
		os.Exit(1)
	}
	fmt.Printf("%-9s %6s %10s %10s %8s %9s %9s %9s\n", "relay", "N", "sent/s", "fwd/s", "loss%", "p50", "p99", "cpu/pkt")
	best, bestLatency := 0, 0
	prevBest, prevLatency := 0, 0 // the N of the previous step
	for _, n := range ns {
		res, err := runStep(ctl, lip, n, *duration, *pps, *payload, *pid)
		if err != nil {
			fmt.Fprintf(os.Stderr, "relayload: N=%d: %v\n", n, err)
			break
		}
		cpu := "-"
		if res.cpuPerPkt > 0 {
			cpu = fmt.Sprintf("%.1fµs", res.cpuPerPkt.Seconds()*1e6)
		}
		// A step where the generator could not send 99% of the target
		// rate measured the machine, not the relay: it does not count.
		target := float64(2 * n * *pps)
		note := ""
		if res.sentPPS < 0.99*target {
			note = " (generator-limited)"
		}
		fmt.Printf("%-9s %6d %10.0f %10.0f %8.3f %9s %9s %9s%s\n", *label, n, res.sentPPS, res.fwdPPS, res.lossPct,
			res.p50.Round(time.Microsecond), res.p99.Round(time.Microsecond), cpu, note)
		// Both figures count rising N until the first step that fails, so
		// one lucky step above a failed one does not count.
		lossOK := res.lossPct < 0.1 && note == ""
		if lossOK && best == prevBest {
			best = n
		}
		if lossOK && res.p99 < 20*time.Millisecond && bestLatency == prevLatency {
			bestLatency = n
		}
		prevBest, prevLatency = n, n
		if res.lossPct > *stopLoss {
			break
		}
	}
	fmt.Printf("RESULT %s max_sessions_under_0.1pct_loss=%d\n", *label, best)
	fmt.Printf("RESULT %s max_sessions_under_0.1pct_loss_p99_under_20ms=%d\n", *label, bestLatency)
}

func parseSteps(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad -sessions entry %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// ngClient sends ng commands one at a time and waits for the reply.
type ngClient struct {
	c      *net.UDPConn
	cookie int
	buf    []byte
}

func dialNG(addr string) (*ngClient, error) {
	ra, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, err
	}
	return &ngClient{c: c, buf: make([]byte, 65536)}, nil
}

func (n *ngClient) close() { n.c.Close() }

func (n *ngClient) do(cmd map[string]any) (map[string]any, error) {
	n.cookie++
	cookie := fmt.Sprintf("%d_%d", os.Getpid(), n.cookie)
	req, err := ng.Encode([]byte(cookie+" "), cmd)
	if err != nil {
		return nil, err
	}
	for try := 0; try < 5; try++ {
		if _, err := n.c.Write(req); err != nil {
			return nil, err
		}
		n.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			k, err := n.c.Read(n.buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break // retransmit
				}
				return nil, err
			}
			c, body, ok := bytes.Cut(n.buf[:k], []byte(" "))
			if !ok || string(c) != cookie {
				continue // a late reply to an earlier retransmission
			}
			v, err := ng.Decode(body)
			if err != nil {
				return nil, err
			}
			d, _ := v.(map[string]any)
			if d["result"] == "error" {
				return nil, fmt.Errorf("%s: %v", cmd["command"], d["error-reason"])
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("%s: no reply", cmd["command"])
}

func (n *ngClient) ping() error {
	_, err := n.do(map[string]any{"command": "ping"})
	return err
}

// flow is one direction of one call: a phone's socket and where it sends.
type flow struct {
	conn *sock
	dst  netip.AddrPort
	ssrc uint32
	seq  uint16
	ts   uint32
}

type call struct {
	id   string
	a, b *sock
}

func sdpFor(c *sock) string {
	ap := c.addr
	fam := "IP4"
	if ap.Addr().Is6() {
		fam = "IP6"
	}
	return fmt.Sprintf("v=0\r\no=- %d 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
		rand.Uint32(), fam, ap.Addr(), fam, ap.Addr(), ap.Port())
}

// mediaDst reads the address of the first m= line of a rewritten SDP.
func mediaDst(sdp string) (netip.AddrPort, error) {
	var addr netip.Addr
	var port uint64
	for _, l := range strings.Split(sdp, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "c=IN ") {
			f := strings.Fields(l)
			if len(f) == 3 {
				a, err := netip.ParseAddr(f[2])
				if err == nil && (!addr.IsValid() || port == 0) {
					addr = a
				}
			}
		}
		if strings.HasPrefix(l, "m=audio ") && port == 0 {
			f := strings.Fields(l)
			port, _ = strconv.ParseUint(f[1], 10, 16)
		}
	}
	if !addr.IsValid() || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("no media address in SDP")
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// directMode skips the relay: each phone sends straight to the other.
var directMode bool

// setup creates n calls and returns their flows (two per call).
func setup(ctl *ngClient, ip netip.Addr, n int) ([]call, []*flow, error) {
	run := rand.Uint32()
	var calls []call
	var flows []*flow
	for i := range n {
		a, err := newSock(ip)
		if err != nil {
			return calls, flows, err
		}
		b, err := newSock(ip)
		if err != nil {
			a.close()
			return calls, flows, err
		}
		c := call{id: fmt.Sprintf("load-%x-%d", run, i), a: a, b: b}
		calls = append(calls, c)
		if directMode {
			flows = append(flows, &flow{conn: a, dst: b.addr, ssrc: uint32(2 * i)}, &flow{conn: b, dst: a.addr, ssrc: uint32(2*i + 1)})
			continue
		}
		off, err := ctl.do(map[string]any{
			"command": "offer", "call-id": c.id, "from-tag": "fa", "sdp": sdpFor(a),
			"replace": []any{"origin", "session-connection"}, "received-from": []any{"IP4", ip.String()},
		})
		if err != nil {
			return calls, flows, err
		}
		ans, err := ctl.do(map[string]any{
			"command": "answer", "call-id": c.id, "from-tag": "fa", "to-tag": "tb", "sdp": sdpFor(b),
			"replace": []any{"origin", "session-connection"}, "received-from": []any{"IP4", ip.String()},
		})
		if err != nil {
			return calls, flows, err
		}
		toB, err1 := mediaDst(fmt.Sprint(off["sdp"]))
		toA, err2 := mediaDst(fmt.Sprint(ans["sdp"]))
		if err := errors.Join(err1, err2); err != nil {
			return calls, flows, err
		}
		// A sends to the address in B's answer, B to the one in A's offer.
		flows = append(flows, &flow{conn: a, dst: toA, ssrc: uint32(2 * i)}, &flow{conn: b, dst: toB, ssrc: uint32(2*i + 1)})
	}
	return calls, flows, nil
}

func teardown(ctl *ngClient, calls []call) {
	for _, c := range calls {
		if !directMode {
			ctl.do(map[string]any{"command": "delete", "call-id": c.id, "from-tag": "fa"})
		}
		c.a.close()
		c.b.close()
	}
}

// histogram of one-way latency: 10 µs buckets up to 500 ms.
const (
	bucketWidth = 10 * time.Microsecond
	buckets     = 50000
)

type result struct {
	sentPPS, fwdPPS, lossPct float64
	p50, p99                 time.Duration
	cpuPerPkt                time.Duration
}

var base = time.Now()

func runStep(ctl *ngClient, ip netip.Addr, n int, d time.Duration, pps, payload, pid int) (result, error) {
	calls, flows, err := setup(ctl, ip, n)
	defer teardown(ctl, calls)
	if err != nil {
		return result{}, err
	}
	hist := make([]atomic.Uint64, buckets+1)
	var received atomic.Uint64
	var measuring, stop atomic.Bool
	got := func(b []byte) {
		if len(b) < 12+8 || !measuring.Load() {
			return
		}
		lat := time.Since(base) - time.Duration(binary.BigEndian.Uint64(b[12:]))
		i := min(max(int(lat/bucketWidth), 0), buckets)
		hist[i].Add(1)
		received.Add(1)
	}
	var wg sync.WaitGroup
	nrecv := runtime.GOMAXPROCS(0)
	for w := range nrecv {
		rc, err := newReceiver()
		if err != nil {
			return result{}, err
		}
		defer rc.close()
		for i := w; i < len(flows); i += nrecv {
			if err := rc.add(flows[i].conn); err != nil {
				return result{}, err
			}
		}
		wg.Go(func() { rc.run(&stop, got) })
	}
	defer func() { stop.Store(true); wg.Wait() }()

	pkt := func(f *flow, b []byte) []byte {
		b = b[:12+payload]
		b[0], b[1] = 0x80, 0
		binary.BigEndian.PutUint16(b[2:], f.seq)
		binary.BigEndian.PutUint32(b[4:], f.ts)
		binary.BigEndian.PutUint32(b[8:], f.ssrc)
		binary.BigEndian.PutUint64(b[12:], uint64(time.Since(base)))
		f.seq++
		f.ts += 160
		return b
	}
	// Latch both legs of every call before measuring.
	buf := make([]byte, 12+payload+8)
	for _, f := range flows {
		f.conn.send(pkt(f, buf), f.dst)
	}
	time.Sleep(300 * time.Millisecond)

	// Spread the flows over 1 ms slots of the packet interval, so the load
	// is smooth rather than one burst per interval.
	interval := time.Second / time.Duration(pps)
	slots := int(interval / time.Millisecond)
	if slots < 1 {
		slots = 1
	}
	bySlot := make([][]*flow, slots)
	for i, f := range flows {
		bySlot[i%slots] = append(bySlot[i%slots], f)
	}
	cpu0 := procCPU(pid)
	measuring.Store(true)
	var sent uint64
	start := time.Now()
	next := start
	for slot := 0; time.Since(start) < d; slot = (slot + 1) % slots {
		for _, f := range bySlot[slot] {
			if err := f.conn.send(pkt(f, buf), f.dst); err == nil {
				sent++
			}
		}
		next = next.Add(interval / time.Duration(slots))
		if w := time.Until(next); w > 0 {
			time.Sleep(w)
		}
	}
	elapsed := time.Since(start)
	time.Sleep(500 * time.Millisecond) // drain
	measuring.Store(false)
	cpu1 := procCPU(pid)

	rcv := received.Load()
	res := result{
		sentPPS: float64(sent) / elapsed.Seconds(),
		fwdPPS:  float64(rcv) / elapsed.Seconds(),
	}
	if sent > 0 && rcv < sent {
		res.lossPct = 100 * float64(sent-rcv) / float64(sent)
	}
	res.p50, res.p99 = quantile(hist, rcv, 0.50), quantile(hist, rcv, 0.99)
	if pid > 0 && cpu1 > cpu0 && rcv > 0 {
		res.cpuPerPkt = (cpu1 - cpu0) / time.Duration(rcv)
	}
	return res, nil
}

func quantile(h []atomic.Uint64, total uint64, q float64) time.Duration {
	if total == 0 {
		return 0
	}
	want := uint64(q * float64(total))
	var acc uint64
	for i := range h {
		acc += h[i].Load()
		if acc > want {
			return time.Duration(i+1) * bucketWidth
		}
	}
	return buckets * bucketWidth
}

// procCPU returns the user+system CPU time of process pid (Linux), or 0.
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields overall, in clock ticks (100 Hz on Linux).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}
