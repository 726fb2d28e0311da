"""Huge pages in shmem (mm/shmem.c, 6.1): transparent_hugepage/shmem_enabled and
shmem_is_huge for the internal mount (shared anonymous mappings, SysV shm)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.config import ConfigError, config_from_dict
from experiments.scenario import kernel_config
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel

D = "/sys/kernel/mm/transparent_hugepage"


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    return Kernel(KernelConfig(**kw))


def test_shmem_enabled_sysfs_default_never_and_its_six_modes():
    # shmem_enabled_show (6.1): SHMEM_HUGE_ALWAYS, WITHIN_SIZE, ADVISE, NEVER, DENY, FORCE,
    # the current one bracketed; shmem_huge defaults to SHMEM_HUGE_NEVER
    k = boot()
    r = k.procfs.read
    assert r(f"{D}/shmem_enabled") == "always within_size advise [never] deny force\n"
    for mode in ("always", "within_size", "advise", "deny", "force", "never"):
        k.procfs.write(f"{D}/shmem_enabled", mode + "\n")
        assert f"[{mode}]" in r(f"{D}/shmem_enabled")
        assert k.thp.shmem_enabled == mode
    with pytest.raises(ValueError, match="shmem_enabled: 'sometimes' is not valid"):
        k.procfs.write(f"{D}/shmem_enabled", "sometimes")
    assert k.thp.shmem_enabled == "never"
    assert boot(thp_shmem_enabled="within_size").procfs.read(f"{D}/shmem_enabled") == (
        "always [within_size] advise never deny force\n")


def test_shmem_enabled_from_the_config_and_a_bad_value_named():
    cfg = config_from_dict({"vm": [{"name": "a", "kernel": {"thp_shmem_enabled": "advise"}}]})
    assert kernel_config(cfg.vm[0]).thp_shmem_enabled == "advise"
    assert kernel_config(config_from_dict({"vm": [{"name": "a"}]}).vm[0]).thp_shmem_enabled == "never"
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"vm": [{"name": "a", "kernel": {"thp_shmem_enabled": "sometimes"}}]})
    msg = str(exc.value)
    assert "vm[0].kernel.thp_shmem_enabled" in msg and "\n" not in msg.strip()
    with pytest.raises(ValueError, match="thp_shmem_enabled: must be one of"):
        KernelConfig(thp_shmem_enabled="yes")


# --- shmem_is_huge, shmem_alloc_hugefolio, do_set_pmd -------------------------------------------
MiB = 1 << 20
P = 4096
BASE = 0x40000000  # 2 MiB-aligned


def meminfo(k) -> dict:
    return {ln.split(":")[0]: int(ln.split()[1]) for ln in k.procfs.read("/proc/meminfo").splitlines()}


def thp_events(k) -> dict:
    return {n: v for n, v in k.vmstat.items() if n.startswith("thp_") and v}


def check(k):
    from guestkernel.memory import validate_pages
    from guestkernel.page_alloc import validate_buddy
    from guestkernel.vma import validate_mm

    for t in k.tasks.values():
        if t.mm is not None:
            validate_mm(t.mm)
    validate_pages(k)
    validate_buddy(k.page_alloc)


def segment(k, size, addr=BASE, advise=False):
    from guestkernel import uapi as U

    t = k.spawn("t")
    sid = t.shmget(U.IPC_PRIVATE, size, U.IPC_CREAT | 0o600)
    a = t.shmat(sid, addr)
    assert a == addr
    if advise:
        t.madvise(a, size, U.MADV_HUGEPAGE)
    return t, sid


def touch(t, size, write=True, addr=BASE):
    for off in range(0, size, P):
        t.access(addr + off, write)


def test_always_a_4mib_segment_touched_whole_is_two_pmd_mapped_huge_folios():
    # shmem_is_huge (always) -> shmem_alloc_hugefolio at each 2 MiB-aligned index:
    # thp_file_alloc 2; do_set_pmd maps each with one PMD (thp_file_mapped 2):
    # ShmemHugePages and ShmemPmdMapped 4096 kB, Shmem 4096 kB; two faults in all
    from guestkernel.pgtable import _PAGE_PSE

    k = boot(thp_shmem_enabled="always")
    t, sid = segment(k, 4 * MiB)
    before = k.vmstat["pgfault"]
    shmem0 = meminfo(k)["Shmem"]
    touch(t, 4 * MiB)
    assert k.vmstat["pgfault"] - before == 2
    m = meminfo(k)
    assert m["ShmemHugePages"] == 4096 and m["ShmemPmdMapped"] == 4096
    assert m["Shmem"] - shmem0 == 4096
    assert thp_events(k) == {"thp_file_alloc": 2, "thp_file_mapped": 2}
    assert k.vmstat["nr_shmem_hugepages"] == 2 and k.vmstat["nr_shmem_pmdmapped"] == 2
    inode = t.mm.mm_mt.lookup(BASE).vm_file.inode
    ptes = t.mm.pgtable.ptes
    for half in (0, 1):
        hvpn = (BASE >> 12) + half * 512
        base = ptes[hvpn] >> 12
        assert base % 512 == 0
        for i in range(512):  # every index resolves to its subpage of the folio
            assert ptes[hvpn + i] & _PAGE_PSE and ptes[hvpn + i] >> 12 == base + i
            assert inode.mapping.pages[half * 512 + i].pfn == base + i
    # the folios are zeroed, the writes land in them
    t.access(BASE + 5 * P, True, b"hello")
    assert t.peek(BASE + 5 * P, 5) == b"hello" and t.peek(BASE + 6 * P, 5) == bytes(5)
    check(k)
    # shmdt zaps both PMDs, the page cache keeps the folios; IPC_RMID frees them whole
    from guestkernel import uapi as U

    t.shmdt(BASE)
    m = meminfo(k)
    assert m["ShmemPmdMapped"] == 0 and m["ShmemHugePages"] == 4096
    t.shmctl(sid, U.IPC_RMID)
    m = meminfo(k)
    assert m["ShmemHugePages"] == 0 and m["Shmem"] == shmem0
    assert "thp_split_page" not in thp_events(k) and "thp_split_pmd" not in thp_events(k)
    check(k)


def test_within_size_3mib_segment_one_huge_folio_and_256_small_pages():
    # within_size: round_up(index + 1, HPAGE_PMD_NR) <= i_size in pages: indices 0-511
    # (the whole 2 MiB inside 3 MiB) get a folio, 512-767 small pages
    k = boot(thp_shmem_enabled="within_size")
    t, _ = segment(k, 3 * MiB)
    shmem0 = meminfo(k)["Shmem"]
    touch(t, 3 * MiB)
    m = meminfo(k)
    assert m["ShmemHugePages"] == 2048 and m["ShmemPmdMapped"] == 2048
    assert m["Shmem"] - shmem0 == 3072
    assert thp_events(k) == {"thp_file_alloc": 1, "thp_file_mapped": 1}
    check(k)


def test_always_3mib_segment_second_folio_reaches_beyond_eof():
    # always: the fault at index 512 gets a whole folio (indices 512-1023) though i_size
    # ends at 768: Shmem counts 1024 pages
    k = boot(thp_shmem_enabled="always")
    t, _ = segment(k, 3 * MiB)
    shmem0 = meminfo(k)["Shmem"]
    touch(t, 3 * MiB)
    m = meminfo(k)
    assert m["ShmemHugePages"] == 4096 and m["Shmem"] - shmem0 == 4096
    check(k)


def test_advise_needs_madv_hugepage_never_and_deny_give_none_force_overrides():
    for mode, advise, want in (("advise", False, 0), ("advise", True, 2), ("never", True, 0),
                               ("deny", True, 0), ("force", False, 2), ("within_size", False, 2)):
        k = boot(thp_shmem_enabled=mode)
        t, _ = segment(k, 4 * MiB, advise=advise)
        touch(t, 4 * MiB)
        assert k.vmstat["thp_file_alloc"] == want, (mode, advise)
        assert meminfo(k)["ShmemHugePages"] == want * 2048, (mode, advise)
        check(k)
    # deny after always: the mount's huge stays "always" but shmem_is_huge says no
    k = boot(thp_shmem_enabled="always")
    k.procfs.write(f"{D}/shmem_enabled", "deny")
    t, _ = segment(k, 4 * MiB)
    touch(t, 4 * MiB)
    assert k.vmstat["thp_file_alloc"] == 0
    k.procfs.write(f"{D}/shmem_enabled", "always")
    assert k.thp.shmem_mount_huge == "always"


def test_unaligned_attach_maps_the_folios_by_ptes():
    # do_set_pmd needs the aligned 2 MiB inside the VMA at the same alignment as the file
    # offset: attached one page off, the folios are allocated but mapped 4 KiB at a time
    from guestkernel.pgtable import _PAGE_PSE

    k = boot(thp_shmem_enabled="always")
    t, _ = segment(k, 4 * MiB, addr=BASE + P)
    touch(t, 4 * MiB, addr=BASE + P)
    m = meminfo(k)
    assert m["ShmemHugePages"] == 4096 and m["ShmemPmdMapped"] == 0
    assert thp_events(k) == {"thp_file_alloc": 2}
    assert not any(pte & _PAGE_PSE for pte in t.mm.pgtable.ptes.values())
    check(k)


def test_no_order9_block_falls_back_to_small_pages():
    from guestkernel import gfp as G

    k = boot(memory="128MiB", thp_shmem_enabled="always", thp_defrag="never")
    held = []
    while True:
        page = k.alloc_pages(G.GFP_KERNEL | G.__GFP_NORETRY | G.__GFP_NOWARN, 9)
        if page is None:
            break
        held.append(page)
    t, _ = segment(k, 2 * MiB)
    t.access(BASE, True)
    assert thp_events(k) == {"thp_file_fallback": 1}
    assert meminfo(k)["ShmemHugePages"] == 0
    check(k)


# --- splitting (split_huge_page of a shmem THP) ---------------------------------------------------
def memfd_map(k, size):
    from guestkernel import uapi as U

    t = k.spawn("t")
    fd = t.memfd_create("huge")
    t.ftruncate(fd, size)
    a = t.mmap(BASE, size, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED | U.MAP_FIXED, fd, 0)
    assert a == BASE
    return t, fd


def test_partial_truncate_splits_the_cut_folio_a_whole_one_goes_unsplit():
    # ftruncate to 3 MiB (shmem_setattr -> shmem_truncate_range -> shmem_undo_range):
    # the folio at 512-1023 is cut at 768: split_huge_page (thp_split_page 1), the
    # subpages from 768 on leave the cache; the folio at 0-511 stays whole and mapped
    k = boot(thp_shmem_enabled="always")
    t, fd = memfd_map(k, 4 * MiB)
    shmem0 = meminfo(k)["Shmem"]
    for off in range(0, 4 * MiB, P):
        t.access(BASE + off, True, (off // P + 1).to_bytes(4, "little"))
    assert meminfo(k)["ShmemHugePages"] == 4096
    t.ftruncate(fd, 3 * MiB)
    ev = thp_events(k)
    assert ev["thp_split_page"] == 1 and ev["thp_split_pmd"] == 1
    m = meminfo(k)
    assert m["ShmemHugePages"] == 2048 and m["ShmemPmdMapped"] == 2048
    assert m["Shmem"] - shmem0 == 3072
    for off in (0, 511 * P, 512 * P, 767 * P):  # the data of what is left is kept
        t.access(BASE + off, False)
        assert t.peek(BASE + off, 4) == (off // P + 1).to_bytes(4, "little")
    check(k)
    # truncating to 0 frees the remaining folio whole: no second split
    t.munmap(BASE, 4 * MiB)
    t.ftruncate(fd, 0)
    assert thp_events(k)["thp_split_page"] == 1
    assert meminfo(k)["ShmemHugePages"] == 0 and meminfo(k)["Shmem"] == shmem0
    check(k)


def test_madv_remove_of_one_page_splits_of_a_whole_2mib_does_not():
    from guestkernel import uapi as U

    k = boot(thp_shmem_enabled="always")
    t, _ = segment(k, 4 * MiB)
    shmem0 = meminfo(k)["Shmem"]
    touch(t, 4 * MiB)
    t.madvise(BASE + 3 * P, P, U.MADV_REMOVE)  # a hole in the first folio: split
    ev = thp_events(k)
    assert ev["thp_split_page"] == 1
    m = meminfo(k)
    assert m["ShmemHugePages"] == 2048 and m["Shmem"] - shmem0 == 4092
    t.madvise(BASE + 2 * MiB, 2 * MiB, U.MADV_REMOVE)  # the whole second folio: freed whole
    assert thp_events(k)["thp_split_page"] == 1
    m = meminfo(k)
    assert m["ShmemHugePages"] == 0 and m["ShmemPmdMapped"] == 0 and m["Shmem"] - shmem0 == 2044
    t.access(BASE + 3 * P, False)
    assert t.peek(BASE + 3 * P, 1) == b"\0"
    check(k)


def test_swap_out_splits_the_folio_before_writing_4kib_entries():
    # shmem_writepage: a huge folio is split (thp_split_page) and its subpages written
    # 4 KiB each; the data survives swap-out and swap-in; Shmem + swapped = the segment
    from guestkernel import uapi as U
    from guestkernel.pgtable import MM_SWAPENTS
    from guestkernel.swap import validate_swap
    from guestkernel.vmscan import init_reclaim

    k = Kernel(memory=50 * MiB, swap="256MiB", watermark_boost_factor=0, thp_shmem_enabled="always")
    init_reclaim(k)
    t = k.init_task
    n = 48 * MiB // P
    sid = t.shmget(U.IPC_PRIVATE, 48 * MiB, U.IPC_CREAT | 0o600)
    a = t.shmat(sid, BASE)
    for off in range(0, 48 * MiB, P):
        t.access(a + off, True, (off + 1).to_bytes(8, "little"))
    vm = k.vmstat
    swapped = k.swap.si.inuse_pages - t.mm.rss[MM_SWAPENTS]
    assert swapped > 0 and vm["thp_file_alloc"] > 0
    assert vm["thp_split_page"] >= 1
    assert vm["nr_shmem"] + swapped == n
    for folio in k.thp.shmem_folios.values():  # no folio holds a swapped index
        assert not any(i in (folio.mapping.swapped or {}) for i in range(folio.index, folio.index + 512))
    for off in range(0, 48 * MiB, P):
        t.access(a + off, False)
        assert t.peek(a + off, 8) == (off + 1).to_bytes(8, "little")
    check(k)
    t.shmdt(a)
    t.shmctl(sid, U.IPC_RMID)
    assert vm["nr_shmem"] == 0 and vm["nr_shmem_hugepages"] == 0
    k.reclaim.validate()
    validate_swap(k.swap)


def test_shmem_get_unmapped_area_aligns_when_the_mount_may_be_huge():
    # shmem_get_unmapped_area: a segment of >= 2 MiB is placed 2 MiB-aligned (its offset
    # 0) when the internal mount's huge is not never, and then PMD-mapped whole; with
    # never (or deny) the address is the plain search's
    from guestkernel import uapi as U

    def attach(mode, size):
        k = boot(thp_shmem_enabled=mode)
        t = k.spawn("t")
        sid = t.shmget(U.IPC_PRIVATE, size, U.IPC_CREAT | 0o600)
        a = t.shmat(sid)
        b = t.mmap(0, size, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED | U.MAP_ANONYMOUS)
        return k, t, a, b

    _, _, a_never, b_never = attach("never", 3 * MiB)
    assert a_never % (2 * MiB) and b_never % (2 * MiB)  # (this layout's plain addresses)
    _, _, a_deny, b_deny = attach("deny", 3 * MiB)
    assert (a_deny, b_deny) == (a_never, b_never)
    k, t, a, b = attach("always", 3 * MiB)
    assert a % (2 * MiB) == 0 and b % (2 * MiB) == 0
    for off in range(0, 3 * MiB, P):
        t.access(a + off, True)
        t.access(b + off, True)
    # each: folios at 0-511 (PMD-mapped) and 512-1023 (the VMA ends at 3 MiB: PTEs)
    m = meminfo(k)
    assert m["ShmemPmdMapped"] == 2 * 2048 and m["ShmemHugePages"] == 2 * 4096
    check(k)
    # under 2 MiB: no alignment
    _, _, small, _ = attach("always", 2 * MiB - P)
    _, _, small_never, _ = attach("never", 2 * MiB - P)
    assert small == small_never


def test_a_file_pmd_deposits_no_page_table_on_x86():
    # do_set_pmd: arch_needs_pgtable_deposit() is false on x86, so a shmem PMD mapping
    # costs no PTE table (its split clears the PMD); 4 KiB mappings of the same 4 MiB
    # need two PTE tables
    from guestkernel import uapi as U

    def tables(mode):
        k = boot(thp_shmem_enabled=mode)
        t, _ = segment(k, 4 * MiB)
        # the PMD table above the segment exists already (a page mapped 2 MiB later)
        t.mmap(BASE + 4 * MiB, P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
        t.access(BASE + 4 * MiB, True)
        before = k.vmstat["nr_page_table_pages"], t.mm.pgtable.bytes
        touch(t, 4 * MiB)
        after = k.vmstat["nr_page_table_pages"], t.mm.pgtable.bytes
        check(k)
        t.shmdt(BASE)
        check(k)
        return after[0] - before[0], after[1] - before[1]

    assert tables("always") == (0, 0)
    assert tables("never") == (2, 2 * P)


def test_smaps_shows_shmem_pmd_mapped():
    # smaps_pmd_entry: a PMD-mapped swap-backed (shmem) folio counts in ShmemPmdMapped,
    # not AnonHugePages; smaps_rollup sums it
    k = boot(thp_shmem_enabled="within_size")
    t, _ = segment(k, 3 * MiB)
    touch(t, 3 * MiB)

    def field(path, name):
        return sum(int(ln.split()[1]) for ln in k.procfs.read(path).splitlines() if ln.startswith(name + ":"))

    assert field(f"/proc/{t.pid}/smaps", "ShmemPmdMapped") == 2048
    assert field(f"/proc/{t.pid}/smaps", "AnonHugePages") == 0
    assert field(f"/proc/{t.pid}/smaps_rollup", "ShmemPmdMapped") == 2048


def test_private_mapping_read_maps_the_folio_by_a_read_only_pmd_a_write_copies_4kib():
    # do_read_fault on a MAP_PRIVATE shmem mapping: do_set_pmd maps the folio read-only
    # (thp_file_mapped; ShmemPmdMapped counts the folio once however many PMDs map it);
    # a write splits the file PMD (wp_huge_pmd: cleared, thp_split_pmd) and the retried
    # fault copies 4 KiB (do_cow_fault), the shmem folio unchanged
    from guestkernel import uapi as U
    from guestkernel.pgtable import _PAGE_PSE, _PAGE_RW

    k = boot(thp_shmem_enabled="always")
    t, fd = memfd_map(k, 2 * MiB)
    for off in range(0, 2 * MiB, P):
        t.access(BASE + off, True, b"S")
    priv = BASE + 4 * MiB
    assert t.mmap(priv, 2 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_FIXED, fd, 0) == priv
    t.access(priv + 7 * P, False)
    pte = t.mm.pgtable.ptes[priv >> 12]
    assert pte & _PAGE_PSE and not pte & _PAGE_RW
    assert thp_events(k) == {"thp_file_alloc": 1, "thp_file_mapped": 2}
    assert meminfo(k)["ShmemPmdMapped"] == 2048
    t.access(priv + 7 * P, True, b"C")
    assert thp_events(k)["thp_split_pmd"] == 1 and "thp_split_page" not in thp_events(k)
    assert t.peek(priv + 7 * P, 1) == b"C" and t.peek(BASE + 7 * P, 1) == b"S"
    t.access(priv + 8 * P, False)
    assert t.peek(priv + 8 * P, 1) == b"S"
    assert meminfo(k)["ShmemPmdMapped"] == 2048 and meminfo(k)["ShmemHugePages"] == 2048
    check(k)


def test_unused_huge_shrink_splits_the_folio_past_eof_and_frees_its_tail():
    # shmem_get_folio_gfp lists the inode when DIV_ROUND_UP(i_size, PAGE_SIZE) <
    # folio_next_index - 1 (3 MiB: 768 < 1023); the super block shrinker's
    # shmem_unused_huge_count is the list's length and its scan splits the folio at
    # EOF (thp_split_page), dropping the 256 pages past 3 MiB
    from guestkernel import gfp as G
    from guestkernel import uapi as U
    from guestkernel.shrinker import SHRINK_STOP, ShrinkControl

    k = boot(thp_shmem_enabled="always")
    sh = next(s for s in k.shrinkers.shrinkers if s.name == "shmem-huge")
    sc = ShrinkControl(G.GFP_KERNEL)
    t, _ = segment(k, 3 * MiB)
    shmem0 = meminfo(k)["Shmem"]
    touch(t, 3 * MiB)
    assert meminfo(k)["Shmem"] - shmem0 == 4096
    assert sh.count_objects(sc) == 1
    sc.nr_to_scan = 128
    assert sh.scan_objects(sc) == 1
    assert thp_events(k)["thp_split_page"] == 1
    m = meminfo(k)
    assert m["Shmem"] - shmem0 == 3072 and m["ShmemHugePages"] == 2048 and m["ShmemPmdMapped"] == 2048
    assert sh.count_objects(sc) == 0 and sh.scan_objects(sc) == SHRINK_STOP
    check(k)
    # a whole 4 MiB segment, or within_size, lists nothing; a removed segment leaves
    t4, _ = segment(k, 4 * MiB, addr=BASE + 8 * MiB)
    touch(t4, 4 * MiB, addr=BASE + 8 * MiB)
    assert sh.count_objects(sc) == 0
    k2 = boot(thp_shmem_enabled="within_size")
    t2, _ = segment(k2, 3 * MiB)
    touch(t2, 3 * MiB)
    assert next(s for s in k2.shrinkers.shrinkers if s.name == "shmem-huge").count_objects(sc) == 0
    t3, sid3 = segment(k, 3 * MiB, addr=BASE + 16 * MiB)
    touch(t3, 3 * MiB, addr=BASE + 16 * MiB)
    assert sh.count_objects(sc) == 1
    t3.shmdt(BASE + 16 * MiB)
    t3.shmctl(sid3, U.IPC_RMID)  # shmem_evict_inode takes it off the list
    assert sh.count_objects(sc) == 0
    check(k)


def test_mremap_keeps_an_aligned_file_pmd_and_clears_an_unaligned_one():
    # move_page_tables: a PMD moving to a 2 MiB-aligned place moves whole (move_huge_pmd);
    # otherwise it is split (a file PMD: cleared, thp_split_pmd) and the pages refault by
    # PTEs, the folios staying whole in the page cache
    from guestkernel import uapi as U
    from guestkernel.pgtable import _PAGE_PSE

    for dest, pse, splits, pmd_kb in ((BASE + 8 * MiB, 1024, 0, 4096), (BASE + 16 * MiB + P, 0, 2, 0)):
        k = boot(thp_shmem_enabled="always")
        t, _ = memfd_map(k, 4 * MiB)
        for off in range(0, 4 * MiB, P):
            t.access(BASE + off, True, off.to_bytes(4, "little"))
        b = t.mremap(BASE, 4 * MiB, 4 * MiB, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, dest)
        assert b == dest
        assert sum(1 for v in t.mm.pgtable.ptes.values() if v & _PAGE_PSE) == pse
        assert k.vmstat["thp_split_pmd"] == splits and k.vmstat["thp_split_page"] == 0
        m = meminfo(k)
        assert m["ShmemPmdMapped"] == pmd_kb and m["ShmemHugePages"] == 4096
        for off in range(0, 4 * MiB, P):
            t.access(b + off, False)
            assert t.peek(b + off, 4) == off.to_bytes(4, "little")
        check(k)


OPS = ("write", "read", "pageout", "cold", "remove", "mprotect", "remap", "fork", "truncate",
       "dontneed", "private", "shrink", "smallwrite", "collapse", "reclaim")


@given(mode=st.sampled_from(["always", "within_size", "advise", "force"]),
       size_mib=st.sampled_from([3, 4, 6]), advise=st.booleans(),
       ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1535),
                              st.sampled_from([1, 16, 512, 1024]), st.integers(1, 1 << 30)),
                    min_size=1, max_size=25))
@settings(max_examples=30, deadline=None)
def test_random_shmem_thp_operations_keep_the_invariants_and_the_data(mode, size_mib, advise, ops):
    # every page-table, page-count, buddy and LRU invariant holds after each step, and
    # every byte written reads back (zeros after a hole or a truncate) — through huge
    # folios, their splits, PMD zaps and swap, khugepaged's collapses (small pages written
    # with shmem_enabled never, then collapsed) and reclaim of whole folios
    from guestkernel import gfp as G
    from guestkernel import uapi as U
    from guestkernel.shrinker import ShrinkControl
    from guestkernel.vmscan import init_reclaim

    k = Kernel(KernelConfig(memory="64MiB", swap="128MiB", thp_shmem_enabled=mode))
    init_reclaim(k)
    size = size_mib * MiB
    t, fd = memfd_map(k, size)
    RW = U.PROT_READ | U.PROT_WRITE
    if advise:
        t.madvise(BASE, size, U.MADV_HUGEPAGE)
    model: dict[int, bytes] = {}
    for op, first, n, val in ops:
        first %= size // P
        n = min(n, size // P - first)
        a = BASE + first * P
        if op in ("write", "smallwrite"):
            if op == "smallwrite":
                k.procfs.write(f"{D}/shmem_enabled", "never")
            for i in range(n):
                v = (val + i).to_bytes(4, "little")
                t.access(a + i * P, True, v)
                model[first + i] = v
            if op == "smallwrite":
                k.procfs.write(f"{D}/shmem_enabled", mode)
        elif op == "collapse":
            k.procfs.write(f"{D}/khugepaged/max_ptes_none", str(val % 512))
            k.procfs.write(f"{D}/khugepaged/max_ptes_swap", str(val % 64))
            k.khugepaged.enter(t.mm)
            k.khugepaged.do_scan()
        elif op == "reclaim":
            from guestkernel.vmscan import LRU_ACTIVE_ANON, LRU_INACTIVE_ANON, ScanControl

            lv = k.reclaim.lruvecs[0]
            k.reclaim.shrink_active_list(n, lv, ScanControl(n, G.GFP_KERNEL, False, 1, True), LRU_ACTIVE_ANON)
            k.reclaim.shrink_inactive_list(n, lv, ScanControl(n, G.GFP_KERNEL, False, 1, True),
                                           LRU_INACTIVE_ANON)
            k.reclaim.complete_io()
        elif op == "read":
            for i in range(n):
                t.access(a + i * P, False)
        elif op in ("pageout", "cold", "dontneed"):
            t.madvise(a, n * P, {"pageout": U.MADV_PAGEOUT, "cold": U.MADV_COLD,
                                 "dontneed": U.MADV_DONTNEED}[op])
        elif op == "remove":
            t.madvise(a, n * P, U.MADV_REMOVE)
            for i in range(first, first + n):
                model.pop(i, None)
        elif op == "mprotect":
            t.mprotect(a, n * P, U.PROT_READ)
            t.mprotect(a, n * P, RW)
        elif op == "remap":
            t.munmap(a, n * P)
            t.mmap(a, n * P, RW, U.MAP_SHARED | U.MAP_FIXED, fd, first * P)
        elif op == "fork":
            c = k.tasks[t.fork()]
            c.access(a, val & 1 == 1)
            c.exit(0)
        elif op == "truncate":
            new = size - (val % (size // 2))
            t.ftruncate(fd, new)
            for i in [i for i in model if i * P + 4 > new]:
                del model[i]
            t.ftruncate(fd, size)
        elif op == "private":
            pa = BASE + 64 * MiB
            t.mmap(pa, size, RW, U.MAP_PRIVATE | U.MAP_FIXED, fd, 0)
            for i in range(n):
                t.access(pa + (first + i) * P, (val >> i) & 1 == 1)
            t.munmap(pa, size)
        else:
            sh = next(s for s in k.shrinkers.shrinkers if s.name == "shmem-huge")
            sc = ShrinkControl(G.GFP_KERNEL)
            sc.nr_to_scan = 128
            sh.scan_objects(sc)
        check(k)
        k.reclaim.validate()
    for i, v in model.items():
        t.access(BASE + i * P, False)
        assert t.peek(BASE + i * P, 4) == v, i


def test_write_syscall_allocates_huge_folios_by_shmem_is_huge_without_a_vma():
    # shmem_write_begin -> shmem_get_folio(SGP_WRITE) -> shmem_is_huge(NULL, inode,
    # index): always takes huge folios; within_size only inside the i_size the write
    # starts with (a fresh memfd has 0: none; after ftruncate to 4 MiB: two); advise none
    # (no VMA to carry VM_HUGEPAGE). A later shared mmap maps them by PMDs.
    from guestkernel import uapi as U

    def write4(mode, truncate_first):
        k = boot(thp_shmem_enabled=mode)
        t = k.spawn("t")
        src = t.mmap(0, 4 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
        t.access(src + 5 * P, True, b"data")
        fd = t.memfd_create("w")
        if truncate_first:
            t.ftruncate(fd, 4 * MiB)
        assert t.write(fd, src, 4 * MiB) == 4 * MiB
        return k, t, fd

    for mode, trunc, want in (("always", False, 2), ("within_size", False, 0), ("within_size", True, 2),
                              ("advise", True, 0), ("never", True, 0)):
        k, t, fd = write4(mode, trunc)
        assert k.vmstat["thp_file_alloc"] == want, (mode, trunc)
        assert meminfo(k)["ShmemHugePages"] == want * 2048 and meminfo(k)["ShmemPmdMapped"] == 0
        check(k)
    k, t, fd = write4("always", False)
    a = t.mmap(BASE, 4 * MiB, U.PROT_READ, U.MAP_SHARED | U.MAP_FIXED, fd, 0)
    t.access(a + 5 * P, False)
    t.access(a + 2 * MiB, False)
    assert t.peek(a + 5 * P, 4) == b"data" and t.peek(a + 6 * P, 4) == bytes(4)
    assert meminfo(k)["ShmemPmdMapped"] == 4096 and k.vmstat["thp_file_mapped"] == 2
    check(k)
