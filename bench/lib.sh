# Shared by the bench scripts: build the binaries, start the fixture, stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v hyperfine >/dev/null || { echo "bench: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
out=$(mktemp -d)
go build -o "$out/backlog" ./cmd/backlog
go build -o "$out/fixture" ./bench/fixture

# start_fixture ARGS...: starts the fixture, fills the array NAMESPACES.
start_fixture() {
	coproc FIX { "$out/fixture" "$@"; }
	NAMESPACES=()
	while read -r line <&"${FIX[0]}"; do
		[ "$line" = ready ] && break
		NAMESPACES+=("$line")
	done
	[ ${#NAMESPACES[@]} -gt 0 ] || { echo "bench: fixture failed" >&2; exit 1; }
}

# close_fixture: ends the fixture (its namespaces go with it).
close_fixture() {
	if [ -n "${FIX_PID:-}" ]; then
		eval "exec ${FIX[1]}>&-"
		wait "$FIX_PID" || true
	fi
	FIX_PID=
}

stop_fixture() {
	close_fixture
	rm -rf "$out"
}
trap stop_fixture EXIT

# ratio FILE: mean of the first command over the mean of the second.
ratio() {
	python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print("%.3f" % (r[0]["mean"]/r[1]["mean"]))' "$1"
}
