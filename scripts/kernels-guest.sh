#!/bin/busybox sh
# /init of the kernel matrix's throw-away initramfs (scripts/kernels.sh):
# loads the modules, runs the test binary of every package with integration
# tests (cmd/backlog's TestLabWithTrace runs every lab scenario with
# `backlog trace` beside it), prints "@@ ..." lines the host reads, and
# powers off.
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mkdir -p /run/netns
echo 'root:x:0:0:root:/root:/bin/sh' >/etc/passwd
echo 'nobody:x:65534:65534:nobody:/:/bin/false' >>/etc/passwd
echo 'root:x:0:' >/etc/group
echo 'nogroup:x:65534:' >>/etc/group
hostname matrix
ip link set lo up

for m in $(cat /lib/modules/order); do
	# crc32c-intel needs SSE4.2, which the emulated CPU may lack;
	# crc32c_generic stands in.
	insmod /lib/modules/$m 2>/dev/null || echo "@@ module $m not loaded"
done

# Tests that cannot run here skip through internal/testutil, which names
# them with the reason; this variable tells it where it runs.
export BACKLOG_KERNEL_MATRIX="$(uname -r)"
export BACKLOG_TEST_BINARY=/usr/bin/backlog
run=$(sed -n 's/.*backlog\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
bench=$(sed -n 's/.*backlog\.bench=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "@@ kernel $(uname -r) run=$run"
fail=0
# This kernel's row of the feature table in docs/kernels.md.
echo "@@ facts $(sh /kernel-facts.sh /usr/bin/backlog)"

# run: "all", or a -test.run pattern (scripts/kernels.sh --run), or
# "script" for a script of one's own (--script FILE).
if [ "$run" = script ]; then
	if sh /script.sh; then echo "@@ result PASS"; else echo "@@ result FAIL"; fi
	sync
	poweroff -f
fi
pattern=.
[ "$run" = all ] || pattern=$run
for dir in $(cat /tests/list); do
	bin=/tests/$(echo "$dir" | tr / _).test
	start=$(date +%s)
	(cd "/src/$dir" && "$bin" -test.count=1 -test.v -test.timeout=20m -test.run "$pattern")
	rc=$?
	# Benchmarks (scripts/kernels.sh --bench): three runs, no tests.
	[ -z "$bench" ] || (cd "/src/$dir" && "$bin" -test.run '^$' -test.bench "$bench" -test.benchtime 5000x -test.count 3) || rc=1
	took=$(($(date +%s) - start))
	if [ $rc -eq 0 ]; then
		echo "@@ test $dir ok ${took}s"
	else
		echo "@@ test $dir FAIL ${took}s"
		fail=1
	fi
done

if [ $fail -eq 0 ]; then echo "@@ result PASS"; else echo "@@ result FAIL"; fi
sync
poweroff -f
