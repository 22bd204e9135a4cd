package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/talkpad/talkpad/relay"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startRelayd runs relayd on loopback with an ephemeral ng port.
func startRelayd(t *testing.T, minPort, maxPort uint16) (*relay.Relay, net.Addr) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	type up struct {
		r *relay.Relay
		a net.Addr
	}
	ready := make(chan up, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, config{
			ngAddr: "127.0.0.1:0", rtpAddr: netip.MustParseAddr("127.0.0.1"),
			minPort: minPort, maxPort: maxPort, timeout: time.Minute,
			logger:  slog.New(slog.DiscardHandler),
			started: func(r *relay.Relay, a net.Addr) { ready <- up{r, a} },
		})
	}()
	var u up
	select {
	case u = <-ready:
	case err := <-done:
		t.Fatalf("relayd did not start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return u.r, u.a
}

func TestRelaydPingAndOffer(t *testing.T) {
	r, addr := startRelayd(t, 23000, 23099)
	c, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	c.Write([]byte("1 d7:command4:pinge"))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "1 d6:result4:ponge" {
		t.Fatalf("ping: %q %v", buf[:n], err)
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n"
	msg := "2 d7:call-id1:x7:command5:offer8:from-tag1:a3:sdp" + itoa(len(sdp)) + ":" + sdp + "e"
	c.Write([]byte(msg))
	n, err = c.Read(buf)
	if err != nil || !strings.Contains(string(buf[:n]), "m=audio 230") {
		t.Fatalf("offer: %q %v", buf[:n], err)
	}
	if st := r.Stats(); st.Sessions != 1 {
		t.Errorf("sessions = %d", st.Sessions)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestParsePorts(t *testing.T) {
	for in, ok := range map[string]bool{"30000-40000": true, "1-2": true, "40000-30000": false, "x": false, "0-10": false, "1-70000": false} {
		if _, _, err := parsePorts(in); (err == nil) != ok {
			t.Errorf("parsePorts(%q) err=%v", in, err)
		}
	}
}
