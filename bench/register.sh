#!/usr/bin/env bash
# bench/register.sh — digest-authenticated registrations/s of talkpad's
# reference server against Kamailio 5.6's registrar, on loopback, with the
# same sipp scenario (examples/server/testdata/register.xml: REGISTER, 401,
# REGISTER with Authorization, 200) and the same users.
#
#   bench/register.sh            # both servers, default rates
#   RATES="4000 8000" STEP=10 USERS=50000 bench/register.sh
#   TARGETS=talkpad bench/register.sh
#
# For each server, sipp offers a fixed call rate for STEP seconds, then the
# next rate, until a step fails: more than 0.1% of the registrations did
# not end in 200 OK, or sipp could not start them at the offered rate
# (the server fell so far behind that sipp's limit of calls in flight was
# reached). The result is the highest passing step: its achieved
# registrations/s and the 99th percentile of the full registration time
# (first REGISTER sent to 200 OK received, two round trips).
#
# Knobs (environment): RATES, STEP (seconds per rate, default 12), USERS
# (distinct accounts, default 20000), TARGETS ("talkpad kamailio"),
# KAMAILIO_CHILDREN (UDP worker processes, default 4: two per core),
# KAMAILIO_TM (1: a transaction per REGISTER, see kamailio.cfg),
# KAMAILIO_SHM_MB (Kamailio's shared memory, default 512), P99_MAX (ms,
# default 500: the summary also gives the best step with p99 under it),
# SIPP_TRANSPORT (u1, see README), TALKPAD_FLAGS (extra server flags),
# PPROF (an address: build the talkpad server with net/http/pprof there),
# TALKPAD_BIN (measure this server binary instead of building one).
# Kamailio is installed with apt when missing and the script runs as root;
# otherwise its part is skipped with a message. See bench/README.md.
set -euo pipefail

rates=${RATES:-2000 4000 6000 8000 10000 12000 14000 16000}
step=${STEP:-12}
nusers=${USERS:-20000}
targets=${TARGETS:-talkpad kamailio}
children=${KAMAILIO_CHILDREN:-4}
transport=${SIPP_TRANSPORT:-u1}
p99_max=${P99_MAX:-500} # ms: sipp retransmits an unanswered request after 500 ms
talkpad_addr=127.0.0.1:35060
kamailio_addr=127.0.0.1:35070
sipp_port=35080
bufsize=8388608 # what the talkpad server asks for with SetReadBuffer

cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
chmod 755 "$tmp"
server_pid=""
restore_sysctl=""

cleanup() {
	stop_server
	if [ -n "$restore_sysctl" ]; then
		sysctl -q -w $restore_sysctl >/dev/null || true
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "# $*" >&2; }

need() {
	command -v "$1" >/dev/null 2>&1 || { echo "$1 not installed (Debian package $2)" >&2; exit 1; }
}
need sipp sip-tester
[ -n "${TALKPAD_BIN:-}" ] || need go golang

# --- UDP buffers -----------------------------------------------------------
# Linux caps SO_RCVBUF at net.core.rmem_max (default 208 KB). At these rates
# a burst overflows that in milliseconds and the kernel drops REGISTERs,
# which sipp sees as retransmissions and failures. Raise the cap for the
# run when we can, and put it back afterwards.
for key in net.core.rmem_max net.core.wmem_max; do
	cur=$(sysctl -n "$key" 2>/dev/null || echo 0)
	if [ "$cur" -lt "$bufsize" ]; then
		if sysctl -q -w "$key=$bufsize" >/dev/null 2>&1; then
			restore_sysctl="$restore_sysctl $key=$cur"
			log "raised $key from $cur to $bufsize for this run (restored at exit)"
		else
			log "WARNING: $key is $cur and cannot be raised (not root?): UDP buffers stay small and both servers drop packets early"
		fi
	else
		log "$key is $cur: large enough for $bufsize-byte UDP buffers"
	fi
done

# --- users -------------------------------------------------------------------
# One account per user: a CSV for talkpad (-users), a db_text table that
# Kamailio loads into an htable at start, and sipp's injection file.
log "generating $nusers users"
mkdir -p "$tmp/db"
awk -v n="$nusers" -v tmp="$tmp" 'BEGIN {
	print "SEQUENTIAL" > (tmp "/inf.csv")
	print "id(int,auto) key_name(str) key_type(int) value_type(int) key_value(str) expires(int)" > (tmp "/db/passwords")
	for (i = 0; i < n; i++) {
		u = sprintf("user%04d", i); p = sprintf("pw%04d", i)
		print u "," p > (tmp "/users.csv")
		print u ";[authentication username=" u " password=" p "];127.0.0.1" > (tmp "/inf.csv")
		print i + 1 ":" u ":0:0:" p ":0" > (tmp "/db/passwords")
	}
}'
echo "passwords:1" >"$tmp/db/version"
chmod -R a+rX "$tmp"
cp examples/server/testdata/register.xml "$tmp/register.xml"

# --- servers -------------------------------------------------------------------
[ -n "${TALKPAD_BIN:-}" ] || log "building examples/server"
overlay=()
if [ -n "${PPROF:-}" ]; then
	# Profiling build: an extra file, added through a build overlay (the
	# package itself is untouched), serves net/http/pprof on $PPROF, e.g.
	#   go tool pprof -seconds 10 http://$PPROF/debug/pprof/profile
	cat >"$tmp/pprof.go" <<-EOF
	package main

	import (
		"net/http"
		_ "net/http/pprof"
		"runtime"
	)

	func init() {
		runtime.SetMutexProfileFraction(20)
		runtime.SetBlockProfileRate(100000) // one sample per 100 µs blocked
		go http.ListenAndServe("$PPROF", nil)
	}
	EOF
	printf '{"Replace":{"%s":"%s"}}' "$root/examples/server/zz_bench_pprof.go" "$tmp/pprof.go" >"$tmp/overlay.json"
	overlay=(-overlay "$tmp/overlay.json")
	log "talkpad server built with pprof on http://$PPROF/debug/pprof/"
fi
if [ -n "${TALKPAD_BIN:-}" ]; then
	log "using the server binary $TALKPAD_BIN"
	cp "$TALKPAD_BIN" "$tmp/talkpad-server"
else
	go build "${overlay[@]}" -o "$tmp/talkpad-server" ./examples/server
fi

start_talkpad() {
	# MD5 only: Kamailio challenges with one MD5 digest, so both answer the
	# same 401 (the default offers SHA-256 too, one more header).
	"$tmp/talkpad-server" -users "$tmp/users.csv" -sip-udp "$talkpad_addr" \
		-sip-tcp "" -sip-ws "" -stun "" -realm talkpad -auth-algorithms MD5 \
		-log-level warn ${TALKPAD_FLAGS:-} 2>"$tmp/talkpad.log" &
	server_pid=$!
	addr=$talkpad_addr
}

have_kamailio() {
	command -v kamailio >/dev/null 2>&1 && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		log "kamailio missing: installing the Debian package"
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio >"$tmp/apt.log" 2>&1 ||
			{ log "apt-get install kamailio failed:"; tail -5 "$tmp/apt.log" >&2; return 1; }
		return 0
	fi
	return 1
}

start_kamailio() {
	# Started as root, it drops to nobody after binding; everything it
	# writes (pid file, control sockets) is in the temp dir, never in
	# /etc/kamailio or /run/kamailio, and the system service is not used.
	mkdir -p "$tmp/kamrun" && chown nobody "$tmp/kamrun" 2>/dev/null || true
	local user=() defs=()
	[ "$(id -u)" = 0 ] && user=(-u nobody -g nogroup)
	[ "${KAMAILIO_TM:-0}" = 1 ] && defs=(-A WITH_TM)
	kamailio -f "$root/bench/kamailio/kamailio.cfg" -DD -E \
		-l "udp:$kamailio_addr" -n "$children" -m "${KAMAILIO_SHM_MB:-512}" -M 16 \
		-A "DBURL=\"text://$tmp/db\"" "${defs[@]}" \
		-P "$tmp/kamrun/kamailio.pid" -Y "$tmp/kamrun" "${user[@]}" \
		>"$tmp/kamailio.log" 2>&1 &
	server_pid=$!
	addr=$kamailio_addr
}

stop_server() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}

# server_ticks prints the CPU time (clock ticks) used so far by the server
# process and its children (Kamailio's workers).
server_ticks() {
	local pids
	pids="$server_pid $(ps -o pid= --ppid "$server_pid" 2>/dev/null | tr '\n' ' ')"
	for p in $pids; do
		awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true
	done | awk '{ s += $1 } END { print s + 0 }'
}

# udp_drops prints how many datagrams the kernel has dropped so far on the
# server's socket because its receive buffer was full.
udp_drops() {
	local port=${addr##*:}
	awk -v p="$(printf ':%04X' "$port")" 'substr($2, length($2) - 4) == p { d += $NF } END { print d + 0 }' /proc/net/udp
}

# --- one step ------------------------------------------------------------------
# run_sipp RATE CALLS LABEL: prints "offered achieved failed% p50 p99
# sipp_cpu% server_cpu% retrans drops why" for one step (drops: datagrams
# the kernel dropped on the server's full socket; why: failure causes).
run_sipp() {
	local rate=$1 calls=$2 label=$3
	local dir="$tmp/$label"
	rm -rf "$dir" && mkdir -p "$dir"
	local t0 t1 d0 d1
	t0=$(server_ticks)
	d0=$(udp_drops)
	# -l bounds the calls in flight at two seconds' worth: a server that
	# falls behind makes sipp stop starting calls, which shows as a lower
	# achieved rate rather than an ever-growing queue.
	TIMEFORMAT='%R %U %S'
	{ time (cd "$dir" && sipp "$addr" -sf "$tmp/register.xml" -inf "$tmp/inf.csv" \
		-m "$calls" -r "$rate" -l $((rate * 2)) -i 127.0.0.1 -p "$sipp_port" \
		-t "$transport" -buff_size "$bufsize" -max_recv_loops 10000 -max_sched_loops 10000 \
		-recv_timeout 5000 -timeout $((step * 3 + 20))s -nd -nostdin \
		-trace_stat -stf stat.csv -fd 200ms -trace_rtt -rtt_freq 1000 \
		-trace_err -error_file errors.log >sipp.out 2>&1 || true); } 2>"$dir/time"
	t1=$(server_ticks)
	d1=$(udp_drops)
	local stat rtt
	stat="$dir/stat.csv"
	rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1)
	[ -s "$stat" ] || { echo "$rate 0 100 - - - - - - no-statistics"; return; }
	local hz pct
	hz=$(getconf CLK_TCK)
	# Percentiles of the registration time (sipp's rtd counter 1, in ms).
	pct=$([ -n "$rtt" ] && awk -F';' '$3 == 1 { print $2 + 0 }' "$rtt" | sort -n | awk '
		{ v[NR] = $1 }
		END { if (NR == 0) { print "- -"; exit } printf "%s %s\n", v[int(NR * 0.50 + 0.999)], v[int(NR * 0.99 + 0.999)] }' || echo "- -")
	# Achieved rate: successful registrations over the time sipp took to
	# start them all (interpolated between its 200 ms statistics lines),
	# so that the drain at the end of a step does not count against it.
	awk -F';' -v calls="$calls" -v rate="$rate" -v t0="$t0" -v t1="$t1" -v hz="$hz" -v drops=$((d1 - d0)) \
		-v times="$(cat "$dir/time")" -v pct="$pct" '
	function epoch(f,  a) { split(f, a, /[ \t]+/); return a[3] }
	NR == 1 { next }
	{
		now = epoch($3)
		if (start == "") start = epoch($1)
		if (done == "" && $13 >= calls) {
			done = $13 > pc ? pt + (now - pt) * (calls - pc) / ($13 - pc) : now
		}
		pt = now; pc = $13
		created = $13; ok = $16; retrans = $58
		why = sprintf("timeout=%d,unexpected=%d,rejected=%d,unfinished=%d", $22 + $42, $28, $30, $13 - $16 - $18)
	}
	END {
		if (done == "") done = pt
		split(times, t, " ")
		failed = created ? (created - ok) * 100 / created : 100
		achieved = done > start ? ok / (done - start) : 0
		printf "%d %.0f %.3f %s %.0f %.0f %d %d %s\n", rate, achieved, failed, pct,
			(t[2] + t[3]) * 100 / t[1], (t1 - t0) / hz * 100 / t[1], retrans, drops, why
	}' "$stat"
}

# --- one server ----------------------------------------------------------------
declare -A best_rate best_p99 best_line fast_line fast_rate
bench() {
	local name=$1
	case $name in
	talkpad) start_talkpad ;;
	kamailio)
		if ! have_kamailio; then
			log "kamailio not installed (Debian package kamailio) and cannot be installed: skipping it"
			return
		fi
		start_kamailio
		;;
	esac
	sleep 2
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "$name did not start:" >&2
		tail -20 "$tmp/$name.log" >&2
		exit 1
	fi
	# Warm-up: a slow pass that registers every user once, so each
	# measured step refreshes existing bindings as well as it adds and
	# replaces them, and that proves the configuration works.
	local w
	w=$(run_sipp 2000 "$nusers" "$name-warmup")
	if [ "$(echo "$w" | awk '{ print ($3 > 0) }')" = 1 ]; then
		echo "$name: warm-up failed ($w); sipp errors:" >&2
		tail -20 "$tmp/$name-warmup/errors.log" >&2 || true
		tail -20 "$tmp/$name.log" >&2
		exit 1
	fi
	echo
	echo "== $name   (load before: $(uptime | sed 's/.*load average: //'))"
	printf '%8s %9s %9s %8s %8s %9s %10s %7s %8s %7s  %s\n' offered/s achieved/s failed% p50/ms p99/ms sipp-cpu% server-cpu% us/reg retrans drops result
	best_rate[$name]=0
	best_p99[$name]=-
	for r in $rates; do
		local line us ok=pass
		line=$(run_sipp "$r" $((r * step)) "$name-$r")
		read -r offered achieved failed p50 p99 scpu vcpu retrans drops why <<<"$line"
		if awk -v f="$failed" 'BEGIN { exit !(f >= 0.1) }'; then
			ok="FAIL (>= 0.1% failed: $why)"
		elif awk -v a="$achieved" -v o="$offered" 'BEGIN { exit !(a < 0.95 * o) }'; then
			ok="FAIL (rate not reached)"
			if [ "$scpu" -ge 95 ]; then ok="$ok, sipp saturated"; fi
		fi
		# Server CPU time per registration: the figure least disturbed by
		# other work on a shared machine.
		us=$(awk -v c="$vcpu" -v a="$achieved" 'BEGIN { if (a > 0) printf "%.0f", c * 10000 / a; else print "-" }')
		printf '%8s %9s %9s %8s %8s %9s %10s %7s %8s %7s  %s\n' "$offered" "$achieved" "$failed" "$p50" "$p99" "$scpu" "$vcpu" "$us" "$retrans" "$drops" "$ok"
		[ "$ok" = pass ] || break
		best_rate[$name]=$achieved
		best_p99[$name]=$p99
		best_line[$name]="$achieved registrations/s (offered $offered/s), p99 ${p99} ms, failed ${failed}%, server CPU ${vcpu}% ($us µs/registration)"
		if [ "$p99" != - ] && [ "$p99" -lt "$p99_max" ]; then
			fast_line[$name]="$achieved registrations/s (offered $offered/s), p99 ${p99} ms"
			fast_rate[$name]=$achieved
		fi
	done
	echo "   load after: $(uptime | sed 's/.*load average: //')"
	stop_server
}

echo "register bench: $nusers users, ${step}s per rate, sipp -t $transport, $(nproc) CPUs, $(uname -r)"
echo "load at start: $(uptime | sed 's/^ *//')"
for t in $targets; do
	bench "$t"
done

echo
echo "== highest rate with < 0.1% failures"
for t in $targets; do
	[ -n "${best_line[$t]:-}" ] && echo "$t: ${best_line[$t]}" || echo "$t: no passing step"
done
echo "== the same, with p99 under ${p99_max} ms"
for t in $targets; do
	[ -n "${fast_line[$t]:-}" ] && echo "$t: ${fast_line[$t]}" || echo "$t: no such step"
done
echo
if [ -n "${best_line[talkpad]:-}" ] && [ -n "${best_line[kamailio]:-}" ]; then
	awk -v o="${best_rate[talkpad]}" -v k="${best_rate[kamailio]}" \
		'BEGIN { if (k > 0) printf "talkpad / kamailio: %.2f (highest rates under 0.1%% failures)\n", o / k }'
fi
if [ -n "${fast_rate[talkpad]:-}" ] && [ -n "${fast_rate[kamailio]:-}" ]; then
	awk -v o="${fast_rate[talkpad]}" -v k="${fast_rate[kamailio]}" -v m="$p99_max" \
		'BEGIN { if (k > 0) printf "talkpad / kamailio: %.2f (the same, with p99 under %d ms)\n", o / k, m }'
fi
