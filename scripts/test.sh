#!/usr/bin/env bash
# Runs backlog's whole test suite. Installs what the tests need (Debian
# packages, Go modules) first. Integration tests need root: they build
# private network namespaces; without root they skip, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oracle tools and real peers the tests drive. clang, llvm and
# libbpf-dev let internal/trace check that go generate reproduces the
# committed eBPF object (building backlog needs none of them).
# php8.2-fpm and nginx are the real UNIX-socket pair (fastcgi_pass unix:)
# the UNIX-listener tests drive. docker.io, podman, containerd, runc and
# containernetworking-plugins are the real runtimes the workload tests
# start on private state (internal/workload/runtimetest).
# redis-server, haproxy, memcached and hping3 are the real TCP servers (and
# the SYN scanner) of cmd/backlog/servers_linux_test.go. chromium renders
# `backlog report`'s page headless and offline (prometheus also brings
# promtool for the backfill).
packages=(iproute2 util-linux systemd tmux python3 prometheus clang llvm libbpf-dev php8.2-fpm nginx docker.io podman containerd runc containernetworking-plugins chromium redis-server haproxy memcached hping3)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ]; then
		echo "test.sh: installing ${missing[*]}"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
	else
		echo "test.sh: missing Debian packages ${missing[*]}; install them as root (apt-get install ${missing[*]})" >&2
		exit 1
	fi
fi

go mod download
go vet ./...
# -p 1: the integration tests read namespace-wide counters and must not
# share the machine's two cores with another package's load.
go test -count=1 -p 1 -timeout 30m ./... "$@"

# Then the same integration tests, and every lab scenario with trace beside
# it, on Debian's 5.10, 6.1 and 6.12 kernels under qemu (docs/kernels.md).
# BACKLOG_MATRIX=0 leaves it out (a quick local run).
if [ "${BACKLOG_MATRIX:-1}" = 0 ]; then
	echo "test.sh: kernel matrix left out (BACKLOG_MATRIX=0)"
elif [ "$(id -u)" != 0 ]; then
	echo "test.sh: the kernel matrix needs root (apt, the kernels' cache); skipped" >&2
else
	./scripts/kernels.sh
fi
