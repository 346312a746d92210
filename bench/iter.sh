#!/usr/bin/env bash
# Issue 17's targets, ratios from one run each, with the BPF iterators
# (source bpf_iter) and, for comparison, without them (--no-bpf):
#   ls --json <= 0.1x `ss -ltnmp; ss -tn state syn-recv; nstat -az` at
#   10,000 listeners + 100,000 established sockets, <= 0.25x at 10,000 +
#   30,000; a scrape at 10,000 + 100,000 under 50 ms; top under 10 % of a
#   core at 10,000 listeners. RUNS (default 5) sets hyperfine's runs.
source "$(dirname "$0")/lib.sh"
runs=${RUNS:-5}
trio="sh -c 'ss -ltnmp >/dev/null; ss -tn state syn-recv >/dev/null; nstat -az >/dev/null'"

measure() { # ESTABLISHED_CONNECTIONS TARGET
	start_fixture -namespaces 1 -listeners 10000 -established "$1" -prefix bl-bench-iter
	ns=${NAMESPACES[0]}
	echo "== $(ip netns exec "$ns" ss -Hltn | wc -l) listeners, $(ip netns exec "$ns" ss -Htn state established | wc -l) established; load: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$out/backlog" ls --json --netns "$ns" | python3 -c 'import json,sys; print("source:", json.load(sys.stdin)["source"])'
	hyperfine --warmup 1 --runs "$runs" --export-json "$out/ls.json" \
		"ip netns exec $ns $out/backlog ls --json --netns self" \
		"ip netns exec $ns $trio" \
		"ip netns exec $ns $out/backlog ls --json --netns self --no-bpf"
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("ratio ls/ss: %.3f with bpf_iter (target <= %s), %.3f with --no-bpf" % (r[0]["mean"]/r[1]["mean"], sys.argv[2], r[2]["mean"]/r[1]["mean"]))' "$out/ls.json" "$2"
}

scrape() {
	port=$((20000 + RANDOM % 10000))
	"$out/backlog" serve --netns "$ns" --web.listen-address "127.0.0.1:$port" --log.level error &
	serve=$!
	url="http://127.0.0.1:$port/metrics"
	for _ in $(seq 100); do curl -sf -o /dev/null "$url" && break; sleep 0.2; done
	curl -sf -o /dev/null "$url" # the first scrape finds owners
	hyperfine --warmup 2 --runs $((runs * 4)) "curl -sf -H 'Accept-Encoding: gzip' -o /dev/null $url"
	curl -sf "$url" | grep -E '^backlog_scrape_duration_seconds|^backlog_collection_source'
	kill "$serve"; wait "$serve" 2>/dev/null || true
}

top() {
	/usr/bin/time -f "%e %U %S" -o "$out/time" "$out/backlog" top --json --netns "$ns" --count 15 >/dev/null
	read -r wall user sys < "$out/time"
	python3 -c "import sys; w,u,s=map(float,sys.argv[1:]); print('top, 15 refreshes: %.1f s wall, CPU %.1f%% of one core (target < 10%%)' % (w, 100*(u+s)/w))" "$wall" "$user" "$sys"
}

measure 15000 0.25
top
close_fixture
measure 50000 0.1
scrape
