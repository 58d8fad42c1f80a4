#!/usr/bin/env bash
# bench_cost.sh — what sipedge costs at ordinary load (issue 11): memory at rest, memory per idle
# TCP/TLS connection, memory after TLS handshake churn, CPU per transaction and latency at
# moderate rates; Kamailio 5.6 beside it in the same run wherever the comparison is meaningful.
# Prints a Markdown report (date, command, machine, commit, then one section per step).
#
#   sipload (uac / idle, tcp or tls) ---> PROXY (tcp + tls listeners) --tcp--> sipload uas
#            <--------------- 200 OK routed back by Via ---------------
#
# Steps (--only picks some; all four by default, in this order):
#
#  rest   sipedge and Kamailio started side by side, no traffic; REST_SECONDS after both are
#         ready: sipedge's VmRSS / VmHWM, PSS, anonymous vs file-backed memory (status RssAnon /
#         RssFile), the file-backed part split from /proc/PID/smaps (the deno binary's text and
#         data mappings: shared with every other deno process on the machine, and the same for any
#         Deno program; shared libraries; other files), the anonymous part split the same way
#         (V8 heap pages: anonymous rw 256 KiB mappings, this V8 has no pointer compression;
#         glibc thread arenas: 64 MiB-aligned heaps; the main arena [heap]; other), and the JS
#         heaps in use from the control API's /metrics (each worker isolate, the supervisor).
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
#         the proxies taking turns at each rate after a CPU_WARMUP s unmeasured warm-up. CPU =
#         utime+stime of the proxy's whole process tree over the step (/proc/PID/stat; all of
#         Kamailio's processes, sipedge's one process with all its threads), per 1,000
#         transactions (1 tx = an OPTIONS forwarded + its 200 forwarded back); p50/p99 from
#         sipload (request sent → answer read); ratio = sipedge / Kamailio CPU per tx.
#
# sipedge runs as `deno task start` runs it (the runtime flags of SIPEDGE_RUN in
# scripts/bench_lib.sh: --unstable-net -A --v8-flags=--optimize-for-size) with `--workers
# WORKERS` set in a generated config: a tcp and a tls listener (certificate generated here, ECDSA
# P-256, used by both proxies), the control API (for /metrics), static_router default_route to
# the UAS, timeouts (idle_timeout 600 s), limits raised above IDLE_CONNS, blacklist.
# Kamailio: stateless forward() to the UAS, tcp + tls listeners (tls.so), children = tcp_children
# = WORKERS, `-x KAMAILIO_MEM -m KAMAILIO_SHM_MB -M 8`. TLS clients connect one at a time toward
# Kamailio (connect concurrency 1) for the same reason as above; sipedge gets the same.
#
# Needs: bash, openssl, curl, deno, sipload (SIPLOAD=..., or built from ../shared/tools/sipload
# into the temp folder), Kamailio with its tls module for the comparison (skipped when missing:
# apt-get install -y kamailio kamailio-tls-modules). Linux /proc and glibc. `ulimit -n` is raised
# to the hard limit; IDLE_CONNS needs about IDLE_CONNS + 1000 descriptors. Full run ≈ 12–15 min,
# --quick ≈ 2–3 min. The machine should be otherwise quiet: the load average is in the report.
#
# Usage: scripts/bench_cost.sh [--only STEPS] [--quick] [--help]     (`deno task bench-cost`)
#
#   --only STEPS    comma- or space-separated steps: rest,idle,churn,cpu (default: all)
#   --quick         a smoke check: smaller N and shorter steps (REST_SECONDS=10, IDLE_CONNS=500,
#                   CHURN_HANDSHAKES=1500, CHURN_AFTER="10", CPU_RATES="2000 10000",
#                   CPU_SECONDS=3, CPU_WARMUP=1); variables set in the environment still win
#
# Environment (all optional):
#   WORKERS=2                       sipedge --workers (in its config); Kamailio children/tcp_children
#   PROXIES="sipedge kamailio"      which proxies to run (rest, idle, cpu)
#   REST_SECONDS=60                 rest: seconds after both are ready before the sample
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
#   CPU_WARMUP=4                    cpu: unmeasured warm-up per proxy and transport (0 = none)
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
  CPU_SECONDS CPU_WARMUP SIPEDGE_CMD KAMAILIO_MEM KAMAILIO_SHM_MB; do
  [ -z "${!var+x}" ] || ENV_GIVEN+="$var=\"${!var}\" "
done

STEPS="rest idle churn cpu"
QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --quick) QUICK=1 ;;
    --only)
      [ $# -ge 2 ] || { echo "bench_cost.sh: --only needs a list of steps (rest,idle,churn,cpu)" >&2; exit 2; }
      STEPS="${2//,/ }"
      shift
      ;;
    --only=*) STEPS="${1#--only=}" STEPS="${STEPS//,/ }" ;;
    *) echo "bench_cost.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for step in $STEPS; do
  case "$step" in rest | idle | churn | cpu) ;; *)
    echo "bench_cost.sh: unknown step '$step' (rest, idle, churn, cpu)" >&2
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
default KAMAILIO_MEM tlsf tlsf
default KAMAILIO_SHM_MB 2048 2048
KAMAILIO="${KAMAILIO:-$(command -v kamailio || echo /usr/sbin/kamailio)}"
SIPLOAD="${SIPLOAD:-}"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/bench_lib.sh
. "$REPO/scripts/bench_lib.sh"

command -v openssl >/dev/null || die "openssl is not installed (apt-get install -y openssl)"
command -v curl >/dev/null || die "curl is not installed (apt-get install -y curl)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_bench_cost.XXXXXX")"
CLK_TCK="$(getconf CLK_TCK)"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
PIDS=() # every background process we started, killed on exit

trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

DENO_BIN="$(find_deno)"

if [ -z "$SIPLOAD" ]; then
  src="$REPO/../shared/tools/sipload"
  [ -f "$src/sipload.c" ] || die "SIPLOAD is not set and $src is missing: build sipload (shared/tools/sipload, make; OpenSSL headers: apt-get install -y libssl-dev) and set SIPLOAD=/path/to/sipload"
  log "building sipload from $src"
  cp -r "$src" "$WORK/sipload_build"
  make -s -C "$WORK/sipload_build" >"$WORK/sipload_build.log" 2>&1 ||
    die "building sipload failed: $(tail -5 "$WORK/sipload_build.log")"
  SIPLOAD="$WORK/sipload_build/sipload"
  SIPLOAD_DESC="built from ../shared/tools/sipload"
else
  SIPLOAD_DESC="$SIPLOAD"
fi
[ -x "$SIPLOAD" ] || die "SIPLOAD=$SIPLOAD is not an executable file"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_CONNS + 1000)) ]; then
  log "warning: ulimit -n is $(ulimit -n): too low for IDLE_CONNS=$IDLE_CONNS (needs about $((IDLE_CONNS + 1000)))"
fi

# ---------------------------------------------------------------------------------------------
# Memory accounting (Linux /proc; smaps kB are KiB)

# "RSS_KB PSS_KB ANON_KB PROCESSES" summed over the process tree of PID (smaps_rollup).
tree_mem() { # PID
  local pid files=()
  for pid in $(tree_pids "$1"); do
    [ -r "/proc/$pid/smaps_rollup" ] && files+=("/proc/$pid/smaps_rollup")
  done
  [ "${#files[@]}" -gt 0 ] || { echo "0 0 0 0"; return; }
  awk -v n="${#files[@]}" '$1 == "Rss:" { r += $2 } $1 == "Pss:" { p += $2 } $1 == "Anonymous:" { a += $2 }
    END { printf "%d %d %d %d\n", r, p, a, n }' "${files[@]}" 2>/dev/null || echo "0 0 0 0"
}

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
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" -days 2 -subj "/CN=sipedge.bench" \
  -addext "subjectAltName=DNS:sipedge.bench,IP:127.0.0.1" \
  >"$WORK/openssl.out" 2>&1 || die "openssl failed: $(cat "$WORK/openssl.out")"

declare -A PROXY_PID TLS_PORT TCP_PORT UAS_PID UAS_PORT STARTS
MAX_CONNS=$((IDLE_CONNS * 2 + 1000))
CTRL_PORT=""
SIPEDGE_LOG_LEVEL=warning
MODDIR="$(dirname "$(ls /usr/lib/*/kamailio/modules/sl.so 2>/dev/null | head -1)" 2>/dev/null || true)"

start_uas() { # NAME
  local port
  port="$(free_port)"
  "$SIPLOAD" uas --listen "127.0.0.1:$port" >>"$WORK/uas_$1.out" 2>&1 </dev/null &
  UAS_PID[$1]=$!
  PIDS+=("$!")
  UAS_PORT[$1]=$port
  wait_listening "$port" 10 "sipload uas for $1" "${UAS_PID[$1]}"
}

start_sipedge() {
  local cfg="$WORK/sipedge.toml" cmd logfile
  STARTS[sipedge]=$((${STARTS[sipedge]:-0} + 1))
  logfile="$WORK/sipedge_${STARTS[sipedge]}.log"
  TLS_PORT[sipedge]="$(free_port)"
  TCP_PORT[sipedge]="$(free_port)"
  CTRL_PORT="$(free_port)"
  cat >"$cfg" <<EOF
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

[plugins.tcp]

[plugins.tls]
[[plugins.tls.server_domains]]
name = "bench"
certificate = "$WORK/cert.pem"
private_key = "$WORK/key.pem"

[plugins.static_router]
default_route = "sip:127.0.0.1:${UAS_PORT[sipedge]};transport=tcp"

[plugins.timeouts]
idle_timeout = "600s"

[plugins.limits]
max_connections = $MAX_CONNS
max_connections_per_ip = $MAX_CONNS

[plugins.blacklist]
EOF
  if [ -n "${SIPEDGE_CMD:-}" ]; then
    cmd="${SIPEDGE_CMD//\{config\}/$cfg}"
  else
    cmd="'$DENO_BIN' $SIPEDGE_RUN main.ts --config '$cfg'"
  fi
  launch_sipedge "$cmd" "$logfile"
  PROXY_PID[sipedge]=$LAUNCHED_PID
  wait_listening "${TCP_PORT[sipedge]}" 15 sipedge "${PROXY_PID[sipedge]}"
  wait_listening "${TLS_PORT[sipedge]}" 15 sipedge "${PROXY_PID[sipedge]}"
  wait_listening "$CTRL_PORT" 15 sipedge "${PROXY_PID[sipedge]}"
}

start_kamailio() {
  local dir
  STARTS[kamailio]=$((${STARTS[kamailio]:-0} + 1))
  dir="$WORK/kamailio_${STARTS[kamailio]}"
  TLS_PORT[kamailio]="$(free_port)"
  TCP_PORT[kamailio]="$(free_port)"
  mkdir -p "$dir"
  cat >"$dir/tls.cfg" <<EOF
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $WORK/key.pem
certificate = $WORK/cert.pem

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
EOF
  cat >"$dir/kamailio.cfg" <<EOF
#!KAMAILIO
# Stateless forwarding proxy with tcp and tls listeners (generated by scripts/bench_cost.sh).
debug=1
log_stderror=yes
fork=yes
children=$WORKERS
tcp_children=$WORKERS
disable_tcp=no
enable_tls=yes
auto_aliases=no
listen=tcp:127.0.0.1:${TCP_PORT[kamailio]}
listen=tls:127.0.0.1:${TLS_PORT[kamailio]}
tcp_max_connections=$MAX_CONNS
tls_max_connections=$MAX_CONNS
tcp_connection_lifetime=600
mpath="$MODDIR/"
loadmodule "tls.so"
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
modparam("tls", "config", "$dir/tls.cfg")
request_route {
  if (!mf_process_maxfwd_header("10")) {
    sl_send_reply("483", "Too Many Hops");
    exit;
  }
  \$du = "sip:127.0.0.1:${UAS_PORT[kamailio]};transport=tcp";
  forward();
  exit;
}
EOF
  "$KAMAILIO" -f "$dir/kamailio.cfg" -DD -E -Y "$dir" -m "$KAMAILIO_SHM_MB" -M 8 \
    -x "$KAMAILIO_MEM" >"$WORK/kamailio_${STARTS[kamailio]}.log" 2>&1 </dev/null &
  PROXY_PID[kamailio]=$!
  PIDS+=("$!")
  wait_listening "${TCP_PORT[kamailio]}" 15 kamailio "${PROXY_PID[kamailio]}"
  wait_listening "${TLS_PORT[kamailio]}" 15 kamailio "${PROXY_PID[kamailio]}"
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

proxy_log() { # NAME
  echo "$WORK/${1}_${STARTS[$1]}.log"
}

CRASH_LINES='exited by a signal|core was generated|Assertion .* failed|Segmentation fault|panicked'
proxy_crashed() { # NAME
  ! kill -0 "${PROXY_PID[$1]}" 2>/dev/null || grep -aqE "$CRASH_LINES" "$(proxy_log "$1")"
}

stop_proxy() { # NAME
  [ -z "${PROXY_PID[$1]:-}" ] || stop_pid "${PROXY_PID[$1]}"
  PROXY_PID[$1]=""
}

# ---------------------------------------------------------------------------------------------
# Steps

ACTIVE=()
for proxy in $PROXIES; do
  case "$proxy" in
    sipedge) ;;
    kamailio)
      if [ ! -x "$KAMAILIO" ]; then
        log "kamailio is not installed: skipping it (apt-get install -y kamailio kamailio-tls-modules)"
        continue
      fi
      if [ -z "$MODDIR" ] || [ ! -e "$MODDIR/tls.so" ]; then
        log "kamailio's tls.so is missing: skipping it (apt-get install -y kamailio-tls-modules)"
        continue
      fi
      ;;
    *) die "unknown proxy '$proxy' (PROXIES may hold sipedge and kamailio)" ;;
  esac
  ACTIVE+=("$proxy")
done
[ "${#ACTIVE[@]}" -gt 0 ] || die "no proxy to benchmark"
has() { [[ " ${ACTIVE[*]} " == *" $1 "* ]]; } # PROXY

NOTES=()
STEP_TIMES=() # "STEP START END LOAD_START LOAD_END"
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- rest ------------------------------------------------------------------------------------
REST_SE=""  # proc_status | smaps_classes | PSS | heaps
REST_KAM="" # tree_mem
rest_step() {
  local p
  for p in "${ACTIVE[@]}"; do "start_$p"; done
  log "rest: both ready, waiting $REST_SECONDS s"
  sleep "$REST_SECONDS"
  if has sipedge; then
    local pid=${PROXY_PID[sipedge]} pss
    pss="$(awk '$1 == "Pss:" { print $2 }' "/proc/$pid/smaps_rollup")"
    REST_SE="$(proc_status "$pid") | $(smaps_classes "$pid") | $pss | $(sipedge_heaps)"
    log "rest sipedge: status(VmRSS VmHWM RssAnon RssFile RssShmem threads) / classes / PSS / heaps: $REST_SE"
  fi
  if has kamailio; then
    REST_KAM="$(tree_mem "${PROXY_PID[kamailio]}")"
    log "rest kamailio: RSS sum / PSS sum / anonymous sum / processes: $REST_KAM"
  fi
  for p in "${ACTIVE[@]}"; do stop_proxy "$p"; done
}

# --- idle ------------------------------------------------------------------------------------
IDLE=() # one line per run, fields: see idle_run
idle_run() { # PROXY TRANSPORT
  local proxy=$1 tr=$2 port conc out tls=() m0 m1 m2 c0="" c1="" h0="" h1="" ready="" line deadline
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
  m0="$(tree_mem "${PROXY_PID[$proxy]}")"
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
  deadline=$((SECONDS + IDLE_CONNS / 20 + 120))
  while :; do
    ready="$(grep -m1 '^IDLE_READY' "$out" || true)"
    [ -z "$ready" ] || break
    kill -0 "$idle_pid" 2>/dev/null || break
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.2
  done
  if [ -n "$ready" ]; then
    sleep "$IDLE_SETTLE"
    m1="$(tree_mem "${PROXY_PID[$proxy]}")"
    if [ "$proxy" = sipedge ]; then
      c1="$(smaps_classes "${PROXY_PID[$proxy]}")"
      h1="$(sipedge_heaps)"
    fi
  else
    m1="0 0 0 0"
    log "idle $tr $proxy: the connections were not all up (sipload: $(tail -2 "$out" | tr '\n' ' '))"
  fi
  log "idle $tr $proxy: $ready; memory idle: $m1"
  timeout $((IDLE_SETTLE + 90)) tail --pid="$idle_pid" -f /dev/null || stop_pid "$idle_pid"
  wait "$idle_pid" 2>/dev/null || true
  sleep 3
  ! proxy_crashed "$proxy" || alive=no
  m2="$(tree_mem "${PROXY_PID[$proxy]}")"
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

# --- cpu -------------------------------------------------------------------------------------
CPU=() # proxy tr rate sent ok failed delivered p50 p99 cpu_s cpu_pct ms_per_1k uac% uas% other% load note
RECORD=1
cpu_run() { # PROXY TRANSPORT RATE SECONDS
  local proxy=$1 tr=$2 rate=$3 secs=$4 port tls=() out line note="-"
  out="$WORK/cpu_${proxy}_${tr}_${rate}_$RANDOM.out"
  if [ "$tr" = tls ]; then port=${TLS_PORT[$proxy]} tls=(--tls --connect-concurrency 1); else port=${TCP_PORT[$proxy]}; fi
  sample "$proxy" 0
  timeout --kill-after=5 $((secs + 40)) "$SIPLOAD" uac --proxy "127.0.0.1:$port" "${tls[@]}" \
    --conns "$CPU_CONNS" --rate "$rate" --duration "$secs" --method OPTIONS \
    --ruri "sip:uas@127.0.0.1:${UAS_PORT[$proxy]}" --timeout-ms 5000 >"$out" 2>&1 </dev/null || true
  sleep 0.2
  sample "$proxy" 1
  line="$(grep '^SIPLOAD mode=uac' "$out" | tail -1 || true)"
  [ -n "$line" ] || { note=no-result; log "sipload gave no result ($proxy $tr $rate/s): $(tail -3 "$out" | tr '\n' ' ')"; }
  if proxy_crashed "$proxy"; then
    note=CRASHED
    NOTES+=("$proxy crashed during the cpu $tr step at $rate/s: $(grep -aE "$CRASH_LINES" "$(proxy_log "$proxy")" | head -3 | cut -c1-160 | tr '\n' '|')")
  fi
  local row
  row="$(awk -v proxy="$proxy" -v tr="$tr" -v rate="$rate" -v sent="$(kv "$line" sent)" \
    -v ok="$(kv "$line" ok)" -v failed="$(kv "$line" failed)" -v delivered="$(kv "$line" rate)" \
    -v p50="$(kv "$line" p50_us)" -v p99="$(kv "$line" p99_us)" -v t0="$S_T0" -v t1="$S_T1" \
    -v c0="$S_C0" -v c1="$S_C1" -v u0="$S_U0" -v u1="$S_U1" -v h0="$S_A0" -v h1="$S_A1" \
    -v g0="$S_G0" -v g1="$S_G1" -v hz="$CLK_TCK" -v load="$(cut -d' ' -f1 /proc/loadavg)" -v note="$note" '
    function pct(x) { return wall > 0 ? 100 * x / wall : 0 }
    BEGIN {
      if (failed == "") failed = 1
      wall = (t1 - t0) / 1e9
      cpu = (c1 - c0) / hz; uas = (u1 - u0) / hz; host = (h1 - h0) / hz; uac = g1 - g0
      if (cpu < 0) cpu = 0
      if (uas < 0) uas = 0
      other = host - cpu - uas - uac
      if (other < 0) other = 0
      per = ok > 0 ? cpu * 1000 / (ok / 1000) : 0
      printf "%s %s %d %d %d %d %.1f %d %d %.2f %.1f %.1f %.1f %.1f %.1f %s %s", proxy, tr, rate,
        sent, ok, failed, delivered, p50, p99, cpu, pct(cpu), per, pct(uac), pct(uas), pct(other),
        load, note
    }')"
  if [ "$RECORD" = 1 ]; then
    CPU+=("$row")
    log "$(awk '{ printf "cpu %-8s %s %6d/s: ok %d failed %d delivered %.1f/s, p50 %d µs p99 %d µs, proxy CPU %.2f s (%.1f %%) = %.1f ms per 1k tx; UAC %.0f %%, UAS %.0f %%, other %.0f %%", $1, $2, $3, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15 }' <<<"$row")"
  else
    log "$(awk '{ printf "cpu warm-up %-8s %s %d/s: ok %d failed %d", $1, $2, $3, $5, $6 }' <<<"$row")"
  fi
}

cpu_step() {
  local tr rate proxy
  for proxy in "${ACTIVE[@]}"; do "start_$proxy"; done
  for tr in $CPU_TRANSPORTS; do
    case "$tr" in tcp | tls) ;; *) die "CPU_TRANSPORTS may hold tcp and tls, not '$tr'" ;; esac
    if [ "$CPU_WARMUP" -gt 0 ]; then
      RECORD=0
      for proxy in "${ACTIVE[@]}"; do cpu_run "$proxy" "$tr" "${CPU_RATES%% *}" "$CPU_WARMUP"; done
      RECORD=1
    fi
    for rate in $CPU_RATES; do
      for proxy in "${ACTIVE[@]}"; do
        if proxy_crashed "$proxy"; then
          stop_proxy "$proxy"
          "start_$proxy"
        fi
        cpu_run "$proxy" "$tr" "$rate" "$CPU_SECONDS"
        sleep 1
      done
    done
  done
  for proxy in "${ACTIVE[@]}"; do stop_proxy "$proxy"; done
}

# ---------------------------------------------------------------------------------------------
# Run

if awk '{ exit !($1 > 0.5) }' <<<"$LOAD_START"; then
  log "warning: load average is $LOAD_START before the run: other work on this machine skews the figures"
fi
# What sipedge runs is the working tree: note uncommitted changes, and whether they change
# during the run (someone editing the tree meanwhile).
tree_state() { git -C "$REPO" diff HEAD -- core plugins main.ts 2>/dev/null | cksum; }
TREE_START="$(tree_state)"
START=$SECONDS
for proxy in "${ACTIVE[@]}"; do start_uas "$proxy"; done
for step in $STEPS; do
  t0="$(date -u +%H:%M:%S)" l0="$(loadavg)"
  log "step $step"
  "${step}_step"
  STEP_TIMES+=("$step|$t0|$(date -u +%H:%M:%S)|$l0|$(loadavg)")
done
for proxy in "${ACTIVE[@]}"; do stop_pid "${UAS_PID[$proxy]}"; done
DATE_END="$(date -u '+%H:%M:%S UTC')"
[ "$(tree_state)" = "$TREE_START" ] ||
  NOTES+=("core/, plugins/ or main.ts changed in the working tree during the run: the sipedge processes started at different times may have run different code")
# CPU steps where other work on the machine took a large share (their ratio is less certain).
for row in "${CPU[@]}"; do
  read -r p tr rate _ _ _ _ _ _ _ _ _ _ _ other _ <<<"$row"
  awk -v o="$other" 'BEGIN { exit !(o >= 25) }' &&
    NOTES+=("cpu $tr $rate/s, $p: other processes used $other % of a core during the step (a shared machine): this step's figures are less certain")
done
LOAD_END="$(loadavg)"

# ---------------------------------------------------------------------------------------------
# Report (Markdown)

field() { cut -d'|' -f"$2" <<<"$1" | sed 's/^ *//; s/ *$//'; } # LINE N (|-separated, trimmed)

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
  echo "- **sipedge:** \`${SIPEDGE_CMD:-deno $SIPEDGE_RUN main.ts --config FILE}\` (the runtime flags of" \
    "\`deno task start\`), workers = $WORKERS, tcp + tls listeners, control API, static_router," \
    "timeouts, limits, blacklist; log level warning (churn: $CHURN_LOG_LEVEL)"
  echo "- **Kamailio:** stateless \`forward()\`, tcp + tls listeners, children = tcp_children = $WORKERS," \
    "\`-x $KAMAILIO_MEM -m $KAMAILIO_SHM_MB -M 8\`"
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
      local st cl pss hp
      st="$(field "$REST_SE" 1)" cl="$(field "$REST_SE" 2)" pss="$(field "$REST_SE" 3)" hp="$(field "$REST_SE" 4)"
      awk -v st="$st" -v cl="$cl" -v pss="$pss" -v hp="$hp" -v ncpu="$WORKERS" '
        function m(k) { return sprintf("%.1f", k / 1024) }
        BEGIN {
          split(st, S, " "); split(cl, C, " "); split(hp, H, " ")
          print "| sipedge | MiB |"
          print "| --- | ---: |"
          printf "| **VmRSS** (VmHWM %s) | **%s** |\n", m(S[2]), m(S[1])
          printf "| PSS | %s |\n", m(pss)
          printf "| **anonymous** (RssAnon) | **%s** |\n", m(S[3])
          printf "| &nbsp;&nbsp;V8 heap pages (256 KiB mappings, %d isolates) | %s |\n", ncpu + 1, m(C[6])
          printf "| &nbsp;&nbsp;glibc thread arenas | %s |\n", m(C[7])
          printf "| &nbsp;&nbsp;glibc main arena ([heap]) | %s |\n", m(C[8])
          printf "| &nbsp;&nbsp;other anonymous (mmapped malloc chunks, V8 code / large objects, stacks) | %s |\n", m(C[9])
          printf "| **file-backed** (RssFile + RssShmem) | **%s** |\n", m(S[4] + S[5])
          printf "| &nbsp;&nbsp;deno binary, text (r-x; PSS %s) | %s |\n", m(C[2]), m(C[1])
          printf "| &nbsp;&nbsp;deno binary, rodata / data | %s |\n", m(C[3])
          printf "| &nbsp;&nbsp;shared libraries | %s |\n", m(C[4])
          printf "| &nbsp;&nbsp;other files (deno caches) | %s |\n", m(C[5])
          printf "| VmRSS less the deno binary (text + data) | %s |\n", m(S[1] - C[1] - C[3])
          printf "| JS heap in use: workers / supervisor (/metrics) | %s / %s |\n", H[1], H[2]
          printf "| threads | %d |\n", S[6]
        }'
      echo
      echo "The deno binary's mappings are file-backed pages of the executable: the same for any"
      echo "Deno program, and shared with every other deno process on the machine (the PSS of its"
      echo "text shows how many others map it right now). They count in RSS but not in what sipedge"
      echo "itself allocates; the anonymous part is sipedge's (runtime + isolates + its own state)."
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
      local r="$(cut -d'|' -f4 <<<"$c" | cut -d' ' -f1)" label="$(cut -d'|' -f1 <<<"$c")"
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
    echo "## 4. CPU per transaction and latency ($CPU_CONNS connections, open loop, $CPU_SECONDS s per step)"
    echo
    echo "CPU = the proxy's utime + stime over the step (whole process tree), per 1,000 transactions"
    echo "(1 tx = OPTIONS forwarded + 200 forwarded back = 2 SIP messages). p50 / p99: sipload, µs."
    echo "Ratio = sipedge / Kamailio CPU per tx."
    echo
    echo "| transport | rate tx/s | sipedge CPU ms / 1k tx | Kamailio CPU ms / 1k tx | **ratio** | sipedge p50 / p99 µs | Kamailio p50 / p99 µs | failed (sipedge / Kamailio) |"
    echo "| --- | ---: | ---: | ---: | ---: | --- | --- | --- |"
    printf '%s\n' "${CPU[@]}" | awk '
      { k = $2 " " $3; keys[k] = 1; tr[k] = $2; rt[k] = $3
        per[k, $1] = $12; lat[k, $1] = $8 " / " $9; fl[k, $1] = $6; seen[k, $1] = 1 }
      END { for (k in keys) {
        s = (seen[k, "sipedge"] ? sprintf("%.1f", per[k, "sipedge"]) : "-")
        q = (seen[k, "kamailio"] ? sprintf("%.1f", per[k, "kamailio"]) : "-")
        ratio = (seen[k, "sipedge"] && seen[k, "kamailio"] && per[k, "kamailio"] > 0) ? sprintf("**%.2f**", per[k, "sipedge"] / per[k, "kamailio"]) : "-"
        printf "%s %08d| %s | %d | %s | %s | %s | %s | %s | %s / %s |\n", tr[k], rt[k], tr[k], rt[k], s, q, ratio,
          (seen[k, "sipedge"] ? lat[k, "sipedge"] : "-"), (seen[k, "kamailio"] ? lat[k, "kamailio"] : "-"),
          (seen[k, "sipedge"] ? fl[k, "sipedge"] : "-"), (seen[k, "kamailio"] ? fl[k, "kamailio"] : "-") } }' |
      sort | sed 's/^[^|]*|/|/'
    echo
    echo "Each step in full (CPU % of one core, max $(nproc)00 %; UAC / UAS / other = the load tools"
    echo "and the rest of the machine over the step):"
    echo
    echo "| proxy | transport | rate | sent | ok | failed | delivered /s | p50 µs | p99 µs | proxy CPU s | proxy CPU % | ms / 1k tx | UAC % | UAS % | other % | load | note |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${CPU[@]}" | awk '{ printf "| %s | %s | %d | %d | %d | %d | %.1f | %d | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %s |\n",
      $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 }'
    echo
  fi
  if [ "${#NOTES[@]}" -gt 0 ]; then
    echo "## Notes"
    echo
    for note in "${NOTES[@]}"; do echo "- $note"; done
    echo
  fi
}

report
if [ -n "${BENCH_REPORT:-}" ]; then
  report >"$BENCH_REPORT"
  log "report written to $BENCH_REPORT"
fi
