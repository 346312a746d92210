#!/usr/bin/env python3
"""Runs shell commands in turn, RUNS rounds, so that load from elsewhere on
a shared machine falls on all of them alike, and prints for each the median
and range of wall time and the median CPU (user+system of the command and
its children), then each command's ratio to the LAST one (the baseline):
of median wall times and of median CPU.

usage: alternate.py RUNS 'command a' ['command b' ...] 'baseline'
"""
import os
import resource
import statistics
import subprocess
import sys
import time


def run(cmd):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    runs, cmds = int(sys.argv[1]), sys.argv[2:]
    for c in cmds:  # warm up: page cache, first loads
        run(c)
    walls = [[] for _ in cmds]
    cpus = [[] for _ in cmds]
    for _ in range(runs):
        for i, c in enumerate(cmds):
            w, u = run(c)
            walls[i].append(w)
            cpus[i].append(u)
    base_w, base_c = statistics.median(walls[-1]), statistics.median(cpus[-1])
    for i, c in enumerate(cmds):
        w, u = statistics.median(walls[i]), statistics.median(cpus[i])
        print("%-100s wall median %7.1f ms (%.1f-%.1f), CPU median %7.1f ms; ratio to the last: wall %.3f, CPU %.3f"
              % (c[-100:], 1000 * w, 1000 * min(walls[i]), 1000 * max(walls[i]), 1000 * u, w / base_w, u / base_c))
    print("load average after:", open("/proc/loadavg").read().split()[:3])


if __name__ == "__main__":
    main()
