// Package stun is a STUN server (RFC 8489 Binding, with RFC 5780 NAT
// behaviour discovery) and the client-side NAT classifier that uses it.
// It is built on github.com/pion/stun/v3 for the message format.
//
// A browser or softphone behind a NAT does not know its public address.
// It asks the Server, which answers with the address the request came
// from. With an alternate address configured, the server also lets the
// client find out how its NAT behaves; Classify runs those tests and says
// whether peer-to-peer media can work or the call needs the relay
// (Result.NeedsRelay).
//
// # Server
//
// New takes a Config; ListenAndServe opens UDP and TCP on Config.Addr,
// the three extra UDP sockets of RFC 5780 when Config.AltAddr is set, and
// TLS when Config.TLSConfig is set:
//
//	srv, err := stun.New(stun.Config{Addr: "192.0.2.1:3478", AltAddr: "192.0.2.2:3479"})
//	if err != nil { ... }
//	go srv.ListenAndServe(ctx)
//	defer srv.Shutdown(shutdownCtx)
//
// Server.Listen and Server.ServeListeners do the same in two steps, so that
// the bound ports are known before serving (useful with port 0). To bring
// your own sockets, use Server.Serve (one UDP socket),
// Server.ServeQuad (the four sockets of RFC 5780) and Server.ServeStream
// (a TCP or TLS listener). Server.ShareConn answers STUN on a socket that
// a SIP server also reads (RFC 5626 keep-alives).
//
// Responses carry XOR-MAPPED-ADDRESS (MAPPED-ADDRESS for RFC 3489 clients,
// which send no magic cookie), SOFTWARE unless Config.OmitSoftware, and
// FINGERPRINT; with RFC 5780, also OTHER-ADDRESS and RESPONSE-ORIGIN, and
// CHANGE-REQUEST is answered from the socket it asks for. RESPONSE-PORT is
// honoured on UDP. Unknown comprehension-required attributes (including
// PADDING, which is not implemented) get 420 with UNKNOWN-ATTRIBUTES.
// Anything that is not a well-formed Binding request or indication is
// dropped and counted in Stats, and each source IP is rate limited
// (Config.RateLimit) so that the server is a poor reflector.
//
// # Classifier
//
// Classify, or Classifier.Classify with a ClassifierConfig, runs the RFC
// 5780 §4.3 mapping and §4.4 filtering tests and returns a Result: public
// address, mapping and filtering behaviour, the classic RFC 3489 NATType,
// and NeedsRelay. Requests are retransmitted as RFC 8489 §6.2.1 says, with
// shorter defaults for interactive use. A server without RFC 5780 gives a
// partial Result (Result.Partial, with Result.Notes saying why).
//
// # Lifecycle
//
// Every Serve method returns after the goroutines it started have ended:
// ErrServerClosed after Close or Shutdown, or the context's error when its
// context ends. Close is immediate and idempotent; Shutdown stops reading,
// lets responses being written go out, and honours its context's deadline.
//
// # Concurrency and performance
//
// Server and Classifier are safe for concurrent use. Each UDP socket is
// read by Config.Readers goroutines (default GOMAXPROCS), or with
// Config.ReusePort by that many SO_REUSEPORT sockets, so that the server
// uses every core. Answering a request allocates nothing: each reader owns
// its buffers (see BenchmarkAnswer and BenchmarkUDP).
//
// # Testing
//
// Package stuntest has an in-memory UDP network with simulated NATs, whose
// channel-based sockets let servers and classifications run inside
// testing/synctest bubbles.
package stun
