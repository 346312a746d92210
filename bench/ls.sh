#!/usr/bin/env bash
# Target: with 10,000 TCP listeners, 1,000 UNIX listeners and 100,000
# established sockets, `backlog ls --json` takes at most half the time of
# ss -ltnmp + ss -xlp + ss -tn state syn-recv + nstat -az together. Both
# run inside the fixture's namespace through `ip netns exec`, so both pay
# the same entry cost.
source "$(dirname "$0")/lib.sh"
start_fixture -namespaces 1 -listeners 10000 -unix 1000 -established 50000 -prefix bl-bench-ls
ns=${NAMESPACES[0]}
echo "listeners: $(ip netns exec "$ns" ss -Hltn | wc -l) TCP, $(ip netns exec "$ns" ss -Hxl | wc -l) UNIX, established: $(ip netns exec "$ns" ss -Htn state established | wc -l)"
hyperfine --warmup 3 --runs 20 --export-json "$out/ls.json" \
	"ip netns exec $ns $out/backlog ls --json --netns self" \
	"ip netns exec $ns sh -c 'ss -ltnmp >/dev/null; ss -xlp >/dev/null; ss -tn state syn-recv >/dev/null; nstat -az >/dev/null'"
echo "ratio backlog/ss: $(ratio "$out/ls.json") (target <= 0.5)"
/usr/bin/time -f "backlog ls --json max RSS: %M KiB" ip netns exec "$ns" "$out/backlog" ls --json --netns self >/dev/null
