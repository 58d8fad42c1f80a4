#!/usr/bin/env bash
# bench_tcp.sh — SIP over TCP benchmark: sipedge vs Kamailio 5.6 (stateless forward) under the
# same SIPp load, in one run.
#
#   SIPp UAC (-t t1, tests/sipp/options_uac.xml) --tcp--> PROXY --tcp--> SIPp UAS (options_uas.xml)
#            <------------------ 200 OK routed back by Via ------------------
#
# For each rate step and each proxy (the proxies take turns at each rate) it records: calls sent,
# answered (200) and failed, the delivered rate, and the proxy's CPU time over the step
# (utime+stime from /proc/PID/stat, summed over the proxy's process tree: all of Kamailio's
# processes; sipedge's deno process with all its threads). CPU cost is given per 1,000
# transactions, where one transaction is one OPTIONS request forwarded plus its 200 response
# forwarded back (2 SIP messages through the proxy). The UAC's, the UAS's and the rest of the
# machine's CPU are shown too, so that a saturated machine or other work is visible.
# It prints a table, the highest rate with zero failures per proxy, and sipedge/Kamailio ratios.
# Kamailio is skipped when it is not installed (apt-get install -y kamailio).
#
# Each load tool gets fresh proxies and UASes, and each proxy gets an unmeasured warm-up
# (V8 compiles sipedge's hot path while it runs).
#
# Usage: scripts/bench_tcp.sh            (from anywhere; `deno task bench` runs it too)
#
# Environment (all optional):
#   RATES="2000 4000 6000 8000 10000 12000"   transactions per second, one step each
#   STEP_SECONDS=10                           duration of each step
#   WARMUP_SECONDS=3                          unmeasured warm-up at the first rate (0 = none)
#   PROXIES="sipedge kamailio"                which proxies to run
#   WORKERS=2                                 sipedge --workers; Kamailio children/tcp_children
#   SIPEDGE_CMD='...'                         sipedge start command, run from the repo root;
#                                             {port} and {forward} are replaced, e.g.
#                                             './sipedge --listen tcp:127.0.0.1:{port}
#                                             --forward "{forward}" --workers 2'. Default: deno run
#                                             --unstable-net -A main.ts --listen ... --forward ...
#                                             --workers $WORKERS --log-level warning --control off
#   DENO=/path/to/deno                        deno binary (default: deno on PATH, else npx deno@2.9.6)
#   KAMAILIO=/usr/sbin/kamailio               Kamailio binary
#   KAMAILIO_MEM=tlsf                         Kamailio memory manager (-x): tlsf, fm or qm. The
#                                             default qm (q_malloc, a debugging allocator) spent
#                                             40-55 % of Kamailio's CPU in qm_malloc here: 91 % of
#                                             a core at 4000 tx/s vs 32 % with tlsf or fm
#   SIPLOAD=/path/to/sipload                  also run all steps with sipload uac (open loop, one
#                                             connection) against the same proxies and UAS
#   BENCH_TOOLS="sipp sipload"                load tools to run (default: sipp, plus sipload when
#                                             SIPLOAD is set)
#   STOP_ON_FAIL=1                            stop stepping a proxy after its first failed step
#   BENCH_MAX_SECONDS=1800                    overall time budget; steps that would exceed it are
#                                             skipped
#   BENCH_RESULTS=/path/file.tsv              also write the result rows as TSV
#   BENCH_KEEP=1                              keep the temp folder (logs, configs, SIPp stats)
set -euo pipefail

RATES="${RATES:-2000 4000 6000 8000 10000 12000}"
STEP_SECONDS="${STEP_SECONDS:-10}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
STOP_ON_FAIL="${STOP_ON_FAIL:-1}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
bench_defaults # PROXIES, WORKERS, BENCH_MAX_SECONDS, KAMAILIO, KAMAILIO_MEM, SIPLOAD
SCENARIOS="$REPO/tests/sipp"
bench_start bench

command -v sipp >/dev/null || die "sipp is not installed (apt-get install -y sip-tester)"

# ---------------------------------------------------------------------------------------------
# Ports and CPU accounting (Linux /proc)

# SIPp's own measure of a run's duration: CurrentTime - StartTime of the last -trace_stat row
# (each field is "date<TAB>time<TAB>epoch"), in seconds.
sipp_duration() { # FILE
  awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "StartTime") s = i; if ($i == "CurrentTime") c = i }; next }
    NF > 1 { split($s, a, "\t"); split($c, b, "\t"); d = b[3] - a[3] } END { printf "%.6f\n", d + 0 }' "$1" 2>/dev/null || echo 0
}

# Last-row value of a SIPp -trace_stat CSV column.
sipp_stat() { # FILE COLUMN
  awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    NF > 1 { v = $c } END { print (v == "" ? 0 : v) + 0 }' "$1" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------------------------
# Proxies and UASes

declare -A PROXY_PID PROXY_PORT UAS_PID UAS_PORT STOPPED UAS_RESTARTS
PASS="" # the current load tool, for log file names

# Starts the SIPp UAS for one proxy (on PORT, or a free port).
start_uas() { # NAME [PORT]
  local port="${2:-}"
  [ -n "$port" ] || port="$(free_port)"
  sipp -sf "$SCENARIOS/options_uas.xml" -t t1 -i 127.0.0.1 -p "$port" -max_socket 5000 \
    -nostdin -timeout "$BENCH_MAX_SECONDS" >>"$WORK/uas_${1}_$PASS.out" 2>&1 </dev/null &
  UAS_PID[$1]=$!
  PIDS+=("$!")
  UAS_PORT[$1]=$port
  wait_listening "$port" 10 "SIPp UAS for $1" "${UAS_PID[$1]}"
}

# SIPp ends when a TCP peer closes a connection with calls in flight ("Broken pipe"), which an
# overloaded proxy may do. Restart the UAS on its port before the next step.
ensure_uas() { # NAME
  kill -0 "${UAS_PID[$1]}" 2>/dev/null && return
  wait "${UAS_PID[$1]}" 2>/dev/null || true
  log "the SIPp UAS for $1 had exited: $(grep -a -m2 -iE 'broken|error|closed' \
    "$WORK/uas_${1}_$PASS.out" | tr '\n' ' ')— restarting it"
  UAS_RESTARTS[$1]=$((${UAS_RESTARTS[$1]:-0} + 1))
  start_uas "$1" "${UAS_PORT[$1]}"
}

start_sipedge() {
  local port forward cmd deno logfile="$WORK/sipedge_$PASS.log"
  port="$(free_port)"
  forward="sip:127.0.0.1:${UAS_PORT[sipedge]};transport=tcp"
  if [ -n "${SIPEDGE_CMD:-}" ]; then
    cmd="${SIPEDGE_CMD//\{port\}/$port}"
    cmd="${cmd//\{forward\}/$forward}"
  else
    deno="$(find_deno)"
    cmd="'$deno' $SIPEDGE_RUN main.ts --listen tcp:127.0.0.1:$port --forward '$forward'"
    cmd+=" --workers $WORKERS --log-level warning --control off"
  fi
  launch_sipedge "$cmd" "$logfile"
  PROXY_PID[sipedge]=$LAUNCHED_PID
  PROXY_PORT[sipedge]=$port
}

start_kamailio() {
  local port
  port="$(free_port)"
  launch_kamailio "$WORK/kamailio_$PASS" "$WORK/kamailio_$PASS.log" "${UAS_PORT[kamailio]}" 256 \
    --comment "Stateless forwarding proxy for the benchmark (generated by scripts/bench_tcp.sh)." \
    --listen "tcp:127.0.0.1:$port" --mpath "$(kamailio_moddir)"
  PROXY_PID[kamailio]=$LAUNCHED_PID
  PROXY_PORT[kamailio]=$port
  log "kamailio $(kamailio_version) (-x $KAMAILIO_MEM) listening on tcp:127.0.0.1:$port"
}

stop_proxy() { # NAME
  stop_pid "${PROXY_PID[$1]}"
  stop_pid "${UAS_PID[$1]}"
}

# ---------------------------------------------------------------------------------------------
# Steps

ROWS=()     # one line per measured step, fields as in the TSV header below
RECORD=1    # 0 during warm-up

# One SIPp UAC run at RATE for SECONDS.
step_sipp() { # PROXY RATE SECONDS
  local proxy=$1 rate=$2 calls=$(($2 * $3)) stf="$WORK/uac_$1_$2_$RANDOM.csv" rc=0
  sample "$proxy" 0
  timeout --kill-after=5 $(($3 + 60)) \
    sipp "127.0.0.1:${PROXY_PORT[$proxy]}" -sf "$SCENARIOS/options_uac.xml" \
    -key uas_hostport "127.0.0.1:${UAS_PORT[$proxy]}" -t t1 -i 127.0.0.1 -p "$(free_port)" \
    -m "$calls" -r "$rate" -l $((rate * 2)) -max_socket 5000 -recv_timeout 5s \
    -timeout $(($3 + 45))s -timeout_error -nostdin \
    -trace_stat -stf "$stf" >"${stf%.csv}.out" 2>&1 </dev/null || rc=$?
  sample "$proxy" 1
  local ok failed delivered
  ok="$(sipp_stat "$stf" 'SuccessfulCall(C)')"
  failed=$((calls - ok)) # failed, timed out or never sent: every call not answered with 200
  if [ "$rc" -ne 0 ]; then
    log "SIPp UAC exit code $rc ($proxy, $rate/s): $(grep -a -m3 -iE 'error|abort' \
      "${stf%.csv}.out" | tr '\n' ' ')"
    [ "$failed" -gt 0 ] || failed=1
  fi
  delivered="$(awk -v ok="$ok" -v d="$(sipp_duration "$stf")" 'BEGIN { print (d > 0 ? ok / d : 0) }')"
  emit_row sipp "$proxy" "$rate" "$calls" "$ok" "$failed" "$delivered"
}

# One sipload UAC run (open loop, one connection) at RATE for SECONDS.
step_sipload() { # PROXY RATE SECONDS
  local proxy=$1 rate=$2 out="$WORK/sipload_$1_$2_$RANDOM.out" line
  sample "$proxy" 0
  timeout --kill-after=5 $(($3 + 30)) \
    "$SIPLOAD" uac --proxy "127.0.0.1:${PROXY_PORT[$proxy]}" --conns 1 --rate "$rate" \
    --duration "$3" --method OPTIONS --ruri "sip:uas@127.0.0.1:${UAS_PORT[$proxy]}" \
    >"$out" 2>&1 </dev/null || true
  sample "$proxy" 1
  line="$(grep '^SIPLOAD mode=uac' "$out" | tail -1 || true)"
  local sent ok failed delivered
  delivered="$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$line")"
  sent="$(sed -n 's/.* sent=\([0-9]*\).*/\1/p' <<<"$line")"
  ok="$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$line")"
  failed="$(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$line")"
  [ -n "$line" ] || { sent=0; ok=0; failed=1; }
  emit_row sipload "$proxy" "$rate" "${sent:-0}" "${ok:-0}" "${failed:-1}" "${delivered:-0}"
}

# Records one result row from the samples; returns 1 if the step had failures.
emit_row() { # TOOL PROXY RATE SENT OK FAILED DELIVERED
  local row
  # CPU s per 1k tx: step_cpu's ms per transaction
  row="$(awk -v tool="$1" -v proxy="$2" -v rate="$3" -v sent="$4" -v ok="$5" -v failed="$6" \
    -v delivered="$7" 'BEGIN {
      printf "%s %s %d %d %d %d %.0f", tool, proxy, rate, sent, ok, failed, delivered
    }') $(step_cpu "$5" 1 %.4f)"
  if [ "$RECORD" = 1 ]; then
    ROWS+=("$row")
    log "$(awk '{ printf "%-7s %-8s target %6d/s: ok %7d failed %6d delivered %6d/s, proxy CPU %.2f s (%.1f %%), %.4f s per 1k tx; UAC %.0f %%, UAS %.0f %%, other %.0f %%", $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13 }' <<<"$row")"
  else
    log "$(awk '{ printf "warm-up %-8s %6d/s: ok %d failed %d", $2, $3, $5, $6 }' <<<"$row")"
  fi
  [ "$6" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------
# Run

# shellcheck disable=SC2119 # no Kamailio module to check beyond its base ones
select_proxies

TOOLS=(sipp)
[ -z "$SIPLOAD" ] || TOOLS+=(sipload)
# shellcheck disable=SC2206
[ -z "${BENCH_TOOLS:-}" ] || TOOLS=($BENCH_TOOLS)
for tool in "${TOOLS[@]}"; do
  case "$tool" in
    sipp) ;;
    sipload)
      [ -x "$SIPLOAD" ] || die "SIPLOAD=$SIPLOAD is not executable (build it with make in its folder)"
      ;;
    *) die "unknown load tool '$tool' (BENCH_TOOLS may hold sipp and sipload)" ;;
  esac
done

warn_load
STEP_BUDGET=$((STEP_SECONDS + 15))
START=$SECONDS
FIRST_RATE="${RATES%% *}"
log "rates: $RATES /s, $STEP_SECONDS s per step, proxies: ${ACTIVE[*]}, tools: ${TOOLS[*]}"
for tool in "${TOOLS[@]}"; do
  PASS=$tool
  for proxy in "${ACTIVE[@]}"; do
    STOPPED[$proxy]=0
    start_uas "$proxy"
    "start_$proxy"
  done
  if [ "$WARMUP_SECONDS" -gt 0 ]; then
    RECORD=0
    for proxy in "${ACTIVE[@]}"; do
      "step_$tool" "$proxy" "$FIRST_RATE" "$WARMUP_SECONDS" || true
      ensure_uas "$proxy"
    done
    RECORD=1
  fi
  for rate in $RATES; do
    for proxy in "${ACTIVE[@]}"; do
      [ "${STOPPED[$proxy]}" = 0 ] || continue
      if ! budget_left "$STEP_BUDGET"; then
        log "time budget BENCH_MAX_SECONDS=$BENCH_MAX_SECONDS reached: skipping $tool $proxy $rate/s"
        STOPPED[$proxy]=1
        continue
      fi
      if ! kill -0 "${PROXY_PID[$proxy]}" 2>/dev/null; then
        log "$proxy is no longer running:"
        tail -20 "$WORK/${proxy}_$PASS.log" >&2 || true
        STOPPED[$proxy]=1
        continue
      fi
      ensure_uas "$proxy"
      if ! "step_$tool" "$proxy" "$rate" "$STEP_SECONDS"; then
        [ "$STOP_ON_FAIL" = 1 ] && STOPPED[$proxy]=1
      fi
      sleep 1
    done
  done
  for proxy in "${ACTIVE[@]}"; do stop_proxy "$proxy"; done
done

# ---------------------------------------------------------------------------------------------
# Report

{
  echo
  echo "sipedge TCP benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs:" \
    "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  echo "load: UAC (one TCP connection) OPTIONS -> proxy -> SIPp UAS (options_uas.xml);" \
    "$STEP_SECONDS s per step; proxies with $WORKERS workers/children"
  echo "kamailio: stateless forward(), children=$WORKERS tcp_children=$WORKERS, -x $KAMAILIO_MEM"
  echo "tx = transaction = one OPTIONS forwarded + its 200 forwarded back (2 SIP messages)"
  echo "failed = calls not answered with 200 (failed, timed out or not sent)"
  echo "CPU s, proxy% = proxy utime+stime over the step (all processes/threads); % of one core."
  echo "UAC%, UAS% = the load tools; other% = all other processes (should be ~0);"
  echo "all% = every process on the machine (max $(nproc)00 %)"
  echo "load average: at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  printf '%-8s %-9s %9s %9s %9s %8s %12s %8s %7s %12s %6s %6s %7s %6s\n' tool proxy "target/s" \
    sent ok failed "delivered/s" "CPU s" "proxy%" "CPU s/1k tx" "UAC%" "UAS%" "other%" "all%"
  for row in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    printf '%-8s %-9s %9d %9d %9d %8d %12d %8.2f %7.1f %12.4f %6.0f %6.0f %7.0f %6.0f\n' $row
  done
  echo
  for proxy in "${ACTIVE[@]}"; do
    [ "${UAS_RESTARTS[$proxy]:-0}" = 0 ] ||
      echo "note: the SIPp UAS behind $proxy died ${UAS_RESTARTS[$proxy]} time(s) and was restarted"
  done
  echo "note: delivered well below target with 0 failed means the load generator (or the shared"
  echo "      CPUs) could not keep up, not that the proxy dropped calls"
  echo
  for tool in "${TOOLS[@]}"; do
    for proxy in "${ACTIVE[@]}"; do
      printf '%s\n' "${ROWS[@]}" | awk -v t="$tool" -v p="$proxy" '
        $1 == t && $2 == p && $6 == 0 && $7 > best { best = $7; target = $3; per1k = $10 }
        END { if (best > 0) printf "%-8s %-9s highest zero-failure step: target %d/s, delivered %d/s (%.4f CPU s per 1k tx)\n", t, p, target, best, per1k
              else printf "%-8s %-9s no step without failures\n", t, p }'
    done
    printf '%s\n' "${ROWS[@]}" | awk -v t="$tool" '
      $1 == t && $6 == 0 { if ($2 == "sipedge") s[$3] = $10; else if ($2 == "kamailio") k[$3] = $10 }
      $1 == t && $6 == 0 && $2 == "sipedge" && $7 > sbest { sbest = $7 }
      $1 == t && $6 == 0 && $2 == "kamailio" && $7 > kbest { kbest = $7 }
      END {
        n = 0
        for (r in s) if ((r in k) && k[r] > 0) { n++; rates[n] = r + 0 }
        if (n == 0) exit
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (rates[j] < rates[i]) { x = rates[i]; rates[i] = rates[j]; rates[j] = x }
        printf "%-8s sipedge/kamailio CPU per tx:", t
        for (i = 1; i <= n; i++) printf " %d/s %.2fx;", rates[i], s[rates[i]] / k[rates[i]]
        printf "\n"
        if (kbest > 0) printf "%-8s sipedge/kamailio highest zero-failure delivered rate: %.2fx\n", t, sbest / kbest
      }'
  done
}

if [ -n "${BENCH_RESULTS:-}" ]; then
  printf '%s\t' tool proxy target_per_s sent ok failed delivered_per_s proxy_cpu_s proxy_cpu_pct \
    proxy_cpu_s_per_1k_tx uac_cpu_pct uas_cpu_pct other_cpu_pct >"$BENCH_RESULTS"
  printf 'all_cpu_pct\n' >>"$BENCH_RESULTS"
  printf '%s\n' "${ROWS[@]}" | tr ' ' '\t' >>"$BENCH_RESULTS"
  log "results written to $BENCH_RESULTS"
fi
