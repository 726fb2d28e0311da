"""A guest OS image made of a real root filesystem: `image = { rootfs = "PATH" }`.

PATH is a directory or a tar archive (a Docker/OCI layer tarball: `docker save`'s
layer.tar, an OCI blob, plain or gzip/xz/bzip2-compressed). Its regular files become the
guest's files: libraries (`*.so`, `*.so.N`) and other files, in path order, and a guest
that reads one gets its real bytes, page by page (the last page zero-padded, as the page
cache holds it). Nothing is read until a guest reads it: the tree is listed (names and
sizes) when the image is first used; a page's bytes are read from the file (an
uncompressed tar member at its offset) when a guest faults it in, and kept once per
(file, page) for every VM booting the same tree. Two VMs booting the same tree therefore
hold byte-identical page-cache pages; two versions of a tree share the pages of the files
(and the parts of files) that are byte-identical at the same offsets, as KSM would find.

A compressed tar cannot be read at an offset: a member is decompressed whole on its
first read and kept (its size in simulator memory). Whiteouts (`.wh.*`) of an OCI layer
are skipped, symbolic links and devices too; a hard link reads its target.

The image has no kernel: the guest kernel's own frames keep hvsim's kernel content only
with the synthetic images (a rootfs has no vmlinux in memory form).

`RootFS.get(path)` returns the image (cached per resolved path and modification time),
with the interface scenario.boot_image and the workloads use from `OSImage`: `name`,
`regions` (`name`, `category`, `size`, `pages`, `per_machine`), `page(region, index)`,
`reader(region)`, `total_pages`.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass, field

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE

_LIBRARY = re.compile(r"\.so(\.\d+)*$")
_CACHE: dict = {}


class RootFSError(ValueError):
    """A root filesystem that cannot be used (one line naming the path)."""


@dataclass(eq=False)
class FileRegion:
    """One regular file of the tree."""

    name: str  # the guest path ("/usr/lib/x86_64-linux-gnu/libc.so.6")
    category: str  # "library" or "file"
    size: int  # bytes
    source: object  # host path (directory) or tar member name
    pages: int = 0
    per_machine: bool = False  # a real tree's logs are what they are: shared bytes
    small_files: bool = False
    _pages: dict = field(default_factory=dict, repr=False)  # index -> bytes read so far

    def __post_init__(self) -> None:
        self.pages = -(-self.size // PAGE_SIZE)


class RootFS:
    """A root filesystem as a guest image (see the module docstring)."""

    family = "linux"
    kernel = "none"

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = f"rootfs:{path}"
        self.description = f"root filesystem {path}"
        self._tar = None
        self._members: dict = {}
        self._whole: dict = {}  # compressed tar: member name -> its bytes
        if os.path.isdir(path):
            self.kind = "directory"
            self.regions = tuple(self._list_directory(path))
        elif os.path.isfile(path):
            self.kind = "tar"
            self.regions = tuple(self._list_tar(path))
        elif not os.path.exists(path):
            raise RootFSError(f"image.rootfs: {path}: no such directory or tar archive")
        else:
            raise RootFSError(f"image.rootfs: {path}: neither a directory nor a tar archive")
        self._by_name = {r.name: r for r in self.regions}

    @staticmethod
    def get(path: str) -> RootFS:
        path = os.path.abspath(path)
        try:
            key = (path, os.stat(path).st_mtime_ns)
        except OSError:
            key = (path, None)
        image = _CACHE.get(key)
        if image is None:
            image = _CACHE[key] = RootFS(path)
        return image

    # -- listing -------------------------------------------------------------------------

    @staticmethod
    def _region(guest_path: str, size: int, source) -> FileRegion:
        base = guest_path.rsplit("/", 1)[-1]
        category = "library" if _LIBRARY.search(base) else "file"
        return FileRegion(guest_path, category, size, source)

    def _list_directory(self, root: str) -> list[FileRegion]:
        out = []
        for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
            dirnames.sort()
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if not _is_regular(st.st_mode) or st.st_size == 0:
                    continue
                rel = os.path.relpath(full, root)
                out.append(self._region("/" + rel.replace(os.sep, "/"), st.st_size, full))
        if not out:
            raise RootFSError(f"image.rootfs: {root}: no regular file in the tree")
        out.sort(key=lambda r: r.name)  # path order, as a tar listing is sorted below
        return out

    def _list_tar(self, path: str) -> list[FileRegion]:
        try:
            tar = tarfile.open(path, "r:*")
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            why = str(e).splitlines()[0].rstrip(":")
            raise RootFSError(f"image.rootfs: {path}: not a readable tar archive ({why})") from None
        self._tar = tar
        with open(path, "rb") as f:
            self._compressed = f.read(6).startswith(_COMPRESSED)
        regular = {m.name: m for m in members if m.isreg()}
        out = []
        seen = set()
        for m in members:
            name = _clean(m.name)
            base = name.rsplit("/", 1)[-1]
            if not name or base.startswith(".wh."):
                continue  # OCI whiteout: a deletion in this layer
            if m.islnk():  # a hard link reads its target
                m_data = regular.get(m.linkname)
                if m_data is None:
                    continue
            elif m.isreg():
                m_data = m
            else:
                continue
            if m_data.size == 0 or name in seen:
                continue
            seen.add(name)
            self._members[name] = m_data
            out.append(self._region("/" + name, m_data.size, name))
        if not out:
            raise RootFSError(f"image.rootfs: {path}: no regular file in the archive")
        out.sort(key=lambda r: r.name)
        return out

    # -- pages ---------------------------------------------------------------------------

    @property
    def total_pages(self) -> int:
        return sum(r.pages for r in self.regions)

    def region(self, name: str) -> FileRegion:
        r = self._by_name.get(name)
        if r is None:
            raise ValueError(f"{self.name}: no file {name!r}")
        return r

    def page(self, region, index: int) -> bytes:
        """Page `index` of a file, its real bytes (zero-padded); read once, then kept."""
        if type(region) is str:
            region = self.region(region)
        if not 0 <= index < region.pages:
            raise IndexError(f"{self.name}: {region.name} has {region.pages} pages, no page {index}")
        data = region._pages.get(index)
        if data is None:
            data = region._pages[index] = self._read(region, index)
        return data

    def reader(self, region, machine: str | None = None):
        if type(region) is str:
            region = self.region(region)
        return lambda index: self.page(region, index)

    def pages(self, category: str | None = None, cache: bool = True):
        for r in self.regions:
            if category is None or r.category == category:
                for i in range(r.pages):
                    yield r, i, (self.page(r, i) if cache else self._read(r, i))

    def _read(self, region: FileRegion, index: int) -> bytes:
        off = index * PAGE_SIZE
        n = min(PAGE_SIZE, region.size - off)
        try:
            if self.kind == "directory":
                with open(region.source, "rb") as f:
                    data = os.pread(f.fileno(), n, off)
            else:
                member = self._members[region.source]
                if self._compressed:
                    whole = self._whole.get(region.source)
                    if whole is None:
                        whole = self._whole[region.source] = self._tar.extractfile(member).read()
                    data = whole[off : off + n]
                else:
                    data = os.pread(self._tar.fileobj.fileno(), n, member.offset_data + off)
        except OSError as e:
            # the tree changed under the simulation: the guest reads zeros, as from a hole
            raise RootFSError(f"image.rootfs: {region.source}: cannot read: {e.strerror or e}") from None
        if len(data) < PAGE_SIZE:
            data = data + bytes(PAGE_SIZE - len(data))
        return ZERO_PAGE if data == ZERO_PAGE else data


_COMPRESSED = (b"\x1f\x8b", b"\xfd7zXZ", b"BZh")  # gzip, xz, bzip2


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _is_regular(mode: int) -> bool:
    import stat

    return stat.S_ISREG(mode)
