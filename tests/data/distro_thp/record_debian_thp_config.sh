#!/bin/sh
# Records the THP and init_on_alloc/free lines of the kernel configs Debian 12 ships (package linux-config-6.1),
# from which hvsim's debian-12 image takes its THP and init_on_alloc defaults (experiments/scenario.py
# THP_DEFAULTS, INIT_ON_ALLOC_DEFAULTS). Run as: sh record_debian_thp_config.sh > debian-12-thp.config
set -e
d=$(mktemp -d)
cd "$d"
apt-get download linux-config-6.1 >/dev/null 2>&1
dpkg-deb -x linux-config-6.1_*_amd64.deb cfg
ver=$(ls linux-config-6.1_*_amd64.deb | sed 's/linux-config-6.1_\(.*\)_amd64.deb/\1/')
for f in cfg/usr/src/linux-config-6.1/config.amd64_none_amd64.xz cfg/usr/src/linux-config-6.1/config.amd64_none_cloud-amd64.xz; do
    echo "# linux-config-6.1 $ver $(basename "$f" .xz)"
    xzcat "$f" | grep -E '^(# )?CONFIG_(TRANSPARENT_HUGEPAGE|READ_ONLY_THP_FOR_FS|INIT_ON_ALLOC_DEFAULT_ON|INIT_ON_FREE_DEFAULT_ON)'
done
rm -rf "$d"
