#!/usr/bin/env bash
# real_idle.sh SRC tcp|tls N  (per_connection_breakdown.md): sipedge itself, as `deno task start`
# runs it (2 workers, --v8-flags=--optimize-for-size), from the tree SRC, config
# cfg/real_idle.toml. Steps as idle.sh: 2 s warm-up at 200 tx/s on 10 connections, RSS and the
# workers' heapUsed (/metrics, no forced GC) read before and 3 s after IDLE_READY of
# `sipload idle --conns N --hold 12`.
set -u
src=$1 tr=$2 n=$3
here=$(cd "$(dirname "$0")" && pwd)
SL=/tmp/perf11/sipload_src/sipload
out=$(mktemp -d /tmp/pc_real.XXXX)
ulimit -n 20000
$SL uas --listen 127.0.0.1:26270 > $out/uas.log 2>&1 & UAS=$!
(cd $src && exec deno run --unstable-net --allow-net --allow-read --allow-env --allow-ffi --v8-flags=--optimize-for-size main.ts --config $here/cfg/real_idle.toml) > $out/se.log 2>&1 & SE=$!
for i in $(seq 300); do grep -q "sipedge ready" $out/se.log && break; sleep 0.1; done
port=$([ $tr = tls ] && echo 26261 || echo 26260)
tlsflag=$([ $tr = tls ] && echo --tls || true)
rss(){ awk '/^Rss:/{print $2}' /proc/$SE/smaps_rollup; }
heap(){ curl -s 127.0.0.1:28160/metrics | awk '/^sipedge_worker_heap_used_bytes/{s+=$2} END{print s}'; }
$SL uac --proxy 127.0.0.1:$port $tlsflag --conns 10 --rate 200 --duration 2 --ruri sip:uas@127.0.0.1:26270 > /dev/null 2>&1
sleep 3
r0=$(rss); h0=$(heap)
cc=$([ $tr = tls ] && echo 50 || echo 200)
$SL idle --proxy 127.0.0.1:$port $tlsflag --conns $n --hold 12 --connect-concurrency $cc > $out/idle.log 2>&1 & IP=$!
for i in $(seq 1200); do grep -q IDLE_READY $out/idle.log && break; sleep 0.1; done
sleep 3
r1=$(rss); h1=$(heap)
wait $IP
kill $SE $UAS; wait $SE $UAS 2>/dev/null
echo "real $tr n=$n src=$src | $(grep -o 'IDLE_READY.*' $out/idle.log | head -1) | RSS kB $r0 -> $r1 = $(( (r1 - r0) * 1024 / n )) B/conn | workers heapUsed $h0 -> $h1 = $(( (h1 - h0) / n )) B/conn (no GC)"
