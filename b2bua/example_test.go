package b2bua_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/b2bua"
)

// A B2BUA that sends every call to one carrier trunk, trying a second
// trunk when the first fails.
func Example() {
	ua, _ := sipgo.NewUA()
	defer ua.Close()
	srv, _ := sipgo.NewServer(ua)
	client, _ := sipgo.NewClient(ua)

	primary := b2bua.Target{Name: "carrier-a", URI: sip.Uri{Scheme: "sip", Host: "gw.carrier-a.example"}, StripWebRTC: true}
	backup := b2bua.Target{Name: "carrier-b", URI: sip.Uri{Scheme: "sip", Host: "gw.carrier-b.example"}, StripWebRTC: true}
	b, err := b2bua.New(b2bua.Config{
		Client:  client,
		Contact: sip.Uri{Scheme: "sip", Host: "sbc.example.net", Port: 5060},
		Router: b2bua.RouterFunc(func(ctx context.Context, in *b2bua.Incoming) (*b2bua.Route, error) {
			p, b := primary, backup
			p.URI.User, b.URI.User = in.Callee, in.Callee
			return &b2bua.Route{Destination: in.Callee, Targets: b2bua.Targets{p, b}}, nil
		}),
		OnEvent: func(ev b2bua.Event) {
			if ev.Type == b2bua.EventEnded {
				fmt.Println(ev.Call.ID, ev.Call.Status, ev.Call.Cause, ev.Call.Duration())
			}
		},
	})
	if err != nil {
		panic(err)
	}
	defer b.Close()
	b.Register(srv)
	// go srv.ListenAndServe(ctx, "udp", "0.0.0.0:5060")
	fmt.Println("ready")
	// Output: ready
}

// Targets are tried in order; the B2BUA moves on after a 408, a 5xx or
// no answer at all.
func ExampleTargets() {
	ts := b2bua.Targets{{Name: "a"}, {Name: "b"}}
	t, _ := ts.Next(context.Background(), nil)
	fmt.Println(t.Name)
	t, _ = ts.Next(context.Background(), &b2bua.Attempt{Target: t, Status: 503})
	fmt.Println(t.Name)
	_, more := ts.Next(context.Background(), &b2bua.Attempt{Target: t, Status: 503})
	fmt.Println(more)
	// Output:
	// a
	// b
	// false
}

// StripWebRTC drops what only a browser can use from an offer bound for a
// telephone carrier.
func ExampleStripWebRTC() {
	offer := "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n" +
		"m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=ice-ufrag:x\r\na=ice-pwd:y\r\na=fingerprint:sha-256 AA\r\na=setup:actpass\r\na=rtpmap:0 PCMU/8000\r\n"
	fmt.Print(strings.ReplaceAll(string(b2bua.StripWebRTC([]byte(offer))), "\r\n", "\n"))
	// Output:
	// v=0
	// o=- 1 1 IN IP4 192.0.2.1
	// s=-
	// c=IN IP4 192.0.2.1
	// t=0 0
	// m=audio 9 UDP/TLS/RTP/SAVPF 0
	// a=rtpmap:0 PCMU/8000
}
