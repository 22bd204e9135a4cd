// Package billing controls prepaid balances in real time: a call is
// connected only if its account can pay for it, every live call of an
// account draws from the same money, and each call ends within one second of
// that money running out — with any number of simultaneous calls, with
// top-ups arriving mid-call, and with engines on several nodes sharing one
// database. It is what CGRateS' prepaid sessions, Kamailio's cnxcc and
// FreeSWITCH's nibblebill do, as a plain Go API over the interfaces of
// package store.
//
// # Usage
//
//	e, err := billing.New(billing.Config{
//		Store:    st, // store/memory or store/postgres
//		Node:     "b2bua-1",
//		OnCutoff: func(c billing.Cutoff) { hangUp(c.CallID) },
//	})
//	go e.Serve(ctx)
//	defer e.Close()
//
//	max, err := e.Authorize(ctx, "acct-42", "+4930123456") // before sending the INVITE on
//	...                                                    // answered:
//	err = e.Start(ctx, billing.Call{ID: callID, Account: "acct-42", Callee: "+4930123456"})
//	...                                                    // hung up:
//	cdr, err := e.Stop(ctx, callID, time.Now(), "normal")
//
// Authorize returns the longest the call may last with the account's other
// calls still running, or a refusal to branch on: [ErrInsufficientFunds],
// [ErrNoTariff], [ErrDisabled], [ErrUnknownAccount], [ErrUnavailable]. Stop
// is idempotent. When money runs out the engine settles the call itself and
// calls Config.OnCutoff with the call id and the instant it was billed to.
//
// # Money and rating
//
// Money is int64 micro-units of the account currency. An account's balance
// is the sum of its ledger (top-ups, call debits, refunds, adjustments, each
// idempotent by key); calls may take it down to minus the credit limit. A
// call is priced by the longest-prefix tariff of its destination ([Table],
// a digit trie), with a connect fee, a minimum duration and billing
// increments (1/1, 30/6, 60/60), by [Rate].
//
// # Reservations and the horizon
//
// Per-second debits would cost 10,000 database writes a second for 10,000
// calls. Instead the engine keeps each account's live calls on a node as a
// group and computes the group's horizon: the latest instant at which the
// calls' summed cost (each from its own answer, rounded by its own
// increments) still fits in the money the group may use — balance plus
// credit limit, less what other nodes' calls hold. The search is exact, so
// the horizon falls on the very second (or increment) the money ends. The
// horizon is capped at one Config.Window (60 s by default), and each call
// holds, as a persisted session, its whole cost up to the horizon.
//
//   - If a whole window fits, the group renews Config.RenewBefore before it
//     ends. Routine renewals of all the accounts that fall due within
//     Config.BatchDelay (1 s) are written in one transaction
//     (store.Sessions.ReserveMany).
//   - If not, the horizon is where the money ends. The group checks once
//     more a second before it (a top-up may have arrived on another node)
//     and, finding nothing, ends every call of the group at the horizon
//     itself: the timer fires at that instant, the owner is told, and the
//     settlement is written after. A top-up that arrives in that last
//     second through another node is too late for these calls.
//   - Start, Stop and TopUp recompute the horizon at once, so a third call
//     shortens the others, and a stop or a top-up lengthens them.
//
// Every reservation and settlement is a store transaction under the
// account's row lock (SELECT ... FOR UPDATE in PostgreSQL), and the store
// refuses a reservation that would hold more than the account has. So
// engines on several nodes never overspend an account between them: a call
// is never billed past what it reserved, and nothing is reserved that is
// not there. Calls of one account on different nodes share money
// first-come: a node holds at most one window ahead, and the other node's
// calls end when what is left does not pay for their next increment.
//
// The calls of a group end together, when the money no longer pays for the
// next step of all of them. With a coarse increment among them (60/60) the
// step can be a whole minute of one call, so the group may end with less
// than that minute's price left, which a per-second call alone could still
// have spent; the account is never overdrawn either way.
//
// A hang-up settles at once when the account's other calls wait for its
// money; otherwise it joins a batch written within Config.BatchDelay
// (store.Sessions.SettleMany), its money held until then.
//
// So for 10,000 live calls of 3 minutes on average a node writes about 55
// reservations a second for answered calls, one batch of renewals and one
// of settlements a second, and one lease statement per heartbeat. On a
// 2-core test machine that costs PostgreSQL and the engine together about
// a fifth of a core (bench/billing.sh; the figures are in the README).
//
// # Crash safety
//
// Each session names its node and carries a lease that the node renews
// every Config.Heartbeat (one UPDATE for all its calls), which also records
// the last instant the calls were known alive. When a node restarts with
// the same Node name, Serve settles the sessions it left up to that instant
// and releases the rest of their reservations; when it does not come back,
// any other node does so once the lease lapses (Config.Lease). A hang-up
// still waiting for its batch when the node dies is settled the same way. A node that
// was cut off from the database and finds its calls settled by another
// cuts them off with [CauseLost]; the settlement in the store stands.
//
// # Database outage
//
// Live calls keep running on what they already reserved: their renewals
// are retried every Config.Retry, and if the database is still away when
// the reserved time ends they are cut off with [CauseUnavailable]. Their
// settlements are kept in memory and retried by Serve until the database
// answers. No new call is authorized or started meanwhile
// ([ErrUnavailable]): money that cannot be checked is not spent.
//
// # Concurrency
//
// An Engine is safe for concurrent use. Timers run on their own
// goroutines; OnCutoff is called without locks held. Close waits for every
// timer callback to return.
package billing
