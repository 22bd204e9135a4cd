// Package store defines the records talkpad persists and the small interfaces
// that persist them.
//
// Each domain has its own interface, declared here and implemented by every
// backend: [Credentials] holds SIP digest secrets, [Bindings] is the location
// service the registrar writes behind, and the billing interfaces (accounts,
// ledger, tariffs, sessions, CDRs; [Billing] combines them) keep prepaid
// money. Consumers ask only for the interface
// they use, so a registrar needs a [Bindings] and a [Credentials], nothing
// else, and a user may implement either against their own database.
//
// # Backends
//
// Two backends ship with talkpad:
//
//   - store/memory keeps everything in process: the embedded default, and what
//     tests use. A restart loses everything in it.
//   - store/postgres keeps everything in PostgreSQL through pgx, with embedded
//     migrations, and works behind PgBouncer in transaction pooling mode.
//
// Any backend can be checked against the shared conformance suite in
// store/storetest.
//
// # Conventions
//
// Every method takes a [context.Context] first. Methods whose answer depends
// on the current time take it as a parameter (now time.Time), so callers and
// tests decide what "now" is. Conditions callers branch on are reported with
// the sentinel errors [ErrNotFound], [ErrExists] and [ErrInvalid], wrapped with
// context; test them with [errors.Is]. Read-modify-write goes through an
// updater function that may run more than once (a retry after a conflict), so
// it must not have side effects.
//
// All backends are safe for concurrent use.
package store
