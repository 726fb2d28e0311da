"""mm_struct (include/linux/mm_types.h): `MMStruct`, and the slab objects behind it.

Below the system-call layer: fork.py builds MMStructs for fork and exec, task.py gives them
to tasks, and neither needs the other to do so (task -> fork -> mm_types: no import cycle).
"""

from __future__ import annotations

from . import gfp as G
from .pgtable import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, PageTable
from .vma import VMASet

SLAB_SIZES = {  # bytes per object, roughly a 6.x x86_64 build (2.6: i386 sizes)
    "6.x": {"task_struct": 9792, "mm_struct": 1344, "vm_area_struct": 200, "filp": 256,
            "files_cache": 704},
    "2.6": {"task_struct": 1328, "mm_struct": 448, "vm_area_struct": 88, "filp": 192,
            "files_cache": 256},
}
# 6.1 creates all five with SLAB_ACCOUNT (kernel/fork.c: task_struct, mm_struct,
# vm_area_struct, files_cache; fs/file_table.c: filp): their objects are charged to the
# allocating task's memcg. 2.6 has no kernel-memory accounting.
SLAB_CREATE_FLAGS = {"6.x": 0x04000000, "2.6": 0}  # slab.SLAB_ACCOUNT


# --- slab --------------------------------------------------------------------------------
def _slab_alloc(kernel, name: str):
    caches = getattr(kernel, "_as_caches", None)
    if not caches or name not in caches:
        return None
    return kernel.kmem_cache_alloc(caches[name], G.GFP_KERNEL)


def _slab_free(kernel, name: str, obj) -> None:
    caches = getattr(kernel, "_as_caches", None)
    if obj is not None and caches and name in caches:
        kernel.kmem_cache_free(caches[name], obj)


class MMStruct:
    """mm_struct. Sizes in pages unless named _bytes; addresses in bytes."""

    def __init__(self, kernel, task_size: int, owner=None) -> None:
        self.kernel = kernel
        cfg = kernel.config
        self.mm_mt = VMASet()
        self.pgtable = PageTable(kernel, cfg.arch, bool(cfg.pae))
        self.task_size = task_size
        self.start_code = self.end_code = 0
        self.start_data = self.end_data = 0
        self.start_brk = self.brk = 0
        self.start_stack = 0  # the initial stack pointer (argc)
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0  # strings
        self.mmap_base = 0
        self.legacy_mmap = False
        self.vdso = 0  # mm->context.vdso: address of the [vdso] text, 0 if none
        self.total_vm = 0
        self.locked_vm = 0
        # pages locked_vm still counts for VMAs that lost VM_LOCKED to a partial
        # MREMAP_DONTUNMAP (Linux never takes them back out until exit)
        self.locked_vm_orphaned = 0
        self.pinned_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        self.rss = [0, 0, 0, 0]  # MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES
        self.hiwater_rss = 0
        self.hiwater_vm = 0
        self.def_flags = 0  # VM_LOCKED|VM_LOCKONFAULT after mlockall(MCL_FUTURE)
        self.owner = owner
        self.exe_file = None
        self.ksm_mergeable = False  # MMF_VM_MERGEABLE: some VMA had MADV_MERGEABLE
        # MMF_DISABLE_THP (prctl PR_SET_THP_DISABLE): in MMF_INIT_MASK, so an mm made for
        # exec while the owner still holds its old one keeps it (mm_init); fork copies it
        old = getattr(owner, "mm", None)
        self.thp_disabled = old is not None and old.thp_disabled
        self.slab_obj = _slab_alloc(kernel, "mm_struct")

    @property
    def map_count(self) -> int:
        return len(self.mm_mt)

    @property
    def pgtables_bytes(self) -> int:
        return self.pgtable.bytes

    @property
    def pinned(self) -> int:
        """mm->pinned_vm (pages pinned by get_user_pages(FOLL_PIN)): VmPin."""
        return self.pinned_vm

    def max_map_count(self) -> int:
        return self.kernel.config.max_map_count

    def get_mm_rss(self) -> int:
        r = self.rss
        return r[MM_FILEPAGES] + r[MM_ANONPAGES] + r[MM_SHMEMPAGES]

    def slab_alloc(self, name: str):
        return _slab_alloc(self.kernel, name)

    def slab_free(self, name: str, obj) -> None:
        _slab_free(self.kernel, name, obj)

    def free(self) -> None:
        _slab_free(self.kernel, "mm_struct", self.slab_obj)
        self.slab_obj = None

    def find_vma(self, addr: int):
        return self.mm_mt.find_vma(addr)

    @property
    def vmas(self) -> list:
        return list(self.mm_mt.vmas)
