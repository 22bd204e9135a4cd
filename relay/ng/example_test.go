package ng_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/talkpad/talkpad/relay"
	"github.com/talkpad/talkpad/relay/ng"
	"github.com/talkpad/talkpad/relay/relaytest"
)

// Handle answers one ng datagram; Serve does the same for every datagram of
// a socket. Here a proxy's ping and offer.
func ExampleServer_Handle() {
	r, _ := relay.New(relay.Config{
		Addr:    netip.MustParseAddr("203.0.113.1"),
		MinPort: 30000, MaxPort: 30099,
		Listen: relaytest.NewNetwork().Listen, // omit for real sockets
	})
	defer r.Close()
	srv, _ := ng.New(ng.Config{Relay: r})
	ctx := context.Background()

	fmt.Printf("%s\n", srv.Handle(ctx, []byte("5323_1 d7:command4:pinge"), "127.0.0.1:5060"))

	sdp := "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n"
	req, _ := ng.Encode([]byte("5323_2 "), map[string]any{
		"command": "offer", "call-id": "abc", "from-tag": "ft", "sdp": sdp,
		"received-from": []any{"IP4", "198.51.100.7"},
	})
	resp := srv.Handle(ctx, req, "127.0.0.1:5060")
	v, _ := ng.Decode(resp[len("5323_2 "):])
	fmt.Print(strings.ReplaceAll(v.(map[string]any)["sdp"].(string), "\r\n", "\n"))
	// Output:
	// 5323_1 d6:result4:ponge
	// v=0
	// o=- 1 1 IN IP4 10.0.0.7
	// s=-
	// c=IN IP4 203.0.113.1
	// t=0 0
	// m=audio 30002 RTP/AVP 8
}
