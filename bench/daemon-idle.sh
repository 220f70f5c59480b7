#!/usr/bin/env bash
# Idle cost of `bunker daemon`: CPU time and resident memory of a daemon
# with a few items and nothing due, over a minute (issue 18: CPU about 0,
# RSS at most 30 MiB). Not a test: run it by hand on a quiet machine.
#   bench/daemon-idle.sh [SECONDS]   (default 60; needs a built bunker binary)
set -euo pipefail
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bunker=${BUNKER:-$root/target/release/bunker}
[ -x "$bunker" ] || bunker=$root/target/debug/bunker
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir "$dir/data" && echo x > "$dir/data/f" && echo idle-bench > "$dir/pw"
cat > "$dir/policy.yaml" <<YAML
repositories:
  local: {location: ./repo, password_file: pw}
items:
  - {name: a, paths: [./data], schedule: every 6h, rpo: 1d}
  - {name: b, paths: [./data], schedule: "0 3 * * *", rpo: 2d}
  - {name: c, paths: [./data], schedule: on_change}
daemon:
  jobs:
    - {kind: check, repository: local, schedule: "0 2 * * 6", read_data_subset: 10%}
YAML
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$dir" && exec "$bunker" daemon policy.yaml --listen "127.0.0.1:$port" --state-dir "$dir/state" 2>"$dir/log") &
pid=$!
# Ready, and the first runs (never run yet) done: then it is idle.
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && \
    curl -sf "http://127.0.0.1:$port/metrics" | grep -q '^bunker_jobs_running 0' && break
  sleep 0.1
done
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
kill -0 "$pid" 2>/dev/null || { echo "the daemon exited:"; cat "$dir/log"; exit 1; }
c0=$(cpu); sleep "$secs"; c1=$(cpu)
rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
hwm_kib=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
awk -v c=$((c1 - c0)) -v t="$ticks" -v s="$secs" -v r="$rss_kib" -v h="$hwm_kib" 'BEGIN {
  printf "idle for %d s: CPU %.2f s (%.3f%%), RSS %.1f MiB (peak %.1f MiB)\n", s, c/t, 100*c/t/s, r/1024, h/1024 }'
