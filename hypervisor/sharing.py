"""Page sharing: KSM's algorithm (mm/ksm.c) over the VMs' guest frames.

Overview
--------
The scanner visits guest frames in KSM order: VM by VM (in the order they were added),
frame by frame, `pages_to_scan` frames per batch. Every frame backed by a private machine
frame has an rmap item (per-VM arrays, see `_KsmVM`); for it the scanner

1. asks the *stable tree* (contents of merged, read-only frames) for a dup with room
   (fewer than `max_page_sharing` mappings): if one has the same bytes, the frame maps it
   and its own frame is freed;
2. otherwise compares the page's checksum with the one stored last pass: if it differs,
   the new checksum is stored and the page is left alone (volatile), so a page must be
   unchanged over two visits before it can merge;
3. with `use_zero_pages`, maps an all-zero page to the host's zero page (ksm_zero_pages);
4. otherwise searches the *unstable tree* (unmerged pages seen this pass): a page with the
   same bytes is merged with this one into a new stable frame; no match inserts this page.

The unstable tree is emptied at the start of every pass (`full_scans` counts passes).
Frames already mapping a stable frame are visited (they use the batch) but left alone.

Trees. Both "trees" are dicts keyed by checksum (plus the salt, see below) whose hits are
confirmed by a full byte compare, as ESX does; KSM's memcmp-ordered rbtrees find the same
matches, so the observable counters are those of KSM. A key holding different contents
(a hash collision) keeps them in a small list. A stable entry is a `_Chain`: the dups of
one content. Once a dup holds `max_page_sharing` mappings, a further identical page does
not join; it waits in the unstable tree for ANOTHER unmerged identical page and the pair
forms a new dup. n identical pages thus give floor(n / m) full dups, plus one if
n mod m >= 2; a lone leftover page stays unmerged.

Checksum: XXH3-64 of the page (seed 0), truncated to 32 bits. Linux uses xxhash() (XXH64
on 64-bit); XXH3 is the same family and about twice as fast from Python, and only the
count of hash collisions can tell them apart. The checksum of a private machine frame is
cached in `MachineMemory.csum` until its content changes (bytes are immutable and every
change goes through VM.store, or a guest write that marks the frame WRITTEN and whose new
content the scanner makes before hashing), so the simulator hashes a page once per change
while the simulated scanner is still charged `hash_cost` on every visit.

Written pages. A guest write without data gives the page new bytes (machine.py, WRITTEN),
so a page the guest keeps writing has a new checksum at every visit and stays volatile,
and a merged page the guest writes is copied (cow_ksm) and merges again only once its
new content has stayed the same over two visits and equals another page's. An
unstable-tree page that changed after its insertion matches only if its bytes now equal
the searching page's (its node stays, as in KSM's unstable tree, until the pass ends).
NOTE: a page with an rmap item whose frame was written since its last visit holds new
bytes (a fresh draw from a 64-bit digest: equal to no stable page but by a collision), so
it is volatile without being hashed (oldchecksum UNHASHED, machine checksum FOLDED); it is
hashed at the first visit that finds it unchanged, which then compares equal, as the
checksum Linux stored at the previous visit would. A page that keeps being written is
thus never made into bytes by the scanner. (A frame refaulted in between, e.g. after host
swap, counts as changed: one visit later than Linux.)

smart_scan (6.x): a page that stayed unmerged for 3+ visits is skipped for 1, 2, 4 or 8
passes as its age is <= 3, <= 5, <= 8 or more; skipped pages do not use the batch.

Salting: "none" shares across VMs; "per-vm" (ESXi's default Mem.ShareForceSalting=2)
puts each VM's salt in the key, so only frames of one VM merge. The zero page is global.

Breaking: a write to a shared frame copies it (VM.touch -> `unmap`, counted as cow_ksm).
Counters are updated at once (Linux notices a broken mapping on the next visit).

Counters (sysfs names): pages_shared (dups in use), pages_sharing (further mappings of
them), pages_unshared (unstable-tree items), pages_volatile (= rmap items - shared -
sharing - unshared), full_scans, ksm_zero_pages, general_profit = (pages_sharing +
ksm_zero_pages) * PAGE_SIZE - rmap_items * 64, pages_skipped, stable_node_chains,
stable_node_dups; and hash_collisions (equal key, different bytes), byte_compares,
cow_ksm, pages_hashed and scan_time (simulated CPU seconds).
"""

from __future__ import annotations

import math
import sys
from array import array
from itertools import compress as _select
from operator import eq as _eq
from struct import Struct

import xxhash

from guestkernel.physmem import ZERO_PAGE, LazyPage, WrittenPage, page_bytes
from guestkernel.units import PAGE_SIZE

from .machine import FOLDED, OWNER_SHARED, WRITTEN, MachineMemory
from .p2m import LARGE_PAGE_SHIFT, P2M_NONE, P2M_PRIVATE, P2M_SHARED, P2M_ZERO

RMAP_ITEM_SIZE = 64  # sizeof(struct ksm_rmap_item), bytes (general_profit)

# oldchecksum of an item whose page had new bytes at its last visit, not hashed then
# (above any 32-bit checksum): it is unchanged at the next visit if the frame was not
# written nor stored since (its machine checksum then FOLDED, or hashed by another)
UNHASHED = 1 << 32

_UNSTABLE = 1  # rmap item is counted in pages_unshared
_STABLE = 2  # rmap item maps a stable frame

SALTING = ("none", "per-vm")

_xxh3 = xxhash.xxh3_64_intdigest
_xxh64 = xxhash.xxh64_intdigest
_xxh3_digest = xxhash.xxh3_64_digest
_PACK2 = Struct("<QQ").pack
_MASK64 = (1 << 64) - 1
_MASK32 = 0xFFFFFFFF .__and__
_WINDOW = 4096  # frames per window: a bulk window that cannot be taken costs this much
_AGE_PLUS_ONE = bytes(min(i + 1, 255) for i in range(256))  # bytes.translate table
# bytes.translate tables of the bulk smart_scan skip: 1 where the byte qualifies, else 0
_NONZERO = bytes([0] + [1] * 255)
_AGE_OLD = bytes(int(i >= 2) for i in range(256))  # stored age >= 2: age >= 3
_AGE_BELOW_MAX = bytes(int(i < 254) for i in range(256))  # stored age 254 is age 255
_IS_PRIVATE = bytes(int(i == 1) for i in range(256))  # P2M_PRIVATE
_IS_SHARED = bytes(int(i == 2) for i in range(256))  # P2M_SHARED
_TO_VISIT = bytes(int(i not in (0, 2)) for i in range(256))  # not P2M_NONE nor P2M_SHARED


def _nth_set_byte(mask: bytes, n: int) -> int:
    """Index of the n-th (from 1) non-zero byte of `mask` (0/1 bytes, at least n of
    them): a bisection over C-speed counts."""
    lo, hi = n - 1, len(mask) - 1  # the answer lies in [lo, hi]
    while lo < hi:
        mid = (lo + hi) >> 1
        if mask.count(1, 0, mid + 1) >= n:
            hi = mid
        else:
            lo = mid + 1
    return lo


def page_checksum(data: bytes) -> int:
    """The scanner's checksum: XXH3-64 (seed 0) truncated to 32 bits."""
    return _xxh3(data) & 0xFFFFFFFF


_NO_ITEMS = array("q", [-1]) * _WINDOW  # a window's oldsum when no frame has an rmap item
_LITTLE = sys.byteorder == "little"


def checksums(datas: list) -> array:
    """page_checksum of each page of `datas` (bytes or LazyPages), as an array("q").

    NOTE: the bulk form of page_checksum, for performance: the digests are taken as
    bytes (no int object a page) and their low 32 bits picked out of the joined digests
    with four strided slice copies (XXH3's canonical digest is big-endian: its last four
    bytes are the low 32 bits, reversed into the little-endian int64s of the array)."""
    if not _LITTLE:
        return array("q", map(_MASK32, map(_xxh3, map(page_bytes, datas))))
    digests: list[bytes] = []
    try:
        digests.extend(map(_xxh3_digest, datas))
    except TypeError:  # a LazyPage: it and the pages after it hashed on their real bytes
        digests.extend(map(_xxh3_digest, map(page_bytes, datas[len(digests):])))
    d = b"".join(digests)
    b = bytearray(len(d))
    b[0::8] = d[7::8]
    b[1::8] = d[6::8]
    b[2::8] = d[5::8]
    b[3::8] = d[4::8]
    return array("q", b)


ZERO_CHECKSUM = page_checksum(ZERO_PAGE)


def skip_age(age: int) -> int:
    """smart_scan: passes to skip a page unmerged for `age` visits (mm/ksm.c)."""
    if age <= 3:
        return 1
    if age <= 5:
        return 2
    if age <= 8:
        return 4
    return 8


_SKIP_AGE = bytes(skip_age(a) for a in range(256))  # skip_age as a table (per-page loop)


class _Chain:
    """A stable-tree node: the dups (machine frames) of one content."""

    __slots__ = ("data", "key", "dups", "prune_time")

    def __init__(self, data: bytes, key: int) -> None:
        self.data = data
        self.key = key
        self.dups: list[int] = []  # MPNs of the KSM frames holding `data`, head first
        self.prune_time = -math.inf  # chain_prune_time: when the dups were last all walked


class _KsmVM:
    """rmap items of one VM: per-PFN arrays (oldchecksum -1: no rmap item)."""

    __slots__ = ("vm", "oldsum", "flags", "age", "skips", "salt")

    def __init__(self, vm, salt: int) -> None:
        n = vm.nr_pages
        self.vm = vm
        self.oldsum = array("q", [-1]) * n
        self.flags = bytearray(n)
        self.age = bytearray(n)
        self.skips = bytearray(n)
        self.salt = salt


class PageSharing:
    """KSM over a set of VMs. Tunables carry their sysfs names; times in seconds."""

    def __init__(
        self,
        machine: MachineMemory,
        pages_to_scan: int = 100,
        sleep_millisecs: int = 20,
        max_page_sharing: int = 256,
        use_zero_pages: bool = False,
        smart_scan: bool = True,
        salting: str = "none",
        hash_cost: float = 1e-6,
        compare_cost: float = 0.5e-6,
        merge_cost: float = 2e-6,
    ) -> None:
        if max_page_sharing < 2:
            raise ValueError(f"max_page_sharing: must be at least 2, got {max_page_sharing}")
        if pages_to_scan < 1:
            raise ValueError(f"pages_to_scan: must be at least 1, got {pages_to_scan}")
        if salting not in SALTING:
            raise ValueError(f"salting: must be one of {', '.join(SALTING)}, got {salting!r}")
        self.machine = machine
        self.pages_to_scan = pages_to_scan  # pages per batch
        self.sleep_millisecs = sleep_millisecs  # ms between batches (Scanner daemon)
        self.max_page_sharing = max_page_sharing  # mappings per stable frame, >= 2
        self.use_zero_pages = use_zero_pages  # map zero pages to the host zero page
        self.smart_scan = smart_scan  # skip pages that keep failing to merge
        self.salting = salting  # "none": across VMs; "per-vm": within a VM only
        self.hash_cost = hash_cost  # seconds per page checksummed
        self.compare_cost = compare_cost  # seconds per full 4 KiB compare
        self.merge_cost = merge_cost  # seconds per merge (write-protect, remap)
        self.stable_node_chains_prune_millisecs = 2000  # full walks of a chain's dups
        self.now = 0.0  # seconds: the time of the current batch (jiffies), set by ksmd
        self.run = 1  # /sys/kernel/mm/ksm/run: 0 stop, 1 run
        self.full_scan_hooks: list = []  # callables(self) at each full scan's end (ksmtune)
        self.bulk_min = 64  # windows of at least this many frames may be scanned in bulk
        self.fast_paths = True  # bulk, masked and empty windows (same outcome, faster)
        self._vms: list[_KsmVM] = []
        self._stable: dict[int, _Chain | list[_Chain]] = {}
        self._unstable: dict[int, int | list[int]] = {}  # key -> (vm index << 32) | pfn
        self._chain_of: dict[int, _Chain] = {}  # KSM frame MPN -> its chain
        self._vi = 0  # scan cursor: VM index
        self._pfn = 0  # scan cursor: next PFN
        self._visited = 0  # scannable pages met in this pass
        self._skipped_mark = 0  # pages_skipped when this pass began
        self._iota_frames = array("i")  # 0, 1, 2, ...: see _iota
        self._frames: list[int] = []  # 0, 1, 2, ... up to the largest VM's frame count
        # counters
        self.pages_shared = 0
        self.pages_sharing = 0
        self.pages_unshared = 0
        self.rmap_items = 0
        self.full_scans = 0
        self.ksm_zero_pages = 0
        self.pages_skipped = 0
        self.stable_node_chains = 0
        self.stable_node_dups = 0
        self.hash_collisions = 0
        self.byte_compares = 0
        self.pages_scanned = 0
        self.pages_hashed = 0
        self.merges = 0  # successful merges of a page into a stable frame or the zero page
        self.cow_ksm = 0
        self.scan_time = 0.0  # simulated CPU seconds

    # -- VMs ---------------------------------------------------------------------------------

    def add_vm(self, vm) -> None:
        salt = 0 if self.salting == "none" else (len(self._vms) + 1) << 32
        vm.sharing = self
        self._iota(0, len(self.machine.content))  # (made now, not in the first pass)
        if len(self._frames) < vm.nr_pages:
            self._frames = list(range(vm.nr_pages))  # (made now, not in the first pass)
        self._vms.append(_KsmVM(vm, salt))
        vm._ksm = self._vms[-1]

    @property
    def vms(self) -> list:
        return [kv.vm for kv in self._vms]

    # -- counters ----------------------------------------------------------------------------

    @property
    def pages_volatile(self) -> int:
        return self.rmap_items - self.pages_shared - self.pages_sharing - self.pages_unshared

    @property
    def general_profit(self) -> int:
        """Bytes saved: (pages_sharing + ksm_zero_pages) pages minus rmap item overhead."""
        return (self.pages_sharing + self.ksm_zero_pages) * PAGE_SIZE - self.rmap_items * (
            RMAP_ITEM_SIZE
        )

    def counters(self) -> dict[str, int | float]:
        return {
            "pages_shared": self.pages_shared,
            "pages_sharing": self.pages_sharing,
            "pages_unshared": self.pages_unshared,
            "pages_volatile": self.pages_volatile,
            "full_scans": self.full_scans,
            "ksm_zero_pages": self.ksm_zero_pages,
            "general_profit": self.general_profit,
            "pages_skipped": self.pages_skipped,
            "stable_node_chains": self.stable_node_chains,
            "stable_node_dups": self.stable_node_dups,
            "pages_to_scan": self.pages_to_scan,
            "sleep_millisecs": self.sleep_millisecs,
            "max_page_sharing": self.max_page_sharing,
            "use_zero_pages": int(self.use_zero_pages),
            "smart_scan": int(self.smart_scan),
            "run": self.run,
            "hash_collisions": self.hash_collisions,
            "byte_compares": self.byte_compares,
            "pages_scanned": self.pages_scanned,
            "pages_hashed": self.pages_hashed,
            "merges": self.merges,
            "cow_ksm": self.cow_ksm,
            "scan_time": self.scan_time,
        }

    # -- scanning ----------------------------------------------------------------------------

    def scan(self, nr_pages: int | None = None, stop_at_pass_end: bool = True) -> float:
        """Scan up to `nr_pages` frames (default pages_to_scan); CPU seconds it took.

        Pages met but skipped (smart_scan, large pages, unbacked) do not count. The batch
        ends where a full pass completes, as mm/ksm.c's ksm_do_scan returns when
        scan_get_next_rmap_item ends a full scan (returns NULL): the next pass starts
        after ksmd's sleep (measured on Linux 6.18: 8 full scans of 2048 pages at
        pages_to_scan 1000 scan exactly 8 x 2048 pages less those skipped; the
        live-ksm anchor). `stop_at_pass_end=False` runs on into the next pass.
        """
        budget = self.pages_to_scan if nr_pages is None else nr_pages
        kvs = self._vms
        if not kvs or budget <= 0:
            return 0.0
        machine = self.machine
        content = machine.content
        mcsum = machine.csum
        stable = self._stable
        unstable = self._unstable
        sget = stable.get
        uget = unstable.get
        skip_age = _SKIP_AGE
        use_zero = self.use_zero_pages
        smart = self.smart_scan
        xxh3 = _xxh3
        xxh64 = _xxh64
        pack2 = _PACK2
        wseed = machine.write_seed & _MASK64
        vi = self._vi
        pfn = self._pfn
        initial = budget
        hashed = new_items = 0
        unshared = 0  # change of pages_unshared by the per-page loop (added at the end)
        while budget > 0:
            if vi >= len(kvs):
                # end of a full pass: the unstable tree starts again empty
                self.full_scans += 1
                unstable.clear()
                for hook in self.full_scan_hooks:  # the KSM advisor (advisor_stop_scan)
                    hook(self)
                vi = 0
                pfn = 0
                empty = self._visited == 0 and self.pages_skipped == self._skipped_mark
                self._visited = 0
                self._skipped_mark = self.pages_skipped
                if stop_at_pass_end or empty:
                    break  # (empty: nothing to scan anywhere; ksmd would just sleep)
            kv = kvs[vi]
            vm = kv.vm
            p2m = vm.p2m
            state = p2m.state
            mpns = p2m.mpn
            large = p2m.large if vm.large_pages else None
            oldsum = kv.oldsum
            flags = kv.flags
            age = kv.age
            skips = kv.skips
            salt = kv.salt
            item_base = vi << 32  # an unstable-tree value: (VM index << 32) | pfn
            n = vm.nr_pages
            frames = self._frames
            if len(frames) < n:
                frames = self._frames = list(range(n))
            before = budget
            # NOTE: the per-page path is inlined with locals for performance. A window of
            # frames is scanned without a per-page budget test: it ends where the budget
            # runs out (each frame uses at most one unit; frames that use none are counted
            # in `idle`). The rare cases (merges, skips, dropped items) call methods.
            fast = self.fast_paths
            bulk = fast and large is None  # window-wide skips and budget at C speed
            while pfn < n and budget > 0:
                lo = pfn
                hi = lo + _WINDOW
                if hi > n:
                    hi = n
                if (
                    fast
                    and state.count(1, lo, hi) == 0
                    and state.count(2, lo, hi) == 0
                    and oldsum[lo:hi].count(-1) == hi - lo
                ):
                    pfn = hi  # nothing backed here and no rmap items: skipped at C speed
                    continue
                idle = 0
                ksm_pages = 0  # KSM pages of the window not in seq (each scanned: one unit)
                hb = hi if lo + budget >= hi else lo + budget  # at most `budget` frames
                k = hb - lo
                if (
                    k >= self.bulk_min
                    and bulk
                    and state.count(1, lo, hb) == k
                    and self._bulk_window(kv, vi, lo, hb)
                ):
                    budget -= k
                    pfn = hb
                    continue
                if bulk:
                    # The frames that use a unit: private ones smart_scan does not skip,
                    # and KSM pages (scanned, nothing to do). The window ends at the one
                    # that uses the last unit of the budget; its skips are taken at C
                    # speed, and only the frames left to visit go through the loop:
                    # neither unbacked (P2M_NONE: never an rmap item, see
                    # forget_vm_items) nor KSM pages nor skipped. (Masks: a byte a frame.)
                    k = hi - lo
                    st = state[lo:hi]
                    private = int.from_bytes(st.translate(_IS_PRIVATE), "little")
                    ksm = int.from_bytes(st.translate(_IS_SHARED), "little")
                    skip = self._skip_mask(kv, lo, hi, private) if smart else 0
                    uses = (private & ~skip) | ksm
                    if uses.bit_count() >= budget:  # (the scan stops right after that frame)
                        hi = lo + _nth_set_byte(uses.to_bytes(k, "little"), budget) + 1
                        k = hi - lo
                        below = (1 << (k << 3)) - 1
                        ksm &= below
                        skip &= below
                    if skip:
                        self._take_skips(kv, lo, hi, skip)
                    ksm_pages = ksm.bit_count()
                    visit = int.from_bytes(st[:k].translate(_TO_VISIT), "little") & ~skip
                    # (frame numbers from a kept list: compress() makes no int object)
                    seq = list(_select(frames[lo:hi], visit.to_bytes(k, "little")))
                else:
                    hi = hb
                    seq = range(lo, hi)
                for pfn in seq:
                    if state[pfn] != 1:  # P2M_PRIVATE
                        if state[pfn] != 2:  # P2M_SHARED: a KSM page, nothing to do
                            idle += 1
                            if oldsum[pfn] >= 0:
                                self._drop_item(kv, pfn)  # the page went away
                        continue
                    if large is not None and large[pfn >> LARGE_PAGE_SHIFT] == 1:
                        self._large_visit(kv, vi, pfn)  # inside a host large page
                        continue
                    old = oldsum[pfn]
                    if smart and old >= 0:
                        # should_skip_rmap_item, before the checksum as in ksm.c
                        a = age[pfn] + 1  # age is stored minus one: new items start at 1
                        if a < 3:
                            age[pfn] = a
                        else:
                            if a != 255:
                                age[pfn] = a
                            if skips[pfn] == 0:
                                skips[pfn] = skip_age[a]
                            else:
                                skips[pfn] -= 1
                                self.pages_skipped += 1
                                if flags[pfn] & _UNSTABLE:
                                    flags[pfn] = 0  # remove_rmap_item_from_tree
                                    unshared -= 1
                                idle += 1
                                continue
                    mpn = mpns[pfn]
                    csum = mcsum[mpn]
                    if csum < 0:
                        # NOTE: hashed once per content change; see the module docstring.
                        # A frame the guest wrote gets its new content first (WRITTEN).
                        if csum == WRITTEN:
                            d0 = content[mpn]
                            if fast:
                                # NOTE: machine.fold inlined for performance (a fold per
                                # written frame visited); fast_paths False calls it
                                # (its checksum is set below: FOLDED, or the new hash)
                                gen = machine.write_folds = machine.write_folds + 1
                                digest = xxh64(pack2(mpn, gen), wseed)
                                if d0.__class__ is not bytes and isinstance(d0, LazyPage):
                                    d = content[mpn] = d0.written(digest, -1, 0)
                                else:
                                    d = content[mpn] = WrittenPage(d0, digest, -1, 0)
                            else:
                                d = machine.fold(mpn)
                            if old >= 0 and d is not d0:
                                # new bytes since the last visit: volatile, and hashed
                                # only once they stop changing (see "Written pages")
                                mcsum[mpn] = FOLDED
                                if flags[pfn]:
                                    flags[pfn] = 0  # leaves the unstable tree
                                    unshared -= 1
                                oldsum[pfn] = UNHASHED
                                continue
                        else:
                            d = content[mpn]
                        if d.__class__ is not bytes:
                            d = page_bytes(d)  # a LazyPage: hashed on its real bytes
                        if old == UNHASHED and csum == FOLDED:
                            old = csum = mcsum[mpn] = xxh3(d) & 0xFFFFFFFF  # unchanged since
                        else:
                            csum = mcsum[mpn] = xxh3(d) & 0xFFFFFFFF
                        hashed += 1
                    elif old == UNHASHED:
                        old = csum  # hashed by another since it was folded: unchanged
                    if old < 0:
                        # A new rmap item: its zeroed oldchecksum differs from the page's
                        # (but for a checksum of 0), so after the stable tree it is volatile.
                        new_items += 1
                        if stable:
                            entry = stable.get(csum | salt)
                            if entry is not None and self._stable_merge(
                                kv, pfn, mpn, csum | salt, entry
                            ):
                                oldsum[pfn] = 0
                                continue
                        oldsum[pfn] = csum
                        continue
                    if flags[pfn]:
                        flags[pfn] = 0  # leaves the unstable tree (remove_rmap_item_from_tree)
                        unshared -= 1
                    key = csum | salt
                    entry = sget(key)
                    if entry is not None and self._stable_merge(kv, pfn, mpn, key, entry):
                        continue
                    if old != csum:
                        oldsum[pfn] = csum  # changed since last visit: volatile
                        continue
                    if use_zero and csum == ZERO_CHECKSUM and self._zero_merge(kv, pfn, mpn):
                        continue
                    cand = uget(key)
                    if cand is None:
                        unstable[key] = item_base | pfn
                        flags[pfn] = _UNSTABLE
                        unshared += 1
                    else:
                        self._unstable_merge(kv, vi, pfn, mpn, key, cand)
                budget -= len(seq) - idle + ksm_pages
                pfn = hi
            self._visited += before - budget
            if pfn >= n:
                vi += 1
                pfn = 0
        self._vi = vi
        self._pfn = pfn
        scanned = initial - budget
        self.rmap_items += new_items
        self.pages_unshared += unshared
        self.pages_scanned += scanned
        self.pages_hashed += hashed
        cost = scanned * self.hash_cost
        self.scan_time += cost
        return cost

    def _large_visit(self, kv: _KsmVM, vi: int, pfn: int) -> None:
        """A visit of a private frame inside a live host large page (largepage.py): it is
        scanned (one unit of the batch) and hashed, and its checksum kept as its rmap
        item's. ESX: nothing more (hashes kept ready: once the large page is broken, the
        next visit finds the page unchanged and it merges then). KVM: KSM's own logic
        (smart_scan aside); when the page has an identical page to merge with, its THP is
        split first (try_to_merge_one_page -> split_huge_page), then the page merges as a
        small one (or, zero-filled, was mapped to the zero page by the split)."""
        vm = kv.vm
        p2m = vm.p2m
        machine = self.machine
        mpn = p2m.mpn[pfn]
        csum = machine.csum[mpn]
        if csum < 0:
            d = machine.data(mpn)
            csum = machine.csum[mpn] = _xxh3(d if d.__class__ is bytes else page_bytes(d)) & 0xFFFFFFFF
            self.pages_hashed += 1
        oldsum = kv.oldsum
        old = oldsum[pfn]
        if old == UNHASHED:
            old = -2  # (written since: changed)
        if old == -1:
            self.rmap_items += 1
        if kv.flags[pfn] & _UNSTABLE:
            kv.flags[pfn] = 0
            self.pages_unshared -= 1
        oldsum[pfn] = csum
        if vm.lp.kind == "esx":
            return
        key = csum | kv.salt
        data = machine.content[mpn]
        entry = self._stable.get(key)
        match = entry is not None and any(
            c.data is data or c.data == data for c in (entry if type(entry) is list else (entry,)))
        cand = None
        if not match and old == csum:
            if self.use_zero_pages and csum == ZERO_CHECKSUM:
                match = True
            else:
                cand = self._unstable.get(key)
                for item in (cand if type(cand) is list else (cand,)) if cand is not None else ():
                    ckv = self._vms[item >> 32]
                    cpfn = item & 0xFFFFFFFF
                    cp2m = ckv.vm.p2m
                    if (cp2m.state[cpfn] == P2M_PRIVATE and ckv.flags[cpfn] & _UNSTABLE
                            and (ckv is not kv or cpfn != pfn)
                            and machine.data(cp2m.mpn[cpfn]) == data):
                        match = True
                        break
        if not match:
            if old == csum:  # unchanged: into the unstable tree (no partner yet)
                prev = self._unstable.get(key)
                item = (vi << 32) | pfn
                if prev is None:
                    self._unstable[key] = item
                elif type(prev) is list:
                    prev.append(item)
                else:
                    self._unstable[key] = [prev, item]
                kv.flags[pfn] = _UNSTABLE
                self.pages_unshared += 1
            return
        vm.lp.split_for(vm, pfn, "ksm")
        if p2m.state[pfn] != P2M_PRIVATE:
            return  # zero-filled: mapped to the zero page by the split (its item dropped)
        if entry is not None and self._stable_merge(kv, pfn, mpn, key, entry):
            return
        if old != csum:
            return
        if self.use_zero_pages and csum == ZERO_CHECKSUM and self._zero_merge(kv, pfn, mpn):
            return
        cand = self._unstable.get(key)
        if cand is None:
            self._unstable[key] = (vi << 32) | pfn
            kv.flags[pfn] = _UNSTABLE
            self.pages_unshared += 1
        else:
            self._unstable_merge(kv, vi, pfn, mpn, key, cand)

    def _bulk_window(self, kv: _KsmVM, vi: int, lo: int, hi: int) -> bool:
        """Scan a window of private frames [lo, hi) at C speed when the outcome is plain.

        NOTE: an optimisation with exactly the per-page outcome. It applies when every
        frame is seen for the first time (all become volatile items) or when, for frames
        all known, nothing can merge: no stable-tree hit, no smart_scan decision (ages
        below 3), no zero page to map, and the non-volatile frames' keys are distinct and
        absent from the unstable tree (they are simply inserted). Otherwise it returns
        False, having changed nothing but the machine's checksum cache, and the per-page
        loop runs.
        """
        k = hi - lo
        if self.smart_scan and kv.age[lo:hi].translate(None, b"\x00\x01"):
            # an age reaches 3 (a stored age >= 2): smart_scan decides page by page (such
            # a frame has an rmap item, so the window is not a first visit either)
            return False
        p2m = kv.vm.p2m
        oldsum = kv.oldsum
        mcsum = self.machine.csum
        stable = self._stable
        salt = kv.salt
        ms = p2m.mpn[lo:hi]
        m0 = ms[0]
        contiguous = ms[-1] - m0 == k - 1 and ms == self._iota(m0, k)
        old = oldsum[lo:hi]
        if old == _NO_ITEMS[:k]:
            # first visits (a VM just booted or loaded): checksum all, all volatile
            machine = self.machine
            cs = mcsum[m0 : m0 + k] if contiguous else list(map(mcsum.__getitem__, ms))
            if cs.count(-1) != k and WRITTEN in cs:
                for m in ms:  # the guest's writes folded in before hashing
                    if mcsum[m] == WRITTEN:
                        machine.fold(m)
            content = machine.content
            datas = content[m0 : m0 + k] if contiguous else list(map(content.__getitem__, ms))
            sums_q = checksums(datas)
            sums = sums_q.tolist()
            if contiguous:
                mcsum[m0 : m0 + k] = sums
            else:
                for m, c in zip(ms, sums, strict=True):
                    mcsum[m] = c
            self.pages_hashed += k
            if stable and any(map(stable.get, sums if not salt else [c | salt for c in sums])):
                return False  # some match the stable tree (checksums now cached)
            oldsum[lo:hi] = sums_q
            self.rmap_items += k
            return True
        if -1 in old or UNHASHED in old:
            return False
        sums = mcsum[m0 : m0 + k] if contiguous else list(map(mcsum.__getitem__, ms))
        if min(sums) < 0:
            return False  # some content changed (-1, or WRITTEN): rehash page by page
        age = kv.age
        smart = self.smart_scan
        keys = sums if not salt else [c | salt for c in sums]
        if stable and any(map(stable.get, keys)):
            return False
        same = list(map(_eq, old, sums))  # unchanged since the last visit: may merge
        cand = list(_select(keys, same))
        if cand:
            if self.use_zero_pages and ZERO_CHECKSUM in _select(sums, same):
                return False
            unstable = self._unstable
            if len(set(cand)) != len(cand) or any(map(unstable.__contains__, cand)):
                return False  # a merge in the unstable tree
        # commit: the per-page loop's effects, in bulk
        flags = kv.flags
        if smart:
            age[lo:hi] = age[lo:hi].translate(_AGE_PLUS_ONE)
        self.pages_unshared += len(cand) - flags.count(_UNSTABLE, lo, hi)
        oldsum[lo:hi] = array("q", sums)
        flags[lo:hi] = bytes(same)  # _UNSTABLE == 1 for the inserted ones
        if cand:
            base = vi << 32
            self._unstable.update(zip(cand, map(base.__or__, _select(range(lo, hi), same))))
        return True

    def _iota(self, start: int, k: int) -> array:
        """array("i", range(start, start + k)), sliced from one kept array (extended as
        machine frame numbers grow) instead of built from a range every window."""
        end = start + k
        if len(self._iota_frames) < end:
            self._iota_frames = array("i", range(max(end, 2 * len(self._iota_frames))))
        return self._iota_frames[start:end]

    @staticmethod
    def _skip_mask(kv: _KsmVM, lo: int, hi: int, private: int) -> int:
        """should_skip_rmap_item for a window [lo, hi) at C speed, without side effects: a
        byte a frame (little-endian int), 1 where the frame will be skipped. `private`: the
        window's P2M_PRIVATE frames, same form.

        NOTE: a frame is skipped when it is a private frame whose rmap item is old enough
        (stored age >= 2, i.e. age >= 3) and still has skips left (skips > 0 implies an
        rmap item: only smart_scan sets it and dropping an item clears it). Skipping
        depends on nothing but the frame itself, so deciding it before the window's other
        frames changes no outcome."""
        sk = kv.skips[lo:hi]
        if sk.count(0) == hi - lo:
            return 0
        return (int.from_bytes(sk.translate(_NONZERO), "little")
                & int.from_bytes(kv.age[lo:hi].translate(_AGE_OLD), "little")
                & private)

    def _take_skips(self, kv: _KsmVM, lo: int, hi: int, m: int) -> None:
        """Skip the frames of [lo, hi) in the mask `m` (see _skip_mask), as the per-page
        loop does: each is aged (up to 255), loses one skip, leaves the unstable tree and
        counts in pages_skipped."""
        k = hi - lo
        skips = kv.skips
        age = kv.age
        skips[lo:hi] = (int.from_bytes(skips[lo:hi], "little") - m).to_bytes(k, "little")
        ag = age[lo:hi]
        grow = m & int.from_bytes(ag.translate(_AGE_BELOW_MAX), "little")
        if grow:
            age[lo:hi] = (int.from_bytes(ag, "little") + grow).to_bytes(k, "little")
        flags = kv.flags
        f = int.from_bytes(flags[lo:hi], "little")
        u = f & m  # _UNSTABLE is bit 0; a private frame's flags are 0 or _UNSTABLE
        if u:
            flags[lo:hi] = (f - u).to_bytes(k, "little")
            self.pages_unshared -= u.bit_count()
        self.pages_skipped += m.bit_count()

    def full_pass(self) -> float:
        """Scan until the current pass completes; CPU seconds."""
        start = self.full_scans
        cost = 0.0
        total = sum(kv.vm.nr_pages for kv in self._vms) + 1
        while self.full_scans == start and self._vms:
            cost += self.scan(total, stop_at_pass_end=True)
        return cost

    # -- merging -----------------------------------------------------------------------------

    def _charge(self, compares: int, merges: int) -> None:
        c = compares * self.compare_cost + merges * self.merge_cost
        self.byte_compares += compares
        self.scan_time += c

    def try_stable_merge(self, vm, pfn: int) -> bool:
        """Merge one private frame into an identical stable frame now, if one has room.

        ESX tries to share a page before paging it out; this is the scanner's own first
        step (the stable tree is searched before any checksum history), done out of turn
        for a frame the host is about to evict. True if the frame was merged (and freed).
        """
        kv = vm._ksm
        p2m = vm.p2m
        if not self._stable or p2m.state[pfn] != P2M_PRIVATE:
            return False
        if vm.large_pages and p2m.large[pfn >> LARGE_PAGE_SHIFT] == 1:
            return False
        mpn = p2m.mpn[pfn]
        mcsum = self.machine.csum
        csum = mcsum[mpn]
        if csum < 0:
            csum = mcsum[mpn] = _xxh3(page_bytes(self.machine.data(mpn))) & 0xFFFFFFFF
            self.pages_hashed += 1
        self.scan_time += self.hash_cost
        key = csum | kv.salt
        entry = self._stable.get(key)
        if entry is None:
            return False
        was_unstable = kv.flags[pfn] & _UNSTABLE
        new_item = kv.oldsum[pfn] < 0
        if not self._stable_merge(kv, pfn, mpn, key, entry):
            return False
        if new_item:
            kv.oldsum[pfn] = 0
            self.rmap_items += 1
        if was_unstable:
            self.pages_unshared -= 1
        return True

    def _stable_merge(self, kv: _KsmVM, pfn: int, mpn: int, key: int, entry) -> bool:
        """stable_tree_search + try_to_merge_with_ksm_page. True if the page merged."""
        machine = self.machine
        data = machine.content[mpn]
        chains = entry if type(entry) is list else (entry,)
        compares = 0
        for chain in chains:
            compares += 1
            if chain.data is data or chain.data == data:
                # stable_node_dup: the first dup with room, in the chain's order; at most
                # every stable_node_chains_prune_millisecs all dups are walked and the
                # fullest with room is taken. The one found moves to the head while it
                # has room for one more, so the next search finds it first.
                best = -1
                best_rc = 0
                rc = machine.refcount
                limit = self.max_page_sharing
                dups = chain.dups
                if self.now < chain.prune_time + self.stable_node_chains_prune_millisecs / 1000.0:
                    for dup in dups:
                        r = rc[dup]
                        if r < limit:
                            best, best_rc = dup, r
                            break
                else:
                    chain.prune_time = self.now
                    for dup in dups:
                        r = rc[dup]
                        if r < limit and r > best_rc:
                            best, best_rc = dup, r
                if best < 0:
                    self._charge(compares, 0)
                    return False  # all dups full: wait for a partner in the unstable tree
                if dups[0] != best and best_rc + 1 < limit:
                    dups.remove(best)
                    dups.insert(0, best)
                machine.get(best)
                machine.free(mpn)
                kv.vm.p2m.set(pfn, P2M_SHARED, best)
                kv.flags[pfn] = _STABLE
                self.pages_sharing += 1
                self.merges += 1
                self._charge(compares, 1)
                return True
            self.hash_collisions += 1
        self._charge(compares, 0)
        return False

    def _zero_merge(self, kv: _KsmVM, pfn: int, mpn: int) -> bool:
        data = self.machine.content[mpn]
        self._charge(1, 0)
        if data is not ZERO_PAGE and data != ZERO_PAGE:
            self.hash_collisions += 1
            return False
        self.machine.free(mpn)
        kv.vm.p2m.set(pfn, P2M_ZERO)
        self.ksm_zero_pages += 1
        self.merges += 1
        self._charge(0, 1)
        return True

    def _unstable_merge(self, kv: _KsmVM, vi: int, pfn: int, mpn: int, key: int, cand) -> None:
        """unstable_tree_search_insert + try_to_merge_two_pages + stable_tree_insert."""
        machine = self.machine
        data = machine.content[mpn]
        if data.__class__ is not bytes:
            # the bytes, made once: compared with each candidate, and the KSM frame's if it merges
            data = page_bytes(data)
        cands = cand if type(cand) is list else [cand]
        keep: list[int] = []
        merged = False
        compares = 0
        for item in cands:
            if merged:
                keep.append(item)
                continue
            ckv = self._vms[item >> 32]
            cpfn = item & 0xFFFFFFFF
            cp2m = ckv.vm.p2m
            if cp2m.state[cpfn] != P2M_PRIVATE or not ckv.flags[cpfn] & _UNSTABLE:
                continue  # stale: the page changed hands since it was inserted
            if cp2m.large[cpfn >> LARGE_PAGE_SHIFT] == 1 and machine.data(cp2m.mpn[cpfn]) == data:
                # a subpage of a host THP (KVM): try_to_merge_one_page splits it first
                ckv.vm.lp.split_for(ckv.vm, cpfn, "ksm")
                if cp2m.state[cpfn] != P2M_PRIVATE:
                    continue  # zero-filled: the split mapped it to the zero page
            cmpn = cp2m.mpn[cpfn]
            ccsum = machine.csum[cmpn]
            if ccsum < 0:
                # The tree page changed since it was inserted (the guest wrote it). Its
                # node stays in the tree; it matches only if its bytes now equal these.
                ccsum = machine.csum[cmpn] = _xxh3(page_bytes(machine.data(cmpn))) & 0xFFFFFFFF
                self.pages_hashed += 1
                if ccsum | ckv.salt != key:
                    keep.append(item)
                    continue
            cdata = machine.content[cmpn]
            compares += 1
            if cdata is not data and cdata != data:
                self.hash_collisions += 1
                keep.append(item)
                continue
            # Merge: this page's frame becomes the KSM frame, the tree page's is freed.
            machine.content[mpn] = data  # (the same contents; as bytes: compared often)
            ckv.flags[cpfn] = _STABLE
            self.pages_unshared -= 1
            machine.free(cmpn)
            cp2m.set(cpfn, P2M_SHARED, mpn)
            machine.owner[mpn] = OWNER_SHARED
            machine.get(mpn)
            kv.vm.p2m.set(pfn, P2M_SHARED, mpn)
            kv.flags[pfn] = _STABLE
            compares += self._stable_insert(mpn, data, key)
            self.pages_shared += 1
            self.pages_sharing += 1
            self.merges += 1
            merged = True
        if not merged:
            keep.append((vi << 32) | pfn)
            kv.flags[pfn] = _UNSTABLE
            self.pages_unshared += 1
        if len(keep) == 1:
            self._unstable[key] = keep[0]
        elif keep:
            self._unstable[key] = keep
        else:
            del self._unstable[key]
        self._charge(compares, 1 if merged else 0)

    def _stable_insert(self, mpn: int, data: bytes, key: int) -> int:
        """Add a new KSM frame to its content's chain. Returns byte compares made."""
        entry = self._stable.get(key)
        compares = 0
        chain = None
        if entry is not None:
            for c in entry if type(entry) is list else (entry,):
                compares += 1
                if c.data is data or c.data == data:
                    chain = c
                    break
                self.hash_collisions += 1
        if chain is None:
            chain = _Chain(data, key)
            if entry is None:
                self._stable[key] = chain
            elif type(entry) is list:
                entry.append(chain)
            else:
                self._stable[key] = [entry, chain]
        chain.dups.insert(0, mpn)  # stable_node_chain_add_dup: at the head
        nd = len(chain.dups)
        if nd == 2:
            self.stable_node_chains += 1
            self.stable_node_dups += 2
        elif nd > 2:
            self.stable_node_dups += 1
        self._chain_of[mpn] = chain
        return compares

    # -- breaking ----------------------------------------------------------------------------

    def unmap(self, vm, pfn: int) -> None:
        """The guest frame stops mapping its shared frame or the zero page (CoW, release).

        The VM then moves the PFN to its new state; this only does the accounting.
        """
        kv = vm._ksm
        p2m = vm.p2m
        s = p2m.state[pfn]
        if s == P2M_ZERO:
            self.ksm_zero_pages -= 1
            return
        mpn = p2m.mpn[pfn]
        kv.flags[pfn] = 0
        machine = self.machine
        if machine.refcount[mpn] > 1:
            machine.refcount[mpn] -= 1
            self.pages_sharing -= 1
            return
        # last mapping: the KSM frame and its stable node go away
        chain = self._chain_of.pop(mpn)
        chain.dups.remove(mpn)
        nd = len(chain.dups)
        if nd == 1:
            self.stable_node_chains -= 1
            self.stable_node_dups -= 2
        elif nd > 1:
            self.stable_node_dups -= 1
        elif nd == 0:
            entry = self._stable[chain.key]
            if entry is chain:
                del self._stable[chain.key]
            else:
                entry.remove(chain)
                if len(entry) == 1:
                    self._stable[chain.key] = entry[0]
        self.pages_shared -= 1
        machine.free(mpn)

    def forget_vm_items(self, vm) -> int:
        """The VM died (its frames went back with guest_panicked): free the rmap items of
        all its pages, as ksm_exit does for an exiting mm. Returns the items freed."""
        kv = vm._ksm
        oldsum = kv.oldsum
        freed = 0
        for pfn in range(vm.nr_pages):
            if oldsum[pfn] >= 0:
                self._drop_item(kv, pfn)
                freed += 1
        return freed

    def _drop_item(self, kv: _KsmVM, pfn: int) -> None:
        """The page is no longer there to scan: free its rmap item."""
        if kv.flags[pfn] & _UNSTABLE:
            self.pages_unshared -= 1
        kv.flags[pfn] = 0
        kv.oldsum[pfn] = -1
        kv.age[pfn] = 0
        kv.skips[pfn] = 0
        self.rmap_items -= 1

    # -- checking ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Recount every counter from the P2Ms and trees; AssertionError on a mismatch."""
        machine = self.machine
        shared = sharing = unshared = items = zero = 0
        for kv in self._vms:
            p2m = kv.vm.p2m
            for pfn in range(kv.vm.nr_pages):
                s = p2m.state[pfn]
                if kv.oldsum[pfn] >= 0:
                    items += 1
                    # the scanner never visits unbacked frames: they must have no item
                    assert s != P2M_NONE, f"{kv.vm.name} pfn {pfn:#x}: rmap item on an unbacked frame"
                if kv.flags[pfn] & _UNSTABLE:
                    unshared += 1  # (a released page stays counted until its next visit)
                if s == P2M_SHARED:
                    assert kv.flags[pfn] & _STABLE
                    assert p2m.mpn[pfn] in self._chain_of
                if s == P2M_ZERO:
                    zero += 1
        dups = chains = 0
        for entry in self._stable.values():
            for chain in entry if type(entry) is list else (entry,):
                assert chain.dups, "empty chain left in the stable tree"
                if len(chain.dups) > 1:
                    chains += 1
                    dups += len(chain.dups)
                for mpn in chain.dups:
                    assert machine.owner[mpn] == OWNER_SHARED
                    assert machine.content[mpn] == chain.data
                    shared += 1
                    sharing += machine.refcount[mpn] - 1
        assert shared == self.pages_shared, (shared, self.pages_shared)
        assert sharing == self.pages_sharing, (sharing, self.pages_sharing)
        assert unshared == self.pages_unshared, (unshared, self.pages_unshared)
        assert items == self.rmap_items, (items, self.rmap_items)
        assert zero == self.ksm_zero_pages, (zero, self.ksm_zero_pages)
        assert chains == self.stable_node_chains and dups == self.stable_node_dups


class Scanner:
    """ksmd: every `sleep_millisecs` scans `pages_to_scan` frames (SimPy process)."""

    def __init__(self, env, sharing: PageSharing, enabled=None, cpus=None) -> None:
        self.env = env
        self.sharing = sharing
        self.enabled = enabled  # callable() -> bool (e.g. the host's memory state), or None
        self.cpus = cpus  # cpu.HostCPUs: a batch runs on a host CPU (None: always at once)
        self.batches = 0
        self.process = env.process(self._run())

    def _run(self):
        sharing = self.sharing
        while True:
            if sharing.run and (self.enabled is None or self.enabled()):
                sharing.now = self.env.now
                cpu = sharing.scan()
                self.batches += 1
                if cpu:
                    now = self.env.now
                    end = self.cpus.run(now, cpu, 0) if self.cpus is not None else now + cpu
                    yield self.env.timeout(end - now)
            yield self.env.timeout(sharing.sleep_millisecs / 1000.0)
