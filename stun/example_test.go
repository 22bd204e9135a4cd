package stun_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/talkpad/talkpad/stun"
	"github.com/talkpad/talkpad/stun/stuntest"
)

// A server with RFC 5780 on two addresses, and a client behind a NAT that
// classifies its path. The network is the in-memory one of stuntest, with a
// simulated full-cone NAT; on a real network, pass real sockets (or use
// ListenAndServe) and leave ClassifierConfig.ListenPacket nil.
func Example() {
	network := stuntest.NewNetwork()
	network.AddNAT(stuntest.NATConfig{
		Inside: netip.MustParsePrefix("127.1.0.0/16"),
		Public: netip.MustParseAddr("127.2.0.1"),
	})
	listen := func(a string) net.PacketConn {
		c, _ := network.Listen(netip.MustParseAddrPort(a))
		return c
	}

	srv, _ := stun.New(stun.Config{Logger: slog.New(slog.DiscardHandler)})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- srv.ServeQuad(ctx, stun.Quad{
			Primary: listen("127.0.0.1:3478"),
			AltPort: listen("127.0.0.1:3479"),
			AltIP:   listen("127.0.0.2:3478"),
			AltBoth: listen("127.0.0.2:3479"),
		})
	}()

	c, _ := stun.NewClassifier(stun.ClassifierConfig{
		ListenPacket: network.ListenPacket,
		LocalAddr:    "127.1.0.2:5000",
	})
	res, err := c.Classify(ctx, "127.0.0.1:3478")
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println("public IP:", res.Public.Addr())
	fmt.Println("type:", res.Type)
	fmt.Println("mapping:", res.Mapping, "filtering:", res.Filtering)
	fmt.Println("needs relay:", res.NeedsRelay())

	stop()
	fmt.Println(<-done)
	// Output:
	// public IP: 127.2.0.1
	// type: full cone
	// mapping: endpoint-independent filtering: endpoint-independent
	// needs relay: false
	// context canceled
}
