#!/usr/bin/env bash
# cpu.sh RATES SECONDS — as /tmp/perf11/cpu.sh; sipedge from /work/main (task-start flags, config with workers=2) vs Kamailio (same cfg as before)
. /tmp/perf11_after/lib.sh
RATES=${1:-"2000 10000 20000"}; SECS=${2:-10}
tree_ticks(){ local t=0; for p in $(pgrep -P $1) $1; do t=$((t+$(ticks $p))); done; echo $t; }
threads(){ for t in /proc/$1/task/*; do echo "$(basename $t) $(cat $t/comm | tr ' ' _) $(awk '{sub(/^.*\) /,""); split($0,f," "); print f[12]+f[13]}' $t/stat) $(awk '/^voluntary_ctxt/{v=$2} /^nonvoluntary_ctxt/{n=$2} END{print v, n}' $t/status)"; done; }
start_uas 25070
mkcfg base.toml /tmp/perf11_after/cfg/cpu.toml warning 28060 25060 0 25070
start_sipedge $O/cpu_sipedge.log /tmp/perf11_after/cfg/cpu.toml || exit 1
/usr/sbin/kamailio -f /tmp/perf11/kam/kamailio.cfg -DD -E -Y /tmp/perf11/kam -m 256 -M 8 -x tlsf > $O/cpu_kam.log 2>&1 & KAM=$!
sleep 2
declare -A PORT=([sipedge]=25060 [kamailio]=25080) PID=([sipedge]=$SE [kamailio]=$KAM)
for p in sipedge kamailio; do $SL uac --proxy 127.0.0.1:${PORT[$p]} --conns 10 --rate 5000 --duration 4 --ruri sip:uas@127.0.0.1:25070 >/dev/null 2>&1; done
for r in $RATES; do for p in sipedge kamailio; do
  [ $p = sipedge ] && threads $SE > $O/thr0
  t0=$(tree_ticks ${PID[$p]}); u0=$(ticks $UAS); w0=$(date +%s%N); m0=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  line=$($SL uac --proxy 127.0.0.1:${PORT[$p]} --conns 10 --rate $r --duration $SECS --ruri sip:uas@127.0.0.1:25070 | tail -1)
  t1=$(tree_ticks ${PID[$p]}); u1=$(ticks $UAS); w1=$(date +%s%N); m1=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  ok=$(kv "$line" ok)
  echo "$p rate=$r ok=$ok failed=$(kv "$line" failed) delivered=$(kv "$line" rate) p50_us=$(kv "$line" p50_us) p99_us=$(kv "$line" p99_us) proxy_cpu_s=$(echo "($t1-$t0)/100" | bc -l | cut -c1-5) cpu_pct=$(echo "($t1-$t0)*1000000000/($w1-$w0)" | bc -l | cut -c1-5) cpu_ms_per_1k_tx=$(echo "($t1-$t0)*10*1000/$ok" | bc -l | cut -c1-6) uas_cpu_s=$(echo "($u1-$u0)/100" | bc -l | cut -c1-4) uac_cpu_s=$(echo "$(kv "$line" cpu_user_s)+$(kv "$line" cpu_sys_s)" | bc -l) machine_busy_pct=$(echo "($m1-$m0)*1000000000/($w1-$w0)" | bc -l | cut -c1-5) load=$(cut -d' ' -f1 /proc/loadavg)"
  if [ $p = sipedge ]; then threads $SE > $O/thr1
    join $O/thr0 $O/thr1 | awk -v ok=$ok '{ printf "    thread %-7s %-16s cpu %6.2f s  vol_ctxsw %8d (%.3f/tx)  invol %6d\n", $1, $2, ($7-$3)/100, $8-$4, ($8-$4)/ok, $9-$5 }'
  fi
  sleep 1
done; done
stop $SE $KAM $UAS
