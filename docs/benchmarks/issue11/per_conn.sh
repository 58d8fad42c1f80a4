#!/usr/bin/env bash
# per_conn.sh sipedge|bare tcp|tls N [SRC]  (per_connection_breakdown.md)
# sipedge: conn_heap_harness.ts (WorkerEngine in the main isolate, gc() before each heap reading)
# on the tree SRC (default /work/main); bare: /tmp/perf11/bare/server.ts MODE=tls|tcp BUF=2048.
# Warm-up 2 s at 200 tx/s on 10 connections, then `sipload idle --conns N --hold 15`; heap after
# gc() and RSS (smaps_rollup) read before and 3 s after IDLE_READY. Prints per-connection deltas.
# SNAP=PREFIX (sipedge, or a BARE script that handles SIGUSR2): also heap snapshots PREFIX-1 (before) and PREFIX-2 (idle), taken
# after the memory readings; compare them with heap_diff.py.
set -u
kind=$1 tr=$2 n=$3 src=${4:-/work/main}
here=$(cd "$(dirname "$0")" && pwd)
SL=/tmp/perf11/sipload_src/sipload
out=$(mktemp -d /tmp/pc_run.XXXX)
ulimit -n 20000
$SL uas --listen 127.0.0.1:26070 > $out/uas.log 2>&1 & UAS=$!
flags="--v8-flags=--expose-gc,--optimize-for-size"
if [ $kind = sipedge ]; then
  port=$([ $tr = tls ] && echo 26061 || echo 26060)
  SNAPSHOT_PREFIX=${SNAP:-/tmp/harness} deno run -A --unstable-net $flags --config $src/deno.json $here/conn_heap_harness.ts $src $here/cfg/harness.toml > $out/srv.log 2>&1 & SRV=$!
  ready=READY
else
  port=26160
  SNAPSHOT_PREFIX=${SNAP:-/tmp/harness} MODE=$tr BUF=2048 PORT=$port deno run -A --unstable-net $flags ${BARE:-/tmp/perf11/bare/server.ts} > $out/srv.log 2>&1 & SRV=$!
  ready=LISTENING
fi
for i in $(seq 300); do grep -q $ready $out/srv.log && break; sleep 0.1; done
tlsflag=$([ $tr = tls ] && echo --tls || true)
$SL uac --proxy 127.0.0.1:$port $tlsflag --conns 10 --rate 200 --duration 2 --ruri sip:uas@127.0.0.1:26070 > /dev/null 2>&1
sleep 3
mem(){ kill -USR1 $SRV; sleep 0.7; grep MEM $out/srv.log | tail -1; }
rss(){ awk '/^Rss:/{print $2}' /proc/$SRV/smaps_rollup; }
snap(){ [ -n "${SNAP:-}" ] && { [ $kind = sipedge ] || [ -n "${BARE:-}" ]; } || return 0; local c; c=$(grep -c SNAPSHOT $out/srv.log); kill -USR2 $SRV; for i in $(seq 600); do [ $(grep -c SNAPSHOT $out/srv.log) -gt $c ] && break; sleep 0.1; done; }
m0=$(mem); r0=$(rss); snap
cc=$([ $tr = tls ] && echo 50 || echo 200)
$SL idle --proxy 127.0.0.1:$port $tlsflag --conns $n --hold 15 --connect-concurrency $cc > $out/idle.log 2>&1 & IP=$!
for i in $(seq 1200); do grep -q IDLE_READY $out/idle.log && break; sleep 0.1; done
sleep 3
m1=$(mem); r1=$(rss); snap
wait $IP
kill $SRV $UAS; wait $SRV $UAS 2>/dev/null
kv(){ sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
hu=$(( ($(kv "$m1" heapUsed) - $(kv "$m0" heapUsed)) / n ))
ht=$(( ($(kv "$m1" heapTotal) - $(kv "$m0" heapTotal)) / n ))
ex=$(( ($(kv "$m1" external) - $(kv "$m0" external)) / n ))
rs=$(( (r1 - r0) * 1024 / n ))
echo "$kind $tr n=$n src=$src | $(grep -o 'IDLE_READY.*' $out/idle.log | head -1) | per conn: heapUsed $hu B, heapTotal $ht B, external $ex B, RSS $rs B | before: $m0 rss_kB=$r0 | idle: $m1 rss_kB=$r1"
