#!/usr/bin/env bash
# Issue 6: CPU use of `backlog top` with 10,000 listeners at the default
# interval (1 s) and sampling (100 ms), over 30 refreshes.
source "$(dirname "$0")/lib.sh"
start_fixture -namespaces 1 -listeners 10000 -prefix bl-bench-top
ns=${NAMESPACES[0]}
/usr/bin/time -f "%e s wall, %U s user, %S s system" -o "$out/time" \
	"$out/backlog" top --json --netns "$ns" --count 30 >/dev/null
read -r wall _ _ user _ _ sys _ < "$out/time"
echo "backlog top, 10,000 listeners, 30 refreshes: $(cat "$out/time")"
python3 -c "import sys; w,u,s=map(float,sys.argv[1:]); print('CPU: %.1f%% of one core' % (100*(u+s)/w))" "$wall" "$user" "$sys"
