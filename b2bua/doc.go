// Package b2bua is a back-to-back user agent: a session border controller
// for calls between users and the phone network.
//
// For every call it answers the caller's INVITE itself (the A-leg) and
// opens a new SIP session to the callee (the B-leg): a carrier trunk for
// calls to the phone network, or a registered user's device. It keeps
// control of the call: it can bill it, end it at any instant, survive
// either side misbehaving, and choose whether the media goes directly
// between the parties or through a relay.
//
// The package knows the rest of the system only through interfaces it
// declares: an Authenticator (who is calling: the registrar's digest
// verifier), a Router (where the call goes, with a TargetPicker yielding
// trunks or bindings in the order to try them), an Authorizer (may the call
// start, for how long; told when it is answered and when it ends: the
// billing engine) and a MediaAnchor (rewrites SDP to put media through a
// relay: the relay package). Each call's progress is reported to
// Config.OnEvent, ending with exactly one EventEnded that carries the real
// answer and end instants and the cause.
package b2bua
