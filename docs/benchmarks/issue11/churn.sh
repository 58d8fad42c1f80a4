#!/usr/bin/env bash
# churn.sh LABEL LOGLEVEL — 2 rounds of 24,000 TLS handshakes, as /tmp/perf11/churn.sh; snapshots every 10 s for 30 s after round 2; gdb malloc_trim at the end (reference only)
. /tmp/perf11_after/lib.sh
label=$1 lvl=${2:-warning}
ulimit -n 20000
out=$O/churn_$label.txt; : > $out
mkcfg idle.toml /tmp/perf11_after/cfg/churn_$label.toml $lvl 28061 25260 25261 25270
start_uas 25270
start_sipedge $O/churn_$label.log /tmp/perf11_after/cfg/churn_$label.toml || exit 1
PID=$SE port=25261
heap(){ curl -s 127.0.0.1:28061/metrics | awk '/^sipedge_worker_heap_used_bytes/{s=s" "$2} /^sipedge_process_heap_used_bytes/{m=$2} /^sipedge_worker_connections/{c=c" "$2} END{print "workers_heapUsed="s" main="m" conns="c}'; }
snap(){ echo "[$1 $(date +%T)] RSS/PSS kB $(rss $PID) threads $(ls /proc/$PID/task | wc -l) | $(heap)" | tee -a $out; python3 /tmp/perf11/smaps_classify.py $PID | grep -E "V8 heap|arena|other anon|TOTAL" | sed 's/^/     /' >> $out; }
sleep 2; snap start
for r in 1 2; do
  line=$($SL uac --proxy 127.0.0.1:$port --tls --new-conn-per-request --conns 10 --rate 300 --duration 80 --ruri sip:uas@127.0.0.1:25270 2>&1 | tail -1)
  echo "round $r: ok=$(kv "$line" ok) failed=$(kv "$line" failed) connects=$(kv "$line" connects) rate=$(kv "$line" rate) load=$(cut -d' ' -f1 /proc/loadavg)" | tee -a $out
  sleep 3; snap "after round $r"
done
for s in 10 20 30; do sleep 10; snap "$s s after round 2"; done
echo "gdb malloc_trim(0): $(gdb -p $PID -batch -ex 'call (int)malloc_trim(0)' 2>&1 | grep -E '^\$1')" | tee -a $out
sleep 1; snap "after gdb malloc_trim"
grep -i "malloc_trim\|memory trim" $O/churn_$label.log | tee -a $out
stop $PID $UAS
