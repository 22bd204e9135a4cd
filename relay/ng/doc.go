// Package ng implements the control side of rtpengine's "ng" protocol for
// package relay, so that SIP proxies with an rtpengine module (Kamailio,
// OpenSIPS) can use our relay in place of rtpengine.
//
// A request is one UDP datagram: a cookie, a space, and a bencoded dictionary
// with a "command" key; the response repeats the cookie. Supported commands
// are ping, offer, answer, delete, query and list. Responses to
// retransmitted requests (same cookie from the same peer) are replayed from a
// cache rather than executed twice.
//
// # Options
//
// Offer and answer understand these keys and flags, in the dictionary form
// the modules send ("ICE": "remove") and as "key=value" strings inside
// "flags":
//
//   - received-from ["IP4", addr]: the party's SIP source, which alone (with
//     the SDP address) may latch its media: RTP Bleed protection
//   - trust-address: trust the SDP address instead of received-from
//   - symmetric (default), asymmetric, strict-source, media-handover,
//     endpoint-learning=immediate|delayed|handover|strict|off
//   - replace ["origin", "session-connection"], replace-origin
//   - ICE=remove (always done; force and optional are treated as remove)
//   - transport-protocol (only between profiles of equal security: SRTP is
//     relayed opaquely, never terminated)
//   - codec {"transcode": ["PCMA"]}, codec-transcode-PCMA, transcode-PCMA
//   - media address: the address written into the SDP
//
// Other keys (via-branch, label, direction, rtcp-mux, DTLS, SDES, record
// call, supports) are accepted and ignored. Delete returns the session's
// final counters, query returns them in rtpengine's "totals"/"tags" shape.
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
