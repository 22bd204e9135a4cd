// Package registrar is a SIP registrar and location service (RFC 3261 §10)
// that mounts on a caller's sipgo server: digest authentication, bindings
// with exact expiry, NAT handling, Path, SIP Outbound flows, connection-bound
// bindings for browsers, location lookups and change events, and
// write-behind persistence to a store.Bindings.
//
// # Usage
//
//	auth, _ := registrar.NewAuthenticator(registrar.AuthConfig{
//		Realm:       "example.com",
//		Credentials: creds, // a store.Credentials
//	})
//	reg, _ := registrar.New(ctx, registrar.Config{Auth: auth, Store: bindings})
//	defer reg.Close() // final flush
//	srv.OnRegister(reg.ServeRegister)
//	go srv.ServeUDP(reg.StatelessUDP(udpConn, 0)) // REGISTER on every core
//	go srv.ServeTCP(reg.TrackListener(tcpListener, "tcp"))
//	...
//	bs, _ := reg.Lookup(ctx, "sip:alice@example.com")
//
// # Authentication
//
// [Authenticator] verifies digest responses (RFC 7616, RFC 8760) against the
// HA1 values of a store.Credentials; the plain password is never needed.
// Challenges offer MD5 and SHA-256 with qop=auth, in an order adapted to
// the client ([DefaultChallengeAlgorithms]): clients that read only the
// first or only the last challenge header still find MD5 there. Nonces are stateless (an
// HMAC of their issue time), expire after AuthConfig.NonceLifetime (a correct
// response with an expired nonce gets stale=true), and each nonce-count is
// accepted once, so a captured Authorization cannot be replayed. A source
// that fails too often is refused for a while; the throttle is keyed by
// source address, so nobody can lock a user out from elsewhere. The same
// Authenticator answers INVITEs with 407 (Authenticate with proxy=true).
//
// # Bindings
//
// Every step of RFC 3261 §10.3 is implemented: the Request-URI domain,
// Require, authentication, authorization of the user for the To AOR,
// per-contact expiry with Min-Expires (423) and a MaxExpires clamp,
// Contact: * with Expires: 0, the Call-ID/CSeq ordering check, a cap on
// contacts per AOR, and a 200 OK listing every binding with its remaining
// expiry. A REGISTER without Contact is a query. Contacts with
// +sip.instance and reg-id (RFC 5626) are keyed by instance and reg-id, so
// a device re-registering from a new address replaces its old flow.
//
// # NAT
//
// A binding records the address and port the REGISTER came from, its
// transport and the local socket it arrived on: requests to the user go
// there, not to the Contact's private address (what fix_nated_register
// does in Kamailio). The response's Via gets received= whenever the sent-by
// host is not the source address (RFC 3261 §18.2.1), and rport is honoured
// (RFC 3581). A client may report its NAT type in the X-NAT-Type header
// (Config.NATHeader), e.g. "X-NAT-Type: symmetric" as the stun package's
// classifier names it; the value, a short lowercase token, is stored with
// the binding for the media-relay decision.
//
// Bindings made over TCP, TLS, WS or WSS are connection-bound: the client
// cannot be reached except through its connection, so when the connection
// closes its bindings are removed. Give sipgo listeners wrapped by
// [Registrar.TrackListener], or call [Registrar.ConnClosed].
//
// # Path
//
// Path headers (RFC 3327) are stored with the binding in order and returned
// by Lookup as the route set. They are echoed in the 200 OK when the client
// lists "path" in Supported; without it the request is refused with 420 when
// Config.StrictPath is set.
//
// # Persistence
//
// The in-memory table answers every lookup. With a store, New loads the
// live bindings, and changes reach the store in write-back mode (flushed
// every Config.FlushInterval and on Close; a failed flush is retried, so a
// database outage loses nothing while the process lives) or write-through
// mode (before the 200 OK). Bindings carry the owning node's name and a
// version that orders writes, for replication between nodes.
//
// # Lifecycle and concurrency
//
// New starts an expiry goroutine and, in write-back mode, a flush
// goroutine; Close and Shutdown stop both and flush. All methods are safe
// for concurrent use. A binding disappears from Lookup exactly at its expiry
// instant; watchers registered with [Registrar.Watch] hear of it then.
package registrar
