#!/usr/bin/env bash
# Target: an exporter scrape at 10,000 listeners + 100,000 established
# sockets under 50 ms. The real binary, scraped with curl as Prometheus
# asks (gzip), after a first scrape that fills the owner cache. Prints
# hyperfine's times, serve's CPU per scrape (its user+system time over the
# scrapes, less the sampler's over as long a time without scrapes) and the
# collection's own time. hyperfine's times include starting curl (tens of
# ms of CPU on this machine); curl's time_total is the scrape alone.
# BASELINE=/path/to/backlog (another build) serves the same state beside
# it; then the scrapes of both alternate, RUNS rounds (default 30), and
# the ratio of their time_total medians is printed.
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
# The scrape as Prometheus sees it (curl's time_total: connect to last
# byte, without starting curl) and serve's CPU per scrape: scrapes back to
# back, then as long without.
tick=$(getconf CLK_TCK)
c0=$(cpu "$serve") t0=$(date +%s.%N)
for _ in $(seq "$runs"); do
	curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{time_total}\n' "$url"
done >"$out/times"
c1=$(cpu "$serve") t1=$(date +%s.%N)
python3 -c 'import statistics as s,sys; t=[float(l)*1000 for l in open(sys.argv[1])]; print("scrape (time_total): median %.1f ms, mean %.1f, min %.1f, max %.1f, %d scrapes" % (s.median(t), s.mean(t), min(t), max(t), len(t)))' "$out/times"
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
	for _ in $(seq "$runs"); do # in turn, so that load falls on both alike
		for u in "$ours" "$url"; do
			curl -sf -H 'Accept-Encoding: gzip' -o /dev/null -w '%{time_total} ' "$u"
		done
		echo
	done >"$out/pairs"
	python3 -c '
import statistics as s, sys
rows = [[float(x) * 1000 for x in l.split()] for l in open(sys.argv[1])]
a, b = [r[0] for r in rows], [r[1] for r in rows]
print("in turn, %d rounds: this build median %.1f ms (min %.1f), BASELINE median %.1f ms (min %.1f); ratio of medians %.2f" % (len(rows), s.median(a), min(a), s.median(b), min(b), s.median(a) / s.median(b)))' "$out/pairs"
	echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
