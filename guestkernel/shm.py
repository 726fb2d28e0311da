"""System V shared memory (ipc/shm.c): shmget, shmat, shmdt, shmctl.

A segment is an unlinked shmem inode of the guest file system; attaching maps it shared
(MAP_SHARED, vm_ops = the shm operations, which count attaches in shm_nattch and keep the
VMA from merging). Rules (linux-mm.md section 5):

- shmget: size < SHMMIN or > shmmax -> EINVAL; the namespace's pages over shmall ->
  ENOSPC; SHMMNI segments -> ENOSPC; charged to Committed_AS up front unless SHM_NORESERVE
  (ignored in overcommit mode 2); an existing key: IPC_CREAT|IPC_EXCL -> EEXIST, a larger
  size -> EINVAL; a missing key without IPC_CREAT -> ENOENT. Ids are seq * 32768 + index
  (ipc_idr_alloc): the sequence number moves on when an index is reused.
- shmat: an address not SHMLBA-aligned is rounded down with SHM_RND (if >= SHMLBA), else
  EINVAL; SHM_REMAP without an address -> EINVAL; an overlap without SHM_REMAP -> EINVAL;
  SHM_RDONLY maps read-only (r--s); nattch counts the VMAs.
- shmdt: unaligned -> EINVAL; no segment attached exactly there -> EINVAL.
- IPC_RMID marks the segment for destruction (its key becomes private); it is destroyed,
  its pages freed and its charge returned, when nattch reaches 0.
- SHM_LOCK / SHM_UNLOCK (shmctl_do_lock, shmem_lock): without CAP_IPC_LOCK only the
  owner or creator may (else EPERM), and SHM_LOCK needs a non-zero RLIMIT_MEMLOCK (EPERM)
  and room under it for the segment's pages counted per user with the other locked
  segments (user_shm_lock: else ENOMEM). A locked segment's mapping is unevictable
  (mapping_set_unevictable): its pages go to the unevictable list as they are added, and
  those already on the LRU when reclaim meets them (culled); mode shows SHM_LOCKED.
  SHM_UNLOCK clears it and moves the pages back (shmem_unlock_mapping ->
  check_move_unevictable_folios: unevictable_pgs_scanned, unevictable_pgs_rescued).
  Destroying a locked segment unlocks it.
"""

from __future__ import annotations

from . import uapi as U
from .filemap import File
from .mmap import PAGE_ALIGN, do_mmap, do_munmap
from .units import PAGE_SHIFT, PAGE_SIZE


class ShmSegment:
    def __init__(self, shmid: int, key: int, size: int, mode: int, inode, file, cpid: int):
        self.shmid = shmid
        self.key = key
        self.size = size  # bytes, shm_segsz
        self.mode = mode
        self.inode = inode
        self.file = file
        self.nattch = 0
        self.cpid = cpid
        self.lpid = 0
        self.dest = False
        self.locked = False
        self.uid = 0  # owner (shm_perm.uid); cuid the same here
        self.lock_uid = 0  # whose memlock count the lock is charged to

    @property
    def npages(self) -> int:
        return (self.size + PAGE_SIZE - 1) >> PAGE_SHIFT


class ShmVMOps:
    """vm_operations_struct of an attached segment (shm_vm_ops)."""

    def __init__(self, ns: ShmNamespace) -> None:
        self.ns = ns

    def open(self, vma) -> None:
        vma.vm_file.inode.shm_seg.nattch += 1

    def close(self, vma) -> None:
        seg = vma.vm_file.inode.shm_seg
        seg.nattch -= 1
        if seg.nattch == 0 and seg.dest:
            self.ns.destroy(seg)

    def name(self, vma) -> str:
        return vma.vm_file.inode.name


class ShmNamespace:
    """The guest's SysV shm ids and limits (kernel.shmmax/shmall/shmmni)."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.shmmax = U.SHMMAX
        self.shmall = U.SHMALL
        self.shmmni = U.SHMMNI
        self.segments: dict[int, ShmSegment] = {}  # index -> segment
        self.by_key: dict[int, ShmSegment] = {}
        self.seq = 0
        self.last_idx = -1
        self.shm_tot = 0  # pages in all segments
        self.memlock: dict[int, int] = {}  # uid -> pages of SHM_LOCKed segments (ucounts)
        self.vm_ops = ShmVMOps(self)

    def lookup(self, shmid: int) -> ShmSegment | None:
        if shmid < 0:
            return None
        seg = self.segments.get(shmid % U.IPCMNI_SEQ_MULTIPLIER)
        if seg is None or seg.shmid != shmid:
            return None
        return seg

    def _alloc_id(self) -> tuple[int, int]:
        idx = 0
        while idx in self.segments:
            idx += 1
        if idx <= self.last_idx:
            self.seq += 1
        self.last_idx = idx
        return idx, self.seq * U.IPCMNI_SEQ_MULTIPLIER + idx

    def destroy(self, seg: ShmSegment) -> None:
        del self.segments[seg.shmid % U.IPCMNI_SEQ_MULTIPLIER]
        if self.by_key.get(seg.key) is seg:
            del self.by_key[seg.key]
        self.shm_tot -= seg.npages
        if seg.mode & U.SHM_LOCKED:  # shm_destroy: shmem_lock(file, 0, ...)
            self._unlock(seg)
        seg.file.put()  # the last reference: pages freed, charge returned

    def _unlock(self, seg: ShmSegment) -> None:
        seg.mode &= ~U.SHM_LOCKED
        seg.locked = False
        self.memlock[seg.lock_uid] -= seg.npages  # user_shm_unlock
        seg.inode.mapping.unevictable = False


def _ns(task) -> ShmNamespace:
    return task.kernel.shm_ns


def sys_shmget(task, key: int, size: int, shmflg: int) -> int:
    ns = _ns(task)
    if key != U.IPC_PRIVATE:
        seg = ns.by_key.get(key)
        if seg is not None:
            if shmflg & U.IPC_CREAT and shmflg & U.IPC_EXCL:
                raise U.err(U.EEXIST, "shmget")
            if size > seg.size:
                raise U.err(U.EINVAL, "shmget")
            return seg.shmid
        if not shmflg & U.IPC_CREAT:
            raise U.err(U.ENOENT, "shmget")
    if size < U.SHMMIN or size > ns.shmmax:
        raise U.err(U.EINVAL, "shmget")
    numpages = (size + PAGE_SIZE - 1) >> PAGE_SHIFT
    if ns.shm_tot + numpages > ns.shmall:
        raise U.err(U.ENOSPC, "shmget")
    if len(ns.segments) >= ns.shmmni:
        raise U.err(U.ENOSPC, "shmget")
    k = task.kernel
    charge = not (shmflg & U.SHM_NORESERVE and k.config.overcommit_memory != 2)
    if charge and not k.vm_enough_memory(numpages, task.capable(U.CAP_SYS_ADMIN),
                                         task.mm.total_vm if task.mm else 0):
        raise U.err(U.ENOMEM, "shmget")
    idx, shmid = ns._alloc_id()
    inode = k.fs.new_shmem_inode(f"SYSV{key & 0xFFFFFFFF:08x}", size, ino=shmid)
    inode.name = f"/SYSV{key & 0xFFFFFFFF:08x} (deleted)"
    inode.charged = numpages if charge else 0
    inode.noreserve = not charge  # SHM_NORESERVE: charged block by block (shmem_acct_block)
    file = File(inode)
    file.get()  # the segment's own reference
    seg = ShmSegment(shmid, key, size, shmflg & 0o777, inode, file, task.pid)
    seg.uid = task.uid
    inode.shm_seg = seg
    ns.segments[idx] = seg
    if key != U.IPC_PRIVATE:
        ns.by_key[key] = seg
    ns.shm_tot += numpages
    return shmid


def sys_shmat(task, shmid: int, shmaddr: int, shmflg: int) -> int:
    ns = _ns(task)
    addr = shmaddr
    if addr:
        if addr & (U.SHMLBA - 1):
            if shmflg & U.SHM_RND and addr >= U.SHMLBA:
                addr &= ~(U.SHMLBA - 1)
            else:
                raise U.err(U.EINVAL, "shmat")
        flags = U.MAP_SHARED | U.MAP_FIXED
    else:
        if shmflg & U.SHM_REMAP:
            raise U.err(U.EINVAL, "shmat")
        flags = U.MAP_SHARED
    if shmflg & U.SHM_RDONLY:
        prot = U.PROT_READ
    else:
        prot = U.PROT_READ | U.PROT_WRITE
    if shmflg & U.SHM_EXEC:
        prot |= U.PROT_EXEC
    seg = ns.lookup(shmid)
    if seg is None:
        raise U.err(U.EINVAL, "shmat")
    size = seg.size
    seg.nattch += 1  # held while attaching
    try:
        if addr and not shmflg & U.SHM_REMAP:
            if task.mm.mm_mt.intersecting(addr, addr + PAGE_ALIGN(size)):
                raise U.err(U.EINVAL, "shmat")
        sfd = File(seg.inode, readable=True, writable=not shmflg & U.SHM_RDONLY)
        try:
            addr = do_mmap(task, addr, size, prot, flags, sfd, 0, vm_ops=ns.vm_ops)
        except OSError:
            if sfd.refs == 0:  # no VMA took it: give the struct file back
                sfd.get()
                sfd.put()
            raise
    finally:
        seg.nattch -= 1
        if seg.nattch == 0 and seg.dest:
            ns.destroy(seg)
    seg.lpid = task.pid
    return addr


def sys_shmdt(task, shmaddr: int) -> int:
    if shmaddr & (PAGE_SIZE - 1):
        raise U.err(U.EINVAL, "shmdt")
    mm = task.mm
    ops = _ns(task).vm_ops
    vma = mm.mm_mt.find_vma(shmaddr)
    while vma is not None:
        if vma.vm_ops is ops and vma.vm_start - shmaddr == vma.vm_pgoff << PAGE_SHIFT:
            file = vma.vm_file
            end = shmaddr + PAGE_ALIGN(file.inode.size)
            for v in mm.mm_mt.intersecting(vma.vm_start, end):
                if v.vm_file is file:
                    do_munmap(task, v.vm_start, v.vm_end - v.vm_start)
            return 0
        vma = mm.mm_mt.next(vma)
        if vma is not None and vma.vm_start >= shmaddr + (1 << 40):
            break
    raise U.err(U.EINVAL, "shmdt")


def _shmctl_do_lock(task, ns: ShmNamespace, seg: ShmSegment, cmd: int) -> int:
    """shmctl_do_lock (ipc/shm.c) and shmem_lock / shmem_unlock_mapping (mm/shmem.c)."""
    capable = task.capable(U.CAP_IPC_LOCK)
    if not capable:
        if task.uid != seg.uid:
            raise U.err(U.EPERM, "shmctl")
        if cmd == U.SHM_LOCK and task.rlimit(U.RLIMIT_MEMLOCK) == 0:
            raise U.err(U.EPERM, "shmctl")
    mapping = seg.inode.mapping
    if cmd == U.SHM_LOCK:
        if not seg.mode & U.SHM_LOCKED:
            limit = task.rlimit(U.RLIMIT_MEMLOCK)
            locked = ns.memlock.get(task.uid, 0) + seg.npages  # user_shm_lock
            if (not capable and limit != U.RLIM_INFINITY and locked > limit >> PAGE_SHIFT):
                raise U.err(U.ENOMEM, "shmctl")
            ns.memlock[task.uid] = locked
            seg.lock_uid = task.uid
            seg.mode |= U.SHM_LOCKED
            seg.locked = True
            mapping.unevictable = True
        return 0
    if not seg.mode & U.SHM_LOCKED:
        return 0
    ns._unlock(seg)
    hook = getattr(task.kernel, "check_move_unevictable", None)
    if hook is not None:
        hook(list(mapping.pages.values()))
    return 0


def sys_shmctl(task, shmid: int, cmd: int, buf=None):
    ns = _ns(task)
    if cmd in (U.IPC_INFO, U.SHM_INFO):
        return {"shmmax": ns.shmmax, "shmall": ns.shmall, "shmmni": ns.shmmni,
                "used_ids": len(ns.segments), "shm_tot": ns.shm_tot}
    seg = ns.lookup(shmid)
    if seg is None:
        raise U.err(U.EINVAL, "shmctl")
    if cmd == U.IPC_RMID:
        seg.dest = True
        if ns.by_key.get(seg.key) is seg:
            del ns.by_key[seg.key]
        seg.key = U.IPC_PRIVATE
        if seg.nattch == 0:
            ns.destroy(seg)
        return 0
    if cmd in (U.IPC_STAT, U.SHM_STAT):
        return {"shm_segsz": seg.size, "shm_nattch": seg.nattch, "shm_cpid": seg.cpid,
                "shm_lpid": seg.lpid, "key": seg.key,
                "mode": seg.mode | (U.SHM_DEST if seg.dest else 0),
                "shm_rss": len(seg.inode.mapping.pages)}
    if cmd in (U.SHM_LOCK, U.SHM_UNLOCK):
        return _shmctl_do_lock(task, ns, seg, cmd)
    if cmd == U.IPC_SET:
        if buf and "mode" in buf:
            seg.mode = buf["mode"] & 0o777
        return 0
    raise U.err(U.EINVAL, "shmctl")
