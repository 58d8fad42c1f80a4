#!/usr/bin/env bash
# [WAIT=10] [WARMUP=1] zod_out_of_workers.sh BEFORE_DIR AFTER_DIR OUT_DIR [ROUNDS] [WORKER_COUNTS]
#
# RSS at rest, before/after keeping zod out of the reader workers (issue 11). Each run starts
# sipedge exactly as `deno task start --workers N` does (the task's command, run directly so
# that the measured process is sipedge itself, not the task runner), from the checkout's folder
# with its bundled config.toml; waits for "sipedge ready", then WAIT s; reads VmRSS/VmHWM
# (/proc/PID/status), Rss/Pss/Anonymous (/proc/PID/smaps_rollup) and the JS heaps from the
# control API's /metrics; stops it with SIGTERM. BEFORE and AFTER alternate, ROUNDS times (3),
# for each worker count (2 4). One warm-up run per checkout first (module cache), not recorded
# (WARMUP=0: none).
set -u
before=$1 after=$2 out=$3 rounds=${4:-3} counts=${5:-"2 4"} wait=${WAIT:-10}
mkdir -p "$out"
FLAGS="--unstable-net --allow-net --allow-read --allow-env --allow-ffi --v8-flags=--optimize-for-size"

run() { # run LABEL DIR WORKERS RECORD
  local label=$1 dir=$2 workers=$3 record=$4 log="$out/$1_w$3.log" pid i
  (cd "$dir" && exec deno run $FLAGS main.ts --config config.toml --workers "$workers") \
    > "$log" 2>&1 &
  pid=$!
  for i in $(seq 300); do
    grep -q "sipedge ready" "$log" && break
    kill -0 $pid 2>/dev/null || { echo "sipedge exited:"; cat "$log"; return 1; }
    sleep 0.1
  done
  sleep "$wait"
  if [ "$record" = 1 ]; then
    local rss hwm roll heaps
    rss=$(awk '/^VmRSS:/{print $2}' /proc/$pid/status)
    hwm=$(awk '/^VmHWM:/{print $2}' /proc/$pid/status)
    roll=$(awk '/^(Rss|Pss|Anonymous):/{printf "%s=%s ", $1, $2}' /proc/$pid/smaps_rollup)
    heaps=$(curl -s 127.0.0.1:8060/metrics | awk '/^sipedge_(worker|process)_heap_used_bytes/{
      printf "%s=%.2fMB ", $1, $2 / 1048576 }')
    echo "$(date -u +%FT%TZ) $label workers=$workers wait=${wait}s VmRSS_kB=$rss VmHWM_kB=$hwm $roll $heaps" \
      | tee -a "$out/results.txt"
  fi
  kill -TERM $pid
  wait $pid
}

for w in $counts; do
  if [ "${WARMUP:-1}" = 1 ]; then
    run before "$before" "$w" 0 && run after "$after" "$w" 0 || exit 1
  fi
  for r in $(seq "$rounds"); do
    run before "$before" "$w" 1 || exit 1
    run after "$after" "$w" 1 || exit 1
  done
done
