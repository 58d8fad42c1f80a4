SL=/tmp/perf11/sipload_src/sipload
SRC=/work/main
O=/tmp/perf11_after/out
# exactly like `deno task start` (deno.json), minus the config path
DENO_NEW="--unstable-net --allow-net --allow-read --allow-env --allow-ffi --v8-flags=--optimize-for-size"
DENO_OLD="--unstable-net --allow-net --allow-read --allow-env --allow-ffi"
DENO_FLAGS=${DENO_FLAGS:-$DENO_NEW}
ticks(){ awk '{sub(/^.*\) /,""); split($0,f," "); print f[12]+f[13]}' /proc/$1/stat; }
rss(){ awk '/^Rss:/{r=$2} /^Pss:/{p=$2} END{print r, p}' /proc/$1/smaps_rollup; }
start_uas(){ $SL uas --listen 127.0.0.1:${1:-25070} > $O/uas_${1:-25070}.log 2>&1 & UAS=$!; sleep 0.3; }
# mkcfg TEMPLATE OUT LOGLEVEL CTRL TCPPORT TLSPORT UASPORT
mkcfg(){ sed "s/LOGLEVEL/$3/; s/CTRL/$4/; s/TCPPORT/$5/; s/TLSPORT/$6/; s/UASPORT/$7/" /tmp/perf11_after/cfg/$1 > $2; }
# start_sipedge LOG CONFIG
start_sipedge(){ local log=$1 cfg=$2; (cd $SRC && exec deno run $DENO_FLAGS main.ts --config $cfg) > $log 2>&1 & SE=$!; for i in $(seq 300); do grep -q "sipedge ready" $log && return 0; kill -0 $SE 2>/dev/null || { cat $log; return 1; }; sleep 0.1; done; return 1; }
stop(){ for p in "$@"; do kill $p 2>/dev/null; done; for p in "$@"; do wait $p 2>/dev/null; done; }
kv(){ sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<" $1"; }
