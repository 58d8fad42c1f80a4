#!/usr/bin/env bash
# bench_slow_upstream.sh — does one slow upstream hurt healthy traffic? (the async write path)
#
#   sipload uac A --> sipedge --route: domain healthy.test --> sipload uas (answers everything)
#   sipload uac B --> sipedge --route: domain slow.test    --> slow_peer.ts (accepts, never reads)
#
# Phase 1 (baseline): A alone at RATE/s. Phase 2: A at RATE/s while B sends SLOW_RATE/s of
# MESSAGE requests with 2 kB bodies to the slow upstream (its kernel buffers fill, then
# sipedge's queue: conn_wq_max / send_timeout close it, blacklist it, B gets 503/408 at once).
# Prints A's rate, failures and latency for both phases, and sipedge's CPU for each, so the
# effect of the slow peer on healthy traffic is read side by side.
#
# Needs sipload (../shared/tools/sipload, built with make): SIPLOAD=/path/to/sipload.
# Environment: RATE=5000 SLOW_RATE=500 SECONDS=10 WORKERS=2 DENO=deno
set -euo pipefail
SIPLOAD="${SIPLOAD:-$(command -v sipload || true)}"
[ -x "$SIPLOAD" ] || { echo "set SIPLOAD=/path/to/sipload (build it with make in its folder)" >&2; exit 2; }
RATE="${RATE:-5000}"; SLOW_RATE="${SLOW_RATE:-500}"; SECONDS_PER_PHASE="${SECONDS:-10}"
WORKERS="${WORKERS:-2}"; DENO="${DENO:-$(command -v deno || echo "npx --yes deno@2.9.6")}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sipedge_slow.XXXXXX")"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

UAS=$(free_port); SLOW=$(free_port); PROXY=$(free_port)
"$SIPLOAD" uas --listen "127.0.0.1:$UAS" > "$WORK/uas.log" 2>&1 & PIDS+=($!)
$DENO run --allow-net "$REPO/scripts/slow_peer.ts" "$SLOW" > "$WORK/slow.log" 2>&1 & PIDS+=($!)
cat > "$WORK/sipedge.toml" <<TOML
[sipedge]
workers = $WORKERS
log_level = "warning"
[[listen]]
address = "tcp:127.0.0.1:$PROXY"
[plugins.tcp]
[plugins.static_router]
[[plugins.static_router.routes]]
domain = "healthy.test"
destination = "sip:127.0.0.1:$UAS;transport=tcp"
[[plugins.static_router.routes]]
domain = "slow.test"
destination = "sip:127.0.0.1:$SLOW;transport=tcp"
[plugins.timeouts]
send_timeout = "2s"
[plugins.blacklist]
expire = "2s"
TOML
(cd "$REPO" && exec $DENO run --unstable-net -A main.ts --config "$WORK/sipedge.toml") > "$WORK/sipedge.log" 2>&1 & PIDS+=($!)
SE=$!
for _ in $(seq 100); do grep -q "sipedge ready" "$WORK/sipedge.log" && break; sleep 0.1; done
grep -q "sipedge ready" "$WORK/sipedge.log" || { cat "$WORK/sipedge.log"; exit 1; }
SE_PID=$(pgrep -P "$SE" deno || echo "$SE"); [ -r "/proc/$SE_PID/stat" ] || SE_PID=$SE
# warm-up
"$SIPLOAD" uac --proxy "127.0.0.1:$PROXY" --conns 1 --rate "$RATE" --duration 3 --ruri "sip:uas@healthy.test" > /dev/null 2>&1 || true

phase() { # NAME WITH_SLOW
  local t0 t1 line
  if [ "$2" = 1 ]; then
    "$SIPLOAD" uac --proxy "127.0.0.1:$PROXY" --conns 4 --rate "$SLOW_RATE" --duration "$SECONDS_PER_PHASE" \
      --method MESSAGE --body-bytes 2000 --ruri "sip:x@slow.test" --timeout-ms 3000 > "$WORK/slow_uac.out" 2>&1 &
    local slow_pid=$!
  fi
  t0=$(cpu_ticks "$SE_PID")
  "$SIPLOAD" uac --proxy "127.0.0.1:$PROXY" --conns 1 --rate "$RATE" --duration "$SECONDS_PER_PHASE" \
    --ruri "sip:uas@healthy.test" > "$WORK/uac.out" 2>&1 || true
  t1=$(cpu_ticks "$SE_PID")
  line=$(grep '^SIPLOAD mode=uac' "$WORK/uac.out" | tail -1)
  [ "$2" = 1 ] && wait "$slow_pid" 2>/dev/null || true
  local f; f() { echo "$line" | grep -o " $1=[^ ]*" | cut -d= -f2; }
  printf '%-22s ok=%-7s failed=%-5s rate=%-9s p50=%-6sus p99=%-7sus max=%-8sus sipedge_cpu=%ss' \
    "$1" "$(f ok)" "$(f failed)" "$(f rate)" "$(f p50_us)" "$(f p99_us)" "$(f max_us)" \
    "$(echo "scale=2; ($t1-$t0)/$(getconf CLK_TCK)" | bc)"
  if [ "$2" = 1 ]; then
    local s; s=$(grep '^SIPLOAD mode=uac' "$WORK/slow_uac.out" | tail -1)
    printf '  | slow route: sent=%s ok=%s non2xx=%s timeouts=%s' \
      "$(echo "$s" | grep -o ' sent=[0-9]*' | cut -d= -f2)" "$(echo "$s" | grep -o ' ok=[0-9]*' | cut -d= -f2)" \
      "$(echo "$s" | grep -o ' non2xx=[0-9]*' | cut -d= -f2)" "$(echo "$s" | grep -o ' timeouts=[0-9]*' | cut -d= -f2)"
  fi
  echo
}
echo "date: $(date -u +%FT%TZ)  machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "healthy load: $RATE/s on 1 connection; slow route: $SLOW_RATE/s MESSAGE 2 kB on 4 connections; $SECONDS_PER_PHASE s per phase; $WORKERS workers"
phase "healthy alone" 0
phase "healthy + slow peer" 1
phase "healthy alone (again)" 0
echo "sipedge log (failures):"; grep -c "send failure" "$WORK/sipedge.log" | sed 's/^/  send failure lines: /'
grep "send failure" "$WORK/sipedge.log" | head -3 | sed 's/^/  /'
