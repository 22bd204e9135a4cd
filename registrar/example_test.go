package registrar_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/emiago/sipgo/sip"

	"github.com/talkpad/talkpad/registrar"
	"github.com/talkpad/talkpad/store"
	"github.com/talkpad/talkpad/store/memory"
)

// A REGISTER goes in, the location service knows where the user is. A real
// server mounts reg.ServeRegister on its sipgo server instead of calling
// Handle.
func Example() {
	ctx := context.Background()
	st := memory.New()
	st.CreateCredential(ctx, store.NewCredential("alice", "example.com", "secret"))
	auth, _ := registrar.NewAuthenticator(registrar.AuthConfig{Realm: "example.com", Credentials: st})
	reg, _ := registrar.New(ctx, registrar.Config{Auth: auth, Store: st})
	defer reg.Close()

	msg, _ := sip.ParseMessage([]byte("REGISTER sip:example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"From: <sip:alice@example.com>;tag=1928301774\r\n" +
		"To: <sip:alice@example.com>\r\n" +
		"Call-ID: a84b4c76e66710\r\n" +
		"CSeq: 1 REGISTER\r\n" +
		"Contact: <sip:alice@10.0.0.5:5060>\r\n" +
		"Content-Length: 0\r\n\r\n"))
	req := msg.(*sip.Request)
	req.SetSource("203.0.113.7:40000") // where the packet came from: alice's NAT
	res := reg.Handle(req, netip.MustParseAddrPort("192.0.2.1:5060"))
	fmt.Println(res.StatusCode, res.Reason)
	fmt.Println(res.GetHeader("WWW-Authenticate").Value()[:31])
	// A client answers the challenge with an Authorization header (see
	// the tests); then:
	//
	//	bs, _ := reg.Lookup(ctx, "sip:alice@example.com")
	//	bs[0].Received // 203.0.113.7:40000: send alice's calls here
	//	bs[0].Path     // the route set, if a proxy added Path

	// Output:
	// 401 Unauthorized
	// Digest realm="example.com", non
}

// Answering INVITEs with 407 reuses the registrar's authenticator.
func ExampleAuthenticator_Authenticate() {
	ctx := context.Background()
	st := memory.New()
	auth, _ := registrar.NewAuthenticator(registrar.AuthConfig{Realm: "example.com", Credentials: st})
	msg, _ := sip.ParseMessage([]byte("INVITE sip:+15551234567@example.com SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK74bf9\r\n" +
		"From: <sip:alice@example.com>;tag=9fxced76sl\r\n" +
		"To: <sip:+15551234567@example.com>\r\n" +
		"Call-ID: 3848276298220188511\r\n" +
		"CSeq: 1 INVITE\r\n" +
		"Content-Length: 0\r\n\r\n"))
	req := msg.(*sip.Request)
	req.SetSource("203.0.113.7:40000")
	if _, res := auth.Authenticate(ctx, req, true); res != nil {
		fmt.Println(res.StatusCode, res.Reason, len(res.GetHeaders("Proxy-Authenticate")), "challenges")
	}
	// Output:
	// 407 Proxy Authentication Required 2 challenges
}
