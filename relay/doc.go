// Package relay is an RTP/RTCP relay for calls whose media cannot flow
// peer-to-peer, in the manner of RTPProxy and rtpengine.
//
// When a party sits behind a symmetric NAT, its SDP names a private address
// that the other party cannot reach. Signalling (a B2BUA, or a SIP proxy over
// the rtpengine ng protocol in package [github.com/talkpad/talkpad/relay/ng])
// passes every offer and answer through the relay, which rewrites them so that
// both parties send their media to relay ports, and forwards it between them.
//
// # Sessions, legs and streams
//
// A session is one call, keyed by its Call-ID and its parties' tags. The
// party that makes the first offer is side 0, the other side 1. Every m= line
// is a stream with two legs, each with its own RTP/RTCP port pair (RTP even,
// RTCP odd) from the configured range: party i sends to and receives from
// leg i's ports. RTCP is relayed alongside, also when multiplexed on the RTP
// port (RFC 5761). Rejected streams (port 0) get no ports.
//
// # Latching and RTP Bleed
//
// A leg learns where its party really sends from (symmetric RTP, RFC 4961)
// according to its [Learning] mode. By default only the signalling source
// address ([OfferRequest.SourceAddr]) or the SDP's own address may latch a
// leg: a packet from anywhere else is dropped and counted in
// [Drops.UnexpectedSource], which defeats RTP Bleed injection. A new offer or
// answer re-arms the party's legs; when the party announced a new endpoint,
// packets from the old address are still forwarded but cannot win the latch
// back, which avoids the classic one-way audio after a re-INVITE. Latches are
// reported as [EventLatched] and [EventRelatched].
//
// # Timeouts
//
// [Relay.Serve] ends sessions silent for [Config.Timeout] ([Config.HoldTimeout]
// while a stream is on hold) or older than [Config.MaxLifetime], and reports
// them through [Config.OnEvent] so that the call can be torn down.
//
// # Transcoding
//
// With [Flags.Transcode], an offer carrying only one G.711 law is extended
// with the other; if the answerer picks it, the relay converts PCMU and PCMA
// in place on the packet path (table lookup per byte, no allocation).
//
// # Usage
//
//	r, err := relay.New(relay.Config{Addr: netip.MustParseAddr("203.0.113.5")})
//	go r.Serve(ctx)
//	offer, err := r.Offer(ctx, relay.OfferRequest{CallID: id, FromTag: ft, SDP: sdpA, SourceAddr: sipSrcA})
//	answer, err := r.Answer(ctx, relay.AnswerRequest{CallID: id, FromTag: ft, ToTag: tt, SDP: sdpB})
//	err = r.Delete(ctx, relay.DeleteRequest{CallID: id})
//
// # Concurrency and performance
//
// On Linux the default sockets are served by one epoll loop per core
// (GOMAXPROCS), not by a goroutine per socket: at 50 packets/s per socket a
// goroutine would park and wake for every packet, which costs more CPU than
// the forwarding itself. Each loop reads a ready socket with recvfrom, parses
// the RTP header in place, applies the latching rules, updates the RFC 3550
// loss and jitter statistics and sends the packet on with sendto; the path
// allocates nothing. Each stream has its own lock, so streams spread over all
// cores. Sockets get large kernel buffers ([Config.SocketBuffer]). Batched
// reads and writes (recvmmsg/sendmmsg) are not used: they batch per socket,
// and a socket carrying one party's 50 packets/s almost never holds more than
// one packet. Sockets from [Config.Listen] (other systems, tests) get one
// goroutine each instead.
//
// # Lifecycle
//
// [New] returns a ready relay; [Relay.Serve] runs the timeout checks;
// [Relay.Close] (or cancelling Serve's context) frees every port and waits
// for every goroutine. Sockets come from [Config.Listen], so tests can use the
// channel-based fake network of package relaytest inside testing/synctest.
package relay
