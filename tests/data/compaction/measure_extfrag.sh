#!/bin/sh
# Records this machine's real kernel: the extfrag debugfs files beside /proc/buddyinfo,
# before and after a fragmentation pattern, and kcompactd's proactive compaction under
# three vm.compaction_proactiveness values while that pattern holds still.
# Run as root:  sh measure_extfrag.sh > extfrag.txt
# Needs debugfs (mounted here if it is not) and python3 (fragment.py beside this script).
# Each snapshot prints /proc/buddyinfo, /sys/kernel/debug/extfrag/unusable_index and
# extfrag_index, then /proc/buddyinfo again: a snapshot whose two buddyinfo reads differ
# is retried (the indices are computed from the free lists at the moment of reading).
set -e
here=$(dirname "$0")
[ -d /sys/kernel/debug/extfrag ] || mount -t debugfs none /sys/kernel/debug
snapshot() {
    i=0
    while :; do
        a=$(cat /proc/buddyinfo)
        u=$(cat /sys/kernel/debug/extfrag/unusable_index)
        e=$(cat /sys/kernel/debug/extfrag/extfrag_index)
        b=$(cat /proc/buddyinfo)
        i=$((i + 1))
        [ "$a" = "$b" ] && break
        [ $i -ge 200 ] && { echo "== $1: buddyinfo never held still =="; return; }
    done
    echo "== buddyinfo $1 =="; echo "$a"
    echo "== unusable_index $1 =="; echo "$u"
    echo "== extfrag_index $1 =="; echo "$e"
}
counters() {
    echo "== vmstat $1 =="; grep -E '^(compact_|pgmigrate_)' /proc/vmstat
}
echo "== uname =="; uname -r
echo "== zoneinfo present =="; awk '/^Node/ {z=$4} /^ +present/ {print z, $2}' /proc/zoneinfo
echo "== compaction_proactiveness =="; cat /proc/sys/vm/compaction_proactiveness
old=$(cat /proc/sys/vm/compaction_proactiveness)
snapshot quiet
# fragment: 8 GiB of anonymous memory (no THP), touched, then every other page dropped:
# about a quarter of the free memory left in order-0 pages, enough for a fragmentation
# score above proactiveness 100's high mark (15)
fifo=$(mktemp -u); mkfifo "$fifo"
python3 "$here/fragment.py" 8192 > "$fifo" &
pid=$!
read line < "$fifo"   # "ready": the pattern is in place and held
snapshot fragmented
for p in 0 20 100; do
    echo $p > /proc/sys/vm/compaction_proactiveness
    counters "proactiveness $p start"
    snapshot "proactiveness $p start"
    sleep 6
    counters "proactiveness $p end"
    snapshot "proactiveness $p end"
done
echo "$old" > /proc/sys/vm/compaction_proactiveness
kill $pid; wait $pid 2>/dev/null || true; rm -f "$fifo"
