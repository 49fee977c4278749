#!/usr/bin/env python3
"""The floor under a durable acknowledgement: append 4 KiB to a file and fdatasync it,
paced at RATE per second for SECONDS (as an open-loop load is), in DIR (the file
system the servers use). Prints one JSON line: p50/p90/p99 of one append+fdatasync
in ms, and the CPU microseconds one costs this process (mostly the kernel's).

usage: fsync_probe.py DIR [RATE] [SECONDS]"""
import json
import os
import sys
import time

directory = sys.argv[1]
rate = float(sys.argv[2]) if len(sys.argv) > 2 else 1000.0
seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
path = os.path.join(directory, "fsync-probe.log")
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
block = b"x" * 4096
took = []
start = time.monotonic()
cpu0 = time.process_time()
n = int(rate * seconds)
for i in range(n):
    due = start + i / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    t0 = time.perf_counter()
    os.write(fd, block)
    os.fdatasync(fd)
    took.append(time.perf_counter() - t0)
cpu = time.process_time() - cpu0
os.close(fd)
os.unlink(path)
took.sort()
def q(p):
    return round(took[min(len(took) - 1, int(p * len(took)))] * 1000, 3)
print(json.dumps({"rate": rate, "count": n, "p50_ms": q(0.5), "p90_ms": q(0.9),
                  "p99_ms": q(0.99), "cpu_us_per_op": round(cpu / n * 1e6, 1)}))
