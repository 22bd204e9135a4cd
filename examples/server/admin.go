package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
func adminHandler(reg *registrar.Registrar, creds *registrar.CredentialCache, stunSrv *stun.Server, guard *wsguard.Listener) http.Handler {
	mux := http.NewServeMux()
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
