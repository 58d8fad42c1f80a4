#!/usr/bin/env bash
# bench_flood_guard.sh — what the flood guard costs on the hot path: sipedge without and with
# [plugins.flood_guard], side by side in one run, under the same SIPp OPTIONS load.
#
#   SIPp UAC (-t t1, tests/sipp/options_uac.xml) --tcp--> sipedge off|on --tcp--> SIPp UAS
#
# Both proxies run at once (each with its own UAS, same config but the flood_guard table);
# at each rate they take turns, ROUNDS times, so that drift of the machine hits both alike. The
# guard's settings never ban the load (rate and burst far above it: every request takes the
# full path — parse cache, ban check, one token bucket take in the shared table). Reported per
# proxy and rate: transactions answered, failed, and sipedge's CPU (all threads, from
# /proc/PID/stat) per 1,000 transactions (one OPTIONS forwarded + its 200 forwarded back).
#
# Usage: scripts/bench_flood_guard.sh
# Environment: RATES="2000 4000" STEP_SECONDS=10 ROUNDS=3 WARMUP_SECONDS=3 WORKERS=2
#              DENO=/path/to/deno BENCH_KEEP=1
set -euo pipefail

RATES="${RATES:-2000 4000}"
STEP_SECONDS="${STEP_SECONDS:-10}"
ROUNDS="${ROUNDS:-3}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
WORKERS="${WORKERS:-2}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
SCENARIOS="$REPO/tests/sipp"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_bench_flood.XXXXXX")"
CLK_TCK="$(getconf CLK_TCK)"
PIDS=()
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM
command -v sipp >/dev/null || die "sipp is not installed (apt-get install -y sip-tester)"

declare -A PROXY_PID PROXY_PORT UAS_PID UAS_PORT

sipp_stat() { # FILE COLUMN
  awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    NF > 1 { v = $c } END { print (v == "" ? 0 : v) + 0 }' "$1" 2>/dev/null || echo 0
}

start_pair() { # NAME
  local name=$1 port uas deno
  uas="$(free_port)"
  sipp -sf "$SCENARIOS/options_uas.xml" -t t1 -i 127.0.0.1 -p "$uas" -max_socket 5000 \
    -nostdin -timeout 3600 >>"$WORK/uas_$name.out" 2>&1 </dev/null &
  UAS_PID[$name]=$!
  PIDS+=("$!")
  UAS_PORT[$name]=$uas
  wait_listening "$uas" 10 "SIPp UAS for $name" "${UAS_PID[$name]}"
  : >"$WORK/$name.toml"
  if [ "$name" = on ]; then
    printf '[plugins.flood_guard]\nrate = 1000000\nburst = 1000000\n' >"$WORK/$name.toml"
  fi
  port="$(free_port)"
  deno="$(find_deno)"
  launch_sipedge "'$deno' $SIPEDGE_RUN main.ts --config '$WORK/$name.toml' \
--listen tcp:127.0.0.1:$port --forward 'sip:127.0.0.1:$uas;transport=tcp' --workers $WORKERS \
--log-level warning --control off" "$WORK/sipedge_$name.log"
  PROXY_PID[$name]=$LAUNCHED_PID
  PROXY_PORT[$name]=$port
}

# Runs RATE tx/s for SECONDS against NAME; prints "answered failed cpu_seconds".
step() { # NAME RATE SECONDS
  local name=$1 rate=$2 calls=$(($2 * $3)) stf="$WORK/uac_$1_$2_$RANDOM.csv" t0 t1 ok
  t0="$(tree_ticks "${PROXY_PID[$name]}")"
  timeout --kill-after=5 $(($3 + 60)) sipp "127.0.0.1:${PROXY_PORT[$name]}" \
    -sf "$SCENARIOS/options_uac.xml" -key uas_hostport "127.0.0.1:${UAS_PORT[$name]}" -t t1 \
    -i 127.0.0.1 -p "$(free_port)" -m "$calls" -r "$rate" -l $((rate * 2)) -max_socket 5000 \
    -recv_timeout 5s -timeout $(($3 + 45))s -timeout_error -nostdin -trace_stat -stf "$stf" \
    >"${stf%.csv}.out" 2>&1 </dev/null || true
  t1="$(tree_ticks "${PROXY_PID[$name]}")"
  ok="$(sipp_stat "$stf" 'SuccessfulCall(C)')"
  echo "$ok $((calls - ok)) $(awk -v a="$t0" -v b="$t1" -v k="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / k }')"
}

start_pair off
start_pair on
if [ "$WARMUP_SECONDS" -gt 0 ]; then
  first="${RATES%% *}"
  for name in off on; do
    log "warm-up $name at $first/s for ${WARMUP_SECONDS}s"
    step "$name" "$first" "$WARMUP_SECONDS" >/dev/null
  done
fi

declare -A OK FAIL CPU
for rate in $RATES; do
  for round in $(seq "$ROUNDS"); do
    for name in off on; do
      read -r ok failed cpu < <(step "$name" "$rate" "$STEP_SECONDS")
      log "round $round: $name at $rate/s: $ok answered, $failed failed, ${cpu}s CPU"
      OK[$name,$rate]=$((${OK[$name,$rate]:-0} + ok))
      FAIL[$name,$rate]=$((${FAIL[$name,$rate]:-0} + failed))
      CPU[$name,$rate]="$(awk -v a="${CPU[$name,$rate]:-0}" -v b="$cpu" 'BEGIN { print a + b }')"
    done
  done
done

printf '\n| rate (tx/s) | flood_guard | answered | failed | sipedge CPU ms / 1000 tx |\n'
printf '|---:|---|---:|---:|---:|\n'
for rate in $RATES; do
  for name in off on; do
    printf '| %s | %s | %s | %s | %s |\n' "$rate" "$name" "${OK[$name,$rate]}" \
      "${FAIL[$name,$rate]}" \
      "$(awk -v c="${CPU[$name,$rate]}" -v n="${OK[$name,$rate]}" 'BEGIN { printf "%.1f", n ? c * 1e6 / n : 0 }')"
  done
done
for rate in $RATES; do
  awk -v r="$rate" -v a="${CPU[off,$rate]}" -v na="${OK[off,$rate]}" -v b="${CPU[on,$rate]}" \
    -v nb="${OK[on,$rate]}" 'BEGIN { x = a * 1e6 / na; y = b * 1e6 / nb;
      printf "at %s tx/s: on/off = %.3f (%+.1f ms per 1000 tx, %+.1f us per transaction)\n", r, y / x, y - x, (y - x) }'
done
