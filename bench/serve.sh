#!/usr/bin/env bash
# Target: an exporter scrape at 10,000 listeners + 100,000 established
# sockets under 50 ms. The real binary, scraped with curl as Prometheus
# asks (gzip), after a first scrape that fills the owner cache. Prints
# hyperfine's times, serve's CPU per scrape (its user+system time over the
# scrapes, less the sampler's over as long a time without scrapes) and the
# collection's own time. BASELINE=/path/to/backlog (another build) serves
# the same state beside it; then the scrapes of both alternate (alternate.py,
# RUNS rounds, default 30) and the ratio is printed.
source "$(dirname "$0")/lib.sh"
runs=${RUNS:-30}
start_fixture -namespaces 1 -listeners 10000 -established 50000 -prefix bl-bench-serve
ns=${NAMESPACES[0]}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; stop_fixture' EXIT

serve() { # BINARY: starts it, sets url and serve
	local port=$((20000 + RANDOM % 10000))
	"$1" serve --netns "$ns" --web.listen-address "127.0.0.1:$port" --log.level warn &
	serve=$!
	pids+=("$serve")
	url="http://127.0.0.1:$port/metrics"
	for _ in $(seq 100); do curl -sf -o /dev/null "$url" && break; sleep 0.2; done
	curl -sf -o /dev/null "$url" # the first scrape walks owners
}

cpu() { # PID: user+system clock ticks
	awk '{print $14 + $15}' "/proc/$1/stat"
}

serve "$out/backlog"
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
hyperfine --warmup 3 --runs "$runs" --export-json "$out/serve.json" \
	"curl -sf -H 'Accept-Encoding: gzip' -o /dev/null $url"
# serve's CPU per scrape: scrapes back to back, then as long without.
tick=$(getconf CLK_TCK)
c0=$(cpu "$serve") t0=$(date +%s.%N)
for _ in $(seq "$runs"); do curl -sf -H 'Accept-Encoding: gzip' -o /dev/null "$url"; done
c1=$(cpu "$serve") t1=$(date +%s.%N)
sleep "$(echo "$t1 - $t0" | bc)"
c2=$(cpu "$serve")
echo "serve CPU: $(echo "scale=1; ( ($c1 - $c0) - ($c2 - $c1) ) * 1000 / $tick / $runs" | bc) ms a scrape" \
	"($(echo "scale=1; ($c1 - $c0) * 1000 / $tick / $runs" | bc) ms with the sampler's; the sampler alone" \
	"$(echo "scale=1; ($c2 - $c1) * 1000 / $tick" | bc) ms in $(echo "scale=2; ($t1 - $t0) / 1" | bc) s)"
curl -sf "$url" | grep -E '^backlog_scrape_duration_seconds|^backlog_listeners |^backlog_collection_source'
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "${BASELINE:-}" ]; then
	ours=$url
	serve "$BASELINE"
	python3 bench/alternate.py "$runs" \
		"curl -sf -H 'Accept-Encoding: gzip' -o /dev/null $ours" \
		"curl -sf -H 'Accept-Encoding: gzip' -o /dev/null $url"
	echo "(the last is BASELINE; load: $(cut -d' ' -f1-3 /proc/loadavg))"
fi
