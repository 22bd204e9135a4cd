#!/usr/bin/env bash
# Load test of the talkpad relay against rtpengine (userspace forwarding) on
# this machine, with the same generator (bench/relayload) driving both over
# the ng protocol on loopback.
#
#   bench/relay.sh                      # default steps
#   STEPS=100,400,800 DURATION=5s bench/relay.sh
#
# For each N: N calls, 50 packets/s per direction, 160-byte payloads; prints
# forwarded packets/s, loss, one-way latency p50/p99 through the relay and
# the relay's CPU time per forwarded packet. Then, for both relays and as a
# ratio: the largest N with < 0.1% loss, and with p99 under 20 ms as well,
# counting rising N up to the first step that fails. Steps where the
# generator could not reach 99% of its send rate are marked
# generator-limited and do not count. A first run without any relay gives
# the generator's own latency, which the relays' figures include. rtpengine
# comes from Debian's rtpengine-daemon package; without it only our relay is
# measured.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-100,200,300,400,500,600,800,1000}
DURATION=${DURATION:-10s}
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/relayd" ./examples/relayd
go build -o "$tmp/relayload" ./bench/relayload

# Large socket buffers help both relays equally; raising the caps needs root.
if [ -w /proc/sys/net/core/rmem_max ]; then
	echo 8388608 >/proc/sys/net/core/rmem_max || true
	echo 8388608 >/proc/sys/net/core/wmem_max || true
fi

wait_ping() { # addr
	for _ in $(seq 50); do
		if "$tmp/relayload" -ng "$1" -sessions 1 -duration 1ms >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	echo "relay at $1 did not come up" >&2
	return 1
}

echo "== baseline: phones to each other without a relay (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
"$tmp/relayload" -direct -sessions "$STEPS" -duration "$DURATION" -label direct | grep -v '^RESULT'

echo "== talkpad relayd (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
"$tmp/relayd" -ng 127.0.0.1:22230 -rtp-addr 127.0.0.1 -ports 30000-40000 2>"$tmp/relayd.log" &
ours=$!
pids+=("$ours")
wait_ping 127.0.0.1:22230
"$tmp/relayload" -ng 127.0.0.1:22230 -sessions "$STEPS" -duration "$DURATION" -pid "$ours" -label talkpad | tee "$tmp/ours.txt"
kill "$ours"; wait "$ours" 2>/dev/null || true

if command -v rtpengine >/dev/null; then
	echo "== rtpengine $(rtpengine --version 2>&1 | head -1) (userspace forwarding; load average: $(cut -d' ' -f1-3 /proc/loadavg))"
	rtpengine --foreground --log-stderr --log-level=4 --interface=127.0.0.1 --listen-ng=127.0.0.1:22240 \
		--port-min=40002 --port-max=50000 --table=-1 --delete-delay=0 --pidfile="$tmp/rtpengine.pid" 2>"$tmp/rtpengine.log" &
	theirs=$!
	pids+=("$theirs")
	wait_ping 127.0.0.1:22240
	"$tmp/relayload" -ng 127.0.0.1:22240 -sessions "$STEPS" -duration "$DURATION" -pid "$theirs" -label rtpengine | tee "$tmp/theirs.txt"
	kill "$theirs"; wait "$theirs" 2>/dev/null || true
else
	echo "== rtpengine not installed (Debian package rtpengine-daemon): skipped"
fi

summary() { # label file key
	sed -n "s/^RESULT $1 $3=//p" "$2"
}
echo
for key in max_sessions_under_0.1pct_loss max_sessions_under_0.1pct_loss_p99_under_20ms; do
	a=$(summary talkpad "$tmp/ours.txt" "$key")
	b=""
	[ -f "$tmp/theirs.txt" ] && b=$(summary rtpengine "$tmp/theirs.txt" "$key")
	line="$key: talkpad=${a:-0} rtpengine=${b:-n/a}"
	if [ -n "$b" ] && [ "$b" -gt 0 ]; then
		line="$line ratio=$(awk -v a="${a:-0}" -v b="$b" 'BEGIN { printf "%.2f", a / b }')"
	fi
	echo "$line"
done
