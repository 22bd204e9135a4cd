// Package ng implements the control side of rtpengine's "ng" protocol for
// package relay, so that SIP proxies with an rtpengine module (Kamailio,
// OpenSIPS) can use our relay in place of rtpengine.
//
// A request is one UDP datagram: a cookie, a space, and a bencoded dictionary
// with a "command" key; the response repeats the cookie. Supported commands
// are ping, offer, answer, delete, query and list, with the flags those
// modules send (see parseFlags for the mapping). Responses to retransmitted
// requests (same cookie from the same peer) are replayed from a cache rather
// than executed twice.
//
// # Usage
//
//	r, _ := relay.New(relay.Config{Addr: mediaIP})
//	srv, _ := ng.New(ng.Config{Relay: r})
//	pc, _ := net.ListenPacket("udp", "127.0.0.1:2223")
//	go r.Serve(ctx)
//	err := srv.Serve(ctx, pc) // returns ErrServerClosed after Close or ctx end
//
// Kamailio: loadmodule "rtpengine.so" and
// modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:2223").
package ng
