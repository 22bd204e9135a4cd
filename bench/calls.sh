#!/usr/bin/env bash
# bench/calls.sh — calls/s through talkpad's B2BUA (examples/server with a
# -config dial plan) against Kamailio 5.6 as a stateful record-routing
# proxy, on loopback, with the same sipp caller and carrier:
#
#   sipp UAC (uac_bench.xml) ──▶ target ──▶ sipp UAS (uas_bench.xml)
#   INVITE, 100, 180, 200, ACK, HOLD ms of call, BYE, 200
#
#   bench/calls.sh                                # talkpad and kamailio
#   RATES="1000 2000 3000" STEP=10 HOLD=5000 bench/calls.sh
#   TARGETS="direct kamailio" bench/calls.sh      # the tools' own ceiling
#
# For each target, sipp offers a fixed call rate for STEP seconds (rate *
# STEP calls), then the next rate, until a step fails: 0.1% or more of the
# calls did not complete (200 to the INVITE and to the BYE), or sipp could
# not start them at the offered rate. The target is started afresh for
# every step. A step reports the achieved rate, the calls held at once at
# the peak (about rate * (HOLD + setup)), the target's CPU time per call,
# and its memory (PSS: shared pages are split among Kamailio's processes)
# idle and at the peak, and per call held.
#
# Targets: talkpad (the B2BUA: the caller's address is a trunk's inbound
# source with transit = true, the dial plan sends every number to the
# carrier trunk), kamailio (bench/kamailio/calls.cfg), direct (the UAC
# straight to the UAS: the ceiling of sipp itself on this machine).
#
# Knobs (environment): RATES (calls/s, default "500 1000 1500 2000 2500
# 3000"), STEP (seconds per rate, default 10), HOLD (call duration in ms,
# default 5000), TARGETS ("talkpad kamailio"), NUMBER (dialled, default
# +4930123456), KAMAILIO_CHILDREN (UDP workers, default 4: two per core),
# KAMAILIO_SHM_MB (default 512), TALKPAD_FLAGS (extra server flags),
# TALKPAD_BIN (measure this server binary instead of building one),
# P99_MAX (ms, default 500: the summary also gives the best step whose
# call setup p99 is under it),
# TARGET_PORT, UAS_PORT, UAC_PORT (loopback ports, default 35160, 35170,
# 35180), SIPP_TRANSPORT (u1), KAMAILIO_FLAGS (extra kamailio
# arguments, e.g. "-x tlsf"), RESULTS (output file, default
# bench/results/calls-DATE.txt), KEEP_TMP (1: keep sipp's logs and
# statistics). See bench/README.md.
set -euo pipefail

rates=${RATES:-500 1000 1500 2000 2500 3000}
step=${STEP:-10}
hold=${HOLD:-5000}
targets=${TARGETS:-talkpad kamailio}
number=${NUMBER:-+4930123456}
children=${KAMAILIO_CHILDREN:-4}
transport=${SIPP_TRANSPORT:-u1}
target_port=${TARGET_PORT:-35160}
uas_port=${UAS_PORT:-35170}
uac_port=${UAC_PORT:-35180}
bufsize=8388608 # what the talkpad server asks for with SetReadBuffer
p99_max=${P99_MAX:-500} # ms: sipp retransmits an unanswered INVITE after 500 ms

cd "$(dirname "$0")/.."
root=$PWD
results=${RESULTS:-$root/bench/results/calls-$(date -u +%Y%m%d-%H%M%S).txt}
scenarios=$root/examples/server/testdata/sipp
tmp=$(mktemp -d)
chmod 755 "$tmp"
server_pid=""
uas_pid=""
sampler_pid=""
restore_sysctl=""

cleanup() {
	stop_sampler
	stop_server
	stop_uas
	if [ -n "$restore_sysctl" ]; then
		sysctl -q -w $restore_sysctl >/dev/null || true
	fi
	if [ -n "${KEEP_TMP:-}" ]; then
		log "sipp logs and statistics kept in $tmp"
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "# $*" >&2; }

need() {
	command -v "$1" >/dev/null 2>&1 || { echo "$1 not installed (Debian package $2)" >&2; exit 1; }
}
need sipp sip-tester

# Everything printed on stdout also goes to the results file. The
# directory ignores its own contents: results are records of one
# machine's run, not sources.
mkdir -p "$(dirname "$results")"
[ -e "$(dirname "$results")/.gitignore" ] || echo '*' >"$(dirname "$results")/.gitignore"
exec > >(tee "$results")

for p in "$target_port" "$uas_port" "$uac_port"; do
	if awk -v p="$(printf ':%04X' "$p")" 'substr($2, length($2) - 4) == p { f = 1 } END { exit !f }' /proc/net/udp; then
		echo "UDP port $p is in use: set TARGET_PORT, UAS_PORT or UAC_PORT" >&2
		exit 1
	fi
done

# --- UDP buffers (see bench/README.md, register.sh) -------------------------
for key in net.core.rmem_max net.core.wmem_max; do
	cur=$(sysctl -n "$key" 2>/dev/null || echo 0)
	if [ "$cur" -lt "$bufsize" ]; then
		if sysctl -q -w "$key=$bufsize" >/dev/null 2>&1; then
			restore_sysctl="$restore_sysctl $key=$cur"
			log "raised $key from $cur to $bufsize for this run (restored at exit)"
		else
			log "WARNING: $key is $cur and cannot be raised (not root?): UDP buffers stay small and every target drops packets early"
		fi
	fi
done

# sipp wants more open files than calls in flight (-l), even over one
# socket (-t u1), and warns otherwise.
ulimit -n 262144 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

cp "$scenarios/uac_bench.xml" "$scenarios/uas_bench.xml" "$tmp/"

# --- talkpad -------------------------------------------------------------------
# The call configuration: the caller (sipp UAC, its port) is trunk "in",
# recognised by its source address, with transit so that its calls may go
# out to another trunk; every number goes to trunk "uas", the sipp UAS.
# No media anchoring: the bench measures signalling.
cat >"$tmp/calls.toml" <<EOF
[calls]
max_setup = 1000000
no_answer_timeout = "30s"
keepalive = "0s"
anchor = "never"

[[trunk]]
name = "in"
uri = "sip:127.0.0.1:$uac_port"
inbound = ["127.0.0.1:$uac_port"]
transit = true

[[trunk]]
name = "uas"
uri = "sip:127.0.0.1:$uas_port"
strip_webrtc = false

[[dialplan]]
match = '^\+?[0-9]+\$'
trunks = ["uas"]
EOF

talkpad_ok=""
prepare_talkpad() {
	if [ -n "${TALKPAD_BIN:-}" ]; then
		log "using the server binary $TALKPAD_BIN"
		cp "$TALKPAD_BIN" "$tmp/talkpad-server"
	else
		command -v go >/dev/null 2>&1 || { log "go not installed: skipping talkpad"; return 1; }
		log "building examples/server"
		go build -o "$tmp/talkpad-server" ./examples/server || { log "examples/server does not build: skipping talkpad"; return 1; }
	fi
	local help
	help=$("$tmp/talkpad-server" -h 2>&1 || true) # -h exits 2
	if ! grep -q -- '-config' <<<"$help"; then
		log "this examples/server has no -config flag (no B2BUA yet): skipping talkpad"
		return 1
	fi
	talkpad_ok=1
}

start_talkpad() {
	"$tmp/talkpad-server" -sip-udp "127.0.0.1:$target_port" -sip-tcp "" -sip-ws "" -stun "" \
		-config "$tmp/calls.toml" -log-level warn ${TALKPAD_FLAGS:-} 2>>"$tmp/talkpad.log" &
	server_pid=$!
	addr=127.0.0.1:$target_port
}

# --- kamailio ------------------------------------------------------------------
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
	# Started as root, it drops to nobody after binding; its pid file and
	# runtime directory are in the temp dir, never in /run/kamailio, and
	# the system service is not used.
	mkdir -p "$tmp/kamrun" && chown nobody "$tmp/kamrun" 2>/dev/null || true
	local user=()
	[ "$(id -u)" = 0 ] && user=(-u nobody -g nogroup)
	kamailio -f "$root/bench/kamailio/calls.cfg" -DD -E \
		-l "udp:127.0.0.1:$target_port" -n "$children" -m "${KAMAILIO_SHM_MB:-512}" -M 16 \
		-A "UAS=\"sip:127.0.0.1:$uas_port\"" \
		-P "$tmp/kamrun/kamailio.pid" -Y "$tmp/kamrun" "${user[@]}" ${KAMAILIO_FLAGS:-} \
		>>"$tmp/kamailio.log" 2>&1 &
	server_pid=$!
	addr=127.0.0.1:$target_port
}

stop_server() {
	[ -n "$server_pid" ] || return 0
	kill -TERM "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}

# --- the carrier ---------------------------------------------------------------
start_uas() {
	local dir=$1
	(cd "$dir" && exec sipp -sf "$tmp/uas_bench.xml" -i 127.0.0.1 -p "$uas_port" -t "$transport" \
		-buff_size "$bufsize" -max_recv_loops 10000 -max_sched_loops 10000 -nd -nostdin \
		-trace_stat -stf uas_stat.csv -fd 1 >uas.out 2>&1) &
	uas_pid=$!
}

stop_uas() {
	[ -n "$uas_pid" ] || return 0
	kill -TERM "$uas_pid" 2>/dev/null || true
	wait "$uas_pid" 2>/dev/null || true
	uas_pid=""
}

# --- measurements ----------------------------------------------------------------
# pids_of PID: the process and its children (Kamailio's workers).
pids_of() {
	echo "$1 $(ps -o pid= --ppid "$1" 2>/dev/null | tr '\n' ' ')"
}

# ticks PID: CPU time (clock ticks) used so far by a process and its children.
ticks() {
	local p
	for p in $(pids_of "$1"); do
		awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true
	done | awk '{ s += $1 } END { print s + 0 }'
}

# pss_kb PID: proportional set size of a process and its children, in kB.
# For one process it is its RSS; for Kamailio's workers sharing memory it
# splits the shared pages among them instead of counting them once each.
pss_kb() {
	local p
	for p in $(pids_of "$1"); do
		awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || true
	done | awk '{ s += $1 } END { print s + 0 }'
}

stop_sampler() {
	[ -n "$sampler_pid" ] || return 0
	kill "$sampler_pid" 2>/dev/null || true
	wait "$sampler_pid" 2>/dev/null || true
	sampler_pid=""
}

# udp_drops PORT: datagrams the kernel dropped so far on a full socket.
udp_drops() {
	awk -v p="$(printf ':%04X' "$1")" 'substr($2, length($2) - 4) == p { d += $NF } END { print d + 0 }' /proc/net/udp
}

# --- one step ------------------------------------------------------------------
# step TARGET RATE: starts the carrier and the target, runs rate * STEP
# calls, and prints "offered achieved failed% concurrent p50 p99
# target_us/call idle_kB peak_kB kB/call uac_cpu% uas_cpu% target_cpu%
# retrans drops why".
run_step() {
	local name=$1 rate=$2
	local calls=$((rate * step))
	local dir="$tmp/$name-$rate"
	rm -rf "$dir" && mkdir -p "$dir"
	start_uas "$dir"
	case $name in
	talkpad) start_talkpad ;;
	kamailio) start_kamailio ;;
	direct) server_pid="" addr=127.0.0.1:$uas_port ;;
	esac
	sleep 2
	if [ -n "$server_pid" ] && ! kill -0 "$server_pid" 2>/dev/null; then
		tail -5 "$tmp/$name.log" >&2
		stop_uas
		echo "$rate 0 100 - - - - - - - - - - - - did-not-start"
		return
	fi
	local mon=${server_pid:-$uas_pid}
	local idle t0 t1 u0 u1 d0 d1
	idle=$(pss_kb "$mon")
	(while :; do pss_kb "$mon"; sleep 0.5; done) >"$dir/pss" &
	sampler_pid=$!
	t0=$(ticks "$mon")
	u0=$(ticks "$uas_pid")
	d0=$(udp_drops "${addr##*:}")
	TIMEFORMAT='%R %U %S'
	{ time (cd "$dir" && sipp "$addr" -sf "$tmp/uac_bench.xml" -s "$number" \
		-m "$calls" -r "$rate" -l $((rate * (hold / 1000 + 3))) -d "$hold" \
		-i 127.0.0.1 -p "$uac_port" -t "$transport" -buff_size "$bufsize" \
		-max_recv_loops 10000 -max_sched_loops 10000 -recv_timeout 10000 \
		-timeout $((step + hold / 1000 + 60))s -nd -nostdin \
		-trace_stat -stf stat.csv -fd 200ms -trace_rtt -rtt_freq 100 \
		-trace_err -error_file errors.log >sipp.out 2>&1 || true); } 2>"$dir/time"
	t1=$(ticks "$mon")
	u1=$(ticks "$uas_pid")
	d1=$(udp_drops "${addr##*:}")
	stop_sampler
	stop_uas
	stop_server
	local stat=$dir/stat.csv rtt
	rtt=$(ls "$dir"/*_rtt.csv 2>/dev/null | head -1 || true)
	[ -s "$stat" ] || { echo "$rate 0 100 - - - - - - - - - - - - no-statistics"; return; }
	local pct peak
	# Call setup time (INVITE sent to 200 received, rtd "setup" = 1), ms.
	pct=$([ -n "$rtt" ] && awk -F';' '$3 == "setup" || $3 == 1 { print $2 + 0 }' "$rtt" | sort -n | awk '
		{ v[NR] = $1 }
		END { if (NR == 0) { print "- -"; exit } printf "%.0f %.0f\n", v[int(NR * 0.50 + 0.999)], v[int(NR * 0.99 + 0.999)] }' || echo "- -")
	peak=$(sort -n "$dir/pss" | tail -1)
	awk -F';' -v calls="$calls" -v rate="$rate" -v hz="$(getconf CLK_TCK)" \
		-v tt=$((t1 - t0)) -v ut=$((u1 - u0)) -v drops=$((d1 - d0)) -v idle="$idle" -v peak="${peak:-0}" \
		-v direct="$([ "$name" = direct ] && echo 1 || echo 0)" \
		-v times="$(cat "$dir/time")" -v pct="$pct" '
	function epoch(f,  a) { split(f, a, /[ \t]+/); return a[3] }
	NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
	{
		now = epoch($col["CurrentTime"])
		if (start == "") start = epoch($col["StartTime"])
		created = $col["TotalCallCreated"]
		if (done == "" && created >= calls) {
			done = created > pc ? pt + (now - pt) * (calls - pc) / (created - pc) : now
		}
		pt = now; pc = created
		if ($col["CurrentCall"] > conc) conc = $col["CurrentCall"]
		ok = $col["SuccessfulCall(C)"]
		retrans = $col["Retransmissions(C)"]
		why = sprintf("timeout=%d,unexpected=%d,rejected=%d,unfinished=%d",
			$col["FailedMaxUDPRetrans(C)"] + $col["FailedTimeoutOnRecv(C)"],
			$col["FailedUnexpectedMessage(C)"], $col["FailedCallRejected(C)"],
			created - ok - $col["FailedCall(C)"])
	}
	END {
		if (done == "") done = pt
		split(times, t, " ")
		failed = created ? (created - ok) * 100 / created : 100
		achieved = done > start ? ok / (done - start) : 0
		us = ok ? tt / hz * 1e6 / ok : 0
		kbcall = conc ? (peak - idle) / conc : 0
		if (direct) {
			# The UAS is the target: its figures are the columns of sipp.
			printf "%d %.0f %.3f %d %s - - - - %.0f %.0f - %d %d %s\n", rate, achieved, failed, conc, pct,
				(t[2] + t[3]) * 100 / t[1], ut / hz * 100 / t[1], retrans, drops, why
		} else {
			printf "%d %.0f %.3f %d %s %.0f %.0f %.0f %.1f %.0f %.0f %.0f %d %d %s\n", rate, achieved, failed, conc, pct,
				us, idle / 1024, peak / 1024, kbcall, (t[2] + t[3]) * 100 / t[1], ut / hz * 100 / t[1],
				tt / hz * 100 / t[1], retrans, drops, why
		}
	}' "$stat"
}

# --- one target ----------------------------------------------------------------
declare -A best_line fast_line
fmt='%8s %9s %8s %7s %7s %7s %8s %8s %8s %8s %8s %8s %8s %7s %6s  %s\n'
bench() {
	local name=$1
	case $name in
	talkpad)
		[ -n "$talkpad_ok" ] || prepare_talkpad || { best_line[$name]="not measured (see above)"; return; } ;;
	kamailio)
		if ! have_kamailio; then
			log "kamailio not installed (Debian package kamailio) and cannot be installed: skipping it"
			best_line[$name]="not measured (kamailio missing)"
			return
		fi
		;;
	direct) ;;
	*) echo "unknown target $name (talkpad, kamailio, direct)" >&2; exit 2 ;;
	esac
	echo
	echo "== $name   (load before: $(uptime | sed 's/.*load average: //'))"
	printf "$fmt" offered/s achieved/s failed% held p50/ms p99/ms us/call idle/MB peak/MB kB/call uac-cpu% uas-cpu% tgt-cpu% retrans drops result
	for r in $rates; do
		local line ok=pass
		line=$(run_step "$name" "$r")
		read -r offered achieved failed conc p50 p99 us idle peak kbcall ucpu scpu tcpu retrans drops why <<<"$line"
		if awk -v f="$failed" 'BEGIN { exit !(f >= 0.1) }'; then
			ok="FAIL (>= 0.1% failed: $why)"
		elif awk -v a="$achieved" -v o="$offered" 'BEGIN { exit !(a < 0.95 * o) }'; then
			ok="FAIL (rate not reached)"
			if [ "$ucpu" -ge 95 ] 2>/dev/null; then ok="$ok, sipp saturated"; fi
		fi
		printf "$fmt" "$offered" "$achieved" "$failed" "$conc" "$p50" "$p99" "$us" "$idle" "$peak" "$kbcall" "$ucpu" "$scpu" "$tcpu" "$retrans" "$drops" "$ok"
		if [ "$ok" != pass ]; then
			# The first errors sipp logged: what a failing target did wrong.
			# (Aborted calls first; sipp's warning about open files is
			# moot over one socket, and a 180 overtaken by its 200 is
			# only noted.)
			{ grep -h -E 'Aborting' "$tmp/$name-$r/errors.log" 2>/dev/null || true
			  grep -h -E 'unexpected|timeout|Failed' "$tmp/$name-$r/errors.log" 2>/dev/null |
				grep -v -E 'Maximum number of open|Continuing call' || true; } |
				head -3 | cut -c 1-300 | sed 's/^/   sipp: /'
			break
		fi
		best_line[$name]="$achieved calls/s (offered $offered/s), $conc calls held, setup p50 $p50 ms p99 $p99 ms, failed ${failed}%, $us µs CPU/call, memory ${idle} MB idle -> ${peak} MB at peak (${kbcall} kB/call held)"
		if [ "$p99" != - ] && [ "$p99" -lt "$p99_max" ]; then
			fast_line[$name]="$achieved calls/s (offered $offered/s), setup p99 $p99 ms, $us µs CPU/call"
		fi
	done
	echo "   load after: $(uptime | sed 's/.*load average: //')"
}

echo "calls bench: ${step}s per rate, calls of ${hold} ms, sipp -t $transport, $(nproc) CPUs, $(uname -r), $(date -u '+%F %T UTC')"
echo "load at start: $(uptime | sed 's/^ *//')"
for t in $targets; do
	bench "$t"
done

echo
echo "== highest rate with < 0.1% failures"
for t in $targets; do
	echo "$t: ${best_line[$t]:-no passing step}"
done
echo "== the same, with call setup p99 under ${p99_max} ms (no retransmission storm)"
for t in $targets; do
	echo "$t: ${fast_line[$t]:-no such step}"
done
log "results written to $results"
