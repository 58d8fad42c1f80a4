#!/usr/bin/env bash
# code_cache_rest.sh [ROUNDS] -- sipedge at rest with and without V8's code cache, side by side.
# Each round starts two sipedges at once (the bundled config.toml with workers = 2 and log level
# warning, one of them moved to other ports), one with Deno's code cache and one with
# --no-code-cache (the order alternates), and reads each 60 s after "sipedge ready": time to
# ready, VmRSS and the smaps classes of smaps_classify.py. Run from the repo root; needs deno.
set -u
rounds=${1:-3}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/code_cache_rest.XXXX)
sed 's/^workers = 0 .*/workers = 2/; s/log_level = "info"/log_level = "warning"/' config.toml >"$work/a.toml"
sed 's/127.0.0.1:5060/127.0.0.1:5160/; s/127.0.0.1:5061/127.0.0.1:5161/; s/127.0.0.1:8060/127.0.0.1:8160/' \
  "$work/a.toml" >"$work/b.toml"
one() { # LABEL CONFIG [FLAG]
  local t0 t1 pid
  t0=$(date +%s%N)
  # shellcheck disable=SC2086 # $3 is an optional flag
  deno run --unstable-net -A ${3:-} --v8-flags=--max-semi-space-size=1 main.ts --config "$2" >"$work/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do grep -q 'sipedge ready' "$work/$1.log" && break; sleep 0.05; done
  t1=$(date +%s%N)
  sleep 60
  echo "$1 ready_ms=$(((t1 - t0) / 1000000)) VmRSS_kB=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status") |" \
    "$(python3 "$here/smaps_classify.py" "$pid" | grep -E 'V8 heap|arenas|deno caches|binary text' |
      awk '{printf "%s %s %s: %s kB; ", $4, $5, $6, $1}')"
  kill "$pid"
  wait "$pid" 2>/dev/null
}
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then
    one "code-cache-$r" "$work/a.toml" & sleep 0.5; one "no-code-cache-$r" "$work/b.toml" --no-code-cache &
  else
    one "no-code-cache-$r" "$work/a.toml" --no-code-cache & sleep 0.5; one "code-cache-$r" "$work/b.toml" &
  fi
  wait
done
rm -rf "$work"
