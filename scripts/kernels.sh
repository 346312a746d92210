#!/usr/bin/env bash
# The kernel matrix: boots Debian's own kernels (5.10 bullseye, 6.1
# bookworm, 6.12 trixie) under qemu with software emulation and runs, inside
# each, the integration tests of every package that has *_linux_test.go and
# every lab scenario with `backlog trace` beside it. Fails on a test
# failure, a lab prediction that does not hold, a trace that disagrees with
# the kernel's counters, or a kernel oops on the console.
#
#   scripts/kernels.sh [--run PATTERN] [--bench PATTERN] [--icount] [--script FILE] [VERSION...]
#
# VERSION picks kernels (5.10, 6.1, 6.12; default all). --run runs only the
# tests matching a go test -run pattern; --script runs a shell script of
# one's own in the guest instead of the tests (for investigating a kernel).
# --bench also runs the benchmarks matching PATTERN (5,000 iterations, 3 runs:
# the guest is emulated, so compare ratios within one run, not times).
# --icount makes the guest's clock count instructions (qemu -icount
# shift=0: one instruction, one nanosecond): its CPU times are then what
# the code executes, not what the host's load made of it — the way to
# compare two variants' cost in the guest. Slower; for benchmarks. Only
# 6.12 boots so here: 5.10 and 6.1 stay silent after the boot loader.
#
# Needs root (apt, qemu's initramfs of setuid-free files is fine as any user,
# but apt-get install is not). Kernel packages are fetched with apt through
# a private configuration whose mirror is read from this machine's own apt
# sources, and cached under $BACKLOG_KERNEL_CACHE (/var/cache/backlog-kernels).
# BACKLOG_KERNEL_REFRESH=1 looks for newer packages. Logs go to
# $BACKLOG_MATRIX_LOGS (default: a temporary directory, printed).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

# suite:version pairs, in the order they run.
all=(bullseye:5.10 bookworm:6.1 trixie:6.12)
run=all script= bench= icount= cpu=max
want=()
while [ $# -gt 0 ]; do
	case $1 in
	--run) run=$2; shift 2 ;;
	--script) script=$(realpath "$2"); run=script; shift 2 ;;
	--bench) bench=$2; shift 2 ;;
	# Without CX16: qemu's cmpxchg16b under -icount double-faulted guests
	# in SLUB's allocation fast path here (EFLAGS garbage); the kernel
	# then takes its other path, the same for every variant compared.
	--icount) icount="-icount shift=0,align=off,sleep=on"; cpu=max,-cx16; shift ;;
	-*) echo "kernels.sh: unknown flag $1" >&2; exit 2 ;;
	*) want+=("$1"); shift ;;
	esac
done
cache=${BACKLOG_KERNEL_CACHE:-/var/cache/backlog-kernels}
logs=${BACKLOG_MATRIX_LOGS:-$(mktemp -d /tmp/backlog-matrix.XXXXXX)}
mkdir -p "$logs"
# Per-kernel wall-clock limit for one VM run (TCG is slow; a hung guest
# must not eat the CI's 90 minutes).
vm_timeout=${BACKLOG_VM_TIMEOUT:-1500}

say() { echo "kernels.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# --- host tools -------------------------------------------------------------

packages=(qemu-system-x86 busybox-static cpio kmod xz-utils)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "missing Debian packages ${missing[*]}; install them as root (apt-get install ${missing[*]})"
	say "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- kernels ------------------------------------------------------------------

# mirror prints the first Debian archive URI (one whose path ends in
# /debian) of this machine's apt sources, one-line and deb822 forms alike.
mirror() {
	local f
	{
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -r "$f" ] || continue
			# deb [options] URI suite components
			sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p' "$f"
		done
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -r "$f" ] || continue
			sed -n 's/^URIs:[[:space:]]*//p' "$f" | tr ' \t' '\n\n'
		done
	} | sed 's:/*$::' | grep -E '^(https?|file)://.*/debian$' | head -n1
}

# fetch_kernel SUITE: makes $cache/SUITE/current point at an extracted
# kernel (vmlinuz, the modules the tests need, modules.dep) and prints
# that directory.
fetch_kernel() {
	local suite=$1 dir=$cache/$suite
	if [ -e "$dir/current/vmlinuz" ] && [ "${BACKLOG_KERNEL_REFRESH:-0}" != 1 ]; then
		echo "$dir/current"
		return
	fi
	local url
	url=${BACKLOG_DEBIAN_MIRROR:-$(mirror)}
	[ -n "$url" ] || die "no Debian mirror in /etc/apt/sources.list{,.d}: need a URI ending in /debian (or set BACKLOG_DEBIAN_MIRROR)"
	# A private apt: its own sources list, state and cache; the host's
	# apt configuration and package lists are not touched.
	local apt=$dir/apt
	mkdir -p "$apt/lists/partial" "$apt/archives/partial" "$apt/debs"
	: >"$apt/status"
	echo "deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $url $suite main" >"$apt/sources.list"
	local o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
		-o "Dir::State=$apt" -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
		-o "Dir::Cache=$apt" -o "Dir::Cache::Archives=$apt/archives"
		-o "APT::Architecture=amd64" -o "APT::Architectures::=amd64" -o "Debug::NoLocking=1"
		-o "Acquire::Languages=none" -o "APT::Sandbox::User=root")
	say "$suite: reading the package list from $url"
	apt-get "${o[@]}" -qq update >&2
	# linux-image-amd64 depends on the current signed image; its build
	# without the Secure Boot signature is the same name + -unsigned.
	local signed pkg
	signed=$(apt-cache "${o[@]}" depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
	[ -n "$signed" ] || die "$suite: linux-image-amd64 names no kernel image"
	pkg=$signed-unsigned
	local ver
	ver=$(apt-cache "${o[@]}" show "$pkg" | sed -n 's/^Version: //p' | head -n1)
	[ -n "$ver" ] || die "$suite: no package $pkg"
	local out=$dir/$pkg-$ver
	if [ ! -e "$out/vmlinuz" ]; then
		local deb=("$apt/debs/${pkg}_${ver//:/%3a}_amd64.deb")
		if [ ! -e "${deb[0]}" ]; then
			say "$suite: downloading $pkg $ver"
			(cd "$apt/debs" && rm -f ./*.deb && apt-get "${o[@]}" -qq download "$pkg" >&2)
			deb=("$apt/debs/"*.deb)
		fi
		extract "${deb[0]}" "$out"
	fi
	ln -sfn "$(basename "$out")" "$dir/current"
	echo "$dir/current"
}

# The modules the guest loads, with what they need.
modules=(veth nf_tables inet_diag tcp_diag unix_diag)

# extract DEB OUT: the kernel image and the needed modules, decompressed,
# with their modules.dep (the .deb ships none).
extract() {
	local deb=$1 out=$2 tmp
	tmp=$(mktemp -d "$cache/extract.XXXXXX")
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards \
		'./boot/vmlinuz-*' './lib/modules/*' './usr/lib/modules/*' 2>/dev/null || true
	local kver
	kver=$(basename "$(ls "$tmp"/boot/vmlinuz-* | head -n1)")
	kver=${kver#vmlinuz-}
	[ -n "$kver" ] || die "$deb: no /boot/vmlinuz-*"
	# 6.12 keeps its modules under /usr/lib/modules.
	if [ ! -d "$tmp/lib/modules/$kver" ]; then
		mkdir -p "$tmp/lib/modules"
		mv "$tmp/usr/lib/modules/$kver" "$tmp/lib/modules/$kver"
	fi
	depmod -b "$tmp" "$kver"
	mkdir -p "$out.tmp/modules"
	cp "$tmp/boot/vmlinuz-$kver" "$out.tmp/vmlinuz"
	echo "$kver" >"$out.tmp/release"
	# modprobe prints "insmod PATH" for every module, dependencies first.
	modprobe -d "$tmp" -S "$kver" --show-depends -a "${modules[@]}" |
		awk -v root="$tmp" '$1 == "insmod" { sub("^" root, "", $2); print $2 }' | awk '!seen[$0]++' |
		while read -r path; do
			local name
			name=$(basename "$path")
			case $name in
			*.xz) xz -dc "$tmp$path" >"$out.tmp/modules/${name%.xz}" ;;
			*.zst) die "$name: zstd modules are not handled" ;;
			*) cp "$tmp$path" "$out.tmp/modules/$name" ;;
			esac
			echo "${name%.xz}" >>"$out.tmp/modules/order"
		done
	rm -rf "$tmp" "$out"
	mv "$out.tmp" "$out"
}

# --- what the guest runs ---------------------------------------------------------

build=$(mktemp -d /tmp/backlog-matrix-build.XXXXXX)
trap 'rm -rf "$build"' EXIT

# build compiles, once for every kernel, the static backlog binary and the
# test binary of every package with Linux integration tests (*_linux_test.go):
# tests other people add are picked up without listing them here.
build_guest() {
	local root=$build/root
	mkdir -p "$build/tests" "$root"/{bin,sbin,usr/bin,usr/sbin,lib/modules,tests,src,proc,sys,dev,tmp,run,root,etc}
	ln -s ../run "$root/var" 2>/dev/null || { mkdir -p "$root/var" && ln -s ../run "$root/var/run"; }
	cp /bin/busybox "$root/bin/busybox"
	say "building backlog and the test binaries"
	CGO_ENABLED=0 go build -trimpath -o "$root/usr/bin/backlog" ./cmd/backlog
	local dirs
	dirs=$(find . -name '*_linux_test.go' -not -path './.git/*' -printf '%h\n' | sort -u | sed 's:^\./::')
	echo "$dirs" >"$root/tests/list"
	# One go command for all: it compiles them in parallel. Each binary is
	# named after its package's directory (the guest's list maps them).
	local pkgs=() dir
	for dir in $dirs; do pkgs+=("./$dir"); done
	[ "$run" != script ] || pkgs=() dirs= # a script of one's own needs none
	[ ${#pkgs[@]} -eq 0 ] || CGO_ENABLED=0 go test -c -o "$build/tests/" "${pkgs[@]}"
	for dir in $dirs; do
		mv "$build/tests/$(basename "$dir").test" "$root/tests/$(echo "$dir" | tr / _).test"
	done
	# Sources for tests that read files beside them (fixtures, docs).
	git ls-files -z | grep -zv '\.o$' | xargs -0 cp --parents -t "$root/src" 2>/dev/null || true
	# The oracles the tests compare against (ss, nstat, ip netns) and the
	# util-linux tools they call, with the host's shared libraries: they
	# run on any kernel.
	local tool lib
	for tool in ip ss nstat unshare setpriv nsenter; do
		tool=$(command -v "$tool") || die "$tool is not installed (scripts/test.sh installs iproute2)"
		cp "$tool" "$root/usr/bin/"
		for lib in $(ldd "$tool" | grep -o '/[^ ]*'); do
			[ -e "$root$lib" ] || cp --parents -L "$lib" "$root"
		done
	done
	cp scripts/kernels-guest.sh "$root/init"
	cp scripts/kernel-facts.sh "$root/kernel-facts.sh"
	[ -z "$script" ] || cp "$script" "$root/script.sh"
	chmod +x "$root/init"
}

# run_kernel VERSION DIR: boots the kernel in DIR with the guest and checks
# its console log.
run_kernel() {
	local version=$1 kdir=$2 release
	release=$(cat "$kdir/release")
	local img=$build/initramfs-$version.cpio
	rm -rf "$build/root/lib/modules"
	mkdir -p "$build/root/lib/modules"
	cp "$kdir/modules/"* "$build/root/lib/modules/"
	(cd "$build/root" && find . -print0 | cpio --null -o -H newc --quiet) >"$img"
	local log=$logs/$version.log
	say "$version: booting $release under qemu (TCG); console log $log"
	local start=$SECONDS rc=0
	# thread=single: multi-threaded TCG crashed a guest once while eBPF
	# programs were attached. Two vCPUs all the same: the tests need
	# another CPU to run softirqs and the acceptor beside the clients.
	timeout --foreground -k 10 "$vm_timeout" qemu-system-x86_64 \
		-accel tcg,thread=single $icount -cpu $cpu -smp 2 -m 2048 \
		-kernel "$kdir/vmlinuz" -initrd "$img" \
		-append "console=ttyS0 panic=-1 oops=panic loglevel=4 backlog.run=$run${bench:+ backlog.bench=$bench}" \
		-nographic -no-reboot -nodefaults -serial stdio -monitor none \
		</dev/null >"$log" 2>&1 || rc=$?
	rm -f "$img"
	local took=$((SECONDS - start))
	# The guest prints "@@ result PASS|FAIL" last; a kernel oops panics it
	# (oops=panic) before that.
	if grep -qE 'Oops|BUG:|Kernel panic|general protection fault|WARNING: CPU:|Call Trace:' "$log"; then
		say "$version: the kernel oopsed or warned (after ${took}s):"
		grep -nE -A20 'Oops|BUG:|Kernel panic|general protection fault|WARNING: CPU:|Call Trace:' "$log" | head -60 >&2
		return 1
	fi
	grep '^@@ ' "$log" | sed "s/^@@ /  $version: /" >&2 || true
	check_facts "$version" "$(sed -n 's/^@@ facts //p' "$log" | tr -d '\r')" || return 1
	if [ $rc -eq 124 ]; then
		say "$version: timed out after ${vm_timeout}s"
		return 1
	fi
	if ! grep -q '^@@ result PASS' "$log"; then
		say "$version: FAILED after ${took}s (qemu exit $rc); failures:"
		grep -E -B2 -A12 '^--- FAIL|^FAIL|panic:|^@@ .*FAIL' "$log" | head -150 >&2
		return 1
	fi
	say "$version: passed in ${took}s"
}

# check_facts VERSION ROW: the kernel's features as backlog found them must
# be what docs/kernels.md says.
check_facts() {
	local version=$1 row=$2 doc
	doc=$(grep "^| $version |" docs/kernels.md | cut -d'|' -f4- | sed 's/^/|/')
	if [ "$row" != "$doc" ]; then
		say "$version: docs/kernels.md says \"$doc\", the kernel shows \"$row\": update the table"
		return 1
	fi
}

# The host's kernel too, when the table has a row for its series.
if [ "$(id -u)" = 0 ]; then
	series=$(uname -r | cut -d. -f1-2)
	if grep -q "^| $series |" docs/kernels.md; then
		CGO_ENABLED=0 go build -o "$build/backlog-host" ./cmd/backlog
		check_facts "$series" "$(sh scripts/kernel-facts.sh "$build/backlog-host")" || exit 1
		say "$series (host): features as docs/kernels.md says"
	fi
fi

build_guest
failed=()
for pair in "${all[@]}"; do
	suite=${pair%%:*} version=${pair#*:}
	if [ ${#want[@]} -gt 0 ] && ! printf '%s\n' "${want[@]}" | grep -qx "$version"; then
		continue
	fi
	kdir=$(fetch_kernel "$suite")
	run_kernel "$version" "$kdir" || failed+=("$version")
done
if [ ${#failed[@]} -gt 0 ]; then
	die "kernels that failed: ${failed[*]} (logs in $logs)"
fi
say "every kernel passed (logs in $logs)"
