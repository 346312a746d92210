#!/usr/bin/env bash
# Issue 16: what `backlog record` costs with 1,000 listeners at a 1 s
# interval (100 ms sampling): CPU as a share of one core, and bytes per
# listener per hour, over a 60 s recording of idle listeners. The Go
# benchmark BenchmarkRecord1000 (internal/record) gives the encoder's share
# and the size when listeners change every second.
source "$(dirname "$0")/lib.sh"
secs=${SECS:-60}
start_fixture -namespaces 1 -listeners 1000 -prefix bl-bench-rec
ns=${NAMESPACES[0]}
mkdir -m 0700 "$out/rec"
/usr/bin/time -f "%e %U %S" -o "$out/time" \
	"$out/backlog" record --netns "$ns" --interval 1s --duration "${secs}s" --output "$out/rec" 2>/dev/null
read -r wall user sys < "$out/time"
bytes=$(cat "$out"/rec/*.blr | wc -c)
listeners=$("$out/backlog" ls --from "$out/rec" --at 23:59:59 --json 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["listeners"]))' || echo 1000)
python3 - "$wall" "$user" "$sys" "$bytes" "$listeners" <<'PY'
import sys
wall, user, sys_, size, n = map(float, sys.argv[1:])
print("backlog record, %d listeners, %.0f s at 1 s: %.1f%% of one core (%.2f s user, %.2f s system), %d bytes: %.0f bytes per listener per hour"
      % (n, wall, 100 * (user + sys_) / wall, user, sys_, size, size / n * 3600 / wall))
PY
