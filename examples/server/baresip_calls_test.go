package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/talkpad/talkpad/registrar"
	"github.com/talkpad/talkpad/relay"
)

// natBox stands between one SIP client and the server on UDP, as a NAT
// would: the server sees the box's port, not the client's, and sends
// everything for the client to the box, which passes it on. It also adds
// "X-NAT-Type: <natType>" to the client's REGISTERs, as a client that
// classified its NAT with the stun package would: baresip 1.0 cannot add
// headers of its own to REGISTER (libre's sipreg gets only Allow from it).
type natBox struct {
	pc      net.PacketConn
	server  net.Addr
	natType string

	mu     sync.Mutex
	client net.Addr
	done   chan struct{}
}

func newNATBox(t *testing.T, server, natType string) *natBox {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	b := &natBox{pc: pc, server: srv, natType: natType, done: make(chan struct{})}
	go b.run()
	t.Cleanup(func() {
		pc.Close()
		<-b.done
	})
	return b
}

// addr is where the client sends its SIP.
func (b *natBox) addr() string { return b.pc.LocalAddr().String() }

func (b *natBox) run() {
	defer close(b.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := b.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		msg := buf[:n]
		if from.String() == b.server.String() {
			b.mu.Lock()
			c := b.client
			b.mu.Unlock()
			if c != nil {
				b.pc.WriteTo(msg, c)
			}
			continue
		}
		b.mu.Lock()
		b.client = from
		b.mu.Unlock()
		if bytes.HasPrefix(msg, []byte("REGISTER ")) {
			if i := bytes.Index(msg, []byte("\r\n")); i > 0 {
				msg = slices.Concat(msg[:i+2], []byte("X-NAT-Type: "+b.natType+"\r\n"), msg[i+2:])
			}
		}
		b.pc.WriteTo(msg, b.server)
	}
}

// ctrlEvent is an event baresip's ctrl_tcp module reports.
type ctrlEvent struct {
	Event     bool   `json:"event"`
	Response  bool   `json:"response"`
	OK        bool   `json:"ok"`
	Data      string `json:"data"`
	Token     string `json:"token"`
	Class     string `json:"class"`
	Type      string `json:"type"`
	Param     string `json:"param"`
	Direction string `json:"direction"`
	PeerURI   string `json:"peeruri"`
}

// baresipUA is a running baresip with its ctrl_tcp connection.
type baresipUA struct {
	name   string
	out    *lockedBuffer
	conn   net.Conn
	events chan ctrlEvent
	resps  chan ctrlEvent
	token  int
}

// startBaresipUA runs baresip for user, registering through sipAddr, with
// a 440 Hz tone as its microphone, no speaker, RTP on rtpPorts
// ("min-max"), and the ctrl_tcp module to be driven by the test. extra is
// appended to the account line (e.g. ";answermode=auto").
func startBaresipUA(t *testing.T, bin, sipAddr, user, pass, rtpPorts, extra string) *baresipUA {
	t.Helper()
	dir := baresipConfig(t, sipAddr, user, pass, 600)
	ctrl := freeTCPPort(t)
	conf := fmt.Sprintf(`module_app menu.so
module_app ctrl_tcp.so
module g711.so
module ausine.so
ctrl_tcp_listen %s
audio_source ausine,440
ausrc_srate 48000
ausrc_channels 2
rtp_ports %s
`, ctrl, rtpPorts)
	f, err := os.OpenFile(filepath.Join(dir, "config"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(conf); err != nil {
		t.Fatal(err)
	}
	f.Close()
	acct := fmt.Sprintf("<sip:%s@%s;transport=udp>;auth_pass=%s;regint=600%s\n", user, sipAddr, pass, extra)
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(acct), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	// See TestBaresipRegistersAndRefreshes for the flags.
	cmd := exec.CommandContext(ctx, bin, "-4", "-n", "127.0.0.1", "-s", "-t", "60", "-f", dir)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	ua := &baresipUA{name: user, out: &lockedBuffer{}, events: make(chan ctrlEvent, 64), resps: make(chan ctrlEvent, 8)}
	cmd.Stdout, cmd.Stderr = ua.out, ua.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if ua.conn != nil {
			ua.conn.Close()
		}
		cancel()
		cmd.Wait()
		if t.Failed() || os.Getenv("BARESIP_CALLS_DEBUG") != "" {
			t.Logf("baresip %s output:\n%s", user, tail([]byte(ua.out.String()), 12000))
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", ctrl)
		if err == nil {
			ua.conn = c
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("baresip %s: ctrl_tcp not listening on %s: %v", user, ctrl, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	go ua.read()
	return ua
}

// read parses the netstrings ctrl_tcp sends ("<len>:<json>,").
func (ua *baresipUA) read() {
	r := bufio.NewReader(ua.conn)
	for {
		l, err := r.ReadString(':')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(l, ":")))
		if err != nil || n < 0 || n > 1<<20 {
			return
		}
		b := make([]byte, n+1)
		if _, err := io.ReadFull(r, b); err != nil {
			return
		}
		var e ctrlEvent
		if json.Unmarshal(b[:n], &e) != nil {
			continue
		}
		if e.Response {
			ua.resps <- e
		} else {
			select {
			case ua.events <- e:
			default:
			}
		}
	}
}

// command runs a baresip command through ctrl_tcp and returns its output.
func (ua *baresipUA) command(t *testing.T, cmd, params string) string {
	t.Helper()
	ua.token++
	tok := strconv.Itoa(ua.token)
	msg, _ := json.Marshal(map[string]string{"command": cmd, "params": params, "token": tok})
	if _, err := fmt.Fprintf(ua.conn, "%d:%s,", len(msg), msg); err != nil {
		t.Fatalf("baresip %s: send %s: %v", ua.name, cmd, err)
	}
	for {
		select {
		case e := <-ua.resps:
			if e.Token != tok {
				continue
			}
			if !e.OK {
				t.Fatalf("baresip %s: %s %s: %s", ua.name, cmd, params, e.Data)
			}
			return e.Data
		case <-time.After(5 * time.Second):
			t.Fatalf("baresip %s: no answer to %s", ua.name, cmd)
		}
	}
}

// waitEvent waits for a call event of the given type.
func (ua *baresipUA) waitEvent(t *testing.T, typ string, d time.Duration) ctrlEvent {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e := <-ua.events:
			t.Logf("baresip %s: %s %s %s", ua.name, e.Type, e.Direction, e.Param)
			if e.Type == typ {
				return e
			}
			if e.Type == "CALL_CLOSED" {
				t.Fatalf("baresip %s: call closed (%s) while waiting for %s", ua.name, e.Param, typ)
			}
		case <-deadline:
			t.Fatalf("baresip %s: no %s within %v", ua.name, typ, d)
		}
	}
}

var sdpAudioPort = regexp.MustCompile(`(?m)^m=audio (\d+) `)

// receivedAudioPorts returns the m=audio ports in ua's SIP trace that are
// outside its own RTP port range: the ones it was offered or answered.
func (ua *baresipUA) receivedAudioPorts(own [2]int) []int {
	var ports []int
	for _, m := range sdpAudioPort.FindAllStringSubmatch(ua.out.String(), -1) {
		p, _ := strconv.Atoi(m[1])
		if p < own[0] || p > own[1] {
			ports = append(ports, p)
		}
	}
	return ports
}

var (
	audioRemote = regexp.MustCompile(`remote: 127\.0\.0\.1:(\d+)/`)
	audioRcvd   = regexp.MustCompile(`IP=127\.0\.0\.1:(\d+) psent=\d+ rcvd=(\d+)`)
)

// audioPeer asks ua's audio stream where it sends RTP (the port it was
// given in SDP) and where it received RTP from, and how many packets.
func (ua *baresipUA) audioPeer(t *testing.T) (remote, from, rcvd int) {
	t.Helper()
	dbg := ua.command(t, "audio_debug", "")
	m, r := audioRemote.FindStringSubmatch(dbg), audioRcvd.FindStringSubmatch(dbg)
	if m == nil || r == nil {
		t.Fatalf("baresip %s: audio_debug without remote or RTCP member:\n%s", ua.name, dbg)
	}
	remote, _ = strconv.Atoi(m[1])
	from, _ = strconv.Atoi(r[1])
	rcvd, _ = strconv.Atoi(r[2])
	return remote, from, rcvd
}

// poll calls cond every 50 ms until it returns true or d passes.
func poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// TestBaresipCalls places a call between two baresip user agents through
// the server's B2BUA: alice calls bob, bob answers automatically, both
// send a tone for three seconds, alice hangs up. When alice registered
// from behind a symmetric NAT the media goes through the relay, which sees
// the RTP both ways and is told about the relay's ports in the SDP; when
// not, the media goes straight between them and the relay stays idle.
// Either way the B2BUA and the relay hold nothing once the call ended.
//
// alice's "symmetric NAT" is a natBox in front of her SIP socket that adds
// X-NAT-Type: symmetric to her REGISTERs (baresip 1.0 has no way to add a
// header to REGISTER); the RTP needs no NAT to show where it goes.
// baresip is driven through its ctrl_tcp module, and each side's
// audio_debug tells where it sent RTP and how much it received from where.
// BARESIP_CALLS_DEBUG=1 logs the server at debug level and the baresip
// SIP traces even when the test passes.
func TestBaresipCalls(t *testing.T) {
	bin := needBinary(t, "baresip", "baresip")
	for _, m := range []string{"account", "menu", "ctrl_tcp", "g711", "ausine"} {
		if _, err := os.Stat("/usr/lib/baresip/modules/" + m + ".so"); err != nil {
			t.Skipf("baresip's %s module is not installed (Debian package baresip-core): %v", m, err)
		}
	}
	const callLength = 3 * time.Second
	// RTP ports of each side, apart from each other and from the relay's
	// (30000-40000 by default).
	aliceRTP, bobRTP := [2]int{21000, 21999}, [2]int{22000, 22999}
	for _, tc := range []struct {
		name      string
		symmetric bool
	}{
		{"symmetric NAT through the relay", true},
		{"direct media", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t, "alice,secret", "bob,secret")
			if os.Getenv("BARESIP_CALLS_DEBUG") != "" {
				cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			s := startServer(t, cfg)
			up := s.up
			registered := make(chan registrar.Event, 16)
			stop := s.Registrar().Watch(func(e registrar.Event) {
				if e.Kind == registrar.Added {
					select {
					case registered <- e:
					default:
					}
				}
			})
			defer stop()

			aliceSIP := s.udpAddr()
			var box *natBox
			if tc.symmetric {
				box = newNATBox(t, s.udpAddr(), "symmetric")
				aliceSIP = box.addr()
			}
			bob := startBaresipUA(t, bin, s.udpAddr(), "bob", "secret", fmt.Sprintf("%d-%d", bobRTP[0], bobRTP[1]), ";answermode=auto")
			alice := startBaresipUA(t, bin, aliceSIP, "alice", "secret", fmt.Sprintf("%d-%d", aliceRTP[0], aliceRTP[1]), "")

			bindings := map[string]registrar.Event{}
			deadline := time.After(10 * time.Second)
			for len(bindings) < 2 {
				select {
				case e := <-registered:
					bindings[e.Binding.AOR] = e
				case <-deadline:
					t.Fatalf("not both registered within 10s: %v", bindings)
				}
			}
			wantNAT := map[bool]string{true: "symmetric", false: ""}[tc.symmetric]
			if got := bindings["sip:alice@127.0.0.1"].Binding.NATType; got != wantNAT {
				t.Fatalf("alice's binding NATType = %q, want %q", got, wantNAT)
			}
			if got := bindings["sip:bob@127.0.0.1"].Binding.NATType; got != "" {
				t.Fatalf("bob's binding NATType = %q, want none", got)
			}
			before := up.Relay.Stats()

			alice.command(t, "dial", "sip:bob@"+aliceSIP)
			bob.waitEvent(t, "CALL_ESTABLISHED", 10*time.Second)
			alice.waitEvent(t, "CALL_ESTABLISHED", 5*time.Second)
			answered := time.Now()

			calls := up.B2BUA.Calls()
			if len(calls) != 1 {
				t.Fatalf("B2BUA calls during the call = %+v", calls)
			}
			call := calls[0]
			if call.Caller != "alice" || call.Callee != "bob" || call.Anchored != tc.symmetric {
				t.Errorf("call = caller %q callee %q anchored %v; want alice, bob, %v", call.Caller, call.Callee, call.Anchored, tc.symmetric)
			}
			if box != nil && call.Source.String() != box.addr() {
				t.Errorf("call source = %v, want the NAT's %s", call.Source, box.addr())
			}

			// The call lasts callLength, whatever is checked meanwhile.
			<-time.After(time.Until(answered.Add(callLength)))

			// media[i] says which RTP ports side i (alice, bob) may be told
			// in SDP and receive RTP from.
			type side struct {
				ua    *baresipUA
				own   [2]int
				media func(port int) bool
				want  string
			}
			var sides [2]side
			if tc.symmetric {
				// Both ways through the relay, 50 packets a second at 20 ms
				// ptime.
				var sess relay.SessionStats
				ok := poll(5*time.Second, func() bool {
					var err error
					sess, err = up.Relay.Query(context.Background(), call.ID)
					return err == nil && len(sess.Streams) == 1 &&
						sess.Streams[0].Legs[0].RTPPackets > 50 && sess.Streams[0].Legs[1].RTPPackets > 50
				})
				if !ok {
					t.Fatalf("relay session of %s %v after the call: %+v", call.ID, time.Since(answered), sess.Streams)
				}
				st := sess.Streams[0]
				for i, l := range st.Legs {
					t.Logf("relay leg %d: relay %v <- party %v (SDP %v): %d RTP, %d RTCP, %d forwarded, drops %+v",
						i, l.Local, l.Peer, l.Advertised, l.RTPPackets, l.RTCPPackets, l.Forwarded, l.Drops)
					if l.Forwarded < 50 || !l.Peer.IsValid() || l.Drops.Total() > l.RTPPackets/10 {
						t.Errorf("leg %d: forwarded %d of %d RTP packets from %v, drops %+v", i, l.Forwarded, l.RTPPackets, l.Peer, l.Drops)
					}
				}
				if rs := up.Relay.Stats(); rs.RTPPackets-before.RTPPackets < 100 || rs.Forwarded-before.Forwarded < 100 {
					t.Errorf("relay RTP packets %d, forwarded %d (were %d, %d)", rs.RTPPackets, rs.Forwarded, before.RTPPackets, before.Forwarded)
				}
				// Legs[0] made the first offer: alice. Each side is told
				// its own relay port, never the other side's address.
				for i, ua := range []*baresipUA{alice, bob} {
					relayPort := int(st.Legs[i].Local.Port())
					sides[i] = side{ua: ua, media: func(p int) bool { return p == relayPort },
						want: fmt.Sprintf("the relay's %d", relayPort)}
				}
			} else {
				if ss := up.Relay.Sessions(); len(ss) != 0 {
					t.Errorf("relay sessions during a direct call: %v", ss)
				}
				if _, err := up.Relay.Query(context.Background(), call.ID); err == nil {
					t.Errorf("relay has a session for the direct call %s", call.ID)
				}
				for i, ua := range []*baresipUA{alice, bob} {
					other := [2][2]int{bobRTP, aliceRTP}[i]
					sides[i] = side{ua: ua, media: func(p int) bool { return p >= other[0] && p <= other[1] },
						want: fmt.Sprintf("the other side's own in %v", other)}
				}
			}
			sides[0].own, sides[1].own = aliceRTP, bobRTP
			for _, c := range sides {
				got := c.ua.receivedAudioPorts(c.own)
				if len(got) == 0 {
					t.Errorf("%s received no SDP with an audio port", c.ua.name)
				}
				for _, p := range got {
					if !c.media(p) {
						t.Errorf("%s was given media port %d in SDP, want %s", c.ua.name, p, c.want)
					}
				}
				remote, from, rcvd := c.ua.audioPeer(t)
				t.Logf("%s: sends RTP to port %d, received %d RTP packets from port %d", c.ua.name, remote, rcvd, from)
				if !c.media(remote) || !c.media(from) || rcvd < 50 {
					t.Errorf("%s sends RTP to port %d, received %d packets from port %d; want %s and > 50 packets",
						c.ua.name, remote, rcvd, from, c.want)
				}
			}

			alice.command(t, "hangup", "")
			alice.waitEvent(t, "CALL_CLOSED", 5*time.Second)
			bob.waitEvent(t, "CALL_CLOSED", 5*time.Second)
			if !poll(5*time.Second, func() bool {
				return len(up.B2BUA.Calls()) == 0 && len(up.Relay.Sessions()) == 0 && up.B2BUA.Stats().Ends["caller-bye"] == 1
			}) {
				t.Fatalf("after hangup: calls %+v, relay sessions %v, ends %v", up.B2BUA.Calls(), up.Relay.Sessions(), up.B2BUA.Stats().Ends)
			}
			if st := up.B2BUA.Stats(); st.Answered != 1 || st.Active != 0 || st.InSetup != 0 {
				t.Errorf("B2BUA stats after hangup: %+v", st)
			}
			after := up.Relay.Stats()
			if !tc.symmetric && (after.RTPPackets != before.RTPPackets || after.Sessions != 0) {
				t.Errorf("relay saw media of a direct call: before %+v, after %+v", before, after)
			}
			if tc.symmetric {
				if _, err := up.Relay.Query(context.Background(), call.ID); err == nil || after.Sessions != 0 || after.PortPairsInUse != 0 {
					t.Errorf("relay after hangup: session of %s still there (query error %v), %d sessions, %d port pairs in use",
						call.ID, err, after.Sessions, after.PortPairsInUse)
				}
			}
		})
	}
}
