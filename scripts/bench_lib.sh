#!/usr/bin/env bash
# Shared helpers of the benchmark scripts (bench_tcp.sh, bench_tls.sh, bench_ws.sh, bench_cost.sh):
# their common settings, logging, free ports and listening checks from /proc/net/tcp, CPU and
# memory accounting from /proc, a test certificate, finding deno, starting sipedge, Kamailio and
# the sipload UAS, stopping what we started. Sourced, not run. Callers run bench_start (WORK, a
# temp folder; PIDS, the processes they start; `trap cleanup EXIT`) and keep PROXY_PID, UAS_PID,
# UAS_PORT and STARTS (associative arrays by proxy name).

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# How the benchmarks run sipedge: the runtime flags of `deno task start` (deno.json), with -A.
SIPEDGE_RUN="run --unstable-net -A --no-code-cache --v8-flags=--max-semi-space-size=1"

die() {
  log "error: $*"
  exit 1
}

find_deno() {
  if [ -n "${DENO:-}" ]; then echo "$DENO"; return; fi
  if command -v deno >/dev/null; then command -v deno; return; fi
  # The npm package's real binary, so that we measure deno itself and not npx around it.
  npx --yes deno@2.9.6 eval 'console.log(Deno.execPath())' </dev/null
}

# A TCP port no local socket uses, below the ephemeral range (bash cannot bind port 0).
free_port() {
  local port
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 12000))
    if ! tcp_port_used "$port" && [[ " ${TAKEN_PORTS:-} " != *" $port "* ]]; then
      TAKEN_PORTS="${TAKEN_PORTS:-} $port"
      echo "$port"
      return
    fi
  done
  die "no free port found"
}

# True if any TCP socket (any state) has PORT as its local port, from /proc/net/tcp{,6}.
tcp_port_used() {
  local hex
  hex="$(printf '%04X' "$1")"
  cat /proc/net/tcp /proc/net/tcp6 2>/dev/null |
    awk -v p="$hex" '{ n = split($2, a, ":"); if (a[n] == p) found = 1 } END { exit !found }'
}

# True if some socket listens on 127.0.0.1:PORT (or 0.0.0.0:PORT), from /proc/net/tcp.
tcp_listening() {
  local hex
  hex="$(printf '%04X' "$1")"
  awk -v p="$hex" 'NR > 1 && $4 == "0A" { split($2, a, ":");
    if (a[2] == p && (a[1] == "0100007F" || a[1] == "00000000")) found = 1 }
    END { exit !found }' /proc/net/tcp
}

wait_listening() { # PORT SECONDS NAME PID
  local deadline=$((SECONDS + $2))
  until tcp_listening "$1"; do
    kill -0 "$4" 2>/dev/null || die "$3 exited before listening on $1"
    [ "$SECONDS" -lt "$deadline" ] || die "$3 does not listen on 127.0.0.1:$1 after $2 s"
    sleep 0.05
  done
}

# CPU ticks (utime+stime) of PID and all its descendants, from /proc/*/stat. A process's stat
# counts all its threads. (Here and below, cat fails when a process exits between the glob and
# the read; that is not an error, but under pipefail it would end the calling script.)
tree_ticks() { # PID
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    {
      pid = $1
      rest = $0
      sub(/^.*\) /, "", rest)          # the fields after "(comm) "
      split(rest, f, " ")              # f[1] = state, f[2] = ppid, f[12] = utime, f[13] = stime
      parent[pid] = f[2]
      ticks[pid] = f[12] + f[13]
    }
    END {
      inside[root] = 1
      do {
        changed = 0
        for (p in parent) if (!(p in inside) && (parent[p] in inside)) { inside[p] = 1; changed = 1 }
      } while (changed)
      total = 0
      for (p in inside) total += ticks[p]
      print total
    }'
}

# CPU ticks of every process on the machine, including the finished children they reaped
# (utime+stime+cutime+cstime from /proc/*/stat). Process times are exact; the /proc/stat cpu
# line is tick-sampled and under-counts short timer-driven bursts (it showed less than the
# proxy alone here), so it is not used.
all_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{ rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " ")
    total += f[12] + f[13] + f[14] + f[15] } END { print total + 0 }'
}

# Sets CHILD_S to the CPU seconds of this shell's finished children (the load generator of a
# step), from the `times` builtin. Must not run in a subshell.
children_seconds() {
  times >"$WORK/times"
  # shellcheck disable=SC2034 # read by sample() through eval
  CHILD_S="$(awk 'NR == 2 { s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/)
    s += a[1] * 60 + a[2] }; print s }' "$WORK/times")"
}

now_ns() { date +%s%N; }

# Every process in the tree under PID (PID first), from /proc/*/stat.
tree_pids() { # PID
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '
    { rest = $0; sub(/^.*\) /, "", rest); split(rest, f, " "); parent[$1] = f[2] }
    END {
      if (!(root in parent)) exit
      inside[root] = 1; print root
      do {
        changed = 0
        for (p in parent) if (!(p in inside) && (parent[p] in inside)) { inside[p] = 1; changed = 1; print p }
      } while (changed)
    }'
}

# True if PID is still a child of this shell (not a finished one whose number was reused).
ours() { # PID
  [ "$(awk '{ sub(/^.*\) /, ""); print $2 }' "/proc/$1/stat" 2>/dev/null)" = "$$" ]
}

# Ends a process we started and its descendants: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() { # PID
  local tree
  if ! ours "$1"; then
    wait "$1" 2>/dev/null || true
    return 0
  fi
  tree="$(tree_pids "$1" | tr '\n' ' ')"
  kill -TERM "$1" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  [ -z "$tree" ] || kill -KILL $tree 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do ! ours "$pid" || kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  if [ "${BENCH_KEEP:-0}" = 1 ]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
}

# Samples before/after a step: S_T (ns), S_C (proxy ticks), S_U (UAS ticks), S_A (all
# processes' ticks), S_G (this shell's finished children, CPU s).
sample() { # PROXY 0|1
  local i=$2
  eval "S_A$i=\$(all_ticks)"
  eval "S_C$i=\$(tree_ticks \"\${PROXY_PID[\$1]}\")"
  eval "S_U$i=\$(tree_ticks \"\${UAS_PID[\$1]}\")"
  children_seconds
  eval "S_G$i=\$CHILD_S"
  eval "S_T$i=\$(now_ns)"
}

# Starts sipedge with CMD (run from the repo root, output to LOGFILE) and waits up to 30 s for
# its ready line. Sets LAUNCHED_PID (and adds it to PIDS). Must not run in a subshell.
launch_sipedge() { # CMD LOGFILE
  local cmd="$1" logfile="$2" deadline=$((SECONDS + 30))
  log "sipedge: $cmd"
  (cd "$REPO" && exec bash -c "exec $cmd") >"$logfile" 2>&1 </dev/null &
  LAUNCHED_PID=$!
  PIDS+=("$!")
  until grep -q "sipedge ready" "$logfile"; do
    kill -0 "$LAUNCHED_PID" 2>/dev/null ||
      die "sipedge exited before it was ready:$(printf '\n')$(tail -20 "$logfile")"
    [ "$SECONDS" -lt "$deadline" ] || die "sipedge not ready after 30 s"
    sleep 0.1
  done
  log "$(grep -m1 "sipedge ready" "$logfile")"
}

# ACTIVE: the proxies of PROXIES (sipedge, kamailio) to run; kamailio is skipped when KAMAILIO is
# not installed, or when one of MODULES (e.g. tls) is not in MODDIR. PACKAGES: the Debian packages
# of those modules, for the hint.
select_proxies() { # [PACKAGES MODDIR MODULE...]
  local packages="${1:-}" moddir="${2:-}" missing mod
  [ $# -lt 2 ] || shift 2
  ACTIVE=()
  for proxy in $PROXIES; do
    case "$proxy" in
      sipedge) ;;
      kamailio)
        if [ ! -x "$KAMAILIO" ]; then
          log "kamailio is not installed: skipping it (apt-get install -y kamailio${packages:+ $packages})"
          continue
        fi
        missing=""
        for mod in "$@"; do [ -e "$moddir/$mod.so" ] || missing+=" $mod.so"; done
        if [ -n "$missing" ]; then
          log "kamailio modules missing:$missing: skipping it (apt-get install -y $packages)"
          continue
        fi
        ;;
      *) die "unknown proxy '$proxy' (PROXIES may hold sipedge and kamailio)" ;;
    esac
    ACTIVE+=("$proxy")
  done
  [ "${#ACTIVE[@]}" -gt 0 ] || die "no proxy to benchmark"
}

# ---------------------------------------------------------------------------------------------
# Set-up

# The settings every benchmark script takes from the environment (documented in each script's
# header), with their defaults.
bench_defaults() {
  PROXIES="${PROXIES:-sipedge kamailio}"
  WORKERS="${WORKERS:-2}"
  BENCH_MAX_SECONDS="${BENCH_MAX_SECONDS:-1800}"
  KAMAILIO="${KAMAILIO:-$(command -v kamailio || echo /usr/sbin/kamailio)}"
  KAMAILIO_MEM="${KAMAILIO_MEM:-tlsf}"
  KAMAILIO_SHM_MB="${KAMAILIO_SHM_MB:-2048}"
  SIPLOAD="${SIPLOAD:-}"
}

# Sets WORK (a new temp folder sipedge_NAME.XXXXXX), CLK_TCK, LOAD_START, DATE_START and PIDS (the
# background processes we start, killed on exit), and installs the EXIT and INT/TERM traps. Must
# not run in a subshell.
bench_start() { # NAME
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_$1.XXXXXX")"
  CLK_TCK="$(getconf CLK_TCK)"
  LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
  # shellcheck disable=SC2034 # for the calling script's report
  DATE_START="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  PIDS=()
  trap cleanup EXIT
  trap 'log "interrupted"; exit 130' INT TERM
}

# Raises `ulimit -n` to the hard limit; warns when it stays too low for CONNS idle connections
# (they need about CONNS + 1000 descriptors). Must not run in a subshell.
raise_nofile() { # CONNS
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $(($1 + 1000)) ]; then
    log "warning: ulimit -n is $(ulimit -n): too low for IDLE_CONNS=$1 (needs about $(($1 + 1000)))"
  fi
}

# Warns when the load average at the start (LOAD_START) shows other work on the machine.
warn_load() {
  if awk '{ exit !($1 > 0.5) }' <<<"$LOAD_START"; then
    log "warning: load average is $LOAD_START before the run: other work on this machine skews the figures"
  fi
}

# True if SECONDS_NEEDED more seconds keep the run (since START) within BENCH_MAX_SECONDS.
budget_left() { # SECONDS_NEEDED
  [ $((SECONDS - START + $1)) -le "$BENCH_MAX_SECONDS" ]
}

# Checks SIPLOAD; when it is not set, builds sipload from ../shared/tools/sipload into WORK and
# sets SIPLOAD to it. Dies when neither works.
need_sipload() {
  local src="$REPO/../shared/tools/sipload"
  if [ -z "$SIPLOAD" ]; then
    [ -f "$src/sipload.c" ] || die "SIPLOAD is not set and $src is missing: build sipload (shared/tools/sipload, make; OpenSSL headers: apt-get install -y libssl-dev) and set SIPLOAD=/path/to/sipload"
    log "building sipload from $src"
    cp -r "$src" "$WORK/sipload_build"
    make -s -C "$WORK/sipload_build" >"$WORK/sipload_build.log" 2>&1 ||
      die "building sipload failed: $(tail -5 "$WORK/sipload_build.log")"
    SIPLOAD="$WORK/sipload_build/sipload"
  fi
  [ -x "$SIPLOAD" ] || die "SIPLOAD=$SIPLOAD is not an executable file"
}

# Writes a self-signed test certificate for sipedge.bench and 127.0.0.1 to WORK/cert.pem and
# WORK/key.pem; KIND: ec (ECDSA P-256) or rsa (RSA-2048); OPENSSL_ARGS: more `openssl req`
# options. Sets CERT_DESC.
make_cert() { # KIND [OPENSSL_ARGS...]
  local key_args=(-newkey rsa:2048) desc="RSA-2048"
  if [ "$1" = ec ]; then
    key_args=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1)
    desc="ECDSA P-256"
  fi
  # shellcheck disable=SC2034 # for the calling script's report
  CERT_DESC=$desc
  shift
  openssl req -x509 "${key_args[@]}" -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 \
    -subj "/CN=sipedge.bench" -addext "subjectAltName=DNS:sipedge.bench,IP:127.0.0.1" "$@" \
    >"$WORK/openssl.out" 2>&1 || die "openssl failed: $(cat "$WORK/openssl.out")"
}

# ---------------------------------------------------------------------------------------------
# Proxies and UASes

# Starts `sipload uas` (SIPLOAD) on a free port as the UAS behind proxy NAME (output appended to
# WORK/uas_NAME.out); sets UAS_PID[NAME] (and adds it to PIDS) and UAS_PORT[NAME].
start_sipload_uas() { # NAME
  local port
  port="$(free_port)"
  "$SIPLOAD" uas --listen "127.0.0.1:$port" >>"$WORK/uas_$1.out" 2>&1 </dev/null &
  UAS_PID[$1]=$!
  PIDS+=("$!")
  # shellcheck disable=SC2034 # for the calling script
  UAS_PORT[$1]=$port
  wait_listening "$port" 10 "sipload uas for $1" "${UAS_PID[$1]}"
}

# The [plugins.tcp] and [plugins.tls] sections of a generated sipedge config: the test
# certificate (WORK/cert.pem, WORK/key.pem) as the tls plugin's server domain.
sipedge_toml_tls() {
  cat <<TOML
[plugins.tcp]

[plugins.tls]
[[plugins.tls.server_domains]]
name = "bench"
certificate = "$WORK/cert.pem"
private_key = "$WORK/key.pem"
TOML
}

# The routing sections of a generated sipedge config: static_router default_route to the UAS on
# 127.0.0.1:UAS_PORT over TCP, idle_timeout 600 s, connection limits MAX_CONNS.
sipedge_toml_route() { # UAS_PORT MAX_CONNS
  cat <<TOML
[plugins.static_router]
default_route = "sip:127.0.0.1:$1;transport=tcp"

[plugins.timeouts]
idle_timeout = "600s"

[plugins.limits]
max_connections = $2
max_connections_per_ip = $2
TOML
}

# The command that starts sipedge with the config file CONFIG: SIPEDGE_CMD with {config}
# replaced, else deno (DENO_BIN, or find_deno) SIPEDGE_RUN main.ts --config CONFIG, then ARGS
# (e.g. "--control off").
sipedge_cmd() { # CONFIG [ARGS]
  if [ -n "${SIPEDGE_CMD:-}" ]; then
    echo "${SIPEDGE_CMD//\{config\}/$1}"
  else
    echo "'${DENO_BIN:-$(find_deno)}' $SIPEDGE_RUN main.ts --config '$1'${2:+ $2}"
  fi
}

# Kamailio's modules folder: the first /usr/lib/*/kamailio/modules with sl.so ("" if none).
kamailio_moddir() {
  local so
  for so in /usr/lib/*/kamailio/modules/sl.so; do
    if [ -e "$so" ]; then dirname "$so" && return; fi
  done
}

# Kamailio's version (e.g. 5.6.3), from `KAMAILIO -v`.
kamailio_version() {
  "$KAMAILIO" -v 2>/dev/null | head -1 | awk '{print $3}'
}

# Starts Kamailio as a stateless forwarding proxy: request_route checks Max-Forwards and
# forward()s every request to the UAS on 127.0.0.1:UAS_PORT over TCP; replies go back by Via.
# Writes DIR/kamailio.cfg (children = tcp_children = WORKERS), runs KAMAILIO with `-m SHM_MB -M 8
# -x KAMAILIO_MEM` and its output to LOGFILE, then waits up to 15 s for the port of each listen
# line, in order. Sets LAUNCHED_PID (and adds it to PIDS). OPTIONS (those marked + repeat):
#   --comment TEXT     the config's header comment (its lines without the "# ")
#   --mpath DIR        the modules folder
#   --setting LINE +   a global line, before the listen lines
#   --listen ADDR +    a listen line (PROTO:127.0.0.1:PORT)
#   --max-conns N      tcp_max_connections and tls_max_connections N, tcp_connection_lifetime 600
#   --tls              enable_tls and tls.so with DIR/tls.cfg: the test certificate
#                      (WORK/cert.pem, WORK/key.pem), TLSv1.2+, no client certificates
#   --module NAME +    one more module (NAME.so) after sl, maxfwd and pv
#   --modparam LINE +  a line after the modules (a modparam, a comment)
#   --route TEXT +     a block after request_route (an event_route)
launch_kamailio() { # DIR LOGFILE UAS_PORT SHM_MB [OPTIONS...]
  local dir=$1 logfile=$2 uas_port=$3 shm=$4 comment="" mpath="" max="" tls=no addr
  local settings=() listens=() modules=(sl maxfwd pv) modparams=() routes=()
  shift 4
  while [ $# -gt 0 ]; do
    case "$1" in
      --tls) tls=yes && shift && continue ;;
      --comment) comment=$2 ;;
      --mpath) mpath=$2 ;;
      --setting) settings+=("$2") ;;
      --listen) listens+=("$2") ;;
      --max-conns) max=$2 ;;
      --module) modules+=("$2") ;;
      --modparam) modparams+=("$2") ;;
      --route) routes+=("$2") ;;
      *) die "launch_kamailio: unknown option '$1'" ;;
    esac
    shift 2
  done
  mkdir -p "$dir"
  if [ "$tls" = yes ]; then
    modules=(tls "${modules[@]}")
    modparams=("modparam(\"tls\", \"config\", \"$dir/tls.cfg\")" "${modparams[@]}")
    cat >"$dir/tls.cfg" <<CFG
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
CFG
  fi
  {
    echo "#!KAMAILIO"
    echo "# ${comment//$'\n'/$'\n'# }"
    printf '%s\n' debug=1 log_stderror=yes fork=yes "children=$WORKERS" "tcp_children=$WORKERS" disable_tcp=no
    [ "$tls" = no ] || echo "enable_tls=yes"
    echo "auto_aliases=no"
    [ "${#settings[@]}" -eq 0 ] || printf '%s\n' "${settings[@]}"
    for addr in "${listens[@]}"; do echo "listen=$addr"; done
    [ -z "$max" ] || printf '%s\n' "tcp_max_connections=$max" "tls_max_connections=$max" tcp_connection_lifetime=600
    echo "mpath=\"$mpath/\""
    printf 'loadmodule "%s.so"\n' "${modules[@]}"
    [ "${#modparams[@]}" -eq 0 ] || printf '%s\n' "${modparams[@]}"
    cat <<CFG
request_route {
  if (!mf_process_maxfwd_header("10")) {
    sl_send_reply("483", "Too Many Hops");
    exit;
  }
  \$du = "sip:127.0.0.1:$uas_port;transport=tcp";
  forward();
  exit;
}
CFG
    [ "${#routes[@]}" -eq 0 ] || printf '%s\n' "${routes[@]}"
  } >"$dir/kamailio.cfg"
  "$KAMAILIO" -f "$dir/kamailio.cfg" -DD -E -Y "$dir" -m "$shm" -M 8 -x "$KAMAILIO_MEM" \
    >"$logfile" 2>&1 </dev/null &
  LAUNCHED_PID=$!
  PIDS+=("$!")
  for addr in "${listens[@]}"; do wait_listening "${addr##*:}" 15 kamailio "$LAUNCHED_PID"; done
}

# The log file of proxy NAME's current run: WORK/NAME_N.log, N = STARTS[NAME].
proxy_log() { # NAME
  echo "$WORK/${1}_${STARTS[$1]}.log"
}

proxy_alive() { # NAME
  kill -0 "${PROXY_PID[$1]}" 2>/dev/null
}

# True when the proxy died or one of its processes did (Kamailio's main process takes a moment to
# shut down after a child crashed).
CRASH_LINES='exited by a signal|core was generated|Assertion .* failed|Segmentation fault|panicked'
proxy_crashed() { # NAME
  ! proxy_alive "$1" || grep -aqE "$CRASH_LINES" "$(proxy_log "$1")"
}

# Stops the proxy (if still there) and starts a fresh one (start_NAME).
restart_proxy() { # NAME
  stop_pid "${PROXY_PID[$1]}"
  "start_$1"
}

# ---------------------------------------------------------------------------------------------
# Steps

# The CPU figures of a step, from the samples sample() took before (S_*0) and after (S_*1) it:
# "PROXY_CPU_S PROXY_% PER UAC_% UAS_% OTHER_% ALL_%". PROXY_CPU_S: CPU seconds of the proxy's
# process tree; the %: of one core over the step's wall time, for the proxy, the load generator
# (this shell's finished children), the UAS, every other process and all of them; PER: the
# proxy's CPU ms per UNIT answered transactions (1000: per 1k tx; 1: per transaction), printed
# with PER_FORMAT (e.g. %.1f).
step_cpu() { # OK UNIT PER_FORMAT
  awk -v ok="$1" -v unit="$2" -v fmt="$3" -v t0="$S_T0" -v t1="$S_T1" -v c0="$S_C0" -v c1="$S_C1" \
    -v u0="$S_U0" -v u1="$S_U1" -v h0="$S_A0" -v h1="$S_A1" -v g0="$S_G0" -v g1="$S_G1" -v hz="$CLK_TCK" '
    function pct(x) { return wall > 0 ? 100 * x / wall : 0 }
    BEGIN {
      wall = (t1 - t0) / 1e9
      cpu = (c1 - c0) / hz; uas = (u1 - u0) / hz; host = (h1 - h0) / hz; uac = g1 - g0
      if (cpu < 0) cpu = 0 # the proxy was restarted
      if (uas < 0) uas = 0 # the UAS died during the step
      other = host - cpu - uas - uac
      if (other < 0) other = 0
      per = ok > 0 ? cpu * 1000 / (ok / unit) : 0
      printf "%.2f %.1f " fmt " %.1f %.1f %.1f %.1f", cpu, pct(cpu), per, pct(uac), pct(uas), pct(other), pct(host)
    }'
}

# "RSS_KB PSS_KB PROCESSES" summed over the process tree of PID (/proc/PID/smaps_rollup); with
# anon, "RSS_KB PSS_KB ANON_KB PROCESSES".
tree_mem() { # PID [anon]
  local pid files=() zero="0 0 0"
  [ "${2:-}" != anon ] || zero="0 0 0 0"
  for pid in $(tree_pids "$1"); do
    [ -r "/proc/$pid/smaps_rollup" ] && files+=("/proc/$pid/smaps_rollup")
  done
  [ "${#files[@]}" -gt 0 ] || { echo "$zero"; return; }
  awk -v n="${#files[@]}" -v anon="${2:-}" '$1 == "Rss:" { r += $2 } $1 == "Pss:" { p += $2 }
    $1 == "Anonymous:" { a += $2 }
    END { if (anon == "") printf "%d %d %d\n", r, p, n; else printf "%d %d %d %d\n", r, p, a, n }' \
    "${files[@]}" 2>/dev/null || echo "$zero"
}

# The memory columns of an idle run, from tree_mem before (M0), while idle (M1) and after the
# close (M2): "RSS0 RSS1 RSS2 PSS0 PSS1 PSS2 RSS_PER_CONN PSS_PER_CONN" (kB; per connection =
# (idle − before) / ESTABLISHED, 0 without connections or an idle sample).
idle_mem_fields() { # M0 M1 M2 ESTABLISHED
  awk -v m0="$1" -v m1="$2" -v m2="$3" -v e="$4" 'BEGIN {
    split(m0, a, " "); split(m1, b, " "); split(m2, d, " ")
    n = e > 0 ? e : 0
    printf "%d %d %d %d %d %d %.1f %.1f", a[1], b[1], d[1], a[2], b[2], d[2],
      (n > 0 && b[1] > 0 ? (b[1] - a[1]) / n : 0), (n > 0 && b[2] > 0 ? (b[2] - a[2]) / n : 0) }'
}

# Waits while PID runs, up to SECONDS, for a line of FILE that starts with PREFIX; prints it
# (nothing if it did not come).
wait_line() { # FILE PREFIX PID SECONDS
  local deadline=$((SECONDS + $4)) line=""
  while :; do
    line="$(grep -m1 "^$2" "$1" 2>/dev/null || true)"
    [ -z "$line" ] || break
    kill -0 "$3" 2>/dev/null || break
    [ "$SECONDS" -lt "$deadline" ] || break
    sleep 0.2
  done
  echo "$line"
}

# Waits up to SECONDS for PID (a load tool we started) to end, stops it if it did not, reaps it.
wait_pid_end() { # PID SECONDS
  timeout "$2" tail --pid="$1" -f /dev/null || stop_pid "$1"
  wait "$1" 2>/dev/null || true
}

# The Notes section of a Markdown report (the NOTES array), under a heading of level HASHES
# (## or ###); nothing when there are none.
report_notes() { # HASHES
  local note
  [ "${#NOTES[@]}" -gt 0 ] || return 0
  echo "$1 Notes"
  echo
  for note in "${NOTES[@]}"; do echo "- $note"; done
  echo
}
