#!/bin/bash
# ffi_relay_vs_relay.sh KIND RATE SECS — the runtime floor with and without Deno's socket ops
# (BENCHMARKS.md §11c). KIND: ffi1 (ffi_relay.ts: libc epoll/recv/send through Deno FFI, one
# thread), ffi2 (two of those processes, SO_REUSEPORT), relay (scripts/bench_cost_bare.ts --mode
# relay, 2 workers). Prints the relay's CPU per 1,000 transactions over 10 connections at RATE/s.
# Ports 24888 (relay) and 29125 (sipload uas) must be free. SIPLOAD: path to sipload.
KIND=$1; RATE=$2; SECS=$3
REPO="$(cd "$(dirname "$0")/../../.." && pwd)"
SIPLOAD="${SIPLOAD:-sipload}"
"$SIPLOAD" uas --listen 127.0.0.1:29125 >/dev/null 2>&1 &
UAS=$!
PIDS=()
case $KIND in
  ffi1) deno run -A "$REPO/docs/benchmarks/issue11/ffi_relay.ts" 24888 29125 >/tmp/ffi_relay_ffi.log 2>&1 & PIDS+=($!);;
  ffi2) deno run -A "$REPO/docs/benchmarks/issue11/ffi_relay.ts" 24888 29125 >/tmp/ffi_relay_ffi.log 2>&1 & PIDS+=($!); deno run -A "$REPO/docs/benchmarks/issue11/ffi_relay.ts" 24888 29125 >/tmp/ffi_relay_ffi2.log 2>&1 & PIDS+=($!);;
  relay) (cd "$REPO" && exec deno run --unstable-net -A --v8-flags=--optimize-for-size scripts/bench_cost_bare.ts --mode relay --port 24888 --upstream 127.0.0.1:29125 --workers 2) >/tmp/ffi_relay_relay.log 2>&1 & PIDS+=($!);;
esac
sleep 1.5
for i in $(seq 50); do (echo > /dev/tcp/127.0.0.1/24888) 2>/dev/null && break; sleep 0.2; done
"$SIPLOAD" uac --proxy 127.0.0.1:24888 --conns 10 --rate $RATE --duration 2 --method OPTIONS --ruri sip:uas@127.0.0.1:29125 >/dev/null 2>&1
cpu() { local t=0; for p in "${PIDS[@]}"; do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
t0=$(cpu)
"$SIPLOAD" uac --proxy 127.0.0.1:24888 --conns 10 --rate $RATE --duration $SECS --method OPTIONS --ruri sip:uas@127.0.0.1:29125 > /tmp/ffi_relay_uac.out 2>&1
t1=$(cpu)
ok=$(grep -o 'ok=[0-9]*' /tmp/ffi_relay_uac.out | tail -1 | cut -d= -f2); failed=$(grep -o ' failed=[0-9]*' /tmp/ffi_relay_uac.out | tail -1)
echo "$KIND rate $RATE ok $ok$failed ms_per_1k_tx $(awk -v c=$((t1-t0)) -v ok=$ok 'BEGIN{printf "%.1f", c*10*1000/ok}') $(grep -o 'p50_us=[0-9]* p99_us=[0-9]*' /tmp/ffi_relay_uac.out|tail -1)"
kill "${PIDS[@]}" $UAS 2>/dev/null; wait 2>/dev/null
