#!/usr/bin/env bash
# closed_loop.sh LABEL new|old — as /tmp/perf11/closed_loop.sh; new = task-start flags, old = same without --v8-flags=--optimize-for-size
. /tmp/perf11_after/lib.sh
label=$1; [ "$2" = old ] && DENO_FLAGS=$DENO_OLD || DENO_FLAGS=$DENO_NEW
start_uas 25070
mkcfg base.toml /tmp/perf11_after/cfg/cl.toml warning 28060 25060 0 25070
start_sipedge $O/cl_$label.log /tmp/perf11_after/cfg/cl.toml || exit 1
$SL uac --proxy 127.0.0.1:25060 --conns 10 --depth 8 --duration 3 --ruri sip:uas@127.0.0.1:25070 >/dev/null 2>&1
t0=$(ticks $SE); line=$($SL uac --proxy 127.0.0.1:25060 --conns 10 --depth 8 --duration 10 --ruri sip:uas@127.0.0.1:25070 | tail -1); t1=$(ticks $SE)
r=$(rss $SE)
ok=$(kv "$line" ok); echo "$label ok=$ok rate=$(kv "$line" rate) failed=$(kv "$line" failed) p50=$(kv "$line" p50_us) p99=$(kv "$line" p99_us) sipedge_cpu_s=$(echo "($t1-$t0)/100" | bc -l | cut -c1-5) cpu_ms_per_1k=$(echo "($t1-$t0)*10*1000/$ok" | bc -l | cut -c1-6) rss_after_kB=${r% *} load=$(cut -d' ' -f1 /proc/loadavg) flags=$DENO_FLAGS"
stop $SE $UAS
