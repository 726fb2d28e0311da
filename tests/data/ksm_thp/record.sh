#!/bin/sh
# Records ksm_thp.out on this machine (root, Linux 6.x with THP and KSM):
#   sh tests/data/ksm_thp/record.sh
# ksmd's settings are saved and restored; the run is refused if another process has
# mergeable memory (its pages would change the counters).
set -e
cd "$(dirname "$0")"
K=/sys/kernel/mm/ksm
for p in /proc/[0-9]*/ksm_stat; do
    if grep -q "ksm_mergeable: yes" "$p" 2>/dev/null; then
        echo "another process has mergeable memory ($p): not recording" >&2; exit 2
    fi
done
saved=""
for f in run pages_to_scan sleep_millisecs use_zero_pages smart_scan max_page_sharing; do
    saved="$saved $f=$(cat $K/$f)"
done
restore() { echo 0 > $K/run; for kv in $saved; do echo "${kv#*=}" > "$K/${kv%%=*}"; done; }
trap restore EXIT
gcc -O2 -Wall -o /tmp/ksm_thp ksm_thp.c
echo 2 > $K/run            # unmerge everything left from before: counters from zero
echo 0 > $K/run
echo 1000 > $K/pages_to_scan
echo 20 > $K/sleep_millisecs
echo 0 > $K/use_zero_pages
echo 1 > $K/smart_scan
echo 256 > $K/max_page_sharing
{
    echo "# recorded by record.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel $(uname -r)"
    echo "thp_enabled $(cat /sys/kernel/mm/transparent_hugepage/enabled | sed 's/.*\[\(.*\)\].*/\1/')"
    echo "thp_defrag $(cat /sys/kernel/mm/transparent_hugepage/defrag | sed 's/.*\[\(.*\)\].*/\1/')"
    echo "max_ptes_none $(cat /sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none)"
    echo "ksm pages_to_scan 1000 sleep_millisecs 20 use_zero_pages 0 smart_scan 1"
    echo 1 > $K/run
    /tmp/ksm_thp "${1:-15}"
} > ksm_thp.out
