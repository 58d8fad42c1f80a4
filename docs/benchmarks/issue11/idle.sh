#!/usr/bin/env bash
# idle.sh LABEL tcp|tls N — same steps as /tmp/perf11/idle.sh (sipedge only)
. /tmp/perf11_after/lib.sh
label=$1 tr=$2 n=$3
ulimit -n 20000
out=$O/idle_$label.txt; : > $out
mkcfg idle.toml /tmp/perf11_after/cfg/idle_$label.toml warning 28060 25060 25061 25070
start_uas 25070
start_sipedge $O/idle_$label.log /tmp/perf11_after/cfg/idle_$label.toml || exit 1
PID=$SE; port=$([ $tr = tls ] && echo 25061 || echo 25060)
heap(){ curl -s 127.0.0.1:28060/metrics | awk '/^sipedge_worker_heap_used_bytes/{s=s" "$2} /^sipedge_worker_connections/{c=c" "$2} END{print "workers_heapUsed="s" conns="c}'; }
$SL uac --proxy 127.0.0.1:$port $([ $tr = tls ] && echo --tls) --conns 10 --rate 200 --duration 2 --ruri sip:uas@127.0.0.1:25070 >/dev/null 2>&1
sleep 3
b=$(rss $PID); hb=$(heap)
cc=$([ $tr = tls ] && echo 50 || echo 200)
$SL idle --proxy 127.0.0.1:$port $([ $tr = tls ] && echo --tls) --conns $n --hold 12 --connect-concurrency $cc > $O/idle_$label.sipload 2>&1 & IP=$!
for i in $(seq 1200); do grep -q IDLE_READY $O/idle_$label.sipload && break; sleep 0.1; done
sleep 3
a=$(rss $PID); ha=$(heap)
python3 /tmp/perf11/smaps_classify.py $PID > $O/idle_$label.classes_idle
wait $IP; sleep 3; c=$(rss $PID); hc=$(heap)
ready=$(grep IDLE_READY $O/idle_$label.sipload)
echo "$label: $ready | RSS/PSS kB before $b idle $a after-close $c | per conn RSS $(( (${a% *}-${b% *})*1024/n )) B, PSS $(( (${a#* }-${b#* })*1024/n )) B" | tee -a $out
echo "   heap before: $hb" | tee -a $out; echo "   heap idle:   $ha" | tee -a $out; echo "   heap after:  $hc" | tee -a $out
cat $O/idle_$label.classes_idle >> $out
stop $PID $UAS
