#!/usr/bin/env bash
# bench_ws.sh — SIP over WebSocket (RFC 7118) benchmark: sipedge (ws and wss listeners) vs
# Kamailio 5.6 (xhttp + websocket + tls modules, stateless forward), the same client
# (scripts/wsload.ts) driving both, side by side in one run.
#
#   wsload (ws:// or wss://, 10 conns) ---> PROXY (ws / wss listener) --tcp--> sipload uas
#          <------------------- 200 OK routed back by Via over the WebSocket -------------
#
# Two measurements, the proxies taking turns at each step:
#
#  1. throughput: `wsload load` on UAC_CONNS persistent WebSocket connections, open loop (1 ms
#     slots), each rate of RATES for STEP_SECONDS, for each transport of TP_TRANSPORTS. Per
#     step: sent, answered (2xx), failed, delivered rate, latency p50/p99 (µs, from wsload),
#     and the proxy's CPU time (utime+stime from /proc/PID/stat, summed over its process tree:
#     all of Kamailio's processes; sipedge's deno process with all its threads), given per
#     1,000 transactions. One tx = an OPTIONS forwarded + its 200 forwarded back (2 SIP
#     messages through the proxy, each in a WebSocket frame on the client side).
#  2. memory per idle connection: `wsload idle --connections IDLE_CONNS --hold IDLE_HOLD` on a
#     fresh proxy (after a short unmeasured warm-up), for each transport of IDLE_TRANSPORTS:
#     every connection does the upgrade and gets one OPTIONS answered, then stays idle. The
#     proxy's memory is read before, IDLE_SETTLE s after all connections are up, and after they
#     closed, summed over the process tree from /proc/PID/smaps_rollup: RSS and PSS (Kamailio's
#     processes share its shm pool; the PSS sum is what it really holds; sipedge is one process,
#     RSS ≈ PSS). Per connection = (idle − before) / connections established.
#
# sipedge: `--workers WORKERS`, a generated config.toml: a ws listener, a wss listener (its
# certificate from [plugins.tls] server_domains: the same certificate Kamailio uses), a tcp
# listener (the Via of the requests forwarded to the UAS over TCP), static_router default_route
# to the UAS, limits raised above IDLE_CONNS, idle_timeout 600 s, ws/wss ping_interval 0.
# Kamailio: the config this script writes (BENCH_KEEP=1 keeps it): listen=tcp (ws),
# listen=tls (wss), listen=tcp (towards the UAS); event_route[xhttp:request] calls
# ws_handle_handshake(); request_route forward()s to the UAS; replies go back statelessly by
# Via (received/rport of the WebSocket connection). children = tcp_children = WORKERS,
# `-x KAMAILIO_MEM`, `-m KAMAILIO_SHM_MB`, websocket keepalive_mechanism 0 (no pings).
#
# Needs: bash, openssl, deno, sipload (the UAS; SIPLOAD=..., or built from
# ../shared/tools/sipload into the temp folder when that source is there), and Kamailio with its
# websocket and tls modules for the comparison (skipped when missing:
# apt-get install -y kamailio kamailio-websocket-modules kamailio-tls-modules). Linux /proc.
# `ulimit -n` is raised to the hard limit; IDLE_CONNS needs about IDLE_CONNS + 1000 descriptors.
#
# Usage: scripts/bench_ws.sh [--help]
#
# Environment (all optional):
#   PHASES="throughput idle"        which measurements to run
#   TP_TRANSPORTS="ws wss"          throughput: transports, one series each
#   RATES="2000 10000"              throughput: transactions per second, one step each
#   UAC_CONNS=10                    throughput: WebSocket connections of the client
#   STEP_SECONDS=10                 duration of each throughput step
#   WARMUP_SECONDS=3                unmeasured warm-up of each proxy at the first rate, per
#                                   transport (0 = none)
#   IDLE_TRANSPORTS="wss"           idle: transports ("ws wss" for both)
#   IDLE_CONNS=5000                 idle: connections
#   IDLE_HOLD=15                    idle: seconds wsload holds them once all are up
#   IDLE_SETTLE=3                   idle: seconds between "all up" and the memory sample
#   IDLE_CONCURRENCY_WS=50          idle: connections opened at once over ws
#   IDLE_CONCURRENCY_WSS=1          idle: over wss (1: out of reach of Kamailio 5.6's crash with
#                                   concurrent TLS handshakes, see bench_tls.sh)
#   WSLOAD_TLS=node                 wsload's TLS client for wss (node: node:tls; deno:
#                                   Deno.connectTls with the benchmark certificate as CA)
#   CERT=ec                         ec (ECDSA P-256) or rsa (RSA-2048)
#   PROXIES="sipedge kamailio"      which proxies to run
#   WORKERS=2                       sipedge --workers; Kamailio children/tcp_children
#   SIPEDGE_CMD='...'               sipedge start command, run from the repo root; {config} is
#                                   replaced by the generated config file. Default: deno run
#                                   --unstable-net -A --no-code-cache --v8-flags=--max-semi-space-size=1 main.ts
#                                   --config {config} --control off
#   SIPLOAD=/path/to/sipload        the UAS (default: built from ../shared/tools/sipload)
#   DENO=/path/to/deno              deno binary (default: deno on PATH, else npx deno@2.9.6)
#   KAMAILIO=/usr/sbin/kamailio     Kamailio binary
#   KAMAILIO_MEM=tlsf               Kamailio memory manager (-x): tlsf, fm or qm (see bench_tcp.sh)
#   KAMAILIO_SHM_MB=2048            Kamailio shared memory (-m), MB
#   BENCH_MAX_SECONDS=1800          overall time budget; steps that would exceed it are skipped
#   BENCH_RESULTS=/path/file.tsv    also write the step rows and idle rows as TSV
#   BENCH_REPORT=/path/file.md      also write the Markdown report there
#   BENCH_KEEP=1                    keep the temp folder (logs, configs, certificate, outputs)
set -euo pipefail

if [ "${1:-}" = --help ] || [ "${1:-}" = -h ]; then
  sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
fi
[ $# -eq 0 ] || { echo "bench_ws.sh: no arguments expected (see --help)" >&2; exit 2; }

PHASES="${PHASES:-throughput idle}"
TP_TRANSPORTS="${TP_TRANSPORTS:-ws wss}"
RATES="${RATES:-2000 10000}"
UAC_CONNS="${UAC_CONNS:-10}"
STEP_SECONDS="${STEP_SECONDS:-10}"
WARMUP_SECONDS="${WARMUP_SECONDS:-3}"
IDLE_TRANSPORTS="${IDLE_TRANSPORTS:-wss}"
IDLE_CONNS="${IDLE_CONNS:-5000}"
IDLE_HOLD="${IDLE_HOLD:-15}"
IDLE_SETTLE="${IDLE_SETTLE:-3}"
IDLE_CONCURRENCY_WS="${IDLE_CONCURRENCY_WS:-50}"
IDLE_CONCURRENCY_WSS="${IDLE_CONCURRENCY_WSS:-1}"
WSLOAD_TLS="${WSLOAD_TLS:-node}"
CERT="${CERT:-ec}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
bench_defaults # PROXIES, WORKERS, BENCH_MAX_SECONDS, KAMAILIO, KAMAILIO_MEM, KAMAILIO_SHM_MB, SIPLOAD

command -v openssl >/dev/null || die "openssl is not installed (apt-get install -y openssl)"
case "$CERT" in ec | rsa) ;; *) die "CERT must be ec or rsa, not '$CERT'" ;; esac
case "$WSLOAD_TLS" in node | deno) ;; *) die "WSLOAD_TLS must be node or deno" ;; esac

bench_start bench_ws
DENO_BIN="$(find_deno)"
WSLOAD=("$DENO_BIN" run --quiet -A "$REPO/scripts/wsload.ts")

need_sipload
raise_nofile "$IDLE_CONNS"

# ---------------------------------------------------------------------------------------------
# JSON fields

# A number field of wsload's flat JSON summary line ("" when missing).
jnum() { # LINE KEY
  sed -n "s/.*\"$2\":\([-0-9.e+]*\).*/\1/p" <<<"$1"
}

# ---------------------------------------------------------------------------------------------
# Certificate, proxies, UASes

log "generating the test certificate ($CERT)"
# An end-entity certificate (CA:FALSE), so that rustls (WSLOAD_TLS=deno) accepts it as its own
# trust anchor.
make_cert "$CERT" -addext "basicConstraints=critical,CA:FALSE"
WSLOAD_TLS_ARGS=(--tls-client "$WSLOAD_TLS")
[ "$WSLOAD_TLS" = node ] || WSLOAD_TLS_ARGS+=(--ca "$WORK/cert.pem")

declare -A PROXY_PID WS_PORT WSS_PORT TCP_PORT UAS_PID UAS_PORT STARTS
MAX_CONNS=$((IDLE_CONNS * 2 + 1000))

start_sipedge() {
  local cfg="$WORK/sipedge.toml" logfile
  STARTS[sipedge]=$((${STARTS[sipedge]:-0} + 1))
  logfile="$WORK/sipedge_${STARTS[sipedge]}.log"
  WS_PORT[sipedge]="$(free_port)"
  WSS_PORT[sipedge]="$(free_port)"
  TCP_PORT[sipedge]="$(free_port)"
  {
    cat <<EOF
# Generated by scripts/bench_ws.sh
[sipedge]
workers = $WORKERS
log_level = "warning"

[[listen]]
address = "ws:127.0.0.1:${WS_PORT[sipedge]}"

[[listen]]
address = "wss:127.0.0.1:${WSS_PORT[sipedge]}"

# The upstream side: requests to the UAS go over TCP, with this listener's Via.
[[listen]]
address = "tcp:127.0.0.1:${TCP_PORT[sipedge]}"

EOF
    sipedge_toml_tls
    cat <<EOF

[plugins.ws]
ping_interval = "0s"

[plugins.wss]
ping_interval = "0s"

EOF
    sipedge_toml_route "${UAS_PORT[sipedge]}" "$MAX_CONNS"
  } >"$cfg"
  launch_sipedge "$(sipedge_cmd "$cfg" "--control off")" "$logfile"
  PROXY_PID[sipedge]=$LAUNCHED_PID
  wait_listening "${WS_PORT[sipedge]}" 15 sipedge "${PROXY_PID[sipedge]}"
  wait_listening "${WSS_PORT[sipedge]}" 15 sipedge "${PROXY_PID[sipedge]}"
}

MODDIR="$(kamailio_moddir)"

# Kamailio's event_route for the WebSocket upgrade (xhttp).
read -r -d '' KAMAILIO_WS_ROUTE <<'EOF' || true
event_route[xhttp:request] {
  set_reply_close();
  set_reply_no_connect();
  if ($hdr(Upgrade) =~ "websocket" && $hdr(Connection) =~ "Upgrade" && $rm =~ "GET") {
    # ws_handle_handshake() checks the headers and Sec-WebSocket-Protocol: sip, answers 101
    # and turns the connection into a WebSocket one (it exits the route when it succeeds)
    if (ws_handle_handshake()) {
      exit;
    }
  }
  xhttp_reply("404", "Not Found", "", "");
}
EOF

start_kamailio() {
  STARTS[kamailio]=$((${STARTS[kamailio]:-0} + 1))
  WS_PORT[kamailio]="$(free_port)"
  WSS_PORT[kamailio]="$(free_port)"
  TCP_PORT[kamailio]="$(free_port)"
  launch_kamailio "$WORK/kamailio_${STARTS[kamailio]}" "$(proxy_log kamailio)" "${UAS_PORT[kamailio]}" \
    "$KAMAILIO_SHM_MB" --tls --mpath "$MODDIR" --comment "\
SIP over WebSocket edge for the benchmark (generated by scripts/bench_ws.sh): ws on
tcp:${WS_PORT[kamailio]}, wss on tls:${WSS_PORT[kamailio]}, stateless forward() of every request to
the TCP UAS; replies return by Via (received/rport) over the client's WebSocket connection." \
    --setting "# xhttp: HTTP requests (the WebSocket upgrade) have no Content-Length" \
    --setting tcp_accept_no_cl=yes --listen "tcp:127.0.0.1:${WS_PORT[kamailio]}" \
    --listen "tls:127.0.0.1:${WSS_PORT[kamailio]}" --listen "tcp:127.0.0.1:${TCP_PORT[kamailio]}" \
    --max-conns "$MAX_CONNS" --module xhttp --module websocket \
    --modparam "# no WebSocket pings (sipedge runs with ping_interval 0 too)" \
    --modparam 'modparam("websocket", "keepalive_mechanism", 0)' --route "$KAMAILIO_WS_ROUTE"
  PROXY_PID[kamailio]=$LAUNCHED_PID
  log "kamailio $(kamailio_version) (-x $KAMAILIO_MEM, -m $KAMAILIO_SHM_MB) listening on ws 127.0.0.1:${WS_PORT[kamailio]}, wss 127.0.0.1:${WSS_PORT[kamailio]}"
}

url_of() { # PROXY TRANSPORT
  if [ "$2" = ws ]; then echo "ws://127.0.0.1:${WS_PORT[$1]}/"; else echo "wss://127.0.0.1:${WSS_PORT[$1]}/"; fi
}

target_of() { # PROXY
  echo "sip:uas@127.0.0.1:${UAS_PORT[$1]};transport=tcp"
}

# ---------------------------------------------------------------------------------------------
# Steps

ROWS=()   # one line per measured throughput step (fields: see the TSV header at the end)
IDLE=()   # one line per idle run
NOTES=()  # crashes and other things the tables must say
RECORD=1  # 0 during warm-up

# One wsload load run: PROXY TRANSPORT RATE SECONDS.
step() {
  local proxy=$1 tr=$2 rate=$3 secs=$4 out line note="-"
  out="$WORK/load_${proxy}_${tr}_${rate}_$RANDOM.out"
  sample "$proxy" 0
  timeout --kill-after=5 $((secs + 60)) "${WSLOAD[@]}" load --url "$(url_of "$proxy" "$tr")" \
    "${WSLOAD_TLS_ARGS[@]}" --connections "$UAC_CONNS" --rate "$rate" --duration "$secs" \
    --target "$(target_of "$proxy")" --timeout-ms 5000 --quiet >"$out" 2>&1 </dev/null || true
  sample "$proxy" 1
  line="$(grep '"wsload":"summary"' "$out" | tail -1 || true)"
  if [ -z "$line" ]; then
    note="no-result"
    log "wsload gave no result ($proxy $tr $rate/s): $(tail -3 "$out" | tr '\n' ' ')"
  fi
  if proxy_crashed "$proxy"; then
    note="CRASHED"
    NOTES+=("$proxy crashed during the $tr step at $rate/s: $(grep -a -m3 -iE "BUG|signal|error|panic" "$(proxy_log "$proxy")" | cut -c1-200 | tr '\n' '|')")
  fi
  local sent ok failed delivered p50 p99 established
  sent="$(jnum "$line" sent)"
  ok="$(jnum "$line" ok)"
  failed="$(jnum "$line" failed)"
  delivered="$(jnum "$line" rate)"
  p50="$(jnum "$line" p50_us)"
  p99="$(jnum "$line" p99_us)"
  established="$(jnum "$line" established)"
  [ -n "$line" ] || failed=1
  [ "${established:-0}" = "$UAC_CONNS" ] || [ -z "$line" ] ||
    log "warning: only ${established:-0} of $UAC_CONNS connections opened ($proxy $tr)"
  local row
  row="$(awk -v proxy="$proxy" -v tr="$tr" -v rate="$rate" -v sent="${sent:-0}" -v ok="${ok:-0}" \
    -v failed="${failed:-1}" -v delivered="${delivered:-0}" -v p50="${p50:-0}" -v p99="${p99:-0}" 'BEGIN {
      printf "%s %s %d %d %d %d %.1f %d %d", proxy, tr, rate, sent, ok, failed, delivered, p50, p99
    }') $(step_cpu "${ok:-0}" 1000 %.1f) $note"
  if [ "$RECORD" = 1 ]; then
    ROWS+=("$row")
    log "$(awk '{ printf "%-8s %-3s %6d/s: ok %7d failed %5d delivered %8.1f/s, p50 %d µs p99 %d µs, proxy CPU %.2f s (%.1f %%), %.1f ms per 1k tx; UAC %.0f %%, UAS %.0f %%, other %.0f %% %s", $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, ($17 == "-" ? "" : $17) }' <<<"$row")"
  else
    log "$(awk '{ printf "warm-up %-8s %-3s %6d/s: ok %d failed %d %s", $1, $2, $3, $5, $6, ($17 == "-" ? "" : $17) }' <<<"$row")"
  fi
  [ "${failed:-1}" -eq 0 ]
}

# Idle connections on a fresh proxy: memory before, while idle, after. TRANSPORT = ws | wss.
idle_run() { # PROXY TRANSPORT
  local proxy=$1 tr=$2 conc out m0 m1 m2 ready line alive=yes
  out="$WORK/idle_${proxy}_$tr.out"
  restart_proxy "$proxy"
  if [ "$tr" = wss ]; then conc=$IDLE_CONCURRENCY_WSS; else conc=$IDLE_CONCURRENCY_WS; fi
  # Unmeasured warm-up (code loaded, first allocations made), then a quiet moment.
  timeout --kill-after=5 40 "${WSLOAD[@]}" load --url "$(url_of "$proxy" "$tr")" \
    "${WSLOAD_TLS_ARGS[@]}" --connections 10 --rate 200 --duration 2 \
    --target "$(target_of "$proxy")" --quiet >"$out.warmup" 2>&1 </dev/null || true
  sleep 3
  m0="$(tree_mem "${PROXY_PID[$proxy]}")"
  log "idle $tr $proxy: $IDLE_CONNS connections (concurrency $conc), memory before: RSS/PSS/processes $m0"
  "${WSLOAD[@]}" idle --url "$(url_of "$proxy" "$tr")" "${WSLOAD_TLS_ARGS[@]}" \
    --connections "$IDLE_CONNS" --concurrency "$conc" --hold "$IDLE_HOLD" \
    --target "$(target_of "$proxy")" --timeout-ms 10000 >"$out" 2>"$out.err" </dev/null &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  ready="$(wait_line "$out" WSLOAD_READY "$idle_pid" $((IDLE_CONNS / 20 + 120)))"
  if [ -n "$ready" ]; then
    sleep "$IDLE_SETTLE"
    m1="$(tree_mem "${PROXY_PID[$proxy]}")"
  else
    m1="0 0 0"
    log "idle $tr $proxy: the connections were not all up (wsload: $(tail -2 "$out.err" | tr '\n' ' '))"
  fi
  log "idle $tr $proxy: $ready; memory idle: $m1"
  wait_pid_end "$idle_pid" $((IDLE_HOLD + 90))
  sleep 3
  ! proxy_crashed "$proxy" || alive=no
  m2="$(tree_mem "${PROXY_PID[$proxy]}")"
  line="$(grep '"wsload":"summary"' "$out" | tail -1 || true)"
  local established ok failed closed
  established="$(jnum "$line" established)"
  [ -n "$established" ] || established="$(sed -n 's/.* established=\([0-9]*\).*/\1/p' <<<"$ready")"
  ok="$(jnum "$line" ok)"
  failed="$(jnum "$line" failed)"
  closed="$(jnum "$line" closed_during_hold)"
  [ "$alive" = yes ] || NOTES+=("$proxy died during the idle $tr run (log: $(grep -a -m3 -iE 'BUG|signal|error' "$(proxy_log "$proxy")" | cut -c1-200 | tr '\n' '|'))")
  IDLE+=("$(awk -v p="$proxy" -v tr="$tr" -v conc="$conc" -v e="${established:-0}" \
    -v ok="${ok:-0}" -v f="${failed:-0}" -v c="${closed:-0}" 'BEGIN {
      printf "%s %s %d %d %d %d %d", p, tr, conc, e, ok, f, c }') $(idle_mem_fields "$m0" "$m1" "$m2" "${established:-0}") $alive")
  log "idle $tr $proxy: ${line:-no result}; memory after close: $m2"
}

# ---------------------------------------------------------------------------------------------
# Run

select_proxies "kamailio-websocket-modules kamailio-tls-modules" "$MODDIR" tls websocket xhttp
warn_load
START=$SECONDS
STEP_BUDGET=$((STEP_SECONDS + 20))

for proxy in "${ACTIVE[@]}"; do
  start_sipload_uas "$proxy"
  "start_$proxy"
done

for phase in $PHASES; do
  case "$phase" in
    throughput)
      for tr in $TP_TRANSPORTS; do
        case "$tr" in ws | wss) ;; *) die "TP_TRANSPORTS may hold ws and wss, not '$tr'" ;; esac
        log "throughput over $tr: $RATES tx/s, $UAC_CONNS connections, $STEP_SECONDS s per step"
        if [ "$WARMUP_SECONDS" -gt 0 ]; then
          RECORD=0
          for proxy in "${ACTIVE[@]}"; do
            step "$proxy" "$tr" "${RATES%% *}" "$WARMUP_SECONDS" || true
            ! proxy_crashed "$proxy" || restart_proxy "$proxy"
          done
          RECORD=1
        fi
        for rate in $RATES; do
          for proxy in "${ACTIVE[@]}"; do
            if ! budget_left "$STEP_BUDGET"; then
              log "time budget BENCH_MAX_SECONDS=$BENCH_MAX_SECONDS reached: skipping $tr $proxy $rate/s"
              continue
            fi
            step "$proxy" "$tr" "$rate" "$STEP_SECONDS" || true
            ! proxy_crashed "$proxy" || restart_proxy "$proxy"
            sleep 1
          done
        done
      done
      ;;
    idle)
      for tr in $IDLE_TRANSPORTS; do
        case "$tr" in ws | wss) ;; *) die "IDLE_TRANSPORTS may hold ws and wss, not '$tr'" ;; esac
        for proxy in "${ACTIVE[@]}"; do
          if ! budget_left $((IDLE_HOLD + IDLE_CONNS / 100 + 60)); then
            log "time budget reached: skipping idle $tr $proxy"
            continue
          fi
          idle_run "$proxy" "$tr"
        done
      done
      ;;
    *) die "unknown phase '$phase' (PHASES may hold throughput and idle)" ;;
  esac
done
for proxy in "${ACTIVE[@]}"; do
  stop_pid "${PROXY_PID[$proxy]}"
  stop_pid "${UAS_PID[$proxy]}"
done

# ---------------------------------------------------------------------------------------------
# Report (Markdown)

LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
report() {
  echo
  echo "## sipedge WebSocket benchmark, $DATE_START ($((SECONDS - START)) s)"
  echo
  echo "- machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1);" \
    "load average at start $LOAD_START, at end $LOAD_END (a shared machine: compare the proxies" \
    "side by side, as ratios)"
  echo "- sipedge $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet HEAD -- core plugins main.ts 2>/dev/null || echo ' (+ uncommitted changes)'):" \
    "--workers $WORKERS, ws + wss + tcp listeners; kamailio $(kamailio_version):" \
    "xhttp + websocket + tls, stateless forward(), children=$WORKERS tcp_children=$WORKERS, -x $KAMAILIO_MEM -m $KAMAILIO_SHM_MB"
  echo "- client: scripts/wsload.ts (Deno, one process; wss through $WSLOAD_TLS TLS); certificate" \
    "$CERT_DESC (self-signed, both proxies); UAS: sipload uas over TCP"
  echo "- CPU = proxy utime+stime over the step, whole process tree; % of one core (max $(nproc)00 %)." \
    "tx = OPTIONS forwarded + 200 forwarded back = 2 SIP messages. p50/p99 = wsload's latency" \
    "(request queued → answer read, µs). UAC/UAS/other % = the load tools and the rest of the machine."
  echo
  if [ "${#ROWS[@]}" -gt 0 ]; then
    echo "### Throughput: $UAC_CONNS WebSocket connections, open loop, $STEP_SECONDS s per step"
    echo
    echo "| proxy | transport | target tx/s | ok | failed | delivered tx/s | p50 µs | p99 µs | proxy CPU % | CPU ms / 1k tx | UAC % | UAS % | other % | note |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}" | awk '{ printf "| %s | %s | %d | %d | %d | %.0f | %d | %d | %.1f | %.1f | %.0f | %.0f | %.0f | %s |\n",
      $1, $2, $3, $5, $6, $7, $8, $9, $11, $12, $13, $14, $15, $17 }'
    echo
    printf '%s\n' "${ROWS[@]}" | awk '
      { key = $2 " " $3; if ($1 == "sipedge") s[key] = $12; else if ($1 == "kamailio") k[key] = $12
        if ($6 > 0) bad[key] = 1 }
      END {
        for (key in s) if ((key in k) && k[key] > 0) {
          split(key, a, " ")
          printf "- %s at %d tx/s: sipedge / kamailio CPU per tx = **%.2f x**%s\n", a[1], a[2], s[key] / k[key], (key in bad ? " (a step had failures)" : "")
        }
      }' | sort -k2,2 -k4,4n
    echo
  fi
  if [ "${#IDLE[@]}" -gt 0 ]; then
    echo "### Memory per idle connection ($IDLE_CONNS connections, each upgraded and answered once, then idle)"
    echo
    echo "RSS / PSS summed over the proxy's processes (kB, from /proc/PID/smaps_rollup); per connection = (idle − before) / established, in KB (kB of smaps_rollup = 1,024 bytes)."
    echo "**Per conn** is the figure to compare: RSS for sipedge (one process; its PSS moves when other deno"
    echo "processes such as wsload start, as they share the deno binary's pages), PSS for Kamailio (its"
    echo "processes share the shm pool, which the RSS sum counts once per process)."
    echo
    echo "| proxy | transport | connect concurrency | established | answered | failed | closed by proxy while idle | RSS before / idle / after close kB | PSS before / idle / after close kB | RSS per conn KB | PSS per conn KB | **per conn KB** | proxy survived |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: | --- |"
    printf '%s\n' "${IDLE[@]}" | awk '{ printf "| %s | %s | %d | %d | %d | %d | %d | %d / %d / %d | %d / %d / %d | %.1f | %.1f | **%.1f** | %s |\n",
      $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, ($1 == "kamailio" ? $15 : $14), $16 }'
    echo
    printf '%s\n' "${IDLE[@]}" | awk '{ v = ($1 == "kamailio" ? $15 : $14); if ($1 == "sipedge") s[$2] = v; else k[$2] = v }
      END { for (t in s) if ((t in k) && k[t] > 0) printf "- idle %s: sipedge / kamailio memory per connection = **%.2f x**\n", t, s[t] / k[t] }'
    echo
  fi
  report_notes "###"
  echo "(failed: requests without a 2xx — timeouts, non-2xx, connections lost, no open connection;"
  echo "delivered well below target with 0 failed means the client or the shared CPUs could not keep up.)"
}
report
[ -z "${BENCH_REPORT:-}" ] || { report >"$BENCH_REPORT"; log "report written to $BENCH_REPORT"; }

if [ -n "${BENCH_RESULTS:-}" ]; then
  {
    printf 'proxy\ttransport\ttarget_per_s\tsent\tok\tfailed\tdelivered_per_s\tp50_us\tp99_us\t'
    printf 'proxy_cpu_s\tproxy_cpu_pct\tcpu_ms_per_1k_tx\tuac_cpu_pct\tuas_cpu_pct\tother_cpu_pct\t'
    printf 'all_cpu_pct\tnote\n'
    [ "${#ROWS[@]}" -eq 0 ] || printf '%s\n' "${ROWS[@]}" | tr ' ' '\t'
    printf 'idle\tproxy\ttransport\tconcurrency\testablished\tok\tfailed\tclosed_during_hold\t'
    printf 'rss0_kb\trss1_kb\trss2_kb\tpss0_kb\tpss1_kb\tpss2_kb\trss_per_conn_kib\tpss_per_conn_kib\talive\n'
    [ "${#IDLE[@]}" -eq 0 ] || printf 'idle\t%s\n' "${IDLE[@]}" | tr ' ' '\t'
  } >"$BENCH_RESULTS"
  log "results written to $BENCH_RESULTS"
fi
