#!/usr/bin/env bash
# run_all.sh — the runtime comparison of issue 13 (runtime_choice.md), every mode in turn:
# idle_runtime.sh (RSS per idle WebSocket connection, N connections), then cpu_runtime.sh (CPU
# per message pair at RATE), then sni_check.ts. RESULT lines go to stdout.
#
#   bash docs/benchmarks/issue13/run_all.sh [N] [RATE]
#
# Environment: MODES (default: serve serve_tls raw raw_tls node_tls node_net npm_ws npm_wss),
# ROUNDS (idle runs per mode, default 1), SKIP_CPU=1, SKIP_IDLE=1.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N="${1:-5000}"
RATE="${2:-5000}"
MODES="${MODES:-serve serve_tls raw raw_tls node_tls node_net npm_ws npm_wss}"
ROUNDS="${ROUNDS:-1}"
echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC'), deno $(deno --version | head -1 | awk '{print $2}')," \
  "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "${SKIP_IDLE:-0}" != 1 ]; then
  for round in $(seq "$ROUNDS"); do
    for mode in $MODES; do
      bash "$HERE/idle_runtime.sh" "$mode" "$N" 5 2>&1 | grep -E '^RESULT|error|failed' |
        sed "s/^RESULT /RESULT idle round=$round /"
    done
  done
fi
if [ "${SKIP_CPU:-0}" != 1 ]; then
  for mode in $MODES; do
    bash "$HERE/cpu_runtime.sh" "$mode" "$RATE" 10 10 2>&1 | grep -E '^RESULT|error|failed' |
      sed 's/^RESULT /RESULT cpu /'
  done
fi
deno run -A --no-lock "$HERE/sni_check.ts"
echo "# done $(date -u '+%H:%M:%S UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
