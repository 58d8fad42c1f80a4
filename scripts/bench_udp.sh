#!/usr/bin/env bash
# bench_udp.sh — SIP over UDP benchmark: sipedge vs Kamailio 5.6 (stateless forward) under the
# same SIPp load, in one run.
#
#   SIPp UAC (-t u1, tests/sipp/options_uac_udp.xml) --udp--> PROXY --udp--> SIPp UAS (options_uas.xml)
#            <------------------ 200 OK routed back by Via ------------------
#
# For each rate step and each proxy (the proxies take turns at each rate) it records: calls sent,
# answered (200) and failed, the delivered rate, SIPp's retransmissions (the UAC retransmits an
# OPTIONS not answered within T1 = 500 ms, doubling; a call not answered within 5 s fails), the
# kernel's UDP receive-buffer drops over the step (datagrams lost because a socket's buffer was
# full) at the proxy's socket and at the UAS's socket (/proc/net/udp "drops"), and on the rest of
# the machine (/proc/net/snmp Udp RcvbufErrors minus those two: the UAC's socket, or other
# programs' sockets), and the proxy's CPU time over the step (utime+stime from /proc/PID/stat, summed
# over the proxy's process tree: all of Kamailio's processes; sipedge's deno process with all its
# threads). CPU cost is given per 1,000 transactions (one OPTIONS forwarded plus its 200
# forwarded back: 2 SIP messages through the proxy). It prints a table (also as markdown), the
# highest rate with zero failures per proxy and sipedge/Kamailio ratios. Kamailio is skipped when
# it is not installed (apt-get install -y kamailio).
#
# sipedge binds each UDP address in ONE reader worker (Deno has no SO_REUSEPORT for UDP; see
# plugins/udp.ts), so its UDP receive path runs on one thread whatever --workers says. Kamailio
# runs `children` UDP receiver processes on its one UDP socket.
#
# Usage: bash scripts/bench_udp.sh        (from anywhere)
#
# Environment (all optional):
#   RATES="2000 10000 20000"         transactions per second, one step each
#   STEP_SECONDS=10                  duration of each step
#   WARMUP_SECONDS=3                 unmeasured warm-up at the first rate (0 = none)
#   PROXIES="sipedge kamailio"       which proxies to run
#   WORKERS=2                        sipedge --workers; Kamailio children (UDP receivers)
#   STOP_ON_FAIL=0                   1: stop stepping a proxy after its first failed step
#   DENO=/path/to/deno               deno binary (default: deno on PATH, else npx deno@2.9.6)
#   KAMAILIO=/usr/sbin/kamailio      Kamailio binary
#   KAMAILIO_MEM=tlsf                Kamailio memory manager (-x), as in bench_tcp.sh
#   BENCH_MAX_SECONDS=900            overall time budget; steps that would exceed it are skipped
#   BENCH_MARKDOWN=/path/file.md     also write the table as markdown there
#   BENCH_KEEP=1                     keep the temp folder (logs, configs, SIPp stats)
set -euo pipefail

RATES="${RATES:-2000 10000 20000}"
STEP_SECONDS="${STEP_SECONDS:-10}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
PROXIES="${PROXIES:-sipedge kamailio}"
WORKERS="${WORKERS:-2}"
STOP_ON_FAIL="${STOP_ON_FAIL:-0}"
BENCH_MAX_SECONDS="${BENCH_MAX_SECONDS:-900}"
KAMAILIO="${KAMAILIO:-$(command -v kamailio || echo /usr/sbin/kamailio)}"
KAMAILIO_MEM="${KAMAILIO_MEM:-tlsf}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
SCENARIOS="$REPO/tests/sipp"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_bench_udp.XXXXXX")"
CLK_TCK="$(getconf CLK_TCK)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
PIDS=() # every background process we started, killed on exit
# shellcheck disable=SC2034 # used by bench_lib.sh's sample()
declare -A PROXY_PID PROXY_PORT UAS_PID UAS_PORT STOPPED

trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

command -v sipp >/dev/null || die "sipp is not installed (apt-get install -y sip-tester)"

# ---------------------------------------------------------------------------------------------
# UDP ports (bench_lib.sh's free_port checks TCP only)

# True if any UDP socket has PORT as its local port, from /proc/net/udp{,6}.
udp_port_used() { # PORT
  local hex
  hex="$(printf '%04X' "$1")"
  cat /proc/net/udp /proc/net/udp6 2>/dev/null |
    awk -v p="$hex" 'NR > 0 { n = split($2, a, ":"); if (a[n] == p) found = 1 } END { exit !found }'
}

# A port free for TCP and UDP.
free_udp_port() {
  local port
  for _ in $(seq 50); do
    port="$(free_port)"
    udp_port_used "$port" || { echo "$port"; return; }
  done
  die "no free UDP port found"
}

wait_udp_bound() { # PORT SECONDS NAME PID
  local deadline=$((SECONDS + $2))
  until udp_port_used "$1"; do
    kill -0 "$4" 2>/dev/null || die "$3 exited before binding udp port $1"
    [ "$SECONDS" -lt "$deadline" ] || die "$3 has not bound udp 127.0.0.1:$1 after $2 s"
    sleep 0.05
  done
}

# Receive-buffer drops so far of the UDP sockets bound to 127.0.0.1:PORT (/proc/net/udp "drops").
udp_socket_drops() { # PORT
  awk -v p="$(printf '0100007F:%04X' "$1")" 'NR > 1 && $2 == p { d += $NF } END { print d + 0 }' \
    /proc/net/udp 2>/dev/null || echo 0
}

# "TID TICKS" (utime+stime) of every thread of every process in the tree under PID.
thread_ticks() { # PID
  local pid
  for pid in $(tree_pids "$1"); do
    cat /proc/"$pid"/task/[0-9]*/stat 2>/dev/null
  done | awk '{ rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); print $1, f[12] + f[13] }'
}

# The most CPU ticks one thread used between two thread_ticks snapshots (files).
busiest_thread() { # BEFORE AFTER
  awk 'NR == FNR { before[$1] = $2; next } { d = $2 - before[$1]; if (d > max) max = d }
    END { print max + 0 }' "$1" "$2"
}

# The machine's UDP receive-buffer drops so far (Udp: RcvbufErrors in /proc/net/snmp).
udp_rcvbuf_errors() {
  awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] + 0 }' \
    /proc/net/snmp 2>/dev/null || echo 0
}

# SIPp's own measure of a run's duration (CurrentTime - StartTime of the last -trace_stat row).
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

start_uas() { # NAME
  local port
  port="$(free_udp_port)"
  sipp -sf "$SCENARIOS/options_uas.xml" -t u1 -i 127.0.0.1 -p "$port" -nostdin \
    -timeout "$BENCH_MAX_SECONDS" >>"$WORK/uas_$1.out" 2>&1 </dev/null &
  UAS_PID[$1]=$!
  PIDS+=("$!")
  UAS_PORT[$1]=$port
  wait_udp_bound "$port" 10 "SIPp UAS for $1" "${UAS_PID[$1]}"
}

start_sipedge() {
  local port deno
  port="$(free_udp_port)"
  deno="$(find_deno)"
  launch_sipedge "'$deno' $SIPEDGE_RUN main.ts --listen udp:127.0.0.1:$port \
--forward 'sip:127.0.0.1:${UAS_PORT[sipedge]};transport=udp' --workers $WORKERS \
--log-level warning --control off" "$WORK/sipedge.log"
  PROXY_PID[sipedge]=$LAUNCHED_PID
  PROXY_PORT[sipedge]=$port
}

start_kamailio() {
  local port dir="$WORK/kamailio"
  port="$(free_udp_port)"
  mkdir -p "$dir"
  cat >"$dir/kamailio.cfg" <<EOF
#!KAMAILIO
# Stateless forwarding proxy over UDP for the benchmark (generated by scripts/bench_udp.sh).
debug=1
log_stderror=yes
fork=yes
children=$WORKERS
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:$port
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
request_route {
  if (!mf_process_maxfwd_header("10")) {
    sl_send_reply("483", "Too Many Hops");
    exit;
  }
  \$du = "sip:127.0.0.1:${UAS_PORT[kamailio]};transport=udp";
  forward();
  exit;
}
EOF
  "$KAMAILIO" -f "$dir/kamailio.cfg" -DD -E -Y "$dir" -m 256 -M 8 -x "$KAMAILIO_MEM" \
    >"$WORK/kamailio.log" 2>&1 </dev/null &
  PROXY_PID[kamailio]=$!
  PIDS+=("$!")
  PROXY_PORT[kamailio]=$port
  wait_udp_bound "$port" 15 kamailio "${PROXY_PID[kamailio]}"
  # The socket is bound before the receivers are forked: give them a moment.
  sleep 1
  kill -0 "${PROXY_PID[kamailio]}" 2>/dev/null || die "kamailio exited: $(tail -5 "$WORK/kamailio.log")"
  log "kamailio $("$KAMAILIO" -v | head -1 | awk '{print $3}') (-x $KAMAILIO_MEM, children=$WORKERS)" \
    "listening on udp:127.0.0.1:$port, $(tree_pids "${PROXY_PID[kamailio]}" | wc -l) processes"
}

# ---------------------------------------------------------------------------------------------
# Steps

ROWS=()  # one line per measured step
RECORD=1 # 0 during warm-up

# One SIPp UAC run at RATE for SECONDS; returns 1 if the step had failures.
step() { # PROXY RATE SECONDS
  local proxy=$1 rate=$2 calls=$(($2 * $3)) stf="$WORK/uac_$1_$2_$RANDOM.csv" rc=0 r0 r1 p0 p1 u0 u1
  r0="$(udp_rcvbuf_errors)"
  p0="$(udp_socket_drops "${PROXY_PORT[$proxy]}")"
  u0="$(udp_socket_drops "${UAS_PORT[$proxy]}")"
  thread_ticks "${PROXY_PID[$proxy]}" >"$WORK/threads0"
  sample "$proxy" 0
  timeout --kill-after=5 $(($3 + 60)) \
    sipp "127.0.0.1:${PROXY_PORT[$proxy]}" -sf "$SCENARIOS/options_uac_udp.xml" \
    -key uas_hostport "127.0.0.1:${UAS_PORT[$proxy]}" -t u1 -i 127.0.0.1 -p "$(free_udp_port)" \
    -m "$calls" -r "$rate" -l $((rate * 2)) -recv_timeout 5s \
    -timeout $(($3 + 45))s -timeout_error -nostdin \
    -trace_stat -stf "$stf" >"${stf%.csv}.out" 2>&1 </dev/null || rc=$?
  sample "$proxy" 1
  thread_ticks "${PROXY_PID[$proxy]}" >"$WORK/threads1"
  r1="$(udp_rcvbuf_errors)"
  p1="$(udp_socket_drops "${PROXY_PORT[$proxy]}")"
  u1="$(udp_socket_drops "${UAS_PORT[$proxy]}")"
  local ok failed delivered retrans
  ok="$(sipp_stat "$stf" 'SuccessfulCall(C)')"
  retrans="$(sipp_stat "$stf" 'Retransmissions(C)')"
  failed=$((calls - ok)) # failed, timed out or never sent: every call not answered with 200
  if [ "$rc" -ne 0 ]; then
    log "SIPp UAC exit code $rc ($proxy, $rate/s): $(grep -a -m3 -iE 'error|abort' \
      "${stf%.csv}.out" | tr '\n' ' ')"
    [ "$failed" -gt 0 ] || failed=1
  fi
  delivered="$(awk -v ok="$ok" -v d="$(sipp_duration "$stf")" 'BEGIN { print (d > 0 ? ok / d : 0) }')"
  local row
  row="$(awk -v proxy="$proxy" -v rate="$rate" -v sent="$calls" -v ok="$ok" -v failed="$failed" \
    -v delivered="$delivered" -v retrans="$retrans" -v pdrops=$((p1 - p0)) -v udrops=$((u1 - u0)) \
    -v odrops=$((r1 - r0 - (p1 - p0) - (u1 - u0))) \
    -v top="$(busiest_thread "$WORK/threads0" "$WORK/threads1")" -v t0="$S_T0" \
    -v t1="$S_T1" -v c0="$S_C0" -v c1="$S_C1" -v u0="$S_U0" -v u1="$S_U1" -v h0="$S_A0" \
    -v h1="$S_A1" -v g0="$S_G0" -v g1="$S_G1" -v hz="$CLK_TCK" '
    function pct(x) { return wall > 0 ? 100 * x / wall : 0 }
    BEGIN {
      wall = (t1 - t0) / 1e9
      cpu = (c1 - c0) / hz; uas = (u1 - u0) / hz; host = (h1 - h0) / hz; uac = g1 - g0
      if (uas < 0) uas = 0
      if (odrops < 0) odrops = 0
      other = host - cpu - uas - uac
      if (other < 0) other = 0
      printf "%s %d %d %d %d %.0f %d %d %d %d %.2f %.1f %.1f %.4f %.1f %.1f %.1f %.1f", proxy,
        rate, sent, ok, failed, delivered, retrans, pdrops, udrops, odrops, cpu, pct(cpu),
        pct(top / hz),
        (ok > 0 ? cpu * 1000 / ok : 0), pct(uac), pct(uas), pct(other), pct(host)
    }')"
  if [ "$RECORD" = 1 ]; then
    ROWS+=("$row")
    log "$(awk '{ printf "%-8s target %6d/s: ok %7d failed %6d delivered %6d/s, retrans %d, drops proxy %d UAS %d other %d, proxy CPU %.2f s (%.1f %%, busiest thread %.1f %%), %.4f s per 1k tx; UAC %.0f %%, UAS %.0f %%, other %.0f %%, all %.0f %%", $1, $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18 }' <<<"$row")"
  else
    log "$(awk '{ printf "warm-up %-8s %6d/s: ok %d failed %d retrans %d", $1, $2, $4, $5, $7 }' <<<"$row")"
  fi
  [ "$failed" -eq 0 ]
}

# ---------------------------------------------------------------------------------------------
# Run

select_proxies

if awk '{ exit !($1 > 0.5) }' <<<"$LOAD_START"; then
  log "warning: load average is $LOAD_START before the run: other work on this machine skews the figures"
fi
STEP_BUDGET=$((STEP_SECONDS + 15))
START=$SECONDS
FIRST_RATE="${RATES%% *}"
log "rates: $RATES /s, $STEP_SECONDS s per step, proxies: ${ACTIVE[*]}"
for proxy in "${ACTIVE[@]}"; do
  STOPPED[$proxy]=0
  start_uas "$proxy"
  "start_$proxy"
done
if [ "$WARMUP_SECONDS" -gt 0 ]; then
  RECORD=0
  for proxy in "${ACTIVE[@]}"; do step "$proxy" "$FIRST_RATE" "$WARMUP_SECONDS" || true; done
  RECORD=1
fi
for rate in $RATES; do
  for proxy in "${ACTIVE[@]}"; do
    [ "${STOPPED[$proxy]}" = 0 ] || continue
    if [ $((SECONDS - START + STEP_BUDGET)) -gt "$BENCH_MAX_SECONDS" ]; then
      log "time budget BENCH_MAX_SECONDS=$BENCH_MAX_SECONDS reached: skipping $proxy $rate/s"
      STOPPED[$proxy]=1
      continue
    fi
    for pid in "${PROXY_PID[$proxy]}" "${UAS_PID[$proxy]}"; do
      if ! kill -0 "$pid" 2>/dev/null; then
        log "$proxy or its UAS is no longer running"
        tail -20 "$WORK/$proxy.log" >&2 || true
        STOPPED[$proxy]=1
      fi
    done
    [ "${STOPPED[$proxy]}" = 0 ] || continue
    if ! step "$proxy" "$rate" "$STEP_SECONDS"; then
      [ "$STOP_ON_FAIL" = 1 ] && STOPPED[$proxy]=1
    fi
    sleep 2 # retransmissions and late answers of the step die down
  done
done
for proxy in "${ACTIVE[@]}"; do
  stop_pid "${PROXY_PID[$proxy]}"
  stop_pid "${UAS_PID[$proxy]}"
done

# ---------------------------------------------------------------------------------------------
# Report

HEADER=(proxy "target/s" sent ok failed "delivered/s" retrans "drops proxy" "drops UAS"
  "drops other" "CPU s" "proxy%" "top thread%" "CPU s/1k tx" "UAC%" "UAS%" "other%" "all%")
markdown() {
  printf '| %s ' "${HEADER[@]}"
  printf '|\n'
  printf '|%s' "---" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" "---:" \
    "---:" "---:" "---:" "---:" "---:" "---:"
  printf '|\n'
  for row in "${ROWS[@]}"; do
    # shellcheck disable=SC2086
    printf '| %s | %d | %d | %d | %d | %d | %d | %d | %d | %d | %.2f | %.1f | %.1f | %.4f | %.0f | %.0f | %.0f | %.0f |\n' $row
  done
}
summary() {
  for proxy in "${ACTIVE[@]}"; do
    printf '%s\n' "${ROWS[@]}" | awk -v p="$proxy" '
      $1 == p && $5 == 0 && $6 > best { best = $6; target = $2; per1k = $14 }
      END { if (best > 0) printf "%-9s highest zero-failure step: target %d/s, delivered %d/s (%.4f CPU s per 1k tx)\n", p, target, best, per1k
            else printf "%-9s no step without failures\n", p }'
  done
  printf '%s\n' "${ROWS[@]}" | awk '
    { if ($1 == "sipedge") s[$2] = $14; else if ($1 == "kamailio") k[$2] = $14 }
    END {
      n = 0
      for (r in s) if ((r in k) && k[r] > 0) { n++; rates[n] = r + 0 }
      if (n == 0) exit
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (rates[j] < rates[i]) { x = rates[i]; rates[i] = rates[j]; rates[j] = x }
      printf "sipedge/kamailio CPU per answered tx:"
      for (i = 1; i <= n; i++) printf " %d/s %.2fx;", rates[i], s[rates[i]] / k[rates[i]]
      printf "\n"
    }'
}

{
  echo
  echo "sipedge UDP benchmark, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $(nproc) CPUs:" \
    "$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
  echo "load: SIPp UAC (-t u1) OPTIONS -> proxy (udp) -> SIPp UAS (-t u1, options_uas.xml);" \
    "$STEP_SECONDS s per step; sipedge --workers $WORKERS (UDP socket in one worker);" \
    "kamailio stateless forward(), children=$WORKERS, disable_tcp, -x $KAMAILIO_MEM"
  echo "tx = one OPTIONS forwarded + its 200 forwarded back; failed = calls not answered with 200"
  echo "retrans = SIPp UAC retransmissions (T1 500 ms; a call fails after 5 s unanswered)"
  echo "drops = datagrams the kernel dropped on a full receive buffer over the step: at the proxy's"
  echo "  socket, at the UAS's, elsewhere (machine-wide RcvbufErrors minus both: the UAC, other programs)"
  echo "top thread% = the proxy's busiest thread (sipedge: one of deno's threads; kamailio: one process)"
  echo "other% = all% - proxy% - UAC% - UAS%: CPU of everything else on the machine"
  echo "CPU s, proxy% = proxy utime+stime over the step (all processes/threads), % of one core;" \
    "UAC%, UAS% = SIPp; all% = every process (max $(nproc)00 %)"
  echo "load average: at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  markdown
  echo
  summary
} | tee "${BENCH_MARKDOWN:-/dev/null}"
