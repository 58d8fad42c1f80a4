#!/usr/bin/env bash
# idle_runtime.sh — RSS per idle WebSocket connection of a bare Deno server (bare_server.ts), for
# the runtime choice of issue 13 (runtime_choice.md).
#
#   bash docs/benchmarks/issue13/idle_runtime.sh MODE [N] [HOLD]
#
# MODE: a bare_server.ts mode (serve, serve_tls, raw, raw_tls, node_tls, node_net, npm_ws,
# npm_wss). N idle connections (default 5000), held HOLD seconds (default 10). Steps: start the
# server; warm up with `wsload load` (10 connections, 200 OPTIONS/s, 2 s) and close them; wait
# 3 s; read RSS/PSS (smaps_rollup); `wsload idle` opens N connections (each upgraded, one OPTIONS
# answered) at CONC at a time (default 50 for ws, 10 for wss); 3 s after all are up, read
# RSS/PSS again; after they closed, once more. Prints one line:
#   RESULT mode=.. n=.. established=.. rss0_kb=.. rss1_kb=.. rss2_kb=.. pss0_kb=.. pss1_kb=..
#          per_conn_rss_kb=.. per_conn_pss_kb=.. wall_setup_s=..
# Environment: DENO (default deno on PATH), BUF (read buffer of the raw modes, default 2048),
# CONC, DENO_FLAGS (extra deno flags for the server, e.g. --v8-flags=--optimize-for-size).
set -euo pipefail

MODE="${1:?usage: idle_runtime.sh MODE [N] [HOLD]}"
N="${2:-5000}"
HOLD="${3:-10}"
DENO="${DENO:-$(command -v deno)}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/issue13_idle.XXXXXX")"
SERVER_PID=""
cleanup() {
  [ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

case "$MODE" in
  serve | raw | node_net | npm_ws) SCHEME=ws ;;
  serve_tls | raw_tls | node_tls | npm_wss) SCHEME=wss ;;
  *) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
CONC="${CONC:-$([ "$SCHEME" = ws ] && echo 50 || echo 10)}"

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

mem() { awk '$1 == "Rss:" { r = $2 } $1 == "Pss:" { p = $2 } END { print r, p }' "/proc/$SERVER_PID/smaps_rollup"; }
WSLOAD=("$DENO" run --quiet -A "$REPO/scripts/wsload.ts")
URL="$SCHEME://127.0.0.1:$PORT/"

"${WSLOAD[@]}" load --url "$URL" --connections 10 --rate 200 --duration 2 --quiet >"$WORK/warm.out" 2>&1 ||
  { echo "warm-up failed: $(tail -2 "$WORK/warm.out")" >&2; exit 1; }
sleep 3
read -r RSS0 PSS0 < <(mem)
"${WSLOAD[@]}" idle --url "$URL" --connections "$N" --concurrency "$CONC" --hold "$HOLD" \
  --timeout-ms 10000 >"$WORK/idle.out" 2>"$WORK/idle.err" &
IDLE_PID=$!
T0=$SECONDS
until grep -q '^WSLOAD_READY' "$WORK/idle.out" 2>/dev/null; do
  kill -0 "$IDLE_PID" 2>/dev/null || { echo "wsload ended early: $(tail -3 "$WORK/idle.err")" >&2; exit 1; }
  sleep 0.2
done
SETUP=$((SECONDS - T0))
sleep 3
read -r RSS1 PSS1 < <(mem)
READY="$(grep -m1 '^WSLOAD_READY' "$WORK/idle.out")"
wait "$IDLE_PID" || true
sleep 2
read -r RSS2 PSS2 < <(mem)
EST="$(sed -n 's/.* established=\([0-9]*\).*/\1/p' <<<"$READY")"
RESP="$(sed -n 's/.* responded=\([0-9]*\).*/\1/p' <<<"$READY")"
awk -v m="$MODE" -v n="$N" -v e="$EST" -v r="$RESP" -v a="$RSS0" -v b="$RSS1" -v c="$RSS2" \
  -v p="$PSS0" -v q="$PSS1" -v s="$SETUP" -v buf="${BUF:-2048}" 'BEGIN {
  printf "RESULT mode=%s n=%d established=%d responded=%d buf=%s rss0_kb=%d rss1_kb=%d rss2_kb=%d pss0_kb=%d pss1_kb=%d per_conn_rss_kb=%.1f per_conn_pss_kb=%.1f setup_s=%d\n",
    m, n, e, r, buf, a, b, c, p, q, (b - a) / e, (q - p) / e, s }'
