#!/bin/sh
# Boot Debian 12's cloud kernel under QEMU (TCG, pc machine, one vCPU) with $1 MiB of RAM
# and record /proc/meminfo, the boot's memory lines and /proc/zoneinfo's page counts.
# Recorded on this machine with:
#   apt-get download linux-image-6.1.0-50-cloud-amd64-unsigned busybox-static
#   apt-get install qemu-system-x86 cpio
#   dpkg-deb -x linux-image-*.deb img; dpkg-deb -x busybox-static*.deb bb
#   mkdir -p initramfs/bin initramfs/proc initramfs/sys initramfs/dev
#   cp bb/bin/busybox initramfs/bin/; cp init.sh initramfs/init
#   (cd initramfs && find . | cpio -o -H newc | gzip -9 > ../init.cpio.gz)
#   for m in 128 256 512 1024 2048 3072; do ./boot.sh $m; done
# and kept the part between "=== MEMINFO" and "=== END" of each log as
# debian12-6.1.0-50-cloud-${m}MiB.txt.
m=$1
timeout 600 qemu-system-x86_64 -M pc -accel tcg -smp 1 -m ${m}M \
  -kernel img/boot/vmlinuz-6.1.0-50-cloud-amd64 -initrd init.cpio.gz \
  -append "console=ttyS0 panic=-1 loglevel=4" -nographic -no-reboot > boot-$m.log 2>&1
