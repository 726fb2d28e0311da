"""P2M: one VM's map from guest frame (PFN) to what backs it.

Compact by design (16 guests of 4 GiB are 16 M entries): parallel arrays indexed by PFN,
no object per page.

    state[pfn]      P2M_NONE        never touched (reads as zeros, no machine frame)
                    P2M_PRIVATE     a machine frame of its own: `mpn[pfn]`
                    P2M_SHARED      a read-only machine frame shared by page sharing:
                                    `mpn[pfn]`; a write copies it (CoW break)
                    P2M_ZERO        the host's zero page (KSM use_zero_pages); no frame
                    P2M_COMPRESSED  a compressed copy: `mpn[pfn]` is the cache slot
                    P2M_SWAPPED     only on host swap: `mpn[pfn]` is the swap slot
                    P2M_BALLOONED   released by the guest (balloon, free page hint); no
                                    frame, reads as zeros
    mpn[pfn]        machine frame, compression slot or swap slot by state; -1 otherwise
    accessed[pfn]   1 after any touch; the host clears it when it samples (active memory
                    estimation, victim choice by access bits)
    disk_clean[pfn] 1 while the page holds exactly what the guest read from disk (for
                    VSwapper's silent swap writes)
    released_backed[pfn] 1 while ballooned after a release that took something back (a
                    frame, a shared mapping, a compressed or swapped copy)
    nr[state]       how many PFNs are in each state

2 MB large pages (largepage.py): `large[pfn >> 9]` is 0 (never backed by one), 1 while
that 2 MB region is backed by a live host large page (one aligned machine region, subpage
i in its frame i: P2M_NONE subpages hold a reserved frame, the rest are P2M_PRIVATE; ESX
never shares them, KVM's KSM splits it to merge a subpage) and 2 once it was split or
broken into small pages (and, on KVM, 1 again after khugepaged collapses it).
"""

from __future__ import annotations

from array import array

P2M_NONE = 0
P2M_PRIVATE = 1
P2M_SHARED = 2
P2M_ZERO = 3
P2M_COMPRESSED = 4
P2M_SWAPPED = 5
P2M_BALLOONED = 6
NR_P2M_STATES = 7

P2M_STATE_NAMES = ("none", "private", "shared", "zero", "compressed", "swapped", "ballooned")

LARGE_PAGE_SHIFT = 9  # 512 frames of 4 KiB = 2 MiB


class P2M:
    __slots__ = (
        "nr_pages", "state", "mpn", "accessed", "disk_clean", "released_backed", "large", "nr",
    )

    def __init__(self, nr_pages: int) -> None:
        self.nr_pages = nr_pages
        self.state = bytearray(nr_pages)
        self.mpn = array("i", [-1]) * nr_pages
        self.accessed = bytearray(nr_pages)
        self.disk_clean = bytearray(nr_pages)
        self.released_backed = bytearray(nr_pages)
        self.large = bytearray((nr_pages + (1 << LARGE_PAGE_SHIFT) - 1) >> LARGE_PAGE_SHIFT)
        self.nr = [0] * NR_P2M_STATES
        self.nr[P2M_NONE] = nr_pages

    def set(self, pfn: int, state: int, idx: int = -1) -> None:
        """Move `pfn` to `state` backed by `idx` (frame, slot or -1), keeping `nr` exact."""
        nr = self.nr
        nr[self.state[pfn]] -= 1
        nr[state] += 1
        self.state[pfn] = state
        self.mpn[pfn] = idx

    def count(self, state: int) -> int:
        return self.nr[state]

    def pfns_in(self, state: int) -> list[int]:
        """PFNs in `state`, ascending (a scan over the whole map: not for hot paths)."""
        st = self.state
        return [pfn for pfn in range(self.nr_pages) if st[pfn] == state]

    def validate(self) -> None:
        counts = [0] * NR_P2M_STATES
        for pfn in range(self.nr_pages):
            s = self.state[pfn]
            counts[s] += 1
            if s in (P2M_NONE, P2M_ZERO, P2M_BALLOONED):
                assert self.mpn[pfn] == -1, f"pfn {pfn:#x} {P2M_STATE_NAMES[s]} with backing"
            else:
                assert self.mpn[pfn] >= 0, f"pfn {pfn:#x} {P2M_STATE_NAMES[s]} without backing"
        assert counts == self.nr, (counts, self.nr)
