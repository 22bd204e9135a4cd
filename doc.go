// Package talkpad is an embeddable Go SDK for building browser-to-PSTN VoIP
// backends: the server side of a service that lets people call landlines and
// mobiles from a browser, and be called.
//
// The SDK is a set of independent packages. Each can be imported alone; the
// reference server in examples/server composes them into a working backend.
//
// # Packages
//
// store defines the records talkpad persists (credentials, bindings, and in
// time accounts, tariffs, reservations and CDRs) and one small interface per
// domain. store/memory is the in-process default; store/postgres keeps the
// same records in PostgreSQL, behind PgBouncer if wanted; store/storetest is
// the conformance suite any backend, including your own, can run.
//
// registrar handles SIP REGISTER on a caller's sipgo server: digest
// authentication, bindings with exact expiry, NAT handling (received, rport,
// the local socket), Path, connection-bound bindings for browsers over
// WebSocket, and location lookups. It keeps the location table in memory and
// writes it behind to a store.Bindings.
//
// stun is a STUN server (RFC 8489, with RFC 5780 behaviour discovery) and a
// client-side NAT classifier: a user behind a symmetric NAT needs its media
// relayed.
//
// relay is an RTP/RTCP relay for the calls whose media cannot go peer to
// peer, with SDP rewriting and an rtpengine-compatible control protocol.
//
// billing controls prepaid balances to the second: it authorizes a call for
// as long as the account's money lasts, shares that money among the
// account's live calls on every node, and tells its owner which call to end
// and when; money moves in store transactions and is settled after crashes.
//
// b2bua is a back-to-back user agent: it answers the caller's INVITE and
// opens a new SIP session to a carrier trunk or a user's device, keeping
// control of the call (billing, hang-up at any instant, failover between
// targets, early media and PRACK, re-INVITEs, session timers). It consumes
// the registrar, relay and billing only through interfaces it declares
// (Authenticator, Router/TargetPicker, Authorizer, MediaAnchor); node
// failover (failover) will satisfy its TargetPicker the same way.
//
// # How they compose
//
// A browser registers over WebSocket with the registrar, learns its public
// address and NAT type from the STUN server, and calls. The B2BUA
// authenticates and authorizes the call, opens a new SIP session to a
// carrier, and anchors the media on the relay when the caller's binding says
// its NAT is symmetric. State lives in memory on each node and is flushed to
// PostgreSQL.
package talkpad
