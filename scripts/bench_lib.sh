#!/usr/bin/env bash
# Shared helpers of the benchmark scripts (bench_tcp.sh, bench_tls.sh): logging, free ports and
# listening checks from /proc/net/tcp, CPU accounting from /proc/PID/stat, finding deno, starting
# sipedge, stopping what we started. Sourced, not run. Callers set WORK (a temp folder), PIDS (an
# array of the processes they start), PROXY_PID and UAS_PID (associative arrays by proxy name),
# and install `trap cleanup EXIT`.

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# How the benchmarks run sipedge: the runtime flags of `deno task start` (deno.json), with -A.
SIPEDGE_RUN="run --unstable-net -A --v8-flags=--optimize-for-size"

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
# not installed.
select_proxies() {
  ACTIVE=()
  for proxy in $PROXIES; do
    case "$proxy" in
      sipedge) ;;
      kamailio)
        if [ ! -x "$KAMAILIO" ]; then
          log "kamailio is not installed: skipping it (apt-get install -y kamailio)"
          continue
        fi
        ;;
      *) die "unknown proxy '$proxy' (PROXIES may hold sipedge and kamailio)" ;;
    esac
    ACTIVE+=("$proxy")
  done
  [ "${#ACTIVE[@]}" -gt 0 ] || die "no proxy to benchmark"
}
