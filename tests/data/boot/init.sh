#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
echo "=== MEMINFO"
/bin/busybox cat /proc/meminfo
echo "=== DMESG"
/bin/busybox dmesg | /bin/busybox grep -E "Memory:|Freeing|e820|reserved|percpu|Dentry|Inode|hash table|swiotlb|KASLR|RAMDISK|crashkernel|initrd"
echo "=== ZONEINFO"
/bin/busybox grep -E "^Node|present|managed|spanned" /proc/zoneinfo
echo "=== END"
/bin/busybox poweroff -f
