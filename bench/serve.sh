#!/usr/bin/env bash
# Target: an exporter scrape at 10,000 listeners + 100,000
# established sockets under 100 ms. The real binary, scraped with curl as
# Prometheus asks (gzip), after a first scrape that fills the owner cache.
source "$(dirname "$0")/lib.sh"
start_fixture -namespaces 1 -listeners 10000 -established 50000 -prefix bl-bench-serve
ns=${NAMESPACES[0]}
port=$((20000 + RANDOM % 10000))
"$out/backlog" serve --netns "$ns" --web.listen-address "127.0.0.1:$port" --log.level warn &
serve=$!
trap 'kill $serve 2>/dev/null; wait $serve 2>/dev/null; stop_fixture' EXIT
url="http://127.0.0.1:$port/metrics"
for _ in $(seq 50); do curl -sf -o /dev/null "$url" && break; sleep 0.2; done
curl -sf -o /dev/null "$url" # the first scrape walks owners
hyperfine --warmup 3 --runs 30 --export-json "$out/serve.json" \
	"curl -sf -H 'Accept-Encoding: gzip' -o /dev/null $url"
curl -sf "$url" | grep -E '^backlog_scrape_duration_seconds|^backlog_listeners '
