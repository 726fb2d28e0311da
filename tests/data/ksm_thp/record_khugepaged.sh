#!/bin/sh
# Records khugepaged_ksm.out on this machine (root, Linux 6.x with THP and KSM):
#   sh tests/data/ksm_thp/record_khugepaged.sh [seconds] [diverge_seconds]
# ksmd's settings are saved and restored; khugepaged's are only read (their defaults).
# The run is refused if another process has mergeable memory.
set -e
cd "$(dirname "$0")"
K=/sys/kernel/mm/ksm
H=/sys/kernel/mm/transparent_hugepage/khugepaged
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
gcc -O2 -Wall -o /tmp/khugepaged_ksm khugepaged_ksm.c
echo 2 > $K/run
echo 0 > $K/run
echo 1000 > $K/pages_to_scan
echo 20 > $K/sleep_millisecs
echo 0 > $K/use_zero_pages
echo 1 > $K/smart_scan
echo 256 > $K/max_page_sharing
{
    echo "# recorded by record_khugepaged.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel $(uname -r)"
    echo "thp_enabled $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/enabled)"
    echo "thp_defrag $(sed 's/.*\[\(.*\)\].*/\1/' /sys/kernel/mm/transparent_hugepage/defrag)"
    for f in pages_to_scan scan_sleep_millisecs alloc_sleep_millisecs max_ptes_none max_ptes_swap max_ptes_shared defrag; do
        echo "khugepaged_$f $(cat $H/$f)"
    done
    echo "ksm pages_to_scan 1000 sleep_millisecs 20 use_zero_pages 0 smart_scan 1 max_page_sharing 256"
    echo 1 > $K/run
    /tmp/khugepaged_ksm "${1:-75}" "${2:-45}"
} > khugepaged_ksm.out
