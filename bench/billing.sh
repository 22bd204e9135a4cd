#!/usr/bin/env bash
# Cost of the billing engine with many simultaneous calls on one node, on
# the memory store and on PostgreSQL (bench/billingload).
#
#   bench/billing.sh                                  # 10,000 calls, both stores
#   CALLS=2000 DURATION=30s bench/billing.sh
#   STORES=memory bench/billing.sh
#   WINDOWS="60s 120s" bench/billing.sh               # compare reservation windows
#
# For each store and window: keeps CALLS calls live (mean HOLD, each on its
# own account, a SHORT fraction of them running out of money mid-call) for
# DURATION after a RAMP, and prints the database statements and
# transactions per second, the CPU of the engine process and of the
# PostgreSQL server processes as a percentage of one core, and how late the
# calls whose money ran out were cut off (p50/p99/max). The PostgreSQL run
# needs TALKPAD_TEST_POSTGRES (default: the local server used by the tests)
# and works in a throw-away schema. Run it on a quiet machine: the CPU
# figures count everything the PostgreSQL processes do meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."

CALLS=${CALLS:-10000}
RAMP=${RAMP:-30s}
DURATION=${DURATION:-60s}
HOLD=${HOLD:-180s}
SHORT=${SHORT:-0.1}
WINDOWS=${WINDOWS:-60s}
STORES=${STORES:-memory postgres}
EXEC_MODES=${EXEC_MODES:-exec}
export TALKPAD_TEST_POSTGRES=${TALKPAD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/billingload" ./bench/billingload

for store in $STORES; do
	modes=exec
	[ "$store" = postgres ] && modes=$EXEC_MODES
	for mode in $modes; do
		for window in $WINDOWS; do
			echo "== $store, window $window, exec mode $mode, $CALLS calls (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
			"$tmp/billingload" -store "$store" -calls "$CALLS" -ramp "$RAMP" -duration "$DURATION" \
				-hold "$HOLD" -short "$SHORT" -window "$window" -exec-mode "$mode"
		done
	done
done
