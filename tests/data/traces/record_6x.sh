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
#   limits_priv.trace, .maps     prlimit64 (RLIMIT_MEMLOCK, _AS, _DATA, _STACK), capget/
#                                capset dropping CAP_IPC_LOCK, setuid to nobody; recorded
#                                with the README's strace line (this machine's root has no
#                                CAP_SYS_RESOURCE: see its capget)
gcc -O0 -Wall -o limits_priv "$here/limits_priv.c"
touch limits_priv.maps && chmod 666 limits_priv.maps   # nobody writes it after setuid
strace -f -y -e trace=%memory,%process,%ipc,%creds,prlimit64,setrlimit,getrlimit,openat,memfd_create,fcntl,ftruncate \
    -o limits_priv.trace ./limits_priv limits_priv.maps
#   guard_keep.out               guard markers after MADV_FREE, mprotect, MADV_REMOVE
gcc -O0 -Wall -o guard_keep "$here/guard_keep.c" && ./guard_keep > guard_keep.out
#   placement.trace, .maps       a PIE program under setarch -R (no randomisation)
gcc -O0 -Wall -o placement "$here/placement.c"
setarch -R strace -f -y -e trace=%memory,%process,%ipc,%creds,prlimit64,setrlimit,getrlimit,openat,memfd_create,fcntl,ftruncate \
    -o placement.trace ./placement placement.maps
