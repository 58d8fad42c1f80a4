#!/usr/bin/env bash
# bench_tls.sh — SIP over TLS benchmark: sipedge vs Kamailio 5.6 (tls.so, stateless forward), the
# same client (sipload) driving both, side by side in one run.
#
#   sipload uac --tls ------> PROXY (tls listener) --tcp--> sipload uas
#            <------------ 200 OK routed back by Via ------------
#
# Debian's SIPp has no TLS, so the load tool is sipload (a small C SIP load generator with
# OpenSSL; its source is in the team's shared tools: shared/tools/sipload). The same binary and the
# same options drive both proxies. Three measurements, the proxies taking turns at each step:
#
#  1. throughput: `sipload uac --tls` on UAC_CONNS persistent connections, open loop, stepped
#     RATES. Per step: sent, answered (2xx), failed, delivered rate, and the proxy's CPU time
#     (utime+stime from /proc/PID/stat, summed over its process tree: all of Kamailio's
#     processes; sipedge's deno process with all its threads). CPU cost is given per 1,000
#     transactions (tx) and per 1,000 SIP messages: one tx = an OPTIONS request forwarded plus
#     its 200 forwarded back = 2 SIP messages through the proxy.
#  2. handshakes: `sipload uac --tls --new-conn-per-request` (a full TLS handshake per request,
#     no resumption, then one OPTIONS transaction, then close_notify + FIN) at stepped HS_RATES
#     connections per second, for each connect concurrency in HS_CONCURRENCIES. CPU per handshake
#     includes the TCP accept/close and the one transaction on the connection.
#  3. memory per idle connection: `sipload idle --tls --conns IDLE_CONNS --hold IDLE_HOLD` on a
#     fresh proxy (after a short unmeasured warm-up); the proxy's memory before, while all
#     connections are up and idle (IDLE_SETTLE s after each had one OPTIONS answered) and after
#     they closed. Memory is summed over the process tree from /proc/PID/smaps_rollup, both RSS
#     and PSS: Kamailio's processes share its shm pool, so summing RSS counts shared pages once
#     per process; PSS divides shared pages among the processes that map them, so the PSS sum is
#     the memory the proxy really holds (sipedge is one process: RSS ≈ PSS). Per connection =
#     (idle − before) / connections established. The same over TCP (IDLE_TCP=1) for reference.
#
# The server certificate is generated here with openssl (CERT=ec: ECDSA P-256, the default;
# CERT=rsa: RSA-2048) and both proxies use it; sipload negotiates TLS 1.3 (X25519). Handshake
# cost depends on the key type: an RSA-2048 signature costs the server several times an ECDSA
# P-256 one.
#
# sipedge: `--workers WORKERS` and a generated config.toml: a tls listener, a tcp listener (it
# gives the Via of the requests forwarded over TCP, and the TCP idle reference), static_router
# default_route to the UAS, limits raised above IDLE_CONNS, idle_timeout 600 s.
# Kamailio: tls.so with a tls.cfg using the same certificate, children = tcp_children = WORKERS,
# `-x KAMAILIO_MEM`, `-m KAMAILIO_SHM_MB` (each TLS connection takes ≈ 72 KB of shm: the default
# 256 MB refuses connections after ≈ 3,500), tcp_max_connections / tls_max_connections raised.
# Kamailio 5.6.3 (Debian, OpenSSL 3) is known to crash or fail handshakes when several TLS
# handshakes run at once (double free in tls_init.c ser_free, "unsupported algorithm"). When a
# proxy dies during a step, the step is marked `CRASHED` in the table, the proxy's log tail is
# printed, the proxy is restarted, and it takes no further step at that concurrency.
#
# Needs: bash, openssl, sipload (SIPLOAD=...), deno, and Kamailio for the comparison (skipped
# when not installed: apt-get install -y kamailio kamailio-tls-modules). Linux /proc.
# `ulimit -n` is raised to the hard limit; IDLE_CONNS needs about IDLE_CONNS + 1000 descriptors.
#
# Usage: SIPLOAD=/path/to/sipload scripts/bench_tls.sh      (`deno task bench-tls` runs it too)
#
# Environment (all optional but SIPLOAD):
#   SIPLOAD=/path/to/sipload        the load tool (required). Build it from its source:
#                                   cp -r shared/tools/sipload /tmp/sipload_build &&
#                                   make -C /tmp/sipload_build  → /tmp/sipload_build/sipload
#   PHASES="throughput handshakes idle"   which measurements to run
#   RATES="2000 4000 6000 8000 10000 12000"   throughput: transactions per second, one step each
#   UAC_CONNS=10                    throughput: persistent TLS connections of the UAC
#   STEP_SECONDS=10                 duration of each throughput and handshake step
#   WARMUP_SECONDS=3                unmeasured warm-up of each proxy (throughput at the first
#                                   rate, then handshakes at the first HS rate); 0 = none
#   HS_RATES="200 400 600 800 1000 1200"   handshakes: new connections per second, one step each
#   HS_CONCURRENCIES="1 10"         handshakes: connect concurrency (sipload --conns) of each series
#   HS_THREADS=2                    handshakes: sipload threads (a client handshake costs it CPU
#                                   too; never more than the concurrency)
#   IDLE_CONNS=10000                idle connections
#   IDLE_HOLD=15                    seconds sipload holds them idle
#   IDLE_SETTLE=3                   seconds between "all connections up" and the memory sample
#   IDLE_CONCURRENCY=1              TLS connect concurrency of the idle run (1: out of reach of
#                                   Kamailio's concurrent-handshake crash)
#   IDLE_TCP=1                      also measure idle TCP connections (0 = skip)
#   IDLE_TCP_CONCURRENCY=100        TCP connect concurrency of the idle run
#   CERT=ec                         ec (ECDSA P-256) or rsa (RSA-2048)
#   PROXIES="sipedge kamailio"      which proxies to run
#   WORKERS=2                       sipedge --workers; Kamailio children/tcp_children
#   SIPEDGE_CMD='...'               sipedge start command, run from the repo root; {config} is
#                                   replaced by the generated config file, e.g.
#                                   './sipedge --config {config} --control off'. Default: deno run
#                                   --unstable-net -A main.ts --config {config} --control off
#   DENO=/path/to/deno              deno binary (default: deno on PATH, else npx deno@2.9.6)
#   KAMAILIO=/usr/sbin/kamailio     Kamailio binary
#   KAMAILIO_MEM=tlsf               Kamailio memory manager (-x): tlsf, fm or qm (see bench_tcp.sh)
#   KAMAILIO_SHM_MB=2048            Kamailio shared memory (-m), MB
#   STOP_ON_FAIL=1                  stop a proxy's series after its first step with failures
#   BENCH_MAX_SECONDS=1800          overall time budget; steps that would exceed it are skipped
#   BENCH_RESULTS=/path/file.tsv    also write the step rows and idle rows as TSV
#   BENCH_KEEP=1                    keep the temp folder (logs, configs, certificate, outputs)
set -euo pipefail

PHASES="${PHASES:-throughput handshakes idle}"
RATES="${RATES:-2000 4000 6000 8000 10000 12000}"
UAC_CONNS="${UAC_CONNS:-10}"
STEP_SECONDS="${STEP_SECONDS:-10}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
HS_RATES="${HS_RATES:-200 400 600 800 1000 1200}"
HS_CONCURRENCIES="${HS_CONCURRENCIES:-1 10}"
HS_THREADS="${HS_THREADS:-2}"
IDLE_CONNS="${IDLE_CONNS:-10000}"
IDLE_HOLD="${IDLE_HOLD:-15}"
IDLE_SETTLE="${IDLE_SETTLE:-3}"
IDLE_CONCURRENCY="${IDLE_CONCURRENCY:-1}"
IDLE_TCP="${IDLE_TCP:-1}"
IDLE_TCP_CONCURRENCY="${IDLE_TCP_CONCURRENCY:-100}"
CERT="${CERT:-ec}"
STOP_ON_FAIL="${STOP_ON_FAIL:-1}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
bench_defaults # PROXIES, WORKERS, BENCH_MAX_SECONDS, KAMAILIO, KAMAILIO_MEM, KAMAILIO_SHM_MB, SIPLOAD

if [ -z "$SIPLOAD" ]; then
  die "SIPLOAD is not set. It is the path of the sipload binary (the TLS SIP load generator that
drives both proxies). Build it from its source (OpenSSL headers: apt-get install -y libssl-dev):
  cp -r ../shared/tools/sipload /tmp/sipload_build && make -C /tmp/sipload_build
then run: SIPLOAD=/tmp/sipload_build/sipload scripts/bench_tls.sh"
fi
[ -x "$SIPLOAD" ] || die "SIPLOAD=$SIPLOAD is not an executable file (build it with make in its source folder)"
command -v openssl >/dev/null || die "openssl is not installed (apt-get install -y openssl)"
case "$CERT" in ec | rsa) ;; *) die "CERT must be ec or rsa, not '$CERT'" ;; esac

bench_start bench_tls
DENO_BIN="$(find_deno)"
raise_nofile "$IDLE_CONNS"

# ---------------------------------------------------------------------------------------------
# sipload results

# The value of KEY=... in a sipload result line.
kv() { # LINE KEY
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

# ---------------------------------------------------------------------------------------------
# Certificate, proxies, UASes

log "generating the test certificate ($CERT)"
make_cert "$CERT"

declare -A PROXY_PID TLS_PORT TCP_PORT UAS_PID UAS_PORT STARTS
MAX_CONNS=$((IDLE_CONNS * 2 + 1000))

start_sipedge() {
  local cfg="$WORK/sipedge.toml" logfile
  STARTS[sipedge]=$((${STARTS[sipedge]:-0} + 1))
  logfile="$WORK/sipedge_${STARTS[sipedge]}.log"
  TLS_PORT[sipedge]="$(free_port)"
  TCP_PORT[sipedge]="$(free_port)"
  {
    cat <<EOF
# Generated by scripts/bench_tls.sh
[sipedge]
workers = $WORKERS
log_level = "warning"

[[listen]]
address = "tls:127.0.0.1:${TLS_PORT[sipedge]}"

# Also needed for forwarding over TCP: the tcp listener gives the Via sent-by.
[[listen]]
address = "tcp:127.0.0.1:${TCP_PORT[sipedge]}"

EOF
    sipedge_toml_tls
    echo
    sipedge_toml_route "${UAS_PORT[sipedge]}" "$MAX_CONNS"
  } >"$cfg"
  launch_sipedge "$(sipedge_cmd "$cfg" "--control off")" "$logfile"
  PROXY_PID[sipedge]=$LAUNCHED_PID
}

start_kamailio() {
  STARTS[kamailio]=$((${STARTS[kamailio]:-0} + 1))
  TLS_PORT[kamailio]="$(free_port)"
  TCP_PORT[kamailio]="$(free_port)"
  launch_kamailio "$WORK/kamailio_${STARTS[kamailio]}" "$(proxy_log kamailio)" "${UAS_PORT[kamailio]}" \
    "$KAMAILIO_SHM_MB" --tls --mpath "$(kamailio_moddir)" \
    --comment "Stateless forwarding proxy with a TLS listener (generated by scripts/bench_tls.sh)." \
    --listen "tls:127.0.0.1:${TLS_PORT[kamailio]}" --listen "tcp:127.0.0.1:${TCP_PORT[kamailio]}" \
    --max-conns "$MAX_CONNS"
  PROXY_PID[kamailio]=$LAUNCHED_PID
  log "kamailio $(kamailio_version) (-x $KAMAILIO_MEM, -m $KAMAILIO_SHM_MB) listening on tls:127.0.0.1:${TLS_PORT[kamailio]}"
}

# Error lines in the proxy's current log so far (Kamailio: BUG/ERROR/CRITICAL; sipedge: every
# warning or worse — it logs at level warning here).
LOG_ERRORS='BUG:|CRITICAL|ERROR|ALERT|\[WRN\]|\[ERR\]|\[FTL\]|panic|Uncaught'
log_errors() { # NAME
  local n
  n="$(grep -acE "$LOG_ERRORS" "$(proxy_log "$1")" 2>/dev/null || true)"
  echo "${n:-0}"
}

# ---------------------------------------------------------------------------------------------
# Steps

ROWS=()   # one line per measured step (fields: see the TSV header at the end)
IDLE=()   # one line per idle run
NOTES=()  # crashes and other things the tables must say
RECORD=1  # 0 during warm-up

# One sipload uac run against PROXY's TLS listener; KIND = tput (persistent connections) or hs
# (a new connection and handshake per request, CONC at a time). Returns 1 on failures.
step() { # KIND PROXY RATE SECONDS CONC
  local kind=$1 proxy=$2 rate=$3 secs=$4 conc=$5 out threads=1 args=() line note="-"
  out="$WORK/${kind}_${proxy}_${rate}_c${conc}_$RANDOM.out"
  if [ "$kind" = hs ]; then
    threads=$((HS_THREADS < conc ? HS_THREADS : conc))
    args=(--new-conn-per-request)
  fi
  local errors0 errors
  errors0="$(log_errors "$proxy")"
  sample "$proxy" 0
  timeout --kill-after=5 $((secs + 40)) \
    "$SIPLOAD" uac --proxy "127.0.0.1:${TLS_PORT[$proxy]}" --tls --conns "$conc" \
    --threads "$threads" --rate "$rate" --duration "$secs" --method OPTIONS \
    --ruri "sip:uas@127.0.0.1:${UAS_PORT[$proxy]}" --timeout-ms 5000 "${args[@]}" \
    >"$out" 2>&1 </dev/null || true
  sleep 0.2
  sample "$proxy" 1
  line="$(grep '^SIPLOAD mode=uac' "$out" | tail -1 || true)"
  local sent ok failed delivered connects
  if [ -n "$line" ]; then
    sent="$(kv "$line" sent)"
    ok="$(kv "$line" ok)"
    failed="$(kv "$line" failed)"
    delivered="$(kv "$line" rate)"
    connects="$(kv "$line" connects)"
  else
    sent=0 ok=0 failed=1 delivered=0 connects=0
    log "sipload gave no result ($kind $proxy $rate/s): $(tail -3 "$out" | tr '\n' ' ')"
  fi
  if proxy_crashed "$proxy"; then
    note=CRASHED
    [ "$failed" -gt 0 ] || failed=1
    log "$proxy is no longer running after $kind $rate/s (concurrency $conc); its log ends with:"
    grep -av "load_tm\|bug #1491 \|server_name callback" "$(proxy_log "$proxy")" | tail -8 >&2 || true
    NOTES+=("$proxy crashed during the $kind step at $rate/s, concurrency $conc (log: $(grep -acE 'BUG:' "$(proxy_log "$proxy")" || true) BUG lines before it; $(grep -aE "$CRASH_LINES" "$(proxy_log "$proxy")" | head -3 | cut -c1-160 | tr '\n' '|'))")
  elif [ "$failed" -gt 0 ]; then
    note="$(awk '{ for (i = 1; i <= NF; i++) { split($i, a, "="); if ((a[1] == "timeouts" || a[1] == "non2xx" ||
      a[1] == "conn_lost" || a[1] == "no_conn" || a[1] == "connect_failed" || a[1] == "resets") && a[2] > 0)
      s = s (s == "" ? "" : ",") a[1] "=" a[2] } } END { print (s == "" ? "-" : s) }' <<<"$line")"
  fi
  errors=$(($(log_errors "$proxy") - errors0))
  if [ "$errors" -gt 0 ]; then
    note="${note/#-/}"
    note="${note:+$note,}log_errors=$errors"
    [ "$RECORD" = 0 ] || NOTES+=("$proxy, $kind step at $rate/s, concurrency $conc: $errors error lines in its log, e.g. \`$(grep -aE "$LOG_ERRORS" "$(proxy_log "$proxy")" | tail -1 | cut -c1-220)\`")
  fi
  emit_row "$kind" "$proxy" "$rate" "$conc" "$sent" "$ok" "$failed" "$delivered" "$connects" "$note"
}

# Records one result row from the samples; returns 1 if the step had failures.
emit_row() { # KIND PROXY RATE CONC SENT OK FAILED DELIVERED CONNECTS NOTE
  local row unit=1000 # CPU per 1,000 transactions (tput) or per handshake (hs)
  [ "$1" = tput ] || unit=1
  row="$(awk -v kind="$1" -v proxy="$2" -v rate="$3" -v conc="$4" -v sent="$5" -v ok="$6" \
    -v failed="$7" -v delivered="$8" -v connects="$9" 'BEGIN {
      printf "%s %s %d %d %d %d %d %.1f %d", kind, proxy, rate, conc, sent, ok, failed, delivered, connects
    }') $(step_cpu "$6" "$unit" %.3f) ${10}"
  if [ "$RECORD" = 1 ]; then
    ROWS+=("$row")
    log "$(awk '{ printf "%-4s %-8s %6d/s conc %3d: ok %7d failed %6d delivered %8.1f/s, proxy CPU %.2f s (%.1f %%), %.3f ms per %s; UAC %.0f %%, UAS %.0f %%, other %.0f %% %s", $1, $2, $3, $4, $6, $7, $8, $10, $11, $12, ($1 == "hs" ? "handshake" : "1k tx"), $13, $14, $15, ($17 == "-" ? "" : $17) }' <<<"$row")"
  else
    log "$(awk '{ printf "warm-up %-4s %-8s %6d/s: ok %d failed %d %s", $1, $2, $3, $6, $7, ($17 == "-" ? "" : $17) }' <<<"$row")"
  fi
  [ "$7" -eq 0 ]
}

# Idle connections on a fresh proxy: memory before, while idle, after. TRANSPORT = tls | tcp.
idle_run() { # PROXY TRANSPORT
  local proxy=$1 tr=$2 port conc out tls=() m0 m1 m2 ready line alive=yes
  out="$WORK/idle_${proxy}_$tr.out"
  restart_proxy "$proxy"
  if [ "$tr" = tls ]; then
    port="${TLS_PORT[$proxy]}" conc=$IDLE_CONCURRENCY tls=(--tls)
  else
    port="${TCP_PORT[$proxy]}" conc=$IDLE_TCP_CONCURRENCY
  fi
  # Unmeasured warm-up (code loaded, first allocations made), then a quiet moment.
  timeout --kill-after=5 30 "$SIPLOAD" uac --proxy "127.0.0.1:$port" "${tls[@]}" --conns 10 \
    --rate 200 --duration 2 --ruri "sip:uas@127.0.0.1:${UAS_PORT[$proxy]}" \
    >"$out.warmup" 2>&1 </dev/null || true
  sleep 3
  m0="$(tree_mem "${PROXY_PID[$proxy]}")"
  log "idle $tr $proxy: $IDLE_CONNS connections (concurrency $conc), memory before: RSS/PSS/processes $m0"
  "$SIPLOAD" idle --proxy "127.0.0.1:$port" "${tls[@]}" --conns "$IDLE_CONNS" --hold "$IDLE_HOLD" \
    --connect-concurrency "$conc" --timeout-ms 10000 >"$out" 2>&1 </dev/null &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  ready="$(wait_line "$out" IDLE_READY "$idle_pid" $((IDLE_CONNS / 20 + 120)))"
  if [ -n "$ready" ]; then
    sleep "$IDLE_SETTLE"
    m1="$(tree_mem "${PROXY_PID[$proxy]}")"
  else
    m1="0 0 0"
    log "idle $tr $proxy: the connections were not all up (sipload: $(tail -2 "$out" | tr '\n' ' '))"
  fi
  log "idle $tr $proxy: $ready; memory idle: $m1"
  wait_pid_end "$idle_pid" $((IDLE_HOLD + 60))
  sleep 3
  ! proxy_crashed "$proxy" || alive=no
  m2="$(tree_mem "${PROXY_PID[$proxy]}")"
  line="$(grep '^SIPLOAD mode=idle' "$out" | tail -1 || true)"
  local established opened ok failed closed
  established="$(kv "$ready" established)"
  opened="$(kv "$line" opened)"
  ok="$(kv "$line" ok)"
  failed="$(kv "$line" failed)"
  closed="$(kv "$line" closed_by_peer)"
  [ "$alive" = yes ] || NOTES+=("$proxy died during the idle $tr run (log: $(grep -a -m3 -iE 'BUG|signal|error' "$(proxy_log "$proxy")" | cut -c1-200 | tr '\n' '|'))")
  IDLE+=("$(awk -v p="$proxy" -v tr="$tr" -v conc="$conc" -v e="${established:-0}" -v o="${opened:-0}" \
    -v ok="${ok:-0}" -v f="${failed:-0}" -v c="${closed:-0}" 'BEGIN {
      printf "%s %s %d %d %d %d %d %d", p, tr, conc, o, e, ok, f, c }') $(idle_mem_fields "$m0" "$m1" "$m2" "${established:-0}") $alive")
  log "idle $tr $proxy: ${line:-no result}; memory after close: $m2"
}

# ---------------------------------------------------------------------------------------------
# Run

select_proxies kamailio-tls-modules "$(kamailio_moddir)" tls
warn_load
START=$SECONDS
STEP_BUDGET=$((STEP_SECONDS + 15))

for proxy in "${ACTIVE[@]}"; do
  start_sipload_uas "$proxy"
  "start_$proxy"
done

if [ "$WARMUP_SECONDS" -gt 0 ]; then
  RECORD=0
  for proxy in "${ACTIVE[@]}"; do
    step tput "$proxy" "${RATES%% *}" "$WARMUP_SECONDS" "$UAC_CONNS" || true
    step hs "$proxy" "${HS_RATES%% *}" "$WARMUP_SECONDS" 1 || true
    ! proxy_crashed "$proxy" || restart_proxy "$proxy"
  done
  RECORD=1
fi

# Runs one series of steps (each proxy in turn at each rate); a proxy stops after a failed step
# (STOP_ON_FAIL=1) or a crash (it is restarted for the next series).
series() { # KIND CONC RATES...
  local kind=$1 conc=$2 rate proxy
  shift 2
  declare -A stopped=()
  for rate in "$@"; do
    for proxy in "${ACTIVE[@]}"; do
      [ -z "${stopped[$proxy]:-}" ] || continue
      if ! budget_left "$STEP_BUDGET"; then
        log "time budget BENCH_MAX_SECONDS=$BENCH_MAX_SECONDS reached: skipping $kind $proxy $rate/s"
        stopped[$proxy]=1
        continue
      fi
      if ! step "$kind" "$proxy" "$rate" "$STEP_SECONDS" "$conc"; then
        [ "$STOP_ON_FAIL" = 1 ] && stopped[$proxy]=1
      fi
      if proxy_crashed "$proxy"; then
        stopped[$proxy]=1
        restart_proxy "$proxy"
      fi
      sleep 1
    done
  done
}

for phase in $PHASES; do
  case "$phase" in
    throughput)
      log "throughput: $RATES tx/s, $UAC_CONNS TLS connections, $STEP_SECONDS s per step"
      # shellcheck disable=SC2086
      series tput "$UAC_CONNS" $RATES
      ;;
    handshakes)
      for conc in $HS_CONCURRENCIES; do
        log "handshakes: $HS_RATES /s at concurrency $conc, $STEP_SECONDS s per step"
        # shellcheck disable=SC2086
        series hs "$conc" $HS_RATES
      done
      ;;
    idle)
      transports=(tls)
      [ "$IDLE_TCP" = 1 ] && transports+=(tcp)
      for tr in "${transports[@]}"; do
        for proxy in "${ACTIVE[@]}"; do
          if ! budget_left $((IDLE_HOLD + IDLE_CONNS / 200 + 40)); then
            log "time budget reached: skipping idle $tr $proxy"
            continue
          fi
          idle_run "$proxy" "$tr"
        done
      done
      ;;
    *) die "unknown phase '$phase' (PHASES may hold throughput, handshakes and idle)" ;;
  esac
done
for proxy in "${ACTIVE[@]}"; do
  stop_pid "${PROXY_PID[$proxy]}"
  stop_pid "${UAS_PID[$proxy]}"
done

# ---------------------------------------------------------------------------------------------
# Report (Markdown)

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
{
  echo
  echo "## sipedge TLS benchmark, $DATE_START ($((SECONDS - START)) s)"
  echo
  echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1);" \
    "load average at start $LOAD_START, at end $LOAD_END (a shared machine: compare the proxies" \
    "side by side, as ratios)"
  echo "- certificate: $CERT_DESC (self-signed, both proxies); client: sipload, TLS 1.3;" \
    "UAS: sipload uas over TCP"
  echo "- sipedge: --workers $WORKERS; kamailio: tls.so, stateless forward()," \
    "children=$WORKERS tcp_children=$WORKERS, -x $KAMAILIO_MEM -m $KAMAILIO_SHM_MB"
  echo "- CPU = proxy utime+stime over the step, whole process tree; % of one core (max $(nproc)00 %)." \
    "tx = OPTIONS forwarded + 200 forwarded back = 2 SIP messages, so CPU per 1k messages = half" \
    "the CPU per 1k tx. UAC/UAS/other % = the load tools and the rest of the machine."
  echo
  if printf '%s\n' "${ROWS[@]}" | grep -q '^tput '; then
    echo "### Throughput: $UAC_CONNS persistent TLS connections, open loop, $STEP_SECONDS s per step"
    echo
    echo "| proxy | target tx/s | ok | failed | delivered tx/s | proxy CPU % | CPU ms / 1k tx | CPU ms / 1k msg | UAC % | UAS % | other % | note |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | awk '$1 == "tput" { printf "| %s | %d | %d | %d | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f | %.0f | %s |\n",
      $2, $3, $6, $7, $8, $11, $12, $12 / 2, $13, $14, $15, $17 }'
    echo
  fi
  if printf '%s\n' "${ROWS[@]}" | grep -q '^hs '; then
    echo "### Handshakes: a new TLS connection per request (full handshake + 1 tx + close), $STEP_SECONDS s per step"
    echo
    echo "| proxy | concurrency | target conn/s | ok | failed | delivered conn/s | proxy CPU % | CPU ms / handshake | UAC % | UAS % | other % | note |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | awk '$1 == "hs" { printf "| %s | %d | %d | %d | %d | %.1f | %.1f | %.3f | %.0f | %.0f | %.0f | %s |\n",
      $2, $4, $3, $6, $7, $8, $11, $12, $13, $14, $15, $17 }'
    echo
  fi
  if [ "${#ROWS[@]}" -gt 0 ]; then
    echo "### Highest zero-failure step and ratios"
    echo
    printf '%s\n' "${ROWS[@]}" | awk '
      $7 == 0 { key = $1 " " $4 " " $2
        if ($8 > best[key]) { best[key] = $8; target[key] = $3; per[key] = $12 }
        cost[$1 " " $4 " " $3 " " $2] = $12; rates[$1 " " $4 " " $3] = 1 }
      { seen[$1 " " $4 " " $2] = 1; series[$1 " " $4] = 1 }
      END {
        for (s in series) {
          split(s, a, " ")
          what = a[1] == "tput" ? "throughput, " a[2] " conns" : "handshakes, concurrency " a[2]
          unit = a[1] == "tput" ? "tx/s" : "conn/s"
          cunit = a[1] == "tput" ? "CPU ms / 1k tx" : "CPU ms / handshake"
          for (p in seen) { split(p, b, " "); if (b[1] " " b[2] != s) continue
            k = p
            if (k in best) printf "- %s: %s highest zero-failure step %d %s (delivered %.0f), %.3f %s\n", what, b[3], target[k], unit, best[k], per[k], cunit
            else printf "- %s: %s had no step without failures\n", what, b[3] }
          kb = best[s " kamailio"]; sb = best[s " sipedge"]
          if (kb > 0 && sb > 0) printf "- %s: sipedge / kamailio highest zero-failure rate %.2f x\n", what, sb / kb
          line = ""; n = 0
          for (r in rates) { split(r, c, " "); if (c[1] " " c[2] == s) list[++n] = c[3] + 0 }
          for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (list[j] < list[i]) { x = list[i]; list[i] = list[j]; list[j] = x }
          for (i = 1; i <= n; i++) { sk = s " " list[i] " sipedge"; kk = s " " list[i] " kamailio"
            if ((sk in cost) && (kk in cost) && cost[kk] > 0) line = line sprintf(" %d: %.2f x;", list[i], cost[sk] / cost[kk]) }
          if (line != "") printf "- %s: sipedge / kamailio %s, at rates both passed:%s\n", what, cunit, line
        }
      }' | sort
    echo
  fi
  if [ "${#IDLE[@]}" -gt 0 ]; then
    echo "### Memory per idle connection ($IDLE_CONNS connections, each answered once, then idle)"
    echo
    echo "RSS / PSS summed over the proxy's processes (kB, from /proc/PID/smaps_rollup); per connection = (idle − before) / established, in KB (kB of smaps_rollup = 1,024 bytes)."
    echo
    echo "| proxy | transport | connect concurrency | established | answered | failed | closed by proxy while idle | RSS before / idle / after close kB | PSS before / idle / after close kB | RSS per conn KB | PSS per conn KB | proxy survived |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | --- |"
    printf '%s\n' "${IDLE[@]}" | awk '{ printf "| %s | %s | %d | %d | %d | %d | %d | %d / %d / %d | %d / %d / %d | %.1f | %.1f | %s |\n",
      $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 }'
    echo
  fi
  report_notes "###"
  echo "(failed: requests without a 2xx — timeouts, non-2xx, connections lost or refused, failed"
  echo "handshakes; delivered well below target with 0 failed means the client or the shared CPUs"
  echo "could not keep up.)"
}

if [ -n "${BENCH_RESULTS:-}" ]; then
  {
    printf 'kind\tproxy\ttarget_per_s\tconcurrency\tsent\tok\tfailed\tdelivered_per_s\tconnects\t'
    printf 'proxy_cpu_s\tproxy_cpu_pct\tcpu_ms_per_1k_tx_or_per_handshake\tuac_cpu_pct\tuas_cpu_pct\t'
    printf 'other_cpu_pct\tall_cpu_pct\tnote\n'
    [ "${#ROWS[@]}" -eq 0 ] || printf '%s\n' "${ROWS[@]}" | tr ' ' '\t'
    printf 'idle\tproxy\ttransport\tconcurrency\topened\testablished\tok\tfailed\tclosed_by_peer\t'
    printf 'rss0_kb\trss1_kb\trss2_kb\tpss0_kb\tpss1_kb\tpss2_kb\trss_per_conn_kib\tpss_per_conn_kib\talive\n'
    [ "${#IDLE[@]}" -eq 0 ] || printf 'idle\t%s\n' "${IDLE[@]}" | tr ' ' '\t'
  } >"$BENCH_RESULTS"
  log "results written to $BENCH_RESULTS"
fi
