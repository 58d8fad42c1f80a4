#!/usr/bin/env bash
# soak.sh — the soak test of "the edge stays up": one sipedge (2 workers, tcp + tls, control API,
# worker_hang_timeout = 2s, the fault router plugin of tests/plugins/fault.ts) under steady load
# and faults for --minutes, with one forced worker hang in the middle. scripts/soak.ts is the
# load and fault generator (persistent TCP/TLS clients at --rate tx/s, TLS handshake churn, idle
# connection waves, RST / slowloris / stalled-upstream faults, a reload every minute) and writes
# a CSV sample every 5 s; at the end a chart (gnuplot, when installed) and a pass/fail summary
# in markdown for BENCHMARKS.md.
#
# Usage: bash scripts/soak.sh [--minutes 30] [--out DIR] [--rate 200] [--hang-ms 4000]
#                             [--no-chart]
#
#   --minutes N    run length (default 30); the hang is at N/2, RSS is fitted after the first 20 %
#   --out DIR      where soak.csv, results.json, summary.md, soak.png and the logs go (default:
#                  a new folder under ${TMPDIR:-/tmp})
#   --rate N       transactions per second of the persistent clients (default 200)
#   --hang-ms N    how long the forced hang blocks worker 1's event loop (default 4000). It must
#                  end before worker_hang_timeout (2 s) + the supervisor's 3 s grace for a
#                  terminated thread: a longer one (6000) is taken for a thread that cannot be
#                  stopped and sipedge exits with status 70 (on_stuck_worker = exit, by design).
#   --no-chart     skip the chart
#
# Exit status: 0 PASS, 1 FAIL, 2 usage or setup error. Environment: DENO (deno binary),
# SOAK_KEEP=1 keeps the temp folder (config, certificate).
set -euo pipefail

MINUTES=30
OUT=""
RATE=200
HANG_MS=4000
CHART=1
ORIG_ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
  --minutes) MINUTES="${2:?--minutes N}"; shift 2 ;;
  --out) OUT="${2:?--out DIR}"; shift 2 ;;
  --rate) RATE="${2:?--rate N}"; shift 2 ;;
  --hang-ms) HANG_MS="${2:?--hang-ms N}"; shift 2 ;;
  --no-chart) CHART=0; shift ;;
  -h | --help) sed -n '2,27p' "$0"; exit 0 ;;
  *) echo "soak.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "$MINUTES" =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "soak.sh: --minutes: a number" >&2; exit 2; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_soak_work.XXXXXX")"
[ -n "$OUT" ] || OUT="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_soak.XXXXXX")"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PIDS=()
BENCH_KEEP="${SOAK_KEEP:-0}"
DRIVE_PID=""

soak_cleanup() {
  [ -z "$DRIVE_PID" ] || ! kill -0 "$DRIVE_PID" 2>/dev/null || kill -TERM "$DRIVE_PID" 2>/dev/null || true
  cleanup
}
trap soak_cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

DENO="$(find_deno)"
STARTED="$(date -u '+%Y-%m-%d %H:%M')"
TCP_PORT="$(free_port)"
TLS_PORT="$(free_port)"
CONTROL_PORT="$(free_port)"
UAS_PORT="$(free_port)"
STALL_PORT="$(free_port)"
SOAK=("$DENO" run --quiet --unstable-net -A "$REPO/scripts/soak.ts")

log "soak: $MINUTES min, $RATE tx/s, out $OUT"
"${SOAK[@]}" config --work "$WORK" --tcp-port "$TCP_PORT" --tls-port "$TLS_PORT" \
  --control-port "$CONTROL_PORT" --uas-port "$UAS_PORT" --stall-port "$STALL_PORT" \
  --hang-timeout 2 --message-read-timeout 2 >/dev/null

MAX_S="$(awk -v m="$MINUTES" 'BEGIN { printf "%d", m * 60 + 600 }')"
"${SOAK[@]}" uas --port "$UAS_PORT" --max-seconds "$MAX_S" >"$OUT/uas.log" 2>&1 </dev/null &
UAS_PID=$!
PIDS+=("$UAS_PID")
wait_listening "$UAS_PORT" 30 "soak UAS" "$UAS_PID"

launch_sipedge "\"$DENO\" $SIPEDGE_RUN main.ts --config \"$WORK/sipedge.toml\"" \
  "$OUT/sipedge.log"
SIPEDGE_PID="$LAUNCHED_PID"

# The generator runs in the background so that a signal reaches our trap at once.
"${SOAK[@]}" drive --work "$WORK" --out "$OUT" --pid "$SIPEDGE_PID" --minutes "$MINUTES" \
  --rate "$RATE" --hang-ms "$HANG_MS" --clk-tck "$(getconf CLK_TCK)" \
  --log "$OUT/sipedge.log" </dev/null > >(tee "$OUT/drive.log" >&2) 2>&1 &
DRIVE_PID=$!
PIDS+=("$DRIVE_PID")
DRIVE_RC=0
wait "$DRIVE_PID" || DRIVE_RC=$?
DRIVE_PID=""
[ "$DRIVE_RC" = 0 ] || log "the generator exited with status $DRIVE_RC"

# sipedge must still be running; then it must stop cleanly on SIGTERM.
SIPEDGE_ALIVE=no
SIPEDGE_EXIT="?"
if kill -0 "$SIPEDGE_PID" 2>/dev/null; then
  SIPEDGE_ALIVE=yes
  kill -TERM "$SIPEDGE_PID"
  for _ in $(seq 150); do
    kill -0 "$SIPEDGE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$SIPEDGE_PID" 2>/dev/null; then
    kill -KILL "$SIPEDGE_PID" 2>/dev/null || true
    SIPEDGE_EXIT="killed (no exit 15 s after SIGTERM)"
    wait "$SIPEDGE_PID" 2>/dev/null || true
  else
    SIPEDGE_EXIT=0
    wait "$SIPEDGE_PID" || SIPEDGE_EXIT=$?
  fi
else
  SIPEDGE_EXIT=0
  wait "$SIPEDGE_PID" || SIPEDGE_EXIT=$?
  log "sipedge had exited during the run (status $SIPEDGE_EXIT)"
fi
stop_pid "$UAS_PID"

CHART_PATH=""
CHART_NOTE=""
if [ "$CHART" = 0 ]; then
  CHART_NOTE="--no-chart"
elif ! command -v gnuplot >/dev/null; then
  CHART_NOTE="gnuplot is not installed: apt-get install -y gnuplot-nox"
  log "no chart: $CHART_NOTE"
elif [ -s "$OUT/soak.csv" ]; then
  # The hang: when the spin request was sent (results.json), else the CSV row that marks it.
  HANG_T="$(sed -n 's/.*"sentAtS": \([0-9.]*\).*/\1/p' "$OUT/results.json" 2>/dev/null | head -1 || true)"
  [ -n "$HANG_T" ] || HANG_T="$(awk -F, 'NR > 1 && $16 == 1 { print $1; exit }' "$OUT/soak.csv" || true)"
  [ -n "$HANG_T" ] || HANG_T=-1
  if gnuplot -e "csv='$OUT/soak.csv'; png='$OUT/soak.png'; hang_t=$HANG_T; title='sipedge soak, $MINUTES min, $RATE tx/s ($STARTED UTC)'" \
    "$REPO/scripts/soak_chart.gnuplot" 2>"$OUT/gnuplot.log"; then
    CHART_PATH="$OUT/soak.png"
  else
    CHART_NOTE="gnuplot failed: $(head -3 "$OUT/gnuplot.log" | tr '\n' ' ')"
    log "$CHART_NOTE"
  fi
else
  CHART_NOTE="no samples"
fi

RC=0
"${SOAK[@]}" report --out "$OUT" --chart "$CHART_PATH" --chart-note "$CHART_NOTE" \
  --command "bash scripts/soak.sh${ORIG_ARGS:+ $ORIG_ARGS}" --started "$STARTED" \
  --sipedge-exit "$SIPEDGE_EXIT" --sipedge-alive "$SIPEDGE_ALIVE" || RC=$?
[ "$RC" = 0 ] || [ "$RC" = 1 ] || RC=2
exit "$RC"
