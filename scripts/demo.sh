#!/usr/bin/env bash
# demo: migrate a simulated vault of a few thousand Safes on the embedded
# default (in-process NATS JetStream and workers), then run it again to show
# that a converged vault takes 0 writes. Run it with `make demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

SAFES=${DEMO_SAFES:-3000}
LATENCY=${DEMO_LATENCY:-20ms}
BIN=./bin
work=$(mktemp -d "${TMPDIR:-/tmp}/safeperm-demo.XXXXXX")
sim_pid=
cleanup() {
	[[ -n $sim_pid ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Starting the PVWA simulator: $SAFES Safes, $LATENCY latency per request"
"$BIN/pvwasim" --addr 127.0.0.1:0 --safes "$SAFES" --seed 1 --latency "$LATENCY" --log-level warn >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do [[ -s $work/sim.out ]] && break; sleep 0.1; done
url=$(head -n1 "$work/sim.out")
[[ $url == http* ]] || { echo "pvwasim did not start:"; cat "$work/sim.err"; exit 1; }
admin=${url%/PasswordVault}/_admin
echo "PVWA: $url"

writes() { curl -fsS "$admin/stats" | sed -n 's/.*"memberWrites":{"total":\([0-9]*\).*/\1/p'; }
calls() { curl -fsS "$admin/stats" | sed -n 's/.*"requestsTotal":\([0-9]*\).*/\1/p'; }

# The password travels in the environment, never on the command line.
export SAFEPERM_PASSWORD=Cyberark1
run() {
	"$BIN/planner" run --pvwa-url "$url" --user Administrator \
		--data-dir "$work/data" --log-level error "$@"
}

say "Run 1: grant PSMAppUsers listAccounts+unlockAccounts on every Safe"
set +e
run --report "$work/report.csv"
rc=$?
set -e
echo "exit code: $rc (1 = some Safes failed: the simulated vault has Safes the API user may only read)"
echo "PVWA member writes: $(writes), PVWA requests: $(calls)"
echo "report: $(($(wc -l <"$work/report.csv") - 1)) rows; first lines:"
head -n 4 "$work/report.csv"

curl -fsS -X POST "$admin/reset-stats" >/dev/null
say "Run 2: the same job again on the converged vault"
set +e
run
rc2=$?
set -e
w=$(writes)
echo "exit code: $rc2"
echo "PVWA member writes on the re-run: $w (requests: $(calls))"
if [[ $w != 0 ]]; then
	echo "FAIL: the re-run wrote to a converged vault" >&2
	exit 1
fi
say "Converged: the re-run took 0 writes"
