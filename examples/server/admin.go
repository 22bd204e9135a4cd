package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"

	"github.com/talkpad/talkpad/internal/wsguard"
	"github.com/talkpad/talkpad/registrar"
	"github.com/talkpad/talkpad/stun"
)

// adminHandler serves the operations endpoints:
//
//	GET /metrics                 Prometheus text format
//	GET /api/lookup?aor=sip:...  the live bindings of an AOR, as JSON
//	GET /healthz                 200 while serving
//	GET /debug/pprof/...         Go profiles (heap, goroutine, CPU profile, trace)
func adminHandler(reg *registrar.Registrar, creds *registrar.CredentialCache, stunSrv *stun.Server, guard *wsguard.Listener, calls func() *callStack) http.Handler {
	mux := http.NewServeMux()
	// Profiles for operators: go tool pprof http://ADMIN/debug/pprof/profile
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /api/lookup", func(w http.ResponseWriter, r *http.Request) {
		bs, err := reg.Lookup(r.Context(), r.URL.Query().Get("aor"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(bs)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m := metricWriter{w: w}
		s := reg.Stats()
		m.counter("talkpad_registrar_registrations_total", "Successful REGISTERs that added or refreshed bindings.", s.Registrations)
		m.counter("talkpad_registrar_bindings_added_total", "Bindings added.", s.Added)
		m.counter("talkpad_registrar_bindings_refreshed_total", "Bindings refreshed.", s.Refreshed)
		m.counter("talkpad_registrar_bindings_removed_total", "Bindings removed by clients or closed connections.", s.Removed)
		m.counter("talkpad_registrar_bindings_expired_total", "Bindings expired.", s.Expired)
		m.counter("talkpad_registrar_queries_total", "REGISTERs without Contact.", s.Queries)
		m.counter("talkpad_registrar_rejected_total", "REGISTERs answered with an error other than a challenge.", s.Rejected)
		m.counter("talkpad_registrar_malformed_total", "REGISTERs refused as malformed.", s.Malformed)
		m.gauge("talkpad_registrar_bindings", "Live bindings.", int64(s.Active))
		m.gauge("talkpad_registrar_dirty_bindings", "Bindings waiting for the next flush to the store.", int64(s.Dirty))
		m.counter("talkpad_registrar_flushes_total", "Successful flushes to the store.", s.Flushes)
		m.counter("talkpad_registrar_flush_errors_total", "Failed flushes to the store.", s.FlushErrors)
		a := s.Auth
		m.header("talkpad_auth_total", "Digest authentication outcomes.", "counter")
		for _, kv := range []struct {
			k string
			v uint64
		}{{"challenge", a.Challenges}, {"ok", a.OK}, {"stale", a.Stale}, {"wrong", a.Wrong},
			{"unknown_user", a.UnknownUser}, {"replay", a.Replay}, {"malformed", a.Malformed},
			{"throttled", a.Throttled}, {"disabled", a.Disabled}, {"store_error", a.StoreErrors}} {
			m.sample("talkpad_auth_total", `outcome="`+kv.k+`"`, kv.v)
		}
		if creds != nil {
			c := creds.Stats()
			m.counter("talkpad_credential_cache_stale_total", "Credentials served stale because the store failed.", c.Stale)
			m.gauge("talkpad_credential_cache_entries", "Credentials cached.", int64(c.Entries))
		}
		if guard != nil {
			g := guard.Stats()
			m.counter("talkpad_ws_accepted_total", "WebSocket connections accepted.", g.Accepted)
			m.counter("talkpad_ws_rejected_origin_total", "WebSocket upgrades refused for their Origin.", g.RejectedOrigin)
			m.counter("talkpad_ws_rejected_limit_total", "Connections refused by the per-IP limit.", g.RejectedLimit)
			m.counter("talkpad_ws_idle_closed_total", "WebSocket connections closed for idleness.", g.IdleClosed)
			m.gauge("talkpad_ws_open", "Open WebSocket connections.", g.Open)
		}
		if stunSrv != nil {
			st := stunSrv.Stats()
			m.counter("talkpad_stun_requests_total", "STUN requests received.", st.Requests)
			m.counter("talkpad_stun_success_total", "STUN success responses sent.", st.Success)
		}
		if cs := calls(); cs != nil {
			writeCallMetrics(m, cs)
		}
	})
	return mux
}

type metricWriter struct{ w io.Writer }

func (m metricWriter) header(name, help, typ string) {
	fmt.Fprintf(m.w, "# HELP %s %s\n# TYPE %s %s\n", name, strings.ReplaceAll(help, "\n", " "), name, typ)
}

func (m metricWriter) sample(name, labels string, v uint64) {
	if labels != "" {
		fmt.Fprintf(m.w, "%s{%s} %d\n", name, labels, v)
		return
	}
	fmt.Fprintf(m.w, "%s %d\n", name, v)
}

func (m metricWriter) counter(name, help string, v uint64) {
	m.header(name, help, "counter")
	m.sample(name, "", v)
}

func (m metricWriter) gauge(name, help string, v int64) {
	m.header(name, help, "gauge")
	fmt.Fprintf(m.w, "%s %d\n", name, v)
}

// writeCallMetrics exports the B2BUA's, the billing engine's and the
// relay's counters.
func writeCallMetrics(m metricWriter, cs *callStack) {
	b := cs.b2b.Stats()
	m.gauge("talkpad_calls_in_setup", "Calls being set up.", b.InSetup)
	m.gauge("talkpad_calls_active", "Answered calls in progress.", b.Active)
	m.counter("talkpad_calls_total", "New calls (authenticated INVITEs).", b.Calls)
	m.counter("talkpad_calls_answered_total", "Calls answered.", b.Answered)
	m.counter("talkpad_calls_failed_total", "Calls that ended unanswered.", b.Failed)
	m.counter("talkpad_calls_overload_total", "INVITEs refused 503 because too many calls were in setup.", b.Overload)
	m.counter("talkpad_calls_challenged_total", "INVITEs challenged 407.", b.Challenged)
	m.counter("talkpad_calls_attempts_total", "B-leg INVITEs sent.", b.Attempts)
	m.counter("talkpad_calls_failovers_total", "Attempts on a next target after a failure.", b.Failovers)
	m.counter("talkpad_calls_bad_requests_total", "Malformed INVITEs or SDP refused.", b.BadRequests)
	m.header("talkpad_calls_ended_total", "Calls ended, by cause.", "counter")
	causes := make([]string, 0, len(b.Ends))
	for k := range b.Ends {
		causes = append(causes, k)
	}
	sort.Strings(causes)
	for _, k := range causes {
		m.sample("talkpad_calls_ended_total", `cause="`+k+`"`, b.Ends[k])
	}
	e := cs.engine.Stats()
	m.gauge("talkpad_billing_live_calls", "Calls the billing engine is charging.", int64(e.LiveCalls))
	m.counter("talkpad_billing_cutoffs_total", "Calls cut off because their money ran out.", e.CutOff)
	m.counter("talkpad_billing_refused_total", "Calls refused by authorization.", e.Refused)
	r := cs.relay.Stats()
	m.gauge("talkpad_relay_sessions", "Relay sessions.", int64(r.Sessions))
	m.gauge("talkpad_relay_port_pairs_in_use", "Relay media port pairs in use.", int64(r.PortPairsInUse))
	m.counter("talkpad_relay_rtp_packets_total", "RTP packets received by the relay.", r.RTPPackets)
	m.counter("talkpad_relay_forwarded_total", "Packets the relay forwarded.", r.Forwarded)
	m.counter("talkpad_relay_session_timeouts_total", "Relay sessions ended for lack of media.", r.SessionTimeouts)
}
