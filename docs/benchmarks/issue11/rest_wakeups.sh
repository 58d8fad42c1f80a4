#!/usr/bin/env bash
# rest_wakeups.sh [TREE] — sipedge at rest (tcp + tls listeners, 2 workers, default timeouts):
# voluntary context switches (wake-ups) per second of each thread and CPU ticks of the process
# over SECS seconds (default 10), sampled 5 s after ready. Run it on two trees one after the other
# to compare (BENCHMARKS.md §11g). Ports 26160, 26161, 26199.
set -u
tree=${1:-$(cd "$(dirname "$0")/../../.." && pwd)}
secs=${SECS:-10}
work=$(mktemp -d /tmp/rest_wakeups.XXXX)
cat >"$work/cfg.toml" <<CFG
[sipedge]
workers = 2
log_level = "warning"
[control]
address = "127.0.0.1:26199"
[[listen]]
address = "tcp:127.0.0.1:26160"
[[listen]]
address = "tls:127.0.0.1:26161"
[plugins.tcp]
[plugins.tls]
[plugins.static_router]
[plugins.timeouts]
[plugins.limits]
CFG
cd "$tree" || exit 1
deno run --unstable-net -A --v8-flags=--max-semi-space-size=1 main.ts --config "$work/cfg.toml" >"$work/log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q ready "$work/log" && break; sleep 0.2; done
sleep 5
snap() {
  for t in "/proc/$pid/task"/*; do
    echo "$(basename "$t")_$(tr ' ' _ <"$t/comm") $(awk '/^voluntary_ctxt_switches/{print $2}' "$t/status") $(awk '{print $14+$15}' "$t/stat")"
  done | sort
}
snap >"$work/0"
sleep "$secs"
snap >"$work/1"
kill "$pid"
wait 2>/dev/null
join -j1 "$work/0" "$work/1" | awk -v s="$secs" '{dv=$4-$2; dc=$5-$3; if (dv>0||dc>0) printf "%-24s wake-ups/s %5.1f  cpu ticks %d\n", $1, dv/s, dc; tv+=dv; tc+=dc} END {printf "total wake-ups/s %.1f, cpu ticks in %d s: %d\n", tv/s, s, tc}'
rm -rf "$work"
