"""Fragmentation pattern for measure_extfrag.sh: map N MiB anonymous (MADV_NOHUGEPAGE, so
4 KiB pages), write every page, drop every other page (MADV_DONTNEED: freed to the buddy
lists as order-0 pages whose buddies stay allocated), print "ready" and hold until killed."""

import mmap
import sys
import time

mib = int(sys.argv[1])
size = mib << 20
m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
m.madvise(mmap.MADV_NOHUGEPAGE)
for off in range(0, size, 4096):
    m[off] = 1
for off in range(4096, size, 8192):
    m.madvise(mmap.MADV_DONTNEED, off, 4096)
print("ready", flush=True)
while True:
    time.sleep(3600)
