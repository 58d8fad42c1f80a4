#!/usr/bin/env bash
# bench_cost.sh — what sipedge costs at ordinary load (issue 11): memory at rest, memory per idle
# TCP/TLS connection, memory after TLS handshake churn, CPU per transaction and latency at
# moderate rates; Kamailio 5.6 beside it in the same run wherever the comparison is meaningful.
# Prints a Markdown report (date, command, machine, commit, then one section per step).
#
#   sipload (uac / idle, tcp or tls) ---> PROXY (tcp + tls listeners) --tcp--> sipload uas
#            <--------------- 200 OK routed back by Via ---------------
#
# Steps (--only picks some; all five by default, in this order):
#
#  rest   sipedge and Kamailio started side by side, no traffic; REST_SECONDS after all are
#         ready: sipedge's VmRSS / VmHWM, PSS, anonymous vs file-backed memory (status RssAnon /
#         RssFile), the file-backed part split from /proc/PID/smaps (the deno binary's text and
#         data mappings: shared with every other deno process on the machine, and the same for any
#         Deno program; shared libraries; other files), the anonymous part split the same way
#         (V8 heap pages: anonymous rw 256 KiB mappings, this V8 has no pointer compression;
#         glibc thread arenas: 64 MiB-aligned heaps; the main arena [heap]; other), and the JS
#         heaps in use from the control API's /metrics (each worker isolate, the supervisor).
#         Beside it, in the same run, the bare runtime in sipedge's shape (when PROXIES has
#         sipedge): scripts/bench_cost_bare.ts --mode rest, sipedge's deno flags, a main thread
#         and WORKERS Web Workers that only keep a 250 ms timer (sipedge's workers keep a
#         heartbeat like that), no sockets, no module but its own; started at the same moment as
#         sipedge (ready when it prints READY), sampled the same way right after sipedge, its JS
#         heaps printed on SIGUSR2. Its column: the runtime's floor for WORKERS + 1 isolates;
#         "sipedge − bare runtime" is what sipedge's own code, modules and state add (RSS,
#         anonymous, per class).
#         Kamailio: RSS sum and PSS sum over its processes (they share the shm pool: the PSS sum
#         is what it really holds, the RSS sum counts shared pages once per process).
#  idle   memory per idle connection, for each transport of IDLE_TRANSPORTS: a fresh proxy, a 2 s
#         unmeasured warm-up (200 tx/s on 10 connections), then `sipload idle --conns IDLE_CONNS`
#         (each connection gets one OPTIONS answered, then stays idle); memory read IDLE_SETTLE s
#         after all are up, and after they closed. Per connection = (idle − before) /
#         established: RSS for sipedge (one process), PSS sum for Kamailio. IDLE_BARE=1 adds the
#         bare runtime (scripts/bench_cost_bare.ts: Deno.listen with a pending 2 KB read for tcp,
#         a node:tls server for tls, answering the OPTIONS itself, same deno flags as sipedge):
#         the runtime's own socket cost, the floor under sipedge's figure.
#  churn  TLS handshake churn on a fresh sipedge: CHURN_ROUNDS rounds of CHURN_HANDSHAKES
#         handshakes (`sipload uac --tls --new-conn-per-request --conns CHURN_CONCURRENCY --rate
#         CHURN_RATE`: full handshake, one OPTIONS, close_notify + FIN); memory 3 s after each
#         round, then at CHURN_AFTER seconds after the last one (sipedge's malloc_trim runs at
#         most once a minute while RSS stays 16 MiB above its start: core/memory_trim.ts).
#         sipedge only: Kamailio 5.6.3 (OpenSSL 3) crashes on concurrent TLS handshakes
#         (BENCHMARKS.md §6), so it cannot run this at concurrency 10.
#  cpu    CPU per transaction and latency: `sipload uac --conns CPU_CONNS --rate R` open loop,
#         CPU_SECONDS per step, each rate of CPU_RATES, over each transport of CPU_TRANSPORTS,
#         through each proxy of CPU_PROXIES (sipedge, Kamailio and the relay by default), after a
#         CPU_WARMUP s unmeasured warm-up per proxy and transport at the highest rate of CPU_RATES
#         (a proxy that runs for months is measured with its JIT settled: after 4 s at 2,000/s
#         V8 still compiled about 100 functions in sipedge's next 8 s, on its background threads,
#         and about 30 after 6 s at 20,000/s; BENCHMARKS.md §11d). CPU = utime+stime of the
#         proxy's whole process tree over the step (/proc/PID/stat; all of Kamailio's processes,
#         sipedge's one process with all its threads), per 1,000 transactions (1 tx = an OPTIONS
#         forwarded + its 200 forwarded back); p50/p99 from sipload (request sent → answer read).
#         Rounds: this machine's cost of a wake-up varies from minute to minute (Kamailio at
#         2,000 tx/s measured 91.5 and 223 ms / 1k tx in two runs of one morning), so each rate
#         runs CPU_ROUNDS rounds of all the proxies, interleaved, the order rotated each round
#         (A B C, B C A, C A B): the proxies of one round are measured seconds apart, under the
#         same conditions. The summary shows per proxy the median of its rounds (CPU per tx,
#         p50, p99), and the ratios computed per round (sipedge / Kamailio of the same round),
#         as their median and min–max over the rounds; the full table lists every round.
#         The relay (scripts/bench_cost_bare.ts --mode relay, sipedge's deno flags, WORKERS Web
#         Workers with SO_REUSEPORT listeners like sipedge's): per client connection one TCP
#         connection to the UAS and bytes copied both ways (conn.read / conn.write; a node:tls
#         server for tls), no SIP parsing. That is the least any proxy on Deno's socket ops must
#         spend per transaction (one read and one write each way per message, and their
#         wake-ups): the runtime's floor. sipedge − relay = what sipedge's own code costs per tx
#         (parsing, routing, Via, its worker plumbing), per round. The relay works only because
#         sipload uas answers on the connection the request came on; it is not a SIP proxy.
#  closed saturation, closed loop (the issue's "the closed-loop lead is kept"): `sipload uac
#         --conns C --depth D` (C connections, D transactions outstanding on each, a new one sent
#         as soon as one is answered) for each shape CxD of CLOSED_SHAPES, CLOSED_SECONDS per run,
#         over each transport of CLOSED_TRANSPORTS, through the cpu step's proxies (CPU_PROXIES),
#         CLOSED_ROUNDS interleaved rounds as in the cpu step, after a CLOSED_WARMUP s warm-up per
#         proxy and transport. Throughput (answered tx/s), CPU per 1k tx and p50/p99; ratios per
#         round. The load tools share the machine's cores with the proxy, as in every step.
#
# sipedge runs as `deno task start` runs it (the runtime flags of SIPEDGE_RUN in
# scripts/bench_lib.sh: --unstable-net -A --no-code-cache --v8-flags=--max-semi-space-size=1)
# with `--workers WORKERS` set in a generated config: a tcp and a tls listener (certificate
# generated here, ECDSA P-256, used by both proxies), the control API (for /metrics),
# static_router default_route to the UAS, timeouts (idle_timeout 600 s), limits raised above
# IDLE_CONNS, blacklist.
# Kamailio: stateless forward() to the UAS, tcp + tls listeners (tls.so), children = tcp_children
# = WORKERS, `-x KAMAILIO_MEM -m KAMAILIO_SHM_MB -M 8`. TLS clients connect one at a time toward
# Kamailio (connect concurrency 1) for the same reason as above; sipedge gets the same.
#
# Needs: bash, openssl, curl, deno, sipload (SIPLOAD=..., or built from ../shared/tools/sipload
# into the temp folder), Kamailio with its tls module for the comparison (skipped when missing:
# apt-get install -y kamailio kamailio-tls-modules). Linux /proc and glibc. `ulimit -n` is raised
# to the hard limit; IDLE_CONNS needs about IDLE_CONNS + 1000 descriptors. Full run ≈ 20–25 min,
# --quick ≈ 2–3 min. The machine should be otherwise quiet: the load average is in the report.
#
# Usage: scripts/bench_cost.sh [--only STEPS] [--quick] [--help]     (`deno task bench-cost`)
#
#   --only STEPS    comma- or space-separated steps: rest,idle,churn,cpu,closed (default: all)
#   --quick         a smoke check: smaller N and shorter steps (REST_SECONDS=10, IDLE_CONNS=500,
#                   CHURN_HANDSHAKES=1500, CHURN_AFTER="10", CPU_RATES="2000 10000",
#                   CPU_SECONDS=3, CPU_WARMUP=1, CPU_ROUNDS=1, CLOSED_TRANSPORTS=tcp,
#                   CLOSED_SHAPES=10x32, CLOSED_SECONDS=3, CLOSED_WARMUP=1, CLOSED_ROUNDS=1);
#                   variables set in the environment still win
#
# Environment (all optional):
#   WORKERS=2                       sipedge --workers (in its config); Kamailio children/tcp_children
#   PROXIES="sipedge kamailio"      which proxies to run in rest, idle and churn (churn: sipedge
#                                   only); relay may be listed but only the cpu step runs it
#   REST_SECONDS=60                 rest: seconds after all are ready before the sample
#   IDLE_TRANSPORTS="tcp tls"       idle: transports
#   IDLE_CONNS=5000                 idle: connections
#   IDLE_SETTLE=3                   idle: seconds between "all up" and the sample
#   IDLE_TCP_CONCURRENCY=100        idle: connections opened at once over tcp
#   IDLE_TLS_CONCURRENCY=1          idle: over tls (1: clear of Kamailio's concurrent-handshake crash)
#   IDLE_BARE=1                     idle: also the bare runtime (0 = skip)
#   CHURN_ROUNDS=2                  churn: rounds
#   CHURN_HANDSHAKES=24000          churn: handshakes per round
#   CHURN_CONCURRENCY=10            churn: handshakes at once (sipload --conns)
#   CHURN_RATE=300                  churn: handshakes per second
#   CHURN_AFTER="10 30 60 90"       churn: samples, seconds after the last round
#   CHURN_LOG_LEVEL=warning         churn: sipedge log level (debug shows its malloc_trim lines,
#                                   which the report then lists)
#   CPU_TRANSPORTS="tcp tls"        cpu: transports
#   CPU_RATES="2000 10000 20000"    cpu: transactions per second, one step each
#   CPU_CONNS=10                    cpu: persistent connections of the client
#   CPU_SECONDS=10                  cpu: seconds per step
#   CPU_WARMUP=4                    cpu: unmeasured warm-up per proxy and transport at the highest
#                                   rate of CPU_RATES (0 = none)
#   CPU_PROXIES="$PROXIES relay"    cpu: proxies (sipedge, kamailio, relay); default: PROXIES and
#                                   the relay ("sipedge kamailio relay"); kamailio is skipped
#                                   when it is not installed
#   CPU_ROUNDS=3                    cpu: rounds of all the proxies per transport and rate
#   RELAY_TLS=node                  cpu, closed: the relay's TLS listener, node (node:tls, what
#                                   plugins/tls uses) or native (Deno.listenTls: the runtime's own
#                                   TLS, which plugins/tls cannot use; docs/decisions.md, eighth pass)
#   CLOSED_TRANSPORTS="tcp tls"     closed: transports
#   CLOSED_SHAPES="1x32 10x32"      closed: CONNSxDEPTH, one run each
#   CLOSED_SECONDS=10               closed: seconds per run
#   CLOSED_WARMUP=3                 closed: unmeasured warm-up per proxy and transport (first shape)
#   CLOSED_ROUNDS=3                 closed: rounds of all the proxies per transport and shape
#   SIPEDGE_CMD='...'               sipedge start command, run from the repo root; {config} is
#                                   replaced by the generated config file. Default: deno
#                                   $SIPEDGE_RUN main.ts --config {config}
#   SIPLOAD=/path/to/sipload        load tool and UAS (default: built from ../shared/tools/sipload)
#   DENO=/path/to/deno              deno binary (default: deno on PATH, else npx deno@2.9.6)
#   KAMAILIO=/usr/sbin/kamailio     Kamailio binary
#   KAMAILIO_MEM=tlsf               Kamailio memory manager (-x), see bench_tcp.sh
#   KAMAILIO_SHM_MB=2048            Kamailio shared memory (-m), MB (≈ 72 KB per TLS connection)
#   BENCH_REPORT=/path/file.md      also write the Markdown report there
#   BENCH_KEEP=1                    keep the temp folder (logs, configs, raw outputs)
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }

# The command line and the settings given in the environment, for the report.
COMMAND="scripts/bench_cost.sh${*:+ $*}"
ENV_GIVEN=""
for var in WORKERS PROXIES REST_SECONDS IDLE_TRANSPORTS IDLE_CONNS IDLE_SETTLE \
  IDLE_TCP_CONCURRENCY IDLE_TLS_CONCURRENCY IDLE_BARE CHURN_ROUNDS CHURN_HANDSHAKES \
  CHURN_CONCURRENCY CHURN_RATE CHURN_AFTER CHURN_LOG_LEVEL CPU_TRANSPORTS CPU_RATES CPU_CONNS \
  CPU_SECONDS CPU_WARMUP CPU_PROXIES CPU_ROUNDS CLOSED_TRANSPORTS CLOSED_SHAPES CLOSED_SECONDS \
  CLOSED_WARMUP CLOSED_ROUNDS RELAY_TLS SIPEDGE_CMD KAMAILIO_MEM KAMAILIO_SHM_MB; do
  [ -z "${!var+x}" ] || ENV_GIVEN+="$var=\"${!var}\" "
done

STEPS="rest idle churn cpu closed"
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --quick) QUICK=1 ;;
    --only)
      [ $# -ge 2 ] || { echo "bench_cost.sh: --only needs a list of steps (rest,idle,churn,cpu,closed)" >&2; exit 2; }
      STEPS="${2//,/ }"
      shift
      ;;
    --only=*) STEPS="${1#--only=}" STEPS="${STEPS//,/ }" ;;
    *) echo "bench_cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for step in $STEPS; do
  case "$step" in rest | idle | churn | cpu | closed) ;; *)
    echo "bench_cost.sh: unknown step '$step' (rest, idle, churn, cpu, closed)" >&2
    exit 2
    ;;
  esac
done
[ -n "${STEPS// /}" ] || { echo "bench_cost.sh: --only: no step given" >&2; exit 2; }

# default VAR FULL QUICK: the environment's value, else the full or the quick default.
default() {
  [ -n "${!1+x}" ] || printf -v "$1" '%s' "$([ "$QUICK" = 1 ] && echo "$3" || echo "$2")"
}
default WORKERS 2 2
default PROXIES "sipedge kamailio" "sipedge kamailio"
default REST_SECONDS 60 10
default IDLE_TRANSPORTS "tcp tls" "tcp tls"
default IDLE_CONNS 5000 500
default IDLE_SETTLE 3 2
default IDLE_TCP_CONCURRENCY 100 100
default IDLE_TLS_CONCURRENCY 1 1
default IDLE_BARE 1 1
default CHURN_ROUNDS 2 2
default CHURN_HANDSHAKES 24000 1500
default CHURN_CONCURRENCY 10 10
default CHURN_RATE 300 300
default CHURN_AFTER "10 30 60 90" "10"
default CHURN_LOG_LEVEL warning warning
default CPU_TRANSPORTS "tcp tls" "tcp tls"
default CPU_RATES "2000 10000 20000" "2000 10000"
default CPU_CONNS 10 10
default CPU_SECONDS 10 3
default CPU_WARMUP 4 1
default CPU_ROUNDS 3 1
default CLOSED_TRANSPORTS "tcp tls" tcp
default CLOSED_SHAPES "1x32 10x32" 10x32
default CLOSED_SECONDS 10 3
default CLOSED_WARMUP 3 1
default CLOSED_ROUNDS 3 1
# The cpu step's proxies: those of PROXIES and the relay (the runtime's floor).
[ -n "${CPU_PROXIES+x}" ] || CPU_PROXIES="$PROXIES$([[ " $PROXIES " == *" relay "* ]] || echo " relay")"
# shellcheck disable=SC2153 # set by default() above
[[ "$CPU_ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench_cost.sh: CPU_ROUNDS must be a positive integer, not '$CPU_ROUNDS'" >&2; exit 2; }
[[ "$CLOSED_ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench_cost.sh: CLOSED_ROUNDS must be a positive integer, not '$CLOSED_ROUNDS'" >&2; exit 2; }
for shape in $CLOSED_SHAPES; do
  [[ "$shape" =~ ^[1-9][0-9]*x[1-9][0-9]*$ ]] || { echo "bench_cost.sh: CLOSED_SHAPES: CONNSxDEPTH (e.g. 10x32), not '$shape'" >&2; exit 2; }
done
default KAMAILIO_MEM tlsf tlsf
default RELAY_TLS node node
default KAMAILIO_SHM_MB 2048 2048

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"
bench_defaults # the rest: KAMAILIO, SIPLOAD

command -v openssl >/dev/null || die "openssl is not installed (apt-get install -y openssl)"
command -v curl >/dev/null || die "curl is not installed (apt-get install -y curl)"

bench_start bench_cost
DENO_BIN="$(find_deno)"
SIPLOAD_DESC="${SIPLOAD:-built from ../shared/tools/sipload}"
need_sipload
raise_nofile "$IDLE_CONNS"

# ---------------------------------------------------------------------------------------------
# Memory accounting (Linux /proc; smaps kB are KiB)

# "VmRSS VmHWM RssAnon RssFile RssShmem THREADS" (kB) of one process, from /proc/PID/status.
proc_status() { # PID
  awk '$1 == "VmRSS:" { r = $2 } $1 == "VmHWM:" { h = $2 } $1 == "RssAnon:" { a = $2 }
    $1 == "RssFile:" { f = $2 } $1 == "RssShmem:" { s = $2 } $1 == "Threads:" { t = $2 }
    END { printf "%d %d %d %d %d %d\n", r, h, a, f, s, t }' "/proc/$1/status" 2>/dev/null ||
    echo "0 0 0 0 0 0"
}

# Rss (kB) of one process by kind of mapping, from /proc/PID/smaps, as
# "BIN_TEXT BIN_TEXT_PSS BIN_DATA LIBS FILES V8_PAGES ARENAS MAIN_ARENA OTHER_ANON":
# the process's own executable (r-x text; the other mappings of it: rodata, data, relro),
# shared libraries, other files, V8 heap pages (anonymous rw mappings of exactly 256 KiB: this
# V8 has no pointer compression, each heap page is its own mmap), glibc thread arenas (an
# anonymous rw mapping at a 64 MiB-aligned address followed by its PROT_NONE rest, 64 MiB in
# all), the glibc main arena ([heap]), other anonymous memory (malloc's mmapped chunks, V8 large
# objects and code space, stacks).
smaps_classes() { # PID
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null || true)"
  awk -v exe="$exe" '
    function hex(s,   i, n) {
      n = 0
      for (i = 1; i <= length(s); i++) n = n * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
      return n
    }
    $1 ~ /^[0-9a-f]+-[0-9a-f]+$/ {
      m++; split($1, a, "-"); s[m] = hex(a[1]); e[m] = hex(a[2]); p[m] = $2
      name = ""; for (i = 6; i <= NF; i++) name = name (i > 6 ? " " : "") $i
      n[m] = name; r[m] = 0; q[m] = 0; next
    }
    $1 == "Rss:" { r[m] = $2 }
    $1 == "Pss:" { q[m] = $2 }
    END {
      A = 67108864
      for (i = 1; i <= m; i++) if (n[i] == "" && p[i] ~ /^rw/ && s[i] % A == 0) {
        j = i; end = e[i]
        while (j + 1 <= m && n[j + 1] == "" && s[j + 1] == end && p[j + 1] ~ /^---/) { j++; end = e[j] }
        if (end - s[i] == A) for (k = i; k <= j; k++) arena[k] = 1
      }
      for (i = 1; i <= m; i++) {
        name = n[i]
        if (exe != "" && (name == exe || name == exe " (deleted)")) c = (p[i] ~ /x/ ? "text" : "data")
        else if (name == "[heap]") c = "heap"
        else if (name ~ /^\//) c = (name ~ /\.so($|\.)/ ? "libs" : "files")
        else if (name != "") c = "other"
        else if (i in arena) c = "arenas"
        else if (p[i] == "rw-p" && e[i] - s[i] == 262144) c = "v8"
        else c = "other"
        R[c] += r[i]; P[c] += q[i]
      }
      printf "%d %d %d %d %d %d %d %d %d\n", R["text"], P["text"], R["data"], R["libs"], R["files"],
        R["v8"], R["arenas"], R["heap"], R["other"]
    }' "/proc/$1/smaps" 2>/dev/null || echo "0 0 0 0 0 0 0 0 0"
}

# sipedge's JS heaps and connections from /metrics: "WORKER_HEAPS_MIB(a/b) MAIN_HEAP_MIB CONNS".
sipedge_heaps() {
  curl -s --max-time 5 "http://127.0.0.1:${CTRL_PORT}/metrics" 2>/dev/null | awk '
    /^sipedge_worker_heap_used_bytes/ { w = w (w == "" ? "" : "/") sprintf("%.1f", $NF / 1048576) }
    /^sipedge_process_heap_used_bytes/ { m = sprintf("%.1f", $NF / 1048576) }
    /^sipedge_worker_connections\{/ { c += $NF }
    END { print (w == "" ? "-" : w), (m == "" ? "-" : m), c + 0 }' || echo "- - 0"
}

# The value of KEY=... in a sipload result line.
kv() { # LINE KEY
  sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# ---------------------------------------------------------------------------------------------
# Certificate, proxies, UASes

log "generating the test certificate (ECDSA P-256)"
make_cert ec

declare -A PROXY_PID TLS_PORT TCP_PORT UAS_PID UAS_PORT STARTS
MAX_CONNS=$((IDLE_CONNS * 2 + 1000))
CTRL_PORT=""
SIPEDGE_LOG_LEVEL=warning
MODDIR="$(kamailio_moddir)"

start_sipedge() {
  local cfg="$WORK/sipedge.toml" logfile
  STARTS[sipedge]=$((${STARTS[sipedge]:-0} + 1))
  logfile="$WORK/sipedge_${STARTS[sipedge]}.log"
  TLS_PORT[sipedge]="$(free_port)"
  TCP_PORT[sipedge]="$(free_port)"
  CTRL_PORT="$(free_port)"
  {
    cat <<EOF
# Generated by scripts/bench_cost.sh
[sipedge]
workers = $WORKERS
log_level = "$SIPEDGE_LOG_LEVEL"

[control]
address = "127.0.0.1:$CTRL_PORT"

[[listen]]
address = "tcp:127.0.0.1:${TCP_PORT[sipedge]}"

[[listen]]
address = "tls:127.0.0.1:${TLS_PORT[sipedge]}"

EOF
    sipedge_toml_tls
    echo
    sipedge_toml_route "${UAS_PORT[sipedge]}" "$MAX_CONNS"
    printf '\n[plugins.blacklist]\n'
  } >"$cfg"
  launch_sipedge "$(sipedge_cmd "$cfg")" "$logfile"
  PROXY_PID[sipedge]=$LAUNCHED_PID
  wait_listening "${TCP_PORT[sipedge]}" 15 sipedge "${PROXY_PID[sipedge]}"
  wait_listening "${TLS_PORT[sipedge]}" 15 sipedge "${PROXY_PID[sipedge]}"
  wait_listening "$CTRL_PORT" 15 sipedge "${PROXY_PID[sipedge]}"
}

start_kamailio() {
  STARTS[kamailio]=$((${STARTS[kamailio]:-0} + 1))
  TLS_PORT[kamailio]="$(free_port)"
  TCP_PORT[kamailio]="$(free_port)"
  launch_kamailio "$WORK/kamailio_${STARTS[kamailio]}" "$(proxy_log kamailio)" "${UAS_PORT[kamailio]}" \
    "$KAMAILIO_SHM_MB" --tls --mpath "$MODDIR" \
    --comment "Stateless forwarding proxy with tcp and tls listeners (generated by scripts/bench_cost.sh)." \
    --listen "tcp:127.0.0.1:${TCP_PORT[kamailio]}" --listen "tls:127.0.0.1:${TLS_PORT[kamailio]}" \
    --max-conns "$MAX_CONNS"
  PROXY_PID[kamailio]=$LAUNCHED_PID
  log "kamailio listening on tcp 127.0.0.1:${TCP_PORT[kamailio]}, tls 127.0.0.1:${TLS_PORT[kamailio]}"
}

# The bare runtime (scripts/bench_cost_bare.ts) for TRANSPORT; it answers the OPTIONS itself.
start_bare() { # TRANSPORT
  local port logfile
  STARTS[bare]=$((${STARTS[bare]:-0} + 1))
  logfile="$WORK/bare_${STARTS[bare]}.log"
  port="$(free_port)"
  TCP_PORT[bare]=$port
  TLS_PORT[bare]=$port
  # shellcheck disable=SC2086 # SIPEDGE_RUN is a list of words
  (cd "$REPO" && exec "$DENO_BIN" $SIPEDGE_RUN scripts/bench_cost_bare.ts --mode "$1" \
    --port "$port" --buf 2048 --cert "$WORK/cert.pem" --key "$WORK/key.pem") \
    >"$logfile" 2>&1 </dev/null &
  PROXY_PID[bare]=$!
  PIDS+=("$!")
  wait_listening "$port" 30 "bare $1 server" "${PROXY_PID[bare]}"
}

# The relay (scripts/bench_cost_bare.ts --mode relay), the cpu step's runtime floor: WORKERS
# workers with tcp and tls listeners, each client connection relayed to its own UAS as bytes.
start_relay() {
  local logfile
  STARTS[relay]=$((${STARTS[relay]:-0} + 1))
  logfile="$WORK/relay_${STARTS[relay]}.log"
  TCP_PORT[relay]="$(free_port)"
  TLS_PORT[relay]="$(free_port)"
  # shellcheck disable=SC2086 # SIPEDGE_RUN is a list of words
  (cd "$REPO" && exec "$DENO_BIN" $SIPEDGE_RUN scripts/bench_cost_bare.ts --mode relay \
    --port "${TCP_PORT[relay]}" --upstream "127.0.0.1:${UAS_PORT[relay]}" --workers "$WORKERS" \
    --tls-port "${TLS_PORT[relay]}" --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
    --tls-impl "$RELAY_TLS") \
    >"$logfile" 2>&1 </dev/null &
  PROXY_PID[relay]=$!
  PIDS+=("$!")
  wait_listening "${TCP_PORT[relay]}" 30 "relay" "${PROXY_PID[relay]}"
  wait_listening "${TLS_PORT[relay]}" 30 "relay" "${PROXY_PID[relay]}"
  log "relay listening on tcp 127.0.0.1:${TCP_PORT[relay]}, tls 127.0.0.1:${TLS_PORT[relay]} ($RELAY_TLS, $WORKERS workers)"
}

# The rest step's runtime floor (scripts/bench_cost_bare.ts --mode rest): sipedge's deno flags, a
# main thread and WORKERS Web Workers with a 250 ms timer each, nothing else; no port. Launched
# without waiting (it starts beside sipedge); rest_bare_ready waits for its READY line.
launch_rest_bare() {
  STARTS[bare]=$((${STARTS[bare]:-0} + 1))
  # shellcheck disable=SC2086 # SIPEDGE_RUN is a list of words
  (cd "$REPO" && exec "$DENO_BIN" $SIPEDGE_RUN scripts/bench_cost_bare.ts --mode rest \
    --workers "$WORKERS") >"$(proxy_log bare)" 2>&1 </dev/null &
  PROXY_PID[bare]=$!
  PIDS+=("$!")
}

# True once the rest bare process printed READY (up to 30 s); false if it exited or timed out.
rest_bare_ready() {
  local deadline=$((SECONDS + 30))
  until grep -q '^READY' "$(proxy_log bare)"; do
    kill -0 "${PROXY_PID[bare]}" 2>/dev/null || return 1
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# The rest bare process's JS heaps in use (MiB), "WORKERS(a/b) MAIN": it prints them on SIGUSR2.
rest_bare_heaps() {
  local logfile n deadline=$((SECONDS + 5)) line=""
  logfile="$(proxy_log bare)"
  n="$(grep -c '^HEAPS' "$logfile" || true)"
  kill -USR2 "${PROXY_PID[bare]}" 2>/dev/null || { echo "- -"; return; }
  while [ "$SECONDS" -lt "$deadline" ]; do
    line="$(grep '^HEAPS' "$logfile" | sed -n "$((n + 1))p")"
    [ -z "$line" ] || break
    sleep 0.1
  done
  if [ -n "$line" ]; then cut -d' ' -f2-3 <<<"$line"; else echo "- -"; fi
}

stop_proxy() { # NAME
  [ -z "${PROXY_PID[$1]:-}" ] || stop_pid "${PROXY_PID[$1]}"
  PROXY_PID[$1]=""
}

# ---------------------------------------------------------------------------------------------
# Steps

# True if PROXY can run here (kamailio: installed, with tls.so; said once); dies on an unknown name.
KAMAILIO_OK=""
proxy_available() { # PROXY
  case "$1" in
    sipedge | relay) return 0 ;;
    kamailio)
      if [ -z "$KAMAILIO_OK" ]; then
        KAMAILIO_OK=yes
        if [ ! -x "$KAMAILIO" ]; then
          log "kamailio is not installed: skipping it (apt-get install -y kamailio kamailio-tls-modules)"
          KAMAILIO_OK=no
        elif [ -z "$MODDIR" ] || [ ! -e "$MODDIR/tls.so" ]; then
          log "kamailio's tls.so is missing: skipping it (apt-get install -y kamailio-tls-modules)"
          KAMAILIO_OK=no
        fi
      fi
      [ "$KAMAILIO_OK" = yes ]
      ;;
    *) die "unknown proxy '$1' (PROXIES and CPU_PROXIES may hold sipedge, kamailio and relay)" ;;
  esac
}
in_list() { [[ " $2 " == *" $1 "* ]]; } # WORD "LIST"

# ACTIVE: the proxies of rest, idle and churn (PROXIES without the relay); CPU_ACTIVE: the cpu
# step's (CPU_PROXIES). UAS_FOR: the proxies that get their own UAS (all of them).
ACTIVE=()
CPU_ACTIVE=()
for proxy in $PROXIES; do
  if [ "$proxy" != relay ] && proxy_available "$proxy"; then ACTIVE+=("$proxy"); fi
done
if in_list cpu "$STEPS" || in_list closed "$STEPS"; then
  for proxy in $CPU_PROXIES; do
    if proxy_available "$proxy" && ! in_list "$proxy" "${CPU_ACTIVE[*]:-}"; then CPU_ACTIVE+=("$proxy"); fi
  done
  [ "${#CPU_ACTIVE[@]}" -gt 0 ] || die "no proxy to benchmark in the cpu and closed steps (CPU_PROXIES=\"$CPU_PROXIES\")"
fi
if [ -n "$(sed 's/closed//g; s/cpu//g; s/ //g' <<<"$STEPS")" ]; then
  [ "${#ACTIVE[@]}" -gt 0 ] || die "no proxy to benchmark (PROXIES=\"$PROXIES\")"
fi
UAS_FOR=()
for proxy in "${ACTIVE[@]}" "${CPU_ACTIVE[@]}"; do
  in_list "$proxy" "${UAS_FOR[*]:-}" || UAS_FOR+=("$proxy")
done
has() { [[ " ${ACTIVE[*]:-} " == *" $1 "* ]]; } # PROXY

NOTES=()
STEP_TIMES=() # "STEP START END LOAD_START LOAD_END"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- rest ------------------------------------------------------------------------------------
REST_SE=""   # proc_status | smaps_classes | PSS | heaps
REST_BARE="" # the same for the bare runtime (scripts/bench_cost_bare.ts --mode rest)
REST_KAM=""  # tree_mem
# "proc_status | smaps_classes | PSS" of PID.
rest_sample() { # PID
  local pss
  pss="$(awk '$1 == "Pss:" { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0)"
  echo "$(proc_status "$1") | $(smaps_classes "$1") | $pss"
}
rest_step() {
  local p bare=0
  # The bare runtime is sipedge's reference: it starts beside sipedge (launched first, not
  # waited for, so that both start at the same moment) and is sampled right after it.
  if has sipedge; then
    bare=1
    launch_rest_bare
  fi
  for p in "${ACTIVE[@]}"; do "start_$p"; done
  if [ "$bare" = 1 ]; then
    if rest_bare_ready; then
      log "rest: bare runtime ready (main + $WORKERS empty workers)"
    else
      NOTES+=("rest: the bare runtime (bench_cost_bare.ts --mode rest) was not ready after 30 s: left out ($(tail -3 "$(proxy_log bare)" | cut -c1-160 | tr '\n' '|'))")
      stop_proxy bare
      bare=0
    fi
  fi
  log "rest: all ready, waiting $REST_SECONDS s"
  sleep "$REST_SECONDS"
  if has sipedge; then
    REST_SE="$(rest_sample "${PROXY_PID[sipedge]}")"
    [ "$bare" = 0 ] || REST_BARE="$(rest_sample "${PROXY_PID[bare]}")"
    REST_SE+=" | $(sipedge_heaps)"
    [ "$bare" = 0 ] || REST_BARE+=" | $(rest_bare_heaps)"
    log "rest sipedge: status(VmRSS VmHWM RssAnon RssFile RssShmem threads) / classes / PSS / heaps: $REST_SE"
    [ "$bare" = 0 ] || log "rest bare runtime: the same: $REST_BARE"
  fi
  if has kamailio; then
    REST_KAM="$(tree_mem "${PROXY_PID[kamailio]}" anon)"
    log "rest kamailio: RSS sum / PSS sum / anonymous sum / processes: $REST_KAM"
  fi
  for p in "${ACTIVE[@]}"; do stop_proxy "$p"; done
  [ "$bare" = 0 ] || stop_proxy bare
}

# --- idle ------------------------------------------------------------------------------------
IDLE=() # one line per run, fields: see idle_run
idle_run() { # PROXY TRANSPORT
  local proxy=$1 tr=$2 port conc out tls=() m0 m1 m2 c0="" c1="" h0="" h1="" ready line
  local alive=yes ruri
  out="$WORK/idle_${proxy}_$tr.out"
  if [ "$proxy" = bare ]; then start_bare "$tr"; else "start_$proxy"; fi
  if [ "$tr" = tls ]; then
    port="${TLS_PORT[$proxy]}" conc=$IDLE_TLS_CONCURRENCY tls=(--tls)
  else
    port="${TCP_PORT[$proxy]}" conc=$IDLE_TCP_CONCURRENCY
  fi
  ruri="sip:uas@127.0.0.1:${UAS_PORT[$proxy]:-$port}"
  # Unmeasured warm-up (code compiled, first allocations made), then a quiet moment.
  timeout --kill-after=5 30 "$SIPLOAD" uac --proxy "127.0.0.1:$port" "${tls[@]}" --conns 10 \
    --connect-concurrency "$conc" --rate 200 --duration 2 --ruri "$ruri" \
    >"$out.warmup" 2>&1 </dev/null || true
  sleep 3
  m0="$(tree_mem "${PROXY_PID[$proxy]}" anon)"
  if [ "$proxy" = sipedge ]; then
    c0="$(smaps_classes "${PROXY_PID[$proxy]}")"
    h0="$(sipedge_heaps)"
  fi
  log "idle $tr $proxy: $IDLE_CONNS connections (concurrency $conc), memory before (RSS PSS anon processes): $m0"
  "$SIPLOAD" idle --proxy "127.0.0.1:$port" "${tls[@]}" --conns "$IDLE_CONNS" \
    --hold $((IDLE_SETTLE + 5)) --connect-concurrency "$conc" --timeout-ms 10000 \
    >"$out" 2>&1 </dev/null &
  local idle_pid=$!
  PIDS+=("$idle_pid")
  ready="$(wait_line "$out" IDLE_READY "$idle_pid" $((IDLE_CONNS / 20 + 120)))"
  if [ -n "$ready" ]; then
    sleep "$IDLE_SETTLE"
    m1="$(tree_mem "${PROXY_PID[$proxy]}" anon)"
    if [ "$proxy" = sipedge ]; then
      c1="$(smaps_classes "${PROXY_PID[$proxy]}")"
      h1="$(sipedge_heaps)"
    fi
  else
    m1="0 0 0 0"
    log "idle $tr $proxy: the connections were not all up (sipload: $(tail -2 "$out" | tr '\n' ' '))"
  fi
  log "idle $tr $proxy: $ready; memory idle: $m1"
  wait_pid_end "$idle_pid" $((IDLE_SETTLE + 90))
  sleep 3
  ! proxy_crashed "$proxy" || alive=no
  m2="$(tree_mem "${PROXY_PID[$proxy]}" anon)"
  line="$(grep '^SIPLOAD mode=idle' "$out" | tail -1 || true)"
  [ "$alive" = yes ] || NOTES+=("$proxy died during the idle $tr run (log: $(grep -a -m3 -iE 'BUG|signal|error' "$(proxy_log "$proxy")" | cut -c1-200 | tr '\n' '|'))")
  stop_proxy "$proxy"
  local est ok failed closed
  est="$(kv "$ready" established)" ok="$(kv "$line" ok)" failed="$(kv "$line" failed)"
  closed="$(kv "$line" closed_by_peer)"
  # proxy tr conc established ok failed closed rss0 rss1 rss2 pss0 pss1 pss2 | classes0 | classes1 | heaps0 | heaps1
  IDLE+=("$proxy $tr $conc ${est:-0} ${ok:-0} ${failed:-0} ${closed:-0} $(cut -d' ' -f1 <<<"$m0") $(cut -d' ' -f1 <<<"$m1") $(cut -d' ' -f1 <<<"$m2") $(cut -d' ' -f2 <<<"$m0") $(cut -d' ' -f2 <<<"$m1") $(cut -d' ' -f2 <<<"$m2") | ${c0:--} | ${c1:--} | ${h0:--} | ${h1:--}")
  log "idle $tr $proxy: ${line:-no result}; memory after close: $m2"
}

idle_step() {
  local tr proxy list
  list=("${ACTIVE[@]}")
  [ "$IDLE_BARE" != 1 ] || list+=(bare)
  for tr in $IDLE_TRANSPORTS; do
    case "$tr" in tcp | tls) ;; *) die "IDLE_TRANSPORTS may hold tcp and tls, not '$tr'" ;; esac
    for proxy in "${list[@]}"; do idle_run "$proxy" "$tr"; done
  done
}

# --- churn -----------------------------------------------------------------------------------
CHURN=() # "LABEL|TIME|RESULT|VmRSS PSS|classes|heaps"
churn_snap() { # LABEL [RESULT]
  local pid=${PROXY_PID[sipedge]} st pss
  st="$(proc_status "$pid")"
  pss="$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null || echo 0)"
  CHURN+=("$1|$(date -u +%H:%M:%S)|${2:--}|${st%% *} $pss|$(smaps_classes "$pid")|$(sipedge_heaps)")
  log "churn $1: VmRSS $(mib "${st%% *}") MiB ${2:-}"
}

churn_step() {
  local r secs line out after waited=0 ok failed
  if ! has sipedge; then
    log "churn: sipedge is not in PROXIES: skipped"
    return
  fi
  SIPEDGE_LOG_LEVEL="$CHURN_LOG_LEVEL"
  start_sipedge
  SIPEDGE_LOG_LEVEL=warning
  sleep 2
  churn_snap start
  secs=$(((CHURN_HANDSHAKES + CHURN_RATE - 1) / CHURN_RATE))
  for r in $(seq "$CHURN_ROUNDS"); do
    out="$WORK/churn_round_$r.out"
    log "churn round $r: $CHURN_HANDSHAKES TLS handshakes, $CHURN_CONCURRENCY at once, $CHURN_RATE/s"
    timeout --kill-after=5 $((secs + 60)) "$SIPLOAD" uac --proxy "127.0.0.1:${TLS_PORT[sipedge]}" \
      --tls --new-conn-per-request --conns "$CHURN_CONCURRENCY" --rate "$CHURN_RATE" \
      --duration "$secs" --method OPTIONS --ruri "sip:uas@127.0.0.1:${UAS_PORT[sipedge]}" \
      --timeout-ms 5000 >"$out" 2>&1 </dev/null || true
    line="$(grep '^SIPLOAD mode=uac' "$out" | tail -1 || true)"
    ok="$(kv "$line" ok)" failed="$(kv "$line" failed)"
    sleep 3
    churn_snap "3 s after round $r" "ok ${ok:-?}, failed ${failed:-?}, $(kv "$line" rate)/s"
    proxy_crashed sipedge && { NOTES+=("sipedge died during churn round $r"); break; }
  done
  for after in $CHURN_AFTER; do
    [ "$after" -gt "$waited" ] || continue
    sleep $((after - waited))
    waited=$after
    churn_snap "$after s after the last round"
  done
  CHURN_TRIMS="$(grep -a 'malloc_trim' "$(proxy_log sipedge)" | sed 's/^/    /' || true)"
  stop_proxy sipedge
}

# --- cpu and closed ---------------------------------------------------------------------------
CPU=()    # proxy tr rate sent ok failed delivered p50 p99 cpu_s cpu_pct ms_per_1k uac% uas% other% load note round
CLOSED=() # the same, with CONNSxDEPTH in place of the rate
RECORD=1
CPU_ROUND=0 # the round of the run (0: warm-up)
# One load run through PROXY: LOAD is a rate (open loop, CPU_CONNS connections: the cpu step) or
# CONNSxDEPTH (closed loop: the closed step). The row goes to CPU or CLOSED.
cpu_run() { # PROXY TRANSPORT LOAD SECONDS
  local proxy=$1 tr=$2 load=$3 secs=$4 port tls=() out line note="-" shape=() what
  out="$WORK/cpu_${proxy}_${tr}_${load}_$RANDOM.out"
  if [ "$tr" = tls ]; then port=${TLS_PORT[$proxy]} tls=(--tls --connect-concurrency 1); else port=${TCP_PORT[$proxy]}; fi
  if [[ "$load" == *x* ]]; then
    shape=(--conns "${load%x*}" --depth "${load#*x}") what="closed loop $load"
  else
    shape=(--conns "$CPU_CONNS" --rate "$load") what="$load/s"
  fi
  sample "$proxy" 0
  timeout --kill-after=5 $((secs + 40)) "$SIPLOAD" uac --proxy "127.0.0.1:$port" "${tls[@]}" \
    "${shape[@]}" --duration "$secs" --method OPTIONS \
    --ruri "sip:uas@127.0.0.1:${UAS_PORT[$proxy]}" --timeout-ms 5000 >"$out" 2>&1 </dev/null || true
  sleep 0.2
  sample "$proxy" 1
  line="$(grep '^SIPLOAD mode=uac' "$out" | tail -1 || true)"
  [ -n "$line" ] || { note=no-result; log "sipload gave no result ($proxy $tr $what): $(tail -3 "$out" | tr '\n' ' ')"; }
  if proxy_crashed "$proxy"; then
    note=CRASHED
    NOTES+=("$proxy crashed during the $tr run at $what: $(grep -aE "$CRASH_LINES" "$(proxy_log "$proxy")" | head -3 | cut -c1-160 | tr '\n' '|')")
  fi
  local row ok cpu
  ok="$(kv "$line" ok)"
  cpu="$(step_cpu "$ok" 1000 %.1f)"
  # proxy tr load sent ok failed delivered p50 p99, then step_cpu but its ALL_%, then load note round
  row="$(awk -v proxy="$proxy" -v tr="$tr" -v rate="$load" -v sent="$(kv "$line" sent)" \
    -v ok="$ok" -v failed="$(kv "$line" failed)" -v delivered="$(kv "$line" rate)" \
    -v p50="$(kv "$line" p50_us)" -v p99="$(kv "$line" p99_us)" -v cpu="${cpu% *}" \
    -v load="$(cut -d' ' -f1 /proc/loadavg)" -v note="$note" -v round="$CPU_ROUND" 'BEGIN {
      if (failed == "") failed = 1
      printf "%s %s %s %d %d %d %.1f %d %d %s %s %s %d", proxy, tr, rate, sent, ok, failed, delivered,
        p50, p99, cpu, load, note, round
    }')"
  if [ "$RECORD" = 1 ]; then
    if [[ "$load" == *x* ]]; then CLOSED+=("$row"); else CPU+=("$row"); fi
    log "$(awk -v what="$what" '{ printf "round %d %-8s %s %s: ok %d failed %d delivered %.1f/s, p50 %d µs p99 %d µs, proxy CPU %.2f s (%.1f %%) = %.1f ms per 1k tx; UAC %.0f %%, UAS %.0f %%, other %.0f %%", $18, $1, $2, what, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }' <<<"$row")"
  else
    log "$(awk -v what="$what" '{ printf "warm-up %-8s %s %s: ok %d failed %d", $1, $2, what, $5, $6 }' <<<"$row")"
  fi
}

# The largest of its arguments (whole numbers).
highest() {
  local max=0 n
  for n in "$@"; do [ "$n" -gt "$max" ] && max=$n; done
  echo "$max"
}

# Runs every proxy of CPU_ACTIVE under each load of LOADS (rates or CxD shapes, see cpu_run), per
# transport of TRANSPORTS: first an unmeasured warm-up of each proxy under WARMUP_LOAD (none when
# WARMUP_SECONDS is 0), then per load ROUNDS rounds of all the proxies, the order rotated by one
# each round (A B C, B C A, C A B), so that no proxy always goes first and the proxies of a round
# are measured seconds apart (their ratio is taken per round).
load_rounds() { # STEP TRANSPORTS WARMUP_LOAD WARMUP_SECONDS LOADS ROUNDS SECONDS
  local step=$1 transports=$2 warm_load=$3 warm_secs=$4 loads=$5 rounds=$6 secs=$7
  local tr load proxy round i n=${#CPU_ACTIVE[@]}
  for proxy in "${CPU_ACTIVE[@]}"; do "start_$proxy"; done
  for tr in $transports; do
    case "$tr" in tcp | tls) ;; *) die "the $step step's transports may be tcp and tls, not '$tr'" ;; esac
    if [ "$warm_secs" -gt 0 ]; then
      RECORD=0 CPU_ROUND=0
      for proxy in "${CPU_ACTIVE[@]}"; do cpu_run "$proxy" "$tr" "$warm_load" "$warm_secs"; done
      RECORD=1
    fi
    for load in $loads; do
      for round in $(seq "$rounds"); do
        for i in $(seq 0 $((n - 1))); do
          proxy="${CPU_ACTIVE[$(((i + round - 1) % n))]}"
          if proxy_crashed "$proxy"; then
            stop_proxy "$proxy"
            "start_$proxy"
          fi
          CPU_ROUND=$round
          cpu_run "$proxy" "$tr" "$load" "$secs"
          sleep 1
        done
      done
    done
  done
  for proxy in "${CPU_ACTIVE[@]}"; do stop_proxy "$proxy"; done
}

# Open loop: the warm-up at the highest rate of CPU_RATES.
cpu_step() {
  # shellcheck disable=SC2086 # the rates, one word each
  load_rounds cpu "$CPU_TRANSPORTS" "$(highest $CPU_RATES)" "$CPU_WARMUP" "$CPU_RATES" \
    "$CPU_ROUNDS" "$CPU_SECONDS"
}

# Closed loop: the warm-up with the first shape of CLOSED_SHAPES.
closed_step() {
  load_rounds closed "$CLOSED_TRANSPORTS" "${CLOSED_SHAPES%% *}" "$CLOSED_WARMUP" \
    "$CLOSED_SHAPES" "$CLOSED_ROUNDS" "$CLOSED_SECONDS"
}

# ---------------------------------------------------------------------------------------------
# Run

warn_load
# What sipedge runs is the working tree: note uncommitted changes, and whether they change
# during the run (someone editing the tree meanwhile).
tree_state() { git -C "$REPO" diff HEAD -- core plugins main.ts 2>/dev/null | cksum; }
TREE_START="$(tree_state)"
START=$SECONDS
for proxy in "${UAS_FOR[@]}"; do start_sipload_uas "$proxy"; done
for step in $STEPS; do
  t0="$(date -u +%H:%M:%S)" l0="$(loadavg)"
  log "step $step"
  "${step}_step"
  STEP_TIMES+=("$step|$t0|$(date -u +%H:%M:%S)|$l0|$(loadavg)")
done
for proxy in "${UAS_FOR[@]}"; do stop_pid "${UAS_PID[$proxy]}"; done
DATE_END="$(date -u '+%H:%M:%S UTC')"
[ "$(tree_state)" = "$TREE_START" ] ||
  NOTES+=("core/, plugins/ or main.ts changed in the working tree during the run: the sipedge processes started at different times may have run different code")
# cpu and closed runs where other work on the machine took a large share (their ratio is less
# certain).
for row in "${CPU[@]}" "${CLOSED[@]}"; do
  [ -n "$row" ] || continue
  read -r p tr rate _ _ _ _ _ _ _ _ _ _ _ other _ _ round _ <<<"$row"
  if awk -v o="$other" 'BEGIN { exit !(o >= 25) }'; then
    NOTES+=("$([[ "$rate" == *x* ]] && echo "closed $tr $rate" || echo "cpu $tr $rate/s"), $p, round $round: other processes used $other % of a core during the step (a shared machine): this step's figures are less certain")
  fi
done
LOAD_END="$(loadavg)"

# ---------------------------------------------------------------------------------------------
# Report (Markdown)

field() { cut -d'|' -f"$2" <<<"$1" | sed 's/^ *//; s/ *$//'; } # LINE N (|-separated, trimmed)

# awk functions the cpu and closed tables share. stats(LIST): LIST = numbers separated by spaces;
# sets N, MED, MIN, MAX. median / spread format them ("-" for none); add appends to a list.
AWK_STATS='
  function stats(list,   a, i, j, t) {
    N = split(list, a, " ")
    for (i = 2; i <= N; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    if (N == 0) return 0
    MIN = a[1] + 0; MAX = a[N] + 0
    MED = (N % 2 ? a[(N + 1) / 2] + 0 : (a[N / 2] + a[N / 2 + 1]) / 2)
    return N
  }
  function median(list, fmt) { return stats(list) ? sprintf(fmt, MED) : "-" }
  function spread(list, fmt, bold) {
    if (!stats(list)) return "-"
    return sprintf(bold ? "**" fmt "**" : fmt, MED) (N > 1 ? sprintf(" (" fmt "–" fmt ")", MIN, MAX) : "")
  }
  function add(arr, key, v) { arr[key] = (key in arr ? arr[key] " " : "") v }
  # The last columns of a row: p50 / p99 of the first n proxies of P, then failures of all three.
  function latenciesAndFailures(k, n,   i, out) {
    out = ""
    for (i = 1; i <= n; i++)
      out = out " | " (stats(p50[k, P[i]]) ? median(p50[k, P[i]], "%.0f") " / " median(p99[k, P[i]], "%.0f") : "-")
    out = out " | "
    for (i = 1; i <= 3; i++) out = out (i > 1 ? " / " : "") (ran[k, P[i]] ? fl[k, P[i]] : "-")
    return out " |"
  }
'

report() {
  local commit dirty
  commit="$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
  dirty="$([ "$TREE_START" = "$(: | cksum)" ] || echo ' + uncommitted changes in core/, plugins/ or main.ts')"
  echo "# sipedge cost at ordinary load (scripts/bench_cost.sh)"
  echo
  echo "- **Date:** $DATE_START – $DATE_END ($((SECONDS - START)) s)"
  echo "- **Command:** \`${ENV_GIVEN}$COMMAND\`"
  echo "- **Machine:** $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1))," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r);" \
    "load average $LOAD_START at the start, $LOAD_END at the end (per step below)"
  echo "- **Commit:** $commit$dirty ($(git -C "$REPO" log -1 --format=%cs 2>/dev/null || echo '?'))"
  echo "- **Software:** $("$DENO_BIN" --version 2>/dev/null | head -2 | tr '\n' ' ' | sed 's/ *$//');" \
    "Kamailio $("$KAMAILIO" -v 2>/dev/null | head -1 | awk '{print $3}' || echo '-');" \
    "$(openssl version | cut -d' ' -f1-2); sipload $SIPLOAD_DESC"
  echo "- **sipedge:** \`${SIPEDGE_CMD:-deno $SIPEDGE_RUN main.ts --config FILE}\`" \
    "($([ -n "${SIPEDGE_CMD:-}" ] && echo "SIPEDGE_CMD, not the runtime flags of" || echo "the runtime flags of")" \
    "\`deno task start\`), workers = $WORKERS, tcp + tls listeners, control API, static_router," \
    "timeouts, limits, blacklist; log level warning (churn: $CHURN_LOG_LEVEL)"
  echo "- **Kamailio:** stateless \`forward()\`, tcp + tls listeners, children = tcp_children = $WORKERS," \
    "\`-x $KAMAILIO_MEM -m $KAMAILIO_SHM_MB -M 8\`"
  if [ -n "$REST_BARE" ]; then
    echo "- **bare runtime (rest step):** \`deno $SIPEDGE_RUN scripts/bench_cost_bare.ts --mode rest" \
      "--workers $WORKERS\`: a main thread and $WORKERS Web Workers, a 250 ms timer each, nothing else"
  fi
  if [ "$((${#CPU[@]} + ${#CLOSED[@]}))" -gt 0 ] && in_list relay "${CPU_ACTIVE[*]}"; then
    echo "- **relay (cpu and closed steps):** \`deno $SIPEDGE_RUN scripts/bench_cost_bare.ts --mode relay --tls-impl $RELAY_TLS\`," \
      "workers = $WORKERS, tcp + tls listeners (tls: $([ "$RELAY_TLS" = native ] && echo "Deno.listenTls" || echo "node:tls")): bytes copied to one upstream connection per client" \
      "connection, no SIP parsing (the runtime's floor)"
  fi
  echo "- **Units:** MiB = 1,048,576 bytes, KiB = 1,024 bytes (the kernel's \"kB\" in /proc are KiB)."
  echo
  echo "| step | UTC | load average at start | at end |"
  echo "| --- | --- | --- | --- |"
  local s
  for s in "${STEP_TIMES[@]}"; do
    echo "| $(field "$s" 1) | $(field "$s" 2)–$(field "$s" 3) | $(field "$s" 4) | $(field "$s" 5) |"
  done
  echo
  if [[ " $STEPS " == *" rest "* ]]; then
    echo "## 1. At rest (workers = $WORKERS, no traffic, $REST_SECONDS s after ready)"
    echo
    if [ -n "$REST_SE" ]; then
      # Fields of REST_SE and REST_BARE: status | classes | PSS | JS heaps ("WORKERS MAIN ...").
      awk -v se="$REST_SE" -v bare="$REST_BARE" -v nw="$WORKERS" '
        function m(k) { return sprintf("%.1f", k / 1024) }
        # One sample into S (status), C (classes), P (PSS), H (heaps) under index i.
        function load(line, i,   f, x, k) {
          split(line, f, "|")
          split(f[1], x, " "); for (k in x) S[i, k] = x[k] + 0
          split(f[2], x, " "); for (k in x) C[i, k] = x[k] + 0
          P[i] = f[3] + 0
          split(f[4], x, " "); H[i, 1] = x[1]; H[i, 2] = x[2]
        }
        # A row: LABEL, then the value of each column (sipedge, bare), bold when BOLD.
        function row(label, a, b, bold,   f) {
          f = bold ? "**%s**" : "%s"
          printf "| %s | " f, (bold ? "**" label "**" : label), a
          if (nb) printf " | " f, b
          print " |"
        }
        BEGIN {
          load(se, 1); nb = (bare != ""); if (nb) load(bare, 2)
          printf "| | sipedge |%s\n", (nb ? sprintf(" bare Deno, main + %d empty workers |", nw) : "")
          print "| --- | ---: |" (nb ? " ---: |" : "")
          for (i = 1; i <= 2; i++) {
            anon[i] = S[i, 3]; file[i] = S[i, 4] + S[i, 5]; less[i] = S[i, 1] - C[i, 1] - C[i, 3]
          }
          row("**VmRSS** (VmHWM)", "**" m(S[1, 1]) "** (" m(S[1, 2]) ")", "**" m(S[2, 1]) "** (" m(S[2, 2]) ")")
          row("PSS", m(P[1]), m(P[2]))
          row("anonymous (RssAnon)", m(anon[1]), m(anon[2]), 1)
          row(sprintf("&nbsp;&nbsp;V8 heap pages (256 KiB mappings, %d isolates)", nw + 1), m(C[1, 6]), m(C[2, 6]))
          row("&nbsp;&nbsp;glibc thread arenas", m(C[1, 7]), m(C[2, 7]))
          row("&nbsp;&nbsp;glibc main arena ([heap])", m(C[1, 8]), m(C[2, 8]))
          row("&nbsp;&nbsp;other anonymous (mmapped malloc chunks, V8 code / large objects, stacks)", m(C[1, 9]), m(C[2, 9]))
          row("file-backed (RssFile + RssShmem)", m(file[1]), m(file[2]), 1)
          row("&nbsp;&nbsp;deno binary, text (r-x; its PSS)", m(C[1, 1]) " (PSS " m(C[1, 2]) ")", m(C[2, 1]) " (PSS " m(C[2, 2]) ")")
          row("&nbsp;&nbsp;deno binary, rodata / data", m(C[1, 3]), m(C[2, 3]))
          row("&nbsp;&nbsp;shared libraries", m(C[1, 4]), m(C[2, 4]))
          row("&nbsp;&nbsp;other files (deno caches)", m(C[1, 5]), m(C[2, 5]))
          row("VmRSS less the deno binary (text + data)", m(less[1]), m(less[2]))
          row("JS heap in use: workers / main thread (supervisor)", H[1, 1] " / " H[1, 2], H[2, 1] " / " H[2, 2])
          row("threads", S[1, 6], S[2, 6])
          print ""
          if (nb) {
            printf "- sipedge − bare runtime: **%.1f MiB RSS** (anonymous %.1f MiB: V8 heap pages %+.1f, glibc thread arenas %+.1f, main arena %+.1f, other %+.1f; file-backed %+.1f MiB)\n",
              (S[1, 1] - S[2, 1]) / 1024, (anon[1] - anon[2]) / 1024, (C[1, 6] - C[2, 6]) / 1024,
              (C[1, 7] - C[2, 7]) / 1024, (C[1, 8] - C[2, 8]) / 1024, (C[1, 9] - C[2, 9]) / 1024,
              (file[1] - file[2]) / 1024
            printf "- the bare runtime in sipedge'"'"'s shape is %.0f %% of sipedge'"'"'s VmRSS (%.0f %% of its anonymous memory); without the deno binary'"'"'s pages, sipedge − bare = %.1f MiB\n",
              (S[1, 1] > 0 ? 100 * S[2, 1] / S[1, 1] : 0), (anon[1] > 0 ? 100 * anon[2] / anon[1] : 0),
              (less[1] - less[2]) / 1024
            print ""
          }
        }'
      echo "The deno binary's mappings are file-backed pages of the executable: the same for any"
      echo "Deno program, and shared with every other deno process on the machine (the PSS of its"
      echo "text shows how many others map it right now). They count in RSS but not in what sipedge"
      echo "itself allocates; the anonymous part is sipedge's (runtime + isolates + its own state)."
      if [ -n "$REST_BARE" ]; then
        echo "The bare column is scripts/bench_cost_bare.ts --mode rest with sipedge's deno flags, started"
        echo "beside sipedge and sampled right after it: a main thread and $WORKERS Web Workers that only"
        echo "keep a 250 ms timer, no sockets, no module but its own — what $((WORKERS + 1)) isolates of this Deno"
        echo "cost before any program code. sipedge − bare is what sipedge's code, modules and state add."
      fi
      echo
    fi
    if [ -n "$REST_KAM" ]; then
      read -r kr kp ka kn <<<"$REST_KAM"
      echo "Kamailio beside it ($kn processes): **RSS sum $(mib "$kr") MiB, PSS sum $(mib "$kp") MiB**" \
        "(anonymous sum $(mib "$ka") MiB). Its processes share the shm pool and the binary, so the RSS sum"
      echo "counts those pages once per process; the PSS sum is what it really holds."
      if [ -n "$REST_SE" ]; then
        echo
        awk -v s="$(field "$REST_SE" 1)" -v c="$(field "$REST_SE" 2)" -v k="$kp" 'BEGIN {
          split(s, S, " "); split(c, C, " ")
          printf "sipedge / Kamailio at rest: sipedge VmRSS / Kamailio PSS sum = **%.1f ×**; without the deno binary'"'"'s pages (VmRSS − text − rodata/data) %.1f ×; anonymous only %.1f ×.\n", S[1] / k, (S[1] - C[1] - C[3]) / k, S[3] / k }'
      fi
      echo
    fi
  fi
  if [ "${#IDLE[@]}" -gt 0 ]; then
    echo "## 2. Memory per idle connection ($IDLE_CONNS connections, each answered once, then idle)"
    echo
    echo "Fresh proxy per run, 2 s warm-up, memory read $IDLE_SETTLE s after all connections were up."
    echo "Per connection = (idle − before) / established, KiB: **RSS for sipedge and the bare runtime**"
    echo "(one process), **PSS sum for Kamailio** (its processes share the shm pool, where its"
    echo "connections live). \"bare\" = scripts/bench_cost_bare.ts with sipedge's deno flags: tcp ="
    echo "\`Deno.listen\` + one pending 2 KB read per connection, tls = a \`node:tls\` server."
    echo
    echo "| proxy | transport | connect concurrency | established | answered | failed | closed by peer | RSS before → idle → after close (MiB) | PSS before → idle (MiB) | RSS / conn | PSS / conn | **per conn (KiB)** |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"
    local row
    for row in "${IDLE[@]}"; do
      awk -v row="$(field "$row" 1)" 'BEGIN { split(row, f, " ")
        n = f[4] + 0
        rpc = (n > 0 && f[9] > 0) ? (f[9] - f[8]) / n : 0
        ppc = (n > 0 && f[12] > 0) ? (f[12] - f[11]) / n : 0
        printf "| %s | %s | %d | %d | %d | %d | %d | %.1f → %.1f → %.1f | %.1f → %.1f | %.1f | %.1f | **%.1f** |\n",
          f[1], f[2], f[3], n, f[5], f[6], f[7], f[8] / 1024, f[9] / 1024, f[10] / 1024,
          f[11] / 1024, f[12] / 1024, rpc, ppc, (f[1] == "kamailio" ? ppc : rpc) }'
    done
    echo
    for row in "${IDLE[@]}"; do
      [[ "$row" == sipedge* ]] || continue
      awk -v row="$(field "$row" 1)" -v c0="$(field "$row" 2)" -v c1="$(field "$row" 3)" \
        -v h0="$(field "$row" 4)" -v h1="$(field "$row" 5)" 'BEGIN {
        split(row, f, " "); split(c0, a, " "); split(c1, b, " "); split(h0, x, " "); split(h1, y, " ")
        n = f[4] + 0; if (n == 0) exit
        printf "- sipedge %s, where the %.1f KiB per connection went: V8 heap pages %.1f → %.1f MiB (%.1f KiB / conn),", f[2], (f[9] - f[8]) / n, a[6] / 1024, b[6] / 1024, (b[6] - a[6]) / n
        printf " glibc thread arenas %.1f → %.1f MiB (%.1f), main arena %.1f → %.1f MiB (%.1f), other anonymous %.1f → %.1f MiB (%.1f);", a[7] / 1024, b[7] / 1024, (b[7] - a[7]) / n, a[8] / 1024, b[8] / 1024, (b[8] - a[8]) / n, a[9] / 1024, b[9] / 1024, (b[9] - a[9]) / n
        printf " JS heap in use per worker %s → %s MiB (no forced GC), connections %s\n", x[1], y[1], y[3] }'
    done
    # ratios and sipedge's own part
    printf '%s\n' "${IDLE[@]}" | cut -d'|' -f1 | awk '
      { n = $4 + 0; if (n == 0 || $9 == 0) next
        v = ($1 == "kamailio" ? ($12 - $11) / n : ($9 - $8) / n); per[$1 " " $2] = v; tr[$2] = 1 }
      END { for (t in tr) {
        if ((("sipedge " t) in per) && (("kamailio " t) in per) && per["kamailio " t] > 0)
          printf "- %s: sipedge / Kamailio per idle connection = **%.2f ×** (%.1f vs %.1f KiB)\n", t, per["sipedge " t] / per["kamailio " t], per["sipedge " t], per["kamailio " t]
        if ((("sipedge " t) in per) && (("bare " t) in per))
          printf "- %s: the bare runtime takes %.1f KiB of sipedge'"'"'s %.1f; sipedge'"'"'s own part is ≈ %.1f KiB\n", t, per["bare " t], per["sipedge " t], per["sipedge " t] - per["bare " t]
      } }' | sort
    echo
  fi
  if [ "${#CHURN[@]}" -gt 0 ]; then
    echo "## 3. TLS churn: $CHURN_ROUNDS × $CHURN_HANDSHAKES handshakes ($CHURN_CONCURRENCY at once, $CHURN_RATE/s; each: full handshake, one OPTIONS, close)"
    echo
    echo "sipedge only (Kamailio 5.6.3 crashes on concurrent TLS handshakes). MiB; Δ = VmRSS − VmRSS at start;"
    echo "connections (/metrics) include sipedge's own connections to the UAS."
    echo
    echo "| sample | UTC | handshakes (sipload) | VmRSS | Δ | PSS | V8 heap pages | glibc thread arenas | main arena | other anon | JS heap in use, workers / supervisor | connections |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"
    local c rss0=""
    for c in "${CHURN[@]}"; do
      local mem cls hp
      mem="$(cut -d'|' -f4 <<<"$c")" cls="$(cut -d'|' -f5 <<<"$c")" hp="$(cut -d'|' -f6 <<<"$c")"
      [ -n "$rss0" ] || rss0="${mem%% *}"
      awk -v label="$(cut -d'|' -f1 <<<"$c")" -v t="$(cut -d'|' -f2 <<<"$c")" -v res="$(cut -d'|' -f3 <<<"$c")" \
        -v mem="$mem" -v cls="$cls" -v hp="$hp" -v r0="$rss0" 'BEGIN {
        split(mem, m, " "); split(cls, k, " "); split(hp, h, " ")
        printf "| %s | %s | %s | %.1f | %+.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s / %s | %d |\n", label, t, res,
          m[1] / 1024, (m[1] - r0) / 1024, m[2] / 1024, k[6] / 1024, k[7] / 1024, k[8] / 1024, k[9] / 1024, h[1], h[2], h[3] }'
    done
    echo
    local prev="" i=0 lastr=""
    for c in "${CHURN[@]}"; do
      local r label
      r="$(cut -d'|' -f4 <<<"$c" | cut -d' ' -f1)" label="$(cut -d'|' -f1 <<<"$c")"
      if [[ "$label" == "3 s after round"* ]]; then
        i=$((i + 1))
        echo "- round $i: RSS $(mib "$prev") → $(mib "$r") MiB (**$(awk -v a="$prev" -v b="$r" 'BEGIN { printf "%+.1f", (b - a) / 1024 }') MiB**)"
      fi
      prev="$r" lastr="$r"
    done
    echo "- last sample: $(awk -v a="$rss0" -v b="$lastr" 'BEGIN { printf "%+.1f MiB over the start", (b - a) / 1024 }')"
    if [ -n "${CHURN_TRIMS:-}" ]; then
      echo "- sipedge's malloc_trim log lines:"
      echo
      echo "$CHURN_TRIMS"
    fi
    echo
  fi
  if [ "${#CPU[@]}" -gt 0 ]; then
    echo "## 4. CPU per transaction and latency ($CPU_CONNS connections, open loop, $CPU_SECONDS s per step, $CPU_ROUNDS round(s))"
    echo
    echo "CPU = the proxy's utime + stime over the step (whole process tree), per 1,000 transactions"
    echo "(1 tx = OPTIONS forwarded + 200 forwarded back = 2 SIP messages). p50 / p99: sipload, µs."
    # shellcheck disable=SC2086 # the rates, one word each
    echo "Before the first rate, per transport, each proxy had a $CPU_WARMUP s unmeasured warm-up at $(highest $CPU_RATES) tx/s."
    echo "Each rate ran $CPU_ROUNDS round(s) of ${CPU_ACTIVE[*]}, interleaved, the order rotated each"
    echo "round. CPU and p50 / p99: the median over the rounds. Ratios and sipedge − relay: computed"
    echo "per round (the proxies of a round ran seconds apart), then their median (min–max over the"
    echo "rounds). relay = scripts/bench_cost_bare.ts --mode relay: bytes copied between the client's"
    echo "connection and one upstream connection, no SIP parsing, $WORKERS workers, sipedge's deno"
    echo "flags — the runtime's floor under any proxy on Deno's sockets; sipedge − relay = what"
    echo "sipedge's own code costs per tx. Rounds that failed (no result, crash) are left out."
    echo
    echo "| transport | rate tx/s | sipedge CPU ms / 1k tx | Kamailio CPU ms / 1k tx | relay CPU ms / 1k tx | **sipedge / Kamailio** | relay / Kamailio | sipedge − relay, ms / 1k tx | sipedge p50 / p99 µs | Kamailio p50 / p99 µs | relay p50 / p99 µs | failed (sipedge / Kamailio / relay) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |"
    printf '%s\n' "${CPU[@]}" | awk "$AWK_STATS"'
      { k = $2 " " $3; keys[k] = 1; tr[k] = $2; rt[k] = $3
        fl[k, $1] += $6; ran[k, $1] = 1
        if ($17 == "-" && $5 > 0) {
          add(per, k SUBSEP $1, $12); add(p50, k SUBSEP $1, $8); add(p99, k SUBSEP $1, $9)
          rnd[k, $1, $18] = $12; rounds[k, $18] = 1
        } }
      END { for (k in keys) {
        sk = ""; rk = ""; sr = ""
        for (kr in rounds) {
          split(kr, x, SUBSEP); if (x[1] != k) continue; r = x[2]
          if (((k, "sipedge", r) in rnd) && ((k, "kamailio", r) in rnd) && rnd[k, "kamailio", r] > 0)
            sk = sk " " rnd[k, "sipedge", r] / rnd[k, "kamailio", r]
          if (((k, "relay", r) in rnd) && ((k, "kamailio", r) in rnd) && rnd[k, "kamailio", r] > 0)
            rk = rk " " rnd[k, "relay", r] / rnd[k, "kamailio", r]
          if (((k, "sipedge", r) in rnd) && ((k, "relay", r) in rnd))
            sr = sr " " rnd[k, "sipedge", r] - rnd[k, "relay", r]
        }
        line = sprintf("%s %08d| %s | %d", tr[k], rt[k], tr[k], rt[k])
        split("sipedge kamailio relay", P, " ")
        for (i = 1; i <= 3; i++) line = line " | " median(per[k, P[i]], "%.1f")
        line = line " | " spread(sk, "%.2f", 1) " | " spread(rk, "%.2f", 0) " | " spread(sr, "%.1f", 0)
        print line latenciesAndFailures(k, 3)
      } }' |
      sort | sed 's/^[^|]*|/|/'
    echo
    echo "Each step in full, in the order they ran (CPU % of one core, max $(nproc)00 %; UAC / UAS /"
    echo "other = the load tools and the rest of the machine over the step):"
    echo
    echo "| proxy | transport | rate | round | sent | ok | failed | delivered /s | p50 µs | p99 µs | proxy CPU s | proxy CPU % | ms / 1k tx | UAC % | UAS % | other % | load | note |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${CPU[@]}" | awk '{ printf "| %s | %s | %d | %d | %d | %d | %d | %.1f | %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s |\n",
      $1, $2, $3, $18, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 }'
    echo
  fi
  if [ "${#CLOSED[@]}" -gt 0 ]; then
    echo "## 5. Saturation: closed loop ($CLOSED_SECONDS s per run, $CLOSED_ROUNDS round(s))"
    echo
    echo "\`sipload uac --conns C --depth D\` (CxD: C connections, D transactions outstanding on each,"
    echo "the next sent as soon as one is answered): the most each proxy delivers on this machine,"
    echo "with the load tools on the same $(nproc) cores. tx/s = answered transactions per second; CPU ="
    echo "the proxy's, per 1,000 transactions. Each proxy had a $CLOSED_WARMUP s warm-up per transport"
    echo "before the first shape. Medians over the rounds; ratios computed per round (the proxies of a"
    echo "round ran seconds apart), then their median (min–max)."
    echo
    echo "| transport | C×D | sipedge tx/s | Kamailio tx/s | relay tx/s | **sipedge / Kamailio tx/s** | sipedge CPU ms / 1k tx | Kamailio CPU ms / 1k tx | **sipedge / Kamailio CPU per tx** | sipedge p50 / p99 µs | Kamailio p50 / p99 µs | failed (sipedge / Kamailio / relay) |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"
    printf '%s\n' "${CLOSED[@]}" | awk "$AWK_STATS"'
      { k = $2 " " $3; keys[k] = 1; tr[k] = $2; sh[k] = $3
        fl[k, $1] += $6; ran[k, $1] = 1
        if ($17 == "-" && $5 > 0) {
          add(tps, k SUBSEP $1, $7); add(per, k SUBSEP $1, $12); add(p50, k SUBSEP $1, $8); add(p99, k SUBSEP $1, $9)
          T[k, $1, $18] = $7; C[k, $1, $18] = $12; rounds[k, $18] = 1
        } }
      END { for (k in keys) {
        rt = ""; rc = ""
        for (kr in rounds) {
          split(kr, x, SUBSEP); if (x[1] != k) continue; r = x[2]
          if (((k, "sipedge", r) in T) && ((k, "kamailio", r) in T) && T[k, "kamailio", r] > 0 && C[k, "kamailio", r] > 0) {
            rt = rt " " T[k, "sipedge", r] / T[k, "kamailio", r]
            rc = rc " " C[k, "sipedge", r] / C[k, "kamailio", r]
          }
        }
        split(sh[k], cd, "x")
        line = sprintf("%s %06d %06d| %s | %s", tr[k], cd[1], cd[2], tr[k], cd[1] " × " cd[2])
        split("sipedge kamailio relay", P, " ")
        for (i = 1; i <= 3; i++) line = line " | " median(tps[k, P[i]], "%.0f")
        line = line " | " spread(rt, "%.2f", 1)
        for (i = 1; i <= 2; i++) line = line " | " median(per[k, P[i]], "%.1f")
        line = line " | " spread(rc, "%.2f", 1)
        print line latenciesAndFailures(k, 2)
      } }' |
      sort | sed 's/^[^|]*|/|/'
    echo
    echo "Each run in full, in the order they ran:"
    echo
    echo "| proxy | transport | C×D | round | sent | ok | failed | tx/s | p50 µs | p99 µs | proxy CPU s | proxy CPU % | ms / 1k tx | UAC % | UAS % | other % | load | note |"
    echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${CLOSED[@]}" | awk '{ printf "| %s | %s | %s | %d | %d | %d | %d | %.1f | %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s |\n",
      $1, $2, $3, $18, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 }'
    echo
  fi
  report_notes "##"
}

report
if [ -n "${BENCH_REPORT:-}" ]; then
  report >"$BENCH_REPORT"
  log "report written to $BENCH_REPORT"
fi
