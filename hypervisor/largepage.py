"""Host large pages: guest memory backed by 2 MiB machine pages (ESXi large pages, KVM
host THP), and breaking them so that page sharing can proceed.

Overview
--------
A VM's guest frames are grouped in 2 MiB regions of 512 (`p2m.large[pfn >> 9]`):

    LP_NONE    0  never backed by a large page (small pages, or nothing yet)
    LP_BACKED  1  backed by a live large page
    LP_BROKEN  2  was backed by a large page, now broken into small pages

Backing. A large page is contiguous machine memory: one wholly free aligned 2 MiB region
of the host's RegionMemory (machine.py), subpage i of the guest region in frame base + i
(`vm.lp_base[region]`). The first touch of a frame whose region is untouched (all 512
frames P2M_NONE) backs the whole region with one when a region is wholly free and the
host has room for it: the 512 frames are taken at once (`RegionMemory.alloc_region`), so
a large page holds its whole 2 MiB from the first touch, touched or not; the touched
frame costs one host fault of `fault_cost` (EPT violation and zeroing 2 MiB) instead of
the small page's. Later first touches of frames of the region take their frame
(`RegionMemory.take`; `vm.lp_res[region]` frames left untouched) and cost nothing beneath
the guest: the EPT already maps them. Room: ESX backs with a large page whenever a 2 MB
contiguous region is free (KB 1021095) and, an assumption of this model, while the
host is in the state where it keeps them (free memory >= 400 % of minFree, states.py,
after the 512 frames) so that its breaking job is not undone at once; a KVM host's THP
fault succeeds while 512 frames leave minFree free (QEMU marks guest RAM MADV_HUGEPAGE,
so the host's THP `madvise` mode suffices). Otherwise the frame gets a small page
(`thp_fault_fallback`; `machine.region_alloc_failed` counts the refusals for want of a
wholly free region when free frames were enough: fragmentation), and so does every frame
of a region already partly touched or once split (a PTE table maps it; only KVM's
khugepaged collapses it back).

Invariants: a live region holds only P2M_NONE and P2M_PRIVATE frames (a release, an
eviction, a merge splits it first), its private frames sit at lp_base + offset, its
P2M_NONE frames are the region's OWNER_LP frames and `vm.lp_res[r]` counts them;
`machine.reserved` is the sum of `lp_res` over the host's VMs.

Sharing (sharing.py). ESX: "guest memory backed by 2 MB large pages cannot be shared
(hashes are precomputed)": the scanner hashes a subpage of a live large page and keeps
its checksum (an rmap item) but neither merges nor inserts it; right after a break the
next visit finds the checksum unchanged and the page merges at once. KVM: ksmd does not
know about host THPs; it treats a subpage like any page and, when an identical page
exists (stable tree, or the unstable tree on the second visit), try_to_merge_one_page
splits the THP first (split_huge_page; measured on this machine, tests/data/ksm_thp:
the split comes with the merge, on the second full scan). Linux 6.12+ splits an
anonymous THP mapping its zero-filled subpages to the shared zero page
(RMP_USE_SHARED_ZEROPAGE): those frames are freed and the guest frames read as zeros again
(P2M_NONE here: no KSM counter moves, as measured).

Breaking. Every split (`split`) marks the region LP_BROKEN and frees what the guest never
touched (its OWNER_LP frames) in place: the touched frames stay where they are, so the
machine region is partly used from then on and small frames fill it before a wholly free
region is broken up; on KVM also the zero-filled subpages (above). ESX breaks large
pages in the background when free memory is below 400 % of minFree (states.py,
`allows("break_large_pages")`; Epping, "What happens at which vSphere memory state?",
2015: "High 400 % of minFree: break large pages when below threshold"; "Clear 100 %: break
large pages and actively call TPS"): `LargePageBreaker` breaks at most `break_rate` large
pages a second, each costing `break_cost` of host CPU (remapping 512 entries and the TLB
shootdown). A KVM host does not break THPs for lack of free memory; its reclaim splits a
THP to swap a subpage out, as ESX breaks one to swap or compress, and as a balloon or a
free-page report of part of one splits it (MADV_DONTNEED of part of a THP). A victim the
host must reclaim from a live large page is broken out first and then, like any small
page, offered to sharing before compression and swap (Host.evict with share_before_swap:
ESX "tries to share a page before paging it out", and its hash is kept ready).

Which large pages ESX breaks first is not published: KB 1021095, the vSphere resource
management guides and Epping's posts on vSphere 6.0 say when, not which. Guo et al.
("Proactively Breaking Large Pages to Improve Memory Overcommitment Performance in VMware
ESXi", VEE 2015) propose breaking cold large pages first with a per-VM shareability
estimator, and VMware's patent US 9,330,015 selects low-activity large pages, but neither
says this is what ESXi ships. This model keeps a plain, stated choice: VM by VM, each VM's
large pages in ascending guest address order (`break_some`).

TLB. A guest access to memory under a large page avoids the second dimension of a nested
page walk; `tlb_discount` is the fraction of a guest's CPU time saved on the share of its
memory backed by large pages (VM.tlb_factor; the config states its value and source).

Counters (Linux names where they exist): thp_fault_alloc (large pages backed),
thp_fault_fallback, thp_split_page (large pages split or broken, all causes) and, by
cause, large_pages_broken (ESX's background job), thp_split_ksm, thp_split_reclaim,
thp_split_release; large_pages (live now; AnonHugePages = large_pages x 2 MiB),
lp_frames_freed (frames a split freed: untouched, or zero-filled on KVM), break_cpu_s;
lp_regions_whole (wholly free machine regions now) and lp_region_alloc_failed (large
pages refused for fragmentation).
"""

from __future__ import annotations

from guestkernel.physmem import ZERO_PAGE, page_bytes

from .machine import OWNER_LP
from .p2m import (
    LARGE_PAGE_SHIFT,
    P2M_BALLOONED,
    P2M_COMPRESSED,
    P2M_NONE,
    P2M_PRIVATE,
    P2M_SHARED,
    P2M_SWAPPED,
    P2M_ZERO,
)

LP_NONE, LP_BACKED, LP_BROKEN = 0, 1, 2
LARGE_PAGE_PAGES = 1 << LARGE_PAGE_SHIFT  # 512 frames of 4 KiB
LARGE_PAGE_MASK = LARGE_PAGE_PAGES - 1

HOST_KINDS = ("esx", "kvm")

# Defaults, seconds. The Host overrides them from HostConfig.
LARGE_FAULT_COST = 100e-6  # EPT violation + zeroing 2 MiB at ~20 GB/s (assumption)
BREAK_COST = 40e-6  # remap 512 entries + TLB shootdown (assumption)
BREAK_RATE = 1000  # large pages broken per second by ESX's background job (assumption)

# khugepaged's defaults (Linux 6.x mm/khugepaged.c, khugepaged_init and the statics):
# pages_to_scan HPAGE_PMD_NR * 8, max_ptes_none HPAGE_PMD_NR - 1, max_ptes_swap
# HPAGE_PMD_NR / 8, max_ptes_shared HPAGE_PMD_NR / 2; scan_sleep_millisecs 10000,
# alloc_sleep_millisecs 60000
KHUGEPAGED_PAGES_TO_SCAN = 4096
KHUGEPAGED_SCAN_SLEEP = 10.0  # seconds
KHUGEPAGED_ALLOC_SLEEP = 60.0  # seconds
MAX_PTES_NONE = 511
MAX_PTES_SWAP = 64
MAX_PTES_SHARED = 256

# hpage_collapse_scan_pmd's results (enum scan_result, the ones this model can give)
(SCAN_SUCCEED, SCAN_PMD_MAPPED, SCAN_PMD_NULL, SCAN_ADDRESS_RANGE, SCAN_EXCEED_NONE_PTE,
 SCAN_EXCEED_SWAP_PTE, SCAN_EXCEED_SHARED_PTE, SCAN_PAGE_RO, SCAN_LACK_REFERENCED_PAGE,
 SCAN_ALLOC_HUGE_PAGE_FAIL, SCAN_PTE_NON_PRESENT) = range(11)


class LargePages:
    """The host's large-page mechanism over `machine` (shared by its VMs).

    `room`: callable() -> frames that must stay free after a new large page's 512
    (the Host wires ESX's 400 % of minFree or KVM's minFree); None: any room will do."""

    def __init__(self, machine, kind: str = "esx", fault_cost: float = LARGE_FAULT_COST,
                 break_cost: float = BREAK_COST, break_rate: int = BREAK_RATE,
                 tlb_discount: float = 0.0, room=None) -> None:
        if kind not in HOST_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(HOST_KINDS)}, got {kind!r}")
        self.machine = machine
        self.kind = kind
        self.fault_cost = fault_cost  # seconds per large page backed at a first touch
        self.break_cost = break_cost  # host CPU seconds per large page broken (ESX job)
        self.break_rate = break_rate  # large pages per second ESX's job may break
        self.tlb_discount = tlb_discount  # fraction of guest CPU saved under large pages
        self.room = room
        self.sharing = None  # PageSharing: rmap items of freed frames are dropped
        # HostCompaction (compaction.py) on a KVM host: a THP fault or khugepaged that
        # finds no wholly free region compacts as the defrag settings say; None: never
        self.compaction = None
        # counters
        self.thp_fault_alloc = 0  # large pages backed at a first touch
        self.thp_fault_fallback = 0  # first touches of an untouched region given a small page
        self.thp_split_page = 0  # large pages split or broken, all causes
        self.large_pages_broken = 0  # ... by ESX's background job (low free memory)
        self.thp_split_ksm = 0  # ... by a KSM merge of a subpage (KVM)
        self.thp_split_reclaim = 0  # ... to compress or swap a subpage out
        self.thp_split_release = 0  # ... because the guest released a subpage
        self.large_pages = 0  # live large pages now
        self.lp_frames_freed = 0  # frames splits freed (untouched; zero-filled on KVM)
        self.break_cpu_s = 0.0  # host CPU seconds of ESX's breaking job
        # khugepaged (KVM hosts): its sysfs tunables and counters
        self.max_ptes_none = MAX_PTES_NONE  # empty or zero-page PTEs a collapse may fill
        self.max_ptes_swap = MAX_PTES_SWAP  # swapped (or compressed) PTEs it swaps in
        self.max_ptes_shared = MAX_PTES_SHARED  # PTEs of pages mapped more than once (KSM)
        self.pages_collapsed = 0  # khugepaged/pages_collapsed
        self.full_scans = 0  # khugepaged/full_scans
        self.thp_collapse_alloc = 0  # huge pages allocated for a collapse
        self.thp_collapse_alloc_failed = 0  # ... refused (no room or no free region)
        self.thp_scan_exceed_none_pte = 0
        self.thp_scan_exceed_swap_pte = 0
        self.thp_scan_exceed_share_pte = 0
        self.collapse_cpu_s = 0.0  # host CPU seconds of khugepaged's copies
        self._scan_vm = 0  # khugepaged's cursor: VM index, region
        self._scan_r = 0

    # -- backing ---------------------------------------------------------------------------

    def first_frame(self, vm, pfn: int, data) -> tuple[int, float, float]:
        """`pfn` (P2M_NONE) is touched for the first time: back its region with a large
        page if it warrants one (a wholly free machine region, room left), or take its
        frame from its live large page, or else a small frame (`vm._alloc_frame`).
        Returns (machine frame now holding `data`, seconds waited for memory, the host
        fault's cost)."""
        p2m = vm.p2m
        r = pfn >> LARGE_PAGE_SHIFT
        large = p2m.large
        lv = large[r]
        if lv == LP_BACKED:
            # the frame of the large page is mapped already: no fault
            mpn = vm.lp_base[r] + (pfn & LARGE_PAGE_MASK)
            self.machine.take(mpn, vm.vmid, data)
            vm.lp_res[r] -= 1
            vm.lp_reserved -= 1
            return mpn, 0.0, 0.0
        if lv == LP_NONE:
            lo = r << LARGE_PAGE_SHIFT
            hi = lo + LARGE_PAGE_PAGES
            if hi <= vm.nr_pages and p2m.state.count(P2M_NONE, lo, hi) == LARGE_PAGE_PAGES:
                keep = self.room() if self.room is not None else 0
                base = self.machine.alloc_region(keep)
                stall = 0.0
                if base < 0 and self.compaction is not None:
                    # no wholly free region: the THP fault's slow path (defrag)
                    ok, stall = self.compaction.thp_fault()
                    if ok:
                        base = self.machine.alloc_region(keep)
                if base >= 0:
                    self._back(vm, r, base)
                    mpn = base + (pfn & LARGE_PAGE_MASK)
                    self.machine.take(mpn, vm.vmid, data)
                    vm.lp_res[r] -= 1
                    vm.lp_reserved -= 1
                    self.thp_fault_alloc += 1
                    return mpn, 0.0, self.fault_cost + stall
                self.thp_fault_fallback += 1
                if stall:  # (compaction failed: its copies, then the small page's fault)
                    mpn, cost = vm._alloc_frame(data)
                    return mpn, cost, vm.fault_cost + stall
        mpn, cost = vm._alloc_frame(data)
        return mpn, cost, vm.fault_cost

    def _back(self, vm, r: int, base: int) -> None:
        """Region `r` of `vm` is now backed by the large page at machine frame `base`, all
        512 frames untouched (reserved)."""
        vm.p2m.large[r] = LP_BACKED
        vm.lp_base[r] = base
        vm.lp_res[r] = LARGE_PAGE_PAGES
        vm.lp_reserved += LARGE_PAGE_PAGES
        vm.lp_live += 1
        vm.large_pages_backed += 1
        self.large_pages += 1

    # -- splitting ---------------------------------------------------------------------------

    def split(self, vm, r: int) -> int:
        """Split (KVM) or break (ESX) the live large page of region `r` into small pages:
        the frames the guest never touched are freed, and on KVM the zero-filled ones too
        (mapped to the shared zero page: P2M_NONE). Returns the frames freed."""
        p2m = vm.p2m
        if p2m.large[r] != LP_BACKED:
            return 0
        p2m.large[r] = LP_BROKEN
        vm.lp_live -= 1
        self.large_pages -= 1
        self.thp_split_page += 1
        vm.large_pages_broken += 1
        freed = vm.lp_res[r]
        base = vm.lp_base[r]
        vm.lp_base[r] = -1
        self.machine.lp_split(base)
        if freed:
            vm.lp_res[r] = 0
            vm.lp_reserved -= freed
            # the untouched frames go back, in place: the region is partly used from now
            lo = r << LARGE_PAGE_SHIFT
            st = p2m.state
            self.machine.unreserve_frames(
                [base + i for i in range(LARGE_PAGE_PAGES) if st[lo + i] == P2M_NONE])
        if self.kind == "kvm":
            freed += self._zero_to_zero_page(vm, r)
        self.lp_frames_freed += freed
        return freed

    def _zero_to_zero_page(self, vm, r: int) -> int:
        """remap_page(..., RMP_USE_SHARED_ZEROPAGE) after split_huge_page: zero-filled
        subpages are unmapped and read the shared zero page."""
        p2m = vm.p2m
        machine = self.machine
        state = p2m.state
        mpns = p2m.mpn
        kv = getattr(vm, "_ksm", None)
        n = 0
        lo = r << LARGE_PAGE_SHIFT
        for pfn in range(lo, min(lo + LARGE_PAGE_PAGES, vm.nr_pages)):
            if state[pfn] != P2M_PRIVATE:
                continue
            mpn = mpns[pfn]
            d = machine.data(mpn)
            if d is not ZERO_PAGE and (d.__class__ is bytes and d != ZERO_PAGE
                                        or d.__class__ is not bytes and page_bytes(d) != ZERO_PAGE):
                continue
            machine.free(mpn)
            p2m.set(pfn, P2M_NONE)
            p2m.disk_clean[pfn] = 0
            if kv is not None and kv.oldsum[pfn] >= 0:
                self.sharing._drop_item(kv, pfn)
            n += 1
        return n

    def split_for(self, vm, pfn: int, cause: str) -> None:
        """Split the live large page holding `pfn`, if any, before a 4 KiB operation on it
        (`cause`: "reclaim", "release" or "ksm")."""
        r = pfn >> LARGE_PAGE_SHIFT
        if vm.p2m.large[r] == LP_BACKED:
            self.split(vm, r)
            setattr(self, f"thp_split_{cause}", getattr(self, f"thp_split_{cause}") + 1)

    def break_some(self, vms, n: int) -> int:
        """ESX's job: break up to `n` live large pages, VM by VM in ascending regions (a
        stated choice: ESX's order is not published, see the module's overview).
        Returns how many; their CPU cost is `break_cost` each (counted in break_cpu_s)."""
        done = 0
        for vm in vms:
            if done >= n:
                break
            if not vm.lp_live:
                continue
            large = vm.p2m.large
            r = large.find(LP_BACKED)
            while r >= 0 and done < n:
                self.split(vm, r)
                self.large_pages_broken += 1
                done += 1
                r = large.find(LP_BACKED, r + 1)
        self.break_cpu_s += done * self.break_cost
        return done

    # -- khugepaged (KVM) ------------------------------------------------------------------------

    def scan_pmd(self, vm, r: int) -> int:
        """hpage_collapse_scan_pmd for guest region `r` of `vm` (QEMU's guest RAM is one
        MADV_HUGEPAGE VMA): the PTEs in address order against max_ptes_swap (swapped or
        compressed: zswap sits behind swap entries), max_ptes_none (none, the zero page,
        a discarded balloon page) and max_ptes_shared (a present page mapped more than
        once: a KSM page, folio_likely_mapped_shared); then at least one writable PTE
        (a private page: KSM and zero pages are mapped read-only) and one young one (the
        EPT accessed bit: mmu_notifier_test_young), half of them young if any was
        swapped. Collapses the range when all hold (`collapse`). Returns a SCAN_* result."""
        p2m = vm.p2m
        if p2m.large[r] == LP_BACKED:
            return SCAN_PMD_MAPPED
        lo = r << LARGE_PAGE_SHIFT
        if lo + LARGE_PAGE_PAGES > vm.nr_pages:
            return SCAN_ADDRESS_RANGE  # the VMA's tail: not a whole aligned 2 MiB
        state = p2m.state
        if p2m.large[r] == LP_NONE and state.count(P2M_NONE, lo, lo + LARGE_PAGE_PAGES) == LARGE_PAGE_PAGES:
            return SCAN_PMD_NULL  # never touched: no page table (find_pmd_or_thp_or_none)
        accessed = p2m.accessed
        refcount = self.machine.refcount
        mpns = p2m.mpn
        unmapped = none_or_zero = shared = referenced = 0
        writable = False
        for pfn in range(lo, lo + LARGE_PAGE_PAGES):
            s = state[pfn]
            if s == P2M_SWAPPED or s == P2M_COMPRESSED:
                unmapped += 1
                if unmapped > self.max_ptes_swap:
                    self.thp_scan_exceed_swap_pte += 1
                    return SCAN_EXCEED_SWAP_PTE
                continue
            if s == P2M_NONE or s == P2M_ZERO or s == P2M_BALLOONED:
                none_or_zero += 1
                if none_or_zero > self.max_ptes_none:
                    self.thp_scan_exceed_none_pte += 1
                    return SCAN_EXCEED_NONE_PTE
                continue
            if s == P2M_PRIVATE:
                writable = True
            if refcount[mpns[pfn]] > 1:
                shared += 1
                if shared > self.max_ptes_shared:
                    self.thp_scan_exceed_share_pte += 1
                    return SCAN_EXCEED_SHARED_PTE
            if accessed[pfn]:
                referenced += 1
        if not writable:
            return SCAN_PAGE_RO
        if not referenced or (unmapped and referenced < LARGE_PAGE_PAGES // 2):
            return SCAN_LACK_REFERENCED_PAGE
        return self.collapse(vm, r)

    def collapse(self, vm, r: int) -> int:
        """collapse_huge_page: a new huge page from a wholly free machine region (room as
        a THP fault's), the swapped PTEs swapped in (__collapse_huge_page_swapin: a fault
        each), every present subpage copied into it at its offset (a KSM page's mapping
        dropped, its private copy made), the rest left zero-filled (untouched frames of
        the large page, as P2M_NONE; a discarded balloon page is backed again). Its host
        CPU (the copy: one `fault_cost`, 2 MiB as a zeroing costs) is added to
        collapse_cpu_s, the swap-ins' to the VM's stalls. Returns SCAN_SUCCEED or
        SCAN_ALLOC_HUGE_PAGE_FAIL."""
        machine = self.machine
        keep = self.room() if self.room is not None else 0
        base = machine.alloc_region(keep)
        if base < 0 and self.compaction is not None and self.compaction.khugepaged_defrag:
            # khugepaged/defrag 1: GFP_TRANSHUGE, direct compaction; its copies are
            # khugepaged's CPU
            ok, cost = self.compaction.direct()
            self.collapse_cpu_s += cost
            if ok:
                base = machine.alloc_region(keep)
        if base < 0:
            self.thp_collapse_alloc_failed += 1
            return SCAN_ALLOC_HUGE_PAGE_FAIL
        self.thp_collapse_alloc += 1
        p2m = vm.p2m
        state = p2m.state
        mpns = p2m.mpn
        lo = r << LARGE_PAGE_SHIFT
        for pfn in range(lo, lo + LARGE_PAGE_PAGES):
            s = state[pfn]
            if s == P2M_SWAPPED or s == P2M_COMPRESSED:
                vm._touch_slow(pfn, False, s)
        if state.count(P2M_SWAPPED, lo, lo + LARGE_PAGE_PAGES) or \
                state.count(P2M_COMPRESSED, lo, lo + LARGE_PAGE_PAGES):
            # a swap-in's allocation made the host reclaim a page of this very range: the
            # isolation finds a PTE not present (__collapse_huge_page_isolate) and gives up
            machine.unreserve_frames(range(base, base + LARGE_PAGE_PAGES))
            return SCAN_PTE_NON_PRESENT
        content = machine.content
        csum = machine.csum
        vmid = vm.vmid
        none = 0
        for i in range(LARGE_PAGE_PAGES):
            pfn = lo + i
            s = state[pfn]
            new = base + i
            if s == P2M_PRIVATE:
                old = mpns[pfn]
                machine.take(new, vmid, content[old])
                csum[new] = csum[old]  # (the same bytes; a pending write stays pending)
                machine.free(old)
                mpns[pfn] = new
            elif s == P2M_SHARED:
                machine.take(new, vmid, content[mpns[pfn]])
                self.sharing.unmap(vm, pfn)
                p2m.set(pfn, P2M_PRIVATE, new)
            else:  # P2M_NONE, P2M_ZERO or P2M_BALLOONED: a zero-filled subpage
                if s == P2M_ZERO:
                    self.sharing.unmap(vm, pfn)
                    p2m.set(pfn, P2M_NONE)
                elif s == P2M_BALLOONED:
                    vm._refault(pfn)  # the balloon's page is backed again (zeroed)
                    p2m.set(pfn, P2M_NONE)
                p2m.disk_clean[pfn] = 0
                none += 1
        self._back(vm, r, base)
        vm.lp_res[r] = none
        vm.lp_reserved -= LARGE_PAGE_PAGES - none
        self.pages_collapsed += 1
        self.collapse_cpu_s += self.fault_cost
        return SCAN_SUCCEED

    def khugepaged_scan(self, vms, pages: int) -> tuple[int, int]:
        """One wake of khugepaged (khugepaged_do_scan): regions from the cursor on, VM by
        VM (the mm_slot list) in address order, until `pages` PTEs were scanned (512 a
        region) or the list head was passed twice (pass_through_head). Stops at the first
        failed huge page allocation (the caller sleeps alloc_sleep_millisecs, then calls
        again: a second failure ends the wake). Returns (PTEs scanned, last result)."""
        progress = 0
        through_head = 0
        result = SCAN_SUCCEED
        nvms = len(vms)
        if not nvms:
            return 0, result
        while progress < pages:
            if self._scan_vm >= nvms:
                self._scan_vm = 0
                self._scan_r = 0
            if self._scan_vm == 0 and self._scan_r == 0:
                through_head += 1
                if through_head >= 2:
                    break
            vm = vms[self._scan_vm]
            nregions = vm.nr_pages >> LARGE_PAGE_SHIFT
            if self._scan_r >= nregions or not vm.large_pages or vm.dead:
                self._next_vm(nvms)
                continue
            result = self.scan_pmd(vm, self._scan_r)
            self._scan_r += 1
            progress += LARGE_PAGE_PAGES
            if self._scan_r >= nregions:
                self._next_vm(nvms)
            if result == SCAN_ALLOC_HUGE_PAGE_FAIL:
                break
        return progress, result

    def _next_vm(self, nvms: int) -> None:
        self._scan_r = 0
        self._scan_vm += 1
        if self._scan_vm >= nvms:
            self._scan_vm = 0
            self.full_scans += 1

    def counters(self) -> dict[str, int | float]:
        return {
            "thp_fault_alloc": self.thp_fault_alloc,
            "thp_fault_fallback": self.thp_fault_fallback,
            "thp_split_page": self.thp_split_page,
            "large_pages_broken": self.large_pages_broken,
            "thp_split_ksm": self.thp_split_ksm,
            "thp_split_reclaim": self.thp_split_reclaim,
            "thp_split_release": self.thp_split_release,
            "large_pages": self.large_pages,
            "lp_frames_reserved": self.machine.reserved,
            "lp_frames_freed": self.lp_frames_freed,
            "lp_break_cpu_s": self.break_cpu_s,
            "pages_collapsed": self.pages_collapsed,
            "khugepaged_full_scans": self.full_scans,
            "thp_collapse_alloc": self.thp_collapse_alloc,
            "thp_collapse_alloc_failed": self.thp_collapse_alloc_failed,
            "thp_scan_exceed_none_pte": self.thp_scan_exceed_none_pte,
            "thp_scan_exceed_swap_pte": self.thp_scan_exceed_swap_pte,
            "thp_scan_exceed_share_pte": self.thp_scan_exceed_share_pte,
            "khugepaged_cpu_s": self.collapse_cpu_s,
            "lp_regions_whole": self.machine.whole_regions(),
            "lp_region_alloc_failed": self.machine.region_alloc_failed,
        } | (self.compaction.counters() if self.compaction is not None else {})

    def validate(self, vms) -> None:
        """Every live region holds only unbacked and private frames, its reservation is its
        unbacked frames, and the reservations add up to the machine's."""
        total = live = 0
        for vm in vms:
            p2m = vm.p2m
            n = 0
            for r in range(len(p2m.large)):
                if p2m.large[r] != LP_BACKED:
                    assert vm.lp_res[r] == 0 and vm.lp_base[r] == -1, (vm.name, r, vm.lp_res[r])
                    continue
                n += 1
                lo = r << LARGE_PAGE_SHIFT
                st = p2m.state[lo:lo + LARGE_PAGE_PAGES]
                none = st.count(P2M_NONE)
                assert none + st.count(P2M_PRIVATE) == len(st), f"{vm.name} region {r}: not only none/private"
                assert vm.lp_res[r] == none, (vm.name, r, vm.lp_res[r], none)
                base = vm.lp_base[r]
                assert base >= 0 and base & LARGE_PAGE_MASK == 0, (vm.name, r, base)
                assert self.machine.lp_region[base >> LARGE_PAGE_SHIFT], (vm.name, r, "region not a large page")
                owner = self.machine.owner
                for i, s in enumerate(st):
                    if s == P2M_NONE:
                        assert owner[base + i] == OWNER_LP, (vm.name, r, i)
                    else:
                        assert p2m.mpn[lo + i] == base + i, f"{vm.name} region {r}: subpage {i} not in its large page"
                total += none
            assert n == vm.lp_live, (vm.name, n, vm.lp_live)
            assert sum(vm.lp_res) == vm.lp_reserved, (vm.name, vm.lp_reserved)
            live += n
        assert total == self.machine.reserved, (total, self.machine.reserved)
        assert live == self.large_pages, (live, self.large_pages)


class LargePageBreaker:
    """ESX's background job (SimPy process): every `interval` seconds, while the host's
    state calls for it, breaks at most break_rate x interval large pages and runs their
    CPU cost on a host CPU."""

    def __init__(self, env, host, lp: LargePages, interval: float = 0.1) -> None:
        self.env = env
        self.host = host
        self.lp = lp
        self.interval = interval
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        host = self.host
        lp = self.lp
        budget = 0.0
        while True:
            if lp.large_pages and host.states.allows("break_large_pages"):
                budget += lp.break_rate * self.interval
                n = int(budget)
                done = 0
                # one at a time: each frees its untouched frames, which may lift free
                # memory back above the threshold
                while done < n and lp.large_pages and host.states.allows("break_large_pages"):
                    if not lp.break_some(host.vms, 1):
                        break
                    done += 1
                    host.states.update(host.machine.nr_free, env.now)
                budget -= done
                if done < n:
                    budget = 0.0
                if done:
                    host.large_pages_cpu(done * lp.break_cost)
            else:
                budget = 0.0
            yield env.timeout(self.interval)


class Khugepaged:
    """A KVM host's khugepaged over QEMU's guest RAM (SimPy process; mm/khugepaged.c
    khugepaged()): scan `pages_to_scan` PTEs (LargePages.khugepaged_scan), then sleep
    `scan_sleep` seconds; after a failed huge page allocation sleep `alloc_sleep` seconds
    and go on, and end the wake at a second failure (khugepaged_do_scan). The copies'
    host CPU runs on a host CPU."""

    def __init__(self, env, host, lp: LargePages, pages_to_scan: int = KHUGEPAGED_PAGES_TO_SCAN,
                 scan_sleep: float = KHUGEPAGED_SCAN_SLEEP, alloc_sleep: float = KHUGEPAGED_ALLOC_SLEEP) -> None:
        self.env = env
        self.host = host
        self.lp = lp
        self.pages_to_scan = pages_to_scan
        self.scan_sleep = scan_sleep
        self.alloc_sleep = alloc_sleep
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        lp = self.lp
        host = self.host
        while True:
            cpu0 = lp.collapse_cpu_s
            progress = 0
            wait = True
            while progress < self.pages_to_scan:
                done, result = lp.khugepaged_scan(host.vms, self.pages_to_scan - progress)
                progress += done
                if result != SCAN_ALLOC_HUGE_PAGE_FAIL:
                    break
                if not wait:
                    break
                wait = False
                yield env.timeout(self.alloc_sleep)
            host.large_pages_cpu(lp.collapse_cpu_s - cpu0)
            yield env.timeout(self.scan_sleep)
