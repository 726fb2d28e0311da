#!/bin/sh
# Records the traces of the Linux 6.x address-space interfaces (run as root in a scratch
# directory on the machine whose kernel they describe; recorded on 6.18 with strace 6.1,
# which cannot select mseal by name, hence every call is traced):
#   new_mm.trace, new_mm.smaps   guard regions, mseal, MAP_DROPPABLE, MADV_POPULATE_*,
#                                MADV_REMOVE, memfd seals, multi-VMA mremap
set -e
here=$(dirname "$0")
gcc -O0 -Wall -o new_mm "$here/new_mm.c"
strace -f -y -o new_mm.trace ./new_mm new_mm.smaps
