#!/usr/bin/env bash
# Issue 17's targets, ratios from one run each, with the BPF iterators
# (source bpf_iter) and, for comparison, without them (--no-bpf):
#   ls --json <= 0.1x `ss -ltnmp; ss -tn state syn-recv; nstat -az` at
#   10,000 listeners + 100,000 established sockets, <= 0.25x at 10,000 +
#   30,000; a scrape at 10,000 + 100,000 under 50 ms; top under 10 % of a
#   core at 10,000 listeners. RUNS (default 7) sets the rounds.
source "$(dirname "$0")/lib.sh"
runs=${RUNS:-7}
trio="sh -c 'ss -ltnmp >/dev/null; ss -tn state syn-recv >/dev/null; nstat -az >/dev/null'"

measure() { # ESTABLISHED_CONNECTIONS TARGET
	start_fixture -namespaces 1 -listeners 10000 -established "$1" -prefix bl-bench-iter
	ns=${NAMESPACES[0]}
	echo "== $(ip netns exec "$ns" ss -Hltn | wc -l) listeners, $(ip netns exec "$ns" ss -Htn state established | wc -l) established; load: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$out/backlog" ls --json --netns "$ns" | python3 -c 'import json,sys; print("source:", json.load(sys.stdin)["source"])'
	# In turn, so the load of others on this shared machine falls on all.
	python3 bench/alternate.py "$runs" \
		"ip netns exec $ns $out/backlog ls --json --netns self" \
		"ip netns exec $ns $out/backlog ls --json --netns self --no-bpf" \
		"ip netns exec $ns $trio"
	echo "target: ls --json (bpf_iter) <= $2 x the trio"
}

scrape() {
	port=$((20000 + RANDOM % 10000))
	"$out/backlog" serve --netns "$ns" --web.listen-address "127.0.0.1:$port" --log.level error &
	serve=$!
	url="http://127.0.0.1:$port/metrics"
	for _ in $(seq 100); do curl -sf -o /dev/null "$url" && break; sleep 0.2; done
	curl -sf -o /dev/null "$url" # the first scrape finds owners
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
	hyperfine --warmup 2 --runs $((runs * 4)) \
		"curl -sf -H 'Accept-Encoding: gzip' -o /dev/null $url" \
		"curl -sf -o /dev/null $url"
	curl -sf "$url" | grep -E '^backlog_scrape_duration_seconds|^backlog_collection_source|^backlog_sampler'
	kill "$serve"; wait "$serve" 2>/dev/null || true
}

top() { # [--no-bpf]
	/usr/bin/time -f "%e %U %S" -o "$out/time" "$out/backlog" top --json --netns "$ns" --count 15 "$@" >/dev/null
	read -r wall user sys < "$out/time"
	python3 -c "import sys; w,u,s=map(float,sys.argv[1:4]); print('top %s, 15 refreshes: %.1f s wall, %.2f s user, %.2f s system: CPU %.1f%% of one core (target < 10%%)' % (sys.argv[4], w, u, s, 100*(u+s)/w))" "$wall" "$user" "$sys" "${1:-}"
}

measure 15000 0.25
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
top
top --no-bpf
close_fixture
measure 50000 0.1
scrape
