package stun_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	pion "github.com/pion/stun/v3"

	"github.com/talkpad/talkpad/stun"
)

// TestShareConnWithSipgo serves SIP (sipgo) and STUN on one UDP socket: an
// OPTIONS request reaches sipgo, a Binding request (an RFC 5626 keep-alive)
// is answered by the STUN server.
func TestShareConnWithSipgo(t *testing.T) {
	srv, _ := stun.New(stun.Config{Logger: quiet})
	defer srv.Close()
	ua, err := sipgo.NewUA()
	if err != nil {
		t.Fatal(err)
	}
	defer ua.Close()
	sipSrv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	sipSrv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sipSrv.ServeUDP(srv.ShareConn(pc)) }()
	defer func() { pc.Close(); <-done }()

	c := client(t)
	dst := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	self := c.LocalAddr().String()

	resp, _ := exchange(t, c, dst, request(t, pion.Fingerprint).Raw, 2*time.Second)
	x := stun.XORAddrAttr{Type: pion.AttrXORMappedAddress}
	if resp == nil || x.GetFrom(resp) != nil || x.Addr.String() != self {
		t.Fatalf("STUN on the SIP port: %v", resp)
	}

	options := strings.ReplaceAll(`OPTIONS sip:127.0.0.1 SIP/2.0
Via: SIP/2.0/UDP `+self+`;branch=z9hG4bK-share-1;rport
From: <sip:test@127.0.0.1>;tag=1
To: <sip:127.0.0.1>
Call-ID: share-test-1
CSeq: 1 OPTIONS
Max-Forwards: 70
Content-Length: 0

`, "\n", "\r\n")
	c.WriteTo([]byte(options), pc.LocalAddr())
	buf := make([]byte, 1500)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := c.ReadFrom(buf)
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200")) {
		t.Fatalf("SIP on the shared port: %v %q", err, buf[:n])
	}
	if st := srv.Stats(); st.Success != 1 || st.Dropped.NotSTUN != 0 {
		t.Errorf("stats %+v", st)
	}
}
