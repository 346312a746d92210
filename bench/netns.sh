#!/usr/bin/env bash
# Every namespace at once: 50 namespaces with 20 listeners each, without
# and then with 100,000 established sockets (50,000 loopback connections in
# the first namespace). One `backlog ls --json` over all of them (BPF
# iterators, and --no-bpf) against a shell loop of `ip netns exec NS ss
# -ltn`. The cost must grow with listeners and namespaces, not with
# connections x namespaces: compare the two states' means.
source "$(dirname "$0")/lib.sh"
runs=${RUNS:-10}

measure() { # ESTABLISHED_CONNECTIONS
	start_fixture -namespaces 50 -listeners 20 -established "$1" -prefix bl-bench-ns
	printf '%s\n' "${NAMESPACES[@]}" > "$out/names"
	echo "== 50 namespaces x 20 listeners, $((2 * $1)) established sockets; load: $(cut -d' ' -f1-3 /proc/loadavg)"
	"$out/backlog" ls --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print("source:", d["source"], "namespaces:", len(d["namespaces"]))'
	hyperfine --warmup 2 --runs "$runs" --export-json "$out/netns-$1.json" \
		"$out/backlog ls --json" \
		"$out/backlog ls --json --no-bpf" \
		"sh -c 'while read ns; do ip netns exec \$ns ss -ltn >/dev/null; done < $out/names'"
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("ratio backlog/ss-loop: %.3f with bpf_iter, %.3f with --no-bpf; CPU (user+sys) %.0f ms, %.0f ms" % (r[0]["mean"]/r[2]["mean"], r[1]["mean"]/r[2]["mean"], 1000*(r[0]["user"]+r[0]["system"]), 1000*(r[1]["user"]+r[1]["system"])))' "$out/netns-$1.json"
}

measure 0
close_fixture
measure 50000
python3 -c '
import json,sys
a=json.load(open(sys.argv[1]))["results"]; b=json.load(open(sys.argv[2]))["results"]
print("growth with 100,000 established sockets: bpf_iter x%.2f, --no-bpf x%.2f, ss loop x%.2f" % tuple(b[i]["mean"]/a[i]["mean"] for i in range(3)))' "$out/netns-0.json" "$out/netns-50000.json"
