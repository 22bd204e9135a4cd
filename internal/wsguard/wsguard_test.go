package wsguard

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve accepts guarded connections and runs a WebSocket echo on each, the
// way sipgo's transport would: its own upgrade, then text frames.
func serve(t *testing.T, cfg Config) (*Listener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	l := New(inner, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := ws.Upgrade(c); err != nil {
					return
				}
				for {
					msg, op, err := wsutil.ReadClientData(c)
					if err != nil {
						return
					}
					if err := wsutil.WriteServerMessage(c, op, msg); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l, inner.Addr().String()
}

func dial(addr, origin string) (net.Conn, error) {
	d := ws.Dialer{Timeout: 2 * time.Second}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
	}
	c, _, _, err := d.Dial(context.Background(), "ws://"+addr+"/")
	return c, err
}

func TestOriginAndEcho(t *testing.T) {
	_, addr := serve(t, Config{AllowedOrigins: []string{"https://app.example.com"}})
	c, err := dial(addr, "https://app.example.com")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := wsutil.WriteClientText(c, []byte("REGISTER sip:x SIP/2.0")); err != nil {
		t.Fatal(err)
	}
	msg, err := wsutil.ReadServerText(c)
	if err != nil || string(msg) != "REGISTER sip:x SIP/2.0" {
		t.Fatalf("echo = %q, %v", msg, err)
	}
	if _, err := dial(addr, "https://evil.example.net"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("foreign origin: %v, want a 403", err)
	}
	// No Origin: not a browser, allowed.
	c2, err := dial(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	c2.Close()
}

func TestPingAnswered(t *testing.T) {
	l, addr := serve(t, Config{})
	c, err := dial(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A ping between two messages, masked as clients must.
	if err := wsutil.WriteClientText(c, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteFrame(c, ws.MaskFrame(ws.NewPingFrame([]byte("are you there")))); err != nil {
		t.Fatal(err)
	}
	if err := wsutil.WriteClientText(c, []byte("two")); err != nil {
		t.Fatal(err)
	}
	var got []string
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for len(got) < 3 {
		h, err := ws.ReadHeader(c)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(c, p); err != nil {
			t.Fatal(err)
		}
		switch h.OpCode {
		case ws.OpPong:
			got = append(got, "pong:"+string(p))
		case ws.OpText:
			got = append(got, string(p))
		}
	}
	want := "one|pong:are you there|two"
	if strings.Join(got, "|") != want && strings.Join(got, "|") != "pong:are you there|one|two" {
		t.Fatalf("frames = %q, want %q", got, want)
	}
	if l.Stats().PingsAnswered != 1 {
		t.Errorf("PingsAnswered = %d", l.Stats().PingsAnswered)
	}
}

func TestPlainHTTPGoesToHandler(t *testing.T) {
	_, addr := serve(t, Config{HTTP: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello page")
	})})
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if string(body) != "hello page" {
		t.Fatalf("body = %q", body)
	}
}

func TestPerIPLimit(t *testing.T) {
	l, addr := serve(t, Config{MaxPerIP: 2})
	var conns []net.Conn
	for range 2 {
		c, err := dial(addr, "")
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	if _, err := dial(addr, ""); err == nil {
		t.Fatal("third connection from one address accepted")
	}
	conns[0].Close()
	// The slot frees when the server side notices the close.
	deadline := time.Now().Add(3 * time.Second)
	for {
		c, err := dial(addr, "")
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conns[1].Close()
	if l.Stats().RejectedLimit == 0 {
		t.Error("RejectedLimit not counted")
	}
}

func TestIdleTimeout(t *testing.T) {
	l, addr := serve(t, Config{IdleTimeout: 200 * time.Millisecond})
	c, err := dial(addr, "")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := ws.ReadHeader(c); err == nil {
		t.Fatal("idle connection got a frame instead of being closed")
	}
	if l.Stats().IdleClosed != 1 {
		t.Errorf("IdleClosed = %d", l.Stats().IdleClosed)
	}
}

func TestGarbageHandshake(t *testing.T) {
	l, addr := serve(t, Config{HandshakeTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("\x16\x03\x01garbage without newline"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	io.ReadAll(c)
	// A line that is not an HTTP request line, then the end of a head.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Write([]byte("x\r\n"))
	c2.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, _ := io.ReadAll(c2)
	if !strings.HasPrefix(string(b), "HTTP/1.1 400") {
		t.Errorf("garbage head answered %q, want 400", b)
	}
	if l.Stats().BadHandshake != 2 {
		t.Errorf("BadHandshake = %d", l.Stats().BadHandshake)
	}
}

func FuzzFrameParser(f *testing.F) {
	f.Add([]byte{0x81, 0x83, 1, 2, 3, 4, 'a' ^ 1, 'b' ^ 2, 'c' ^ 3}, 3)
	f.Add([]byte{0x89, 0x80, 0, 0, 0, 0, 0x81, 0x01, 'x'}, 1)
	f.Add([]byte{0x82, 0xfe, 0xff, 0xff}, 2)
	f.Add([]byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 5)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		var pings int
		p := frameParser{onPing: func([]byte) { pings++ }}
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		out := p.feed(data[:split], nil)
		out = p.feed(data[split:], out)
		if len(out) > len(data) {
			t.Fatalf("parser produced %d bytes from %d", len(out), len(data))
		}
		var tr frameTracker
		tr.track(data)
	})
}
