package relaytest_test

import (
	"fmt"
	"net/netip"

	"github.com/talkpad/talkpad/relay/relaytest"
)

// Two fake sockets exchange a datagram; a relay gets the same network
// through Config.Listen = n.Listen.
func Example() {
	n := relaytest.NewNetwork()
	a, _ := n.ListenConn(netip.MustParseAddrPort("192.0.2.1:4000"))
	b, _ := n.ListenConn(netip.MustParseAddrPort("192.0.2.2:5000"))
	defer a.Close()
	defer b.Close()

	a.WriteToUDPAddrPort([]byte("hello"), b.AddrPort())
	buf := make([]byte, 100)
	k, from, _ := b.ReadFromUDPAddrPort(buf)
	fmt.Println(string(buf[:k]), from)

	_, err := n.ListenConn(netip.MustParseAddrPort("192.0.2.1:4000"))
	fmt.Println(err)
	// Output:
	// hello 192.0.2.1:4000
	// listen 192.0.2.1:4000: relaytest: address already in use
}
