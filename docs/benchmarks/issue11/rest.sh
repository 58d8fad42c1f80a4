#!/usr/bin/env bash
# rest.sh LABEL — sipedge workers=2, tcp listener, control API, no traffic; memory 8 s after ready
. /tmp/perf11_after/lib.sh
label=$1; out=$O/rest_$label.txt
mkcfg base.toml /tmp/perf11_after/cfg/rest.toml warning 28060 25060 0 25070
start_sipedge $out.log /tmp/perf11_after/cfg/rest.toml || exit 1
pid=$SE; sleep 8
{ echo "== $label DENO_FLAGS: $DENO_FLAGS"; grep -E "^(Rss|Pss|Anonymous)" /proc/$pid/smaps_rollup | tr '\n' ' '; echo; echo "threads: $(ls /proc/$pid/task | wc -l)"; curl -s 127.0.0.1:28060/metrics | grep -E "heap|^sipedge_worker_up"; python3 /tmp/perf11/smaps_classify.py $pid; } > $out
stop $pid; cat $out
