package relay_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/talkpad/talkpad/relay"
	"github.com/talkpad/talkpad/relay/relaytest"
)

// A B2BUA passes the caller's offer and the callee's answer through the relay
// and forwards the rewritten SDP.
func Example() {
	r, err := relay.New(relay.Config{
		Addr:    netip.MustParseAddr("203.0.113.1"),
		MinPort: 30000, MaxPort: 30099,
		Listen: relaytest.NewNetwork().Listen, // omit for real UDP sockets
	})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	ctx := context.Background()

	offer := "v=0\r\no=- 1 1 IN IP4 10.0.0.7\r\ns=-\r\nc=IN IP4 10.0.0.7\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
	toCallee, err := r.Offer(ctx, relay.OfferRequest{
		CallID: "call-1", FromTag: "caller-tag", SDP: []byte(offer),
		SourceAddr: netip.MustParseAddr("198.51.100.7"), // where the INVITE came from
	})
	if err != nil {
		panic(err)
	}
	answer := "v=0\r\no=- 2 1 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
	toCaller, err := r.Answer(ctx, relay.AnswerRequest{
		CallID: "call-1", FromTag: "caller-tag", ToTag: "callee-tag", SDP: []byte(answer),
	})
	if err != nil {
		panic(err)
	}
	show := func(b []byte) {
		for _, l := range strings.Split(string(b), "\r\n") {
			if strings.HasPrefix(l, "c=") || strings.HasPrefix(l, "m=") {
				fmt.Println(l)
			}
		}
	}
	show(toCallee)
	show(toCaller)
	fmt.Println(r.Delete(ctx, relay.DeleteRequest{CallID: "call-1"}))
	// Output:
	// c=IN IP4 203.0.113.1
	// m=audio 30002 RTP/AVP 0
	// c=IN IP4 203.0.113.1
	// m=audio 30000 RTP/AVP 0
	// <nil>
}
