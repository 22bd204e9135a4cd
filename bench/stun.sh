#!/bin/sh
# bench/stun.sh — binding responses/s and latency of our STUN server
# against coturn's turnserver, on loopback, with the same load generator
# (bench/stunload) and the same load.
#
#   bench/stun.sh [seconds] [rate]
#
# Two runs per server: closed loop (as many requests as it answers, 8
# sockets × 32 in flight) for throughput, then a fixed open-loop rate
# (default 20000/s) for latency. Needs Go; coturn's part is skipped with
# a message when turnserver is not installed (Debian package coturn).
set -eu

secs=${1:-5}
rate=${2:-20000}
ours=127.0.0.1:34780
theirs=127.0.0.1:34790

cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

go build -o "$tmp/stunload" ./bench/stunload

"$tmp/stunload" -serve "$ours" ${STUN_SERVE_FLAGS:-} 2>"$tmp/ours.log" &
pids="$pids $!"

have_coturn=0
if command -v turnserver >/dev/null 2>&1; then
	have_coturn=1
	turnserver -n --listening-ip 127.0.0.1 --listening-port "${theirs##*:}" \
		--stun-only --no-tls --no-dtls --no-tcp --no-cli \
		--log-file "$tmp/coturn.log" --simple-log --pidfile "$tmp/coturn.pid" \
		>/dev/null 2>&1 &
	pids="$pids $!"
else
	echo "turnserver not installed (Debian package coturn): measuring our server only"
fi
sleep 1

run() { # label target extra-flags...
	label=$1 target=$2
	shift 2
	"$tmp/stunload" -label "$label" -target "$target" -duration "${secs}s" "$@"
}

field() { # name line -> value
	echo "$2" | tr ' ' '\n' | sed -n "s|^$1=||p"
}

echo "== closed loop, ${secs}s"
o_max=$(run "talkpad " "$ours" -rate 0)
echo "$o_max"
if [ $have_coturn = 1 ]; then
	c_max=$(run "coturn  " "$theirs" -rate 0)
	echo "$c_max"
fi
echo "== open loop at ${rate}/s, ${secs}s"
o_lat=$(run "talkpad " "$ours" -rate "$rate")
echo "$o_lat"
if [ $have_coturn = 1 ]; then
	c_lat=$(run "coturn  " "$theirs" -rate "$rate")
	echo "$c_lat"
fi

if [ $have_coturn = 1 ]; then
	echo "== talkpad / coturn"
	awk -v o="$(field responses/s "$o_max")" -v c="$(field responses/s "$c_max")" \
		'BEGIN { printf "throughput ratio: %.2f (%s vs %s responses/s)\n", o / c, o, c }'
	echo "p99 at ${rate}/s: talkpad $(field p99 "$o_lat"), coturn $(field p99 "$c_lat")"
fi
