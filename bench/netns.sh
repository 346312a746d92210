#!/usr/bin/env bash
# Issue 4: 50 namespaces with 20 listeners each; one `backlog ls --json`
# over all of them against a shell loop of `ip netns exec NS ss -ltn`.
source "$(dirname "$0")/lib.sh"
start_fixture -namespaces 50 -listeners 20 -prefix bl-bench-ns
printf '%s\n' "${NAMESPACES[@]}" > "$out/names"
hyperfine --warmup 2 --runs 20 --export-json "$out/netns.json" \
	"$out/backlog ls --json" \
	"sh -c 'while read ns; do ip netns exec \$ns ss -ltn >/dev/null; done < $out/names'"
echo "ratio backlog/ss-loop: $(ratio "$out/netns.json")"
