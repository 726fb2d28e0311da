#!/bin/sh
# Records this machine's real kernel around one `echo 1 > /proc/sys/vm/compact_memory`
# (compact_nodes(): every zone of every node, MIGRATE_SYNC, the whole zone, order -1).
# Run as root:  sh measure.sh > compact_memory.txt
# Output: uname, extfrag_threshold, then /proc/pagetypeinfo, /proc/buddyinfo and the
# compact_* lines of /proc/vmstat before and after, each under a "== name ==" header.
set -e
echo "== uname =="; uname -r
echo "== extfrag_threshold =="; cat /proc/sys/vm/extfrag_threshold
for when in before after; do
    if [ "$when" = after ]; then
        sync
        echo 1 > /proc/sys/vm/compact_memory
    fi
    echo "== pagetypeinfo $when =="; cat /proc/pagetypeinfo
    echo "== buddyinfo $when =="; cat /proc/buddyinfo
    echo "== vmstat $when =="; grep -E '^(compact_|pgmigrate_)' /proc/vmstat
done
