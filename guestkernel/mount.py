"""Mounts: the guest's mount table and tmpfs super blocks (fs/namespace.c; mm/shmem.c, 6.1).

Overview
--------
hvsim's guest file system is one flat namespace of paths (filemap.FileSystem) on one disk.
A `MountTable` lays tmpfs mounts over it: a path under a mount point (the longest one
that is a prefix at a "/" boundary) belongs to that mount, so a file created there is a
shmem inode of the mount's super block (its pages swap-backed, in the page cache only),
and files of the disk that were under the mount point are hidden until it goes (they
come back at umount). The internal mount (shm_mnt: SysV segments, shared anonymous
mappings, memfd) is not in the table: its inodes carry no super block here (inode.sb is
None) and follow transparent_hugepage/shmem_enabled.

A tmpfs super block (`ShmemSbInfo`, struct shmem_sb_info) holds what mount(2)'s options
set (shmem_parse_one):
- size= (bytes with k/m/g/t/p/e suffixes as memparse reads them, or a percentage of
  totalram_pages; rounded up to pages) or nr_blocks= (pages): max_blocks, default half of
  RAM (shmem_default_max_blocks); 0 means unlimited.
- nr_inodes=: max_inodes, default min(lowmem pages, RAM pages / 2)
  (shmem_default_max_inodes); the root directory takes one (shmem_reserve_inode).
- huge=never|always|within_size|advise: the mount's SHMEM_SB(sb)->huge, which
  shmem_is_huge reads for its inodes (huge_memory.Thp.shmem_is_huge); shmem_enabled's
  deny and force override every mount; a huge= other than never needs THP
  ("Unsupported parameter 'huge'", EINVAL, where the kernel has none: 2.6-era, i386).
- mode=, uid=, gid=, inode32/inode64; and the generic flags mount(8) passes as MS_*:
  ro, nosuid, nodev, noexec, relatime (default), strictatime, noatime.

Blocks (shmem_inode_acct_block): while max_blocks is set, every page a file of the mount
adds to the page cache counts in used_blocks, a huge folio 512 at once, and an
allocation that would take used_blocks past max_blocks fails with ENOSPC (write(2)
returns it, or writes short; a fault gets SIGBUS: vmf_error). Pages on swap stay
counted (shmem_recalc_inode frees only what left both cache and swap); a truncate, a
hole punch and the eviction of an unlinked file uncount theirs. tmpfs files are
VM_NORESERVE: each block is also charged to Committed_AS as it is allocated
(shmem_acct_block). Before failing, an allocation splits huge folios reaching past
EOF on the mount (shmem_unused_huge_shrink, up to 5 tries), as shmem_get_folio_gfp does.

Remount (MS_REMOUNT, shmem_reconfigure) changes size, nr_inodes and huge: a size below
what is in use ("Too small a size for current use"), a limit where there was none
("Cannot retroactively limit size"), too few inodes: EINVAL. umount: EBUSY while a
file of the mount is open or mapped; otherwise its files go with it (kill_litter_super).
The dentry cache forgets the names below a mount point at mount and umount (d_invalidate,
shrink_dcache_for_umount), so a path walk finds what is there now.

/proc/mounts lists the tmpfs mounts as show_vfsmnt and shmem_show_options write them
(size= and nr_inodes= only when not the defaults, huge= unless never, inode64 as
Debian's CONFIG_TMPFS_INODE64=y kernels show it). Not modelled: directories (a path is
a name), stacked mounts on one mount point (EBUSY), bind mounts, other file systems,
per-super-block shrinkers (the huge-folio shrinker's list is one for every shmem mount);
ro, noexec and nodev are shown in /proc/mounts but not enforced (no EROFS).
"""

from __future__ import annotations

from . import uapi as U
from .units import PAGE_SHIFT, PAGE_SIZE

SHMEM_HUGE = ("never", "always", "within_size", "advise")  # shmem_param_enums_huge
S_ISVTX = 0o1000
# flags mount(8) turns into MS_* (include/uapi/linux/mount.h), and their inverses
MNT_FLAG_OPTIONS = {
    "ro": (U.MS_RDONLY, True), "rw": (U.MS_RDONLY, False),
    "nosuid": (U.MS_NOSUID, True), "suid": (U.MS_NOSUID, False),
    "nodev": (U.MS_NODEV, True), "dev": (U.MS_NODEV, False),
    "noexec": (U.MS_NOEXEC, True), "exec": (U.MS_NOEXEC, False),
    "noatime": (U.MS_NOATIME, True), "atime": (U.MS_NOATIME, False),
    "relatime": (U.MS_RELATIME, True), "norelatime": (U.MS_RELATIME, False),
    "strictatime": (U.MS_STRICTATIME, True),
}
SEEN_BLOCKS, SEEN_INODES, SEEN_HUGE, SEEN_INUMS = 1, 2, 4, 8  # SHMEM_SEEN_*


def memparse(text: str) -> tuple[int, str]:
    """lib/cmdline.c memparse: a number (0x hex, 0 octal, else decimal) and an optional
    K/M/G/T/P/E suffix (either case, powers of 1024). Returns (value, the rest)."""
    s = text
    i = 0
    base = 10
    if s[:2].lower() == "0x":
        base, i = 16, 2
    elif s[:1] == "0" and len(s) > 1 and s[1] in "01234567":
        base, i = 8, 1
    digits = "0123456789abcdef"[:base]
    j = i
    while j < len(s) and s[j].lower() in digits:
        j += 1
    if j == i and not (base == 8 or s[:1] == "0"):
        return 0, s  # no number: simple_strtoull stops at once
    value = int(s[i:j], base) if j > i else 0
    rest = s[j:]
    shift = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}.get(rest[:1].lower())
    if shift is not None:
        value <<= shift
        rest = rest[1:]
    return value, rest


class ShmemOptions:
    """struct shmem_options: what one mount(2) call asked for."""

    __slots__ = ("blocks", "inodes", "mode", "uid", "gid", "huge", "full_inums", "seen",
                 "mnt_flags")

    def __init__(self) -> None:
        self.blocks = 0
        self.inodes = 0
        self.mode = 0o777 | S_ISVTX
        self.uid = 0
        self.gid = 0
        self.huge = "never"
        self.full_inums = True  # CONFIG_TMPFS_INODE64 (Debian 12: y)
        self.seen = 0
        self.mnt_flags = 0


def parse_tmpfs_options(data: str, totalram_pages: int, thp: bool = True, flags: int = 0) -> ShmemOptions:
    """shmem_parse_options / shmem_parse_one over a comma-separated option string (what
    mount -o passes, the generic flags included as mount(8) turns them into MS_*).
    ValueError("Bad value for 'size'") and the like for what the kernel refuses (EINVAL)."""
    ctx = ShmemOptions()
    ctx.mnt_flags = flags
    for opt in (data or "").split(","):
        opt = opt.strip()
        if not opt:
            continue
        key, eq, value = opt.partition("=")
        if not eq and key in MNT_FLAG_OPTIONS:
            bit, on = MNT_FLAG_OPTIONS[key]
            ctx.mnt_flags = ctx.mnt_flags | bit if on else ctx.mnt_flags & ~bit
            if key == "strictatime":
                ctx.mnt_flags &= ~(U.MS_RELATIME | U.MS_NOATIME)
            continue
        if key == "size" and eq:
            size, rest = memparse(value)
            if rest[:1] == "%":
                size = (size << PAGE_SHIFT) * totalram_pages // 100
                rest = rest[1:]
            if rest or not value:
                raise ValueError(f"Bad value for '{key}'")
            ctx.blocks = (size + PAGE_SIZE - 1) >> PAGE_SHIFT  # DIV_ROUND_UP
            ctx.seen |= SEEN_BLOCKS
        elif key == "nr_blocks" and eq:
            ctx.blocks, rest = memparse(value)
            if rest or not value or ctx.blocks > (1 << 63) - 1:
                raise ValueError(f"Bad value for '{key}'")
            ctx.seen |= SEEN_BLOCKS
        elif key == "nr_inodes" and eq:
            ctx.inodes, rest = memparse(value)
            if rest or not value:
                raise ValueError(f"Bad value for '{key}'")
            ctx.seen |= SEEN_INODES
        elif key == "mode" and eq:
            try:
                ctx.mode = int(value, 8) & 0o7777
            except ValueError:
                raise ValueError(f"Bad value for '{key}'") from None
        elif key in ("uid", "gid") and eq:
            if not value.isdigit() or int(value) >= 1 << 32:
                raise ValueError(f"Bad value for '{key}'")
            setattr(ctx, key, int(value))
        elif key == "huge" and eq:
            if value not in SHMEM_HUGE:
                raise ValueError(f"Bad value for '{key}'")
            if value != "never" and not thp:
                raise ValueError(f"Unsupported parameter '{key}'")
            ctx.huge = value
            ctx.seen |= SEEN_HUGE
        elif key in ("inode32", "inode64") and not eq:
            ctx.full_inums = key == "inode64"
            ctx.seen |= SEEN_INUMS
        else:
            raise ValueError(f"Unknown parameter '{key}'")
    return ctx


class ShmemSbInfo:
    """struct shmem_sb_info of one tmpfs mount. Blocks and inodes in pages and inodes;
    0 max means unlimited (then used_blocks is not kept, as Linux keeps no count)."""

    __slots__ = ("max_blocks", "used_blocks", "max_inodes", "free_inodes", "huge", "mode",
                 "uid", "gid", "full_inums", "dev", "kernel")

    def __init__(self, kernel, ctx: ShmemOptions, dev: tuple[int, int]) -> None:
        self.kernel = kernel
        self.max_blocks = ctx.blocks
        self.used_blocks = 0  # sbinfo->used_blocks (percpu_counter), pages
        self.max_inodes = ctx.inodes
        self.free_inodes = ctx.inodes
        self.huge = ctx.huge  # SHMEM_SB(sb)->huge: shmem_is_huge reads it
        self.mode = ctx.mode
        self.uid = ctx.uid
        self.gid = ctx.gid
        self.full_inums = ctx.full_inums
        self.dev = dev  # the anonymous block device of the super block (st_dev, maps)

    def reserve_inode(self) -> bool:
        """shmem_reserve_inode: False (ENOSPC) when nr_inodes are all taken."""
        if self.max_inodes:
            if not self.free_inodes:
                return False
            self.free_inodes -= 1
        return True

    def free_inode(self) -> None:
        """shmem_free_inode."""
        if self.max_inodes:
            self.free_inodes += 1

    def acct_block(self, pages: int) -> bool:
        """shmem_inode_acct_block for a VM_NORESERVE (tmpfs) inode: the pages charged to
        Committed_AS (shmem_acct_block) and, under a size limit, to used_blocks; False
        (ENOSPC) if either refuses, nothing charged then."""
        k = self.kernel
        if not k.vm_enough_memory(pages):
            return False
        if self.max_blocks:
            if self.used_blocks > self.max_blocks - pages:  # percpu_counter_compare > 0
                k.vm_unacct_memory(pages)
                return False
            self.used_blocks += pages
        return True

    def unacct_blocks(self, pages: int) -> None:
        """shmem_inode_unacct_blocks."""
        if self.max_blocks:
            self.used_blocks -= pages
        self.kernel.vm_unacct_memory(pages)

    def charge(self, pages: int) -> None:
        """Blocks taken back without a check (the pages a collapse copies were counted
        a moment before)."""
        if self.max_blocks:
            self.used_blocks += pages
        self.kernel.committed_as += pages


class Mount:
    """struct mount of a tmpfs: its super block, where it is and its MNT_* flags."""

    __slots__ = ("source", "target", "fstype", "sb", "flags", "hidden")

    def __init__(self, source: str, target: str, fstype: str, sb: ShmemSbInfo, flags: int) -> None:
        self.source = source
        self.target = target
        self.fstype = fstype
        self.sb = sb
        self.flags = flags
        self.hidden: dict = {}  # files of the disk under the mount point, until umount

    def covers(self, path: str) -> bool:
        t = self.target
        return path == t or path.startswith(t + "/") or t == "/"


def _norm(path: str) -> str:
    if not path.startswith("/"):
        raise ValueError(path)
    parts = [p for p in path.split("/") if p and p != "."]
    return "/" + "/".join(parts)


class MountTable:
    """The guest's tmpfs mounts (one mount namespace), by mount point."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.mounts: dict[str, Mount] = {}
        # /proc/mounts in mount order: the tmpfs Mounts and the lines of the other file
        # systems the boot mounts (add_line: the cgroup hierarchy, cgroup.py)
        self.order: list = []
        self._next_minor = 0x19  # anonymous devices of tmpfs super blocks (get_anon_bdev)

    # -- lookup ---------------------------------------------------------------------------
    def lookup(self, path: str) -> Mount | None:
        """The mount holding `path` (the longest mount point above it), or None."""
        if not self.mounts:
            return None
        best = None
        for m in self.mounts.values():
            if m.covers(path) and (best is None or len(m.target) > len(best.target)):
                best = m
        return best

    def sb_of(self, path: str) -> ShmemSbInfo | None:
        m = self.lookup(path)
        return None if m is None else m.sb

    # -- defaults (shmem_fill_super for a user mount) --------------------------------------
    def default_max_blocks(self) -> int:
        return self.kernel.page_alloc.totalram_pages() // 2

    def default_max_inodes(self) -> int:
        pa = self.kernel.page_alloc
        n = pa.totalram_pages()
        return min(n - pa.totalhigh_pages(), n // 2)

    # -- mount(2), umount(2) -------------------------------------------------------------------
    def mount(self, source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> int:
        """mount(2) of a tmpfs (MS_REMOUNT: reconfigure it). OSError: ENODEV (not tmpfs),
        EINVAL (a bad option, a remount of no mount), EBUSY (a mount there already)."""
        try:
            target = _norm(target)
        except ValueError:
            raise U.err(U.EINVAL, f"mount {target}") from None
        k = self.kernel
        thp = getattr(k, "thp", None) is not None
        if flags & U.MS_REMOUNT:
            m = self.mounts.get(target)
            if m is None:
                raise U.err(U.EINVAL, f"mount {target}")
            try:
                ctx = parse_tmpfs_options(data, k.page_alloc.totalram_pages(), thp, flags & ~U.MS_REMOUNT)
                self._reconfigure(m.sb, ctx)
            except ValueError as exc:
                raise U.err(U.EINVAL, f"mount {target} ({exc})") from None
            m.flags = ctx.mnt_flags | (0 if ctx.mnt_flags & (U.MS_NOATIME | U.MS_STRICTATIME)
                                       else U.MS_RELATIME)
            self._update_thp()
            return 0
        if fstype != "tmpfs":
            raise U.err(U.ENODEV, f"mount {fstype}")
        if target in self.mounts:
            raise U.err(U.EBUSY, f"mount {target}")  # (stacked mounts are not modelled)
        try:
            ctx = parse_tmpfs_options(data, k.page_alloc.totalram_pages(), thp, flags)
        except ValueError as exc:
            raise U.err(U.EINVAL, f"mount {target} ({exc})") from None
        # shmem_fill_super: a user mount's defaults; the root directory takes an inode
        if not ctx.seen & SEEN_BLOCKS:
            ctx.blocks = self.default_max_blocks()
        if not ctx.seen & SEEN_INODES:
            ctx.inodes = self.default_max_inodes()
        sb = ShmemSbInfo(k, ctx, (0, self._next_minor))
        self._next_minor += 1
        sb.reserve_inode()  # (an nr_inodes of 0 is unlimited: nothing to reserve)
        mflags = ctx.mnt_flags
        if not mflags & (U.MS_NOATIME | U.MS_STRICTATIME):
            mflags |= U.MS_RELATIME  # path_mount: relatime unless told otherwise
        m = Mount(source, target, "tmpfs", sb, mflags & ~U.MS_STRICTATIME)
        fs = k.fs
        for path in [p for p in fs.files if m.covers(p)]:
            m.hidden[path] = fs.files.pop(path)  # hidden under the mount
        self._d_invalidate(m)  # the path walk now crosses into the mount
        self.mounts[target] = m
        self.order.append(m)
        self._update_thp()
        return 0

    def add_line(self, line: str) -> None:
        """A mount of another file system (not tmpfs: nothing under it is modelled here),
        listed in /proc/mounts as `line` (show_vfsmnt's fields, with its newline)."""
        self.order.append(line)

    @staticmethod
    def _reconfigure(sb: ShmemSbInfo, ctx: ShmemOptions) -> None:
        """shmem_reconfigure."""
        inodes = sb.max_inodes - sb.free_inodes
        if ctx.seen & SEEN_BLOCKS and ctx.blocks:
            if not sb.max_blocks:
                raise ValueError("Cannot retroactively limit size")
            if sb.used_blocks > ctx.blocks:
                raise ValueError("Too small a size for current use")
        if ctx.seen & SEEN_INODES and ctx.inodes:
            if not sb.max_inodes:
                raise ValueError("Cannot retroactively limit inodes")
            if ctx.inodes < inodes:
                raise ValueError("Too few inodes for current use")
        if ctx.seen & SEEN_HUGE:
            sb.huge = ctx.huge
        if ctx.seen & SEEN_INUMS:
            sb.full_inums = ctx.full_inums
        if ctx.seen & SEEN_BLOCKS:
            if not ctx.blocks:
                sb.used_blocks = 0  # unlimited: no count kept
            sb.max_blocks = ctx.blocks
        if ctx.seen & SEEN_INODES:
            sb.max_inodes = ctx.inodes
            sb.free_inodes = ctx.inodes - inodes

    def umount(self, target: str) -> int:
        """umount(2): EINVAL if no mount is there, EBUSY while a file of it is open or
        mapped; else its files go (their pages and swap freed) and the disk's files it
        hid come back."""
        try:
            target = _norm(target)
        except ValueError:
            raise U.err(U.EINVAL, f"umount {target}") from None
        m = self.mounts.get(target)
        if m is None:
            raise U.err(U.EINVAL, f"umount {target}")
        fs = self.kernel.fs
        mine = [p for p, ino in fs.files.items() if getattr(ino, "sb", None) is m.sb]
        if any(fs.files[p].users for p in mine):
            raise U.err(U.EBUSY, f"umount {target}")
        inodes = [fs.files[p] for p in mine]
        for p in mine:
            fs.unlink(p)
        self._d_invalidate(m)  # shrink_dcache_for_umount: the files' dentries go
        for inode in inodes:
            fs.evict_inode(inode)  # (nobody uses them: their pages, swap and inode go)
        del self.mounts[target]
        self.order.remove(m)
        fs.files.update(m.hidden)
        self._update_thp()
        return 0

    def _d_invalidate(self, m: Mount) -> None:
        """The dentry cache forgets the names below the mount point (d_invalidate at a
        mount, shrink_dcache_for_umount at umount): an unused dentry is killed (its
        inode reference dropped), one in use unhashed, to be killed at its last dput; the
        next path walk looks the name up again, on the mount or on the disk."""
        dc = getattr(self.kernel, "dcache", None)
        if dc is None:
            return
        below = [d for name, d in dc.hash.items() if name != m.target and m.covers(name)]
        for d in sorted(below, key=lambda d: -len(d.name)):  # children before parents
            if not d.hashed:
                continue
            if d.count == 0:
                dc._kill(d, None)
            else:
                d.hashed = False
                del dc.hash[d.name]

    def _update_thp(self) -> None:
        thp = getattr(self.kernel, "thp", None)
        if thp is not None:
            thp.set_user_mounts_huge(any(m.sb.huge != "never" for m in self.mounts.values()))

    # -- /proc/mounts, statfs ----------------------------------------------------------------
    def show_options(self, sb: ShmemSbInfo) -> str:
        """shmem_show_options."""
        out = ""
        if sb.max_blocks != self.default_max_blocks():
            out += f",size={sb.max_blocks << (PAGE_SHIFT - 10)}k"
        if sb.max_inodes != self.default_max_inodes():
            out += f",nr_inodes={sb.max_inodes}"
        if sb.mode != 0o777 | S_ISVTX:
            out += f",mode={sb.mode:03o}"
        if sb.uid:
            out += f",uid={sb.uid}"
        if sb.gid:
            out += f",gid={sb.gid}"
        out += ",inode64" if sb.full_inums else ",inode32"
        if sb.huge != "never":
            out += f",huge={sb.huge}"
        return out

    def proc_mounts(self) -> str:
        """/proc/mounts (show_vfsmnt) of the tmpfs mounts and the other lines, in mount
        order."""
        lines = []
        for m in self.order:
            if isinstance(m, str):
                lines.append(m)
                continue
            f = m.flags
            opts = "ro" if f & U.MS_RDONLY else "rw"
            for bit, name in ((U.MS_NOSUID, "nosuid"), (U.MS_NODEV, "nodev"), (U.MS_NOEXEC, "noexec"),
                              (U.MS_NOATIME, "noatime"), (U.MS_RELATIME, "relatime")):
                if f & bit:
                    opts += "," + name
            lines.append(f"{m.source} {m.target} {m.fstype} {opts}{self.show_options(m.sb)} 0 0\n")
        return "".join(lines)

    def statfs(self, path: str) -> dict:
        """shmem_statfs of the mount holding `path` (f_* in pages and inodes; 0 where
        unlimited). KeyError if no tmpfs holds it."""
        m = self.lookup(_norm(path))
        if m is None:
            raise KeyError(path)
        sb = m.sb
        free = sb.max_blocks - sb.used_blocks if sb.max_blocks else 0
        return {"f_bsize": PAGE_SIZE, "f_blocks": sb.max_blocks, "f_bfree": free, "f_bavail": free,
                "f_files": sb.max_inodes, "f_ffree": sb.free_inodes if sb.max_inodes else 0}


def init_mounts(kernel) -> MountTable:
    """The boot's mount table: the config's tmpfs mounts (tmpfs_mounts: "MOUNT_POINT
    OPTIONS"), /dev/shm by default as systemd mounts it (mode=1777, nosuid, nodev,
    strictatime)."""
    table = MountTable(kernel)
    kernel.mounts = table
    for spec in getattr(kernel.config, "tmpfs_mounts", None) or ():
        target, data = split_mount_spec(spec)
        table.mount("tmpfs", target, "tmpfs", 0, data)
    kernel.procfs.register("/proc/mounts", table.proc_mounts)
    return table


def split_mount_spec(spec) -> tuple[str, str]:
    """"MOUNT_POINT OPTIONS" (options optional) -> (mount point, options)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"tmpfs_mounts: {spec!r} is not \"MOUNT_POINT OPTIONS\"")
    target, _, data = spec.strip().partition(" ")
    return target, data.strip()


def check_tmpfs_mounts(mounts, thp: bool) -> None:
    """KernelConfig.tmpfs_mounts checked before boot: absolute mount points, each once,
    options mount(2) would take. ValueError naming the mount point and the option."""
    if not isinstance(mounts, list | tuple):
        raise ValueError("tmpfs_mounts: must be a list of \"MOUNT_POINT OPTIONS\" strings")
    seen = set()
    for spec in mounts:
        target, data = split_mount_spec(spec)
        if not target.startswith("/"):
            raise ValueError(f"tmpfs_mounts: mount point {target!r} is not an absolute path")
        if _norm(target) in seen:
            raise ValueError(f"tmpfs_mounts: {target} is mounted twice")
        seen.add(_norm(target))
        try:
            parse_tmpfs_options(data, 1 << 16, thp)
        except ValueError as exc:
            raise ValueError(f"tmpfs_mounts: {target}: {exc}") from None
