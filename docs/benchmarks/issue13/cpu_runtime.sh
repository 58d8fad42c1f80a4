#!/usr/bin/env bash
# cpu_runtime.sh — CPU per WebSocket message pair of a bare Deno server (bare_server.ts): the
# server answers each OPTIONS itself (one frame in, one frame out), so this is the runtime's
# floor per message, not a proxied transaction.
#
#   bash docs/benchmarks/issue13/cpu_runtime.sh MODE [RATE] [SECONDS] [CONNS]
#
# Starts the server, warms it up (2 s at RATE), then runs `wsload load` at RATE over CONNS
# connections (defaults 5000/s, 10 s, 10) and reads the server's CPU time (utime+stime, all
# threads, /proc/PID/stat) around it. Prints:
#   RESULT mode=.. rate=.. ok=.. failed=.. cpu_s=.. us_per_msg_pair=.. p50_us=.. p99_us=..
set -euo pipefail

MODE="${1:?usage: cpu_runtime.sh MODE [RATE] [SECONDS] [CONNS]}"
RATE="${2:-5000}"
SECS="${3:-10}"
CONNS="${4:-10}"
DENO="${DENO:-$(command -v deno)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/issue13_cpu.XXXXXX")"
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

case "$MODE" in
  serve | raw | node_net | npm_ws) SCHEME=ws ;;
  serve_tls | raw_tls | node_tls | npm_wss) SCHEME=wss ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" -days 2 -subj "/CN=bench.test" \
  -addext "subjectAltName=DNS:bench.test,IP:127.0.0.1" >/dev/null 2>&1
PORT=$((20000 + RANDOM % 12000))
# shellcheck disable=SC2086
"$DENO" run --no-lock -A --unstable-net ${DENO_FLAGS:-} "$HERE/bare_server.ts" "$MODE" "$PORT" \
  "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/server.out" 2>&1 &
SERVER_PID=$!
for _ in $(seq 200); do
  grep -q '^READY' "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.out" >&2; exit 1; }
  sleep 0.05
done
ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$SERVER_PID/stat"; }
HZ="$(getconf CLK_TCK)"
WSLOAD=("$DENO" run --quiet -A "$REPO/scripts/wsload.ts")
URL="$SCHEME://127.0.0.1:$PORT/"
"${WSLOAD[@]}" load --url "$URL" --connections "$CONNS" --rate "$RATE" --duration 2 --quiet \
  >/dev/null 2>&1 || true
sleep 1
T0="$(ticks)"
"${WSLOAD[@]}" load --url "$URL" --connections "$CONNS" --rate "$RATE" --duration "$SECS" \
  --quiet >"$WORK/load.out" 2>&1 || true
T1="$(ticks)"
LINE="$(grep '"wsload":"summary"' "$WORK/load.out" | tail -1)"
num() { sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p" <<<"$LINE"; }
awk -v m="$MODE" -v r="$RATE" -v ok="$(num ok)" -v f="$(num failed)" -v t0="$T0" -v t1="$T1" \
  -v hz="$HZ" -v p50="$(num p50_us)" -v p99="$(num p99_us)" 'BEGIN {
  cpu = (t1 - t0) / hz
  printf "RESULT mode=%s rate=%d ok=%d failed=%d cpu_s=%.2f us_per_msg_pair=%.1f p50_us=%d p99_us=%d\n",
    m, r, ok, f, cpu, (ok > 0 ? cpu * 1e6 / ok : 0), p50, p99 }'
