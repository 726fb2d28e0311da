"""Memory cgroups with limits (6.1: mm/page_counter.c, mm/memcontrol.c, mm/vmscan.c;
guestkernel/memcontrol.py's hierarchy and guestkernel/cgroup.py's files).

Every expected value follows the kernel's algorithm: page_counter_try_charge fails at the
first level above its max (its failcnt counts, the levels below are cancelled);
try_charge_memcg charges MEMCG_CHARGE_BATCH (64) at a time into the per-CPU stock, then
the page alone; over the limit it reclaims (try_to_free_mem_cgroup_pages: at least
max(nr_pages, SWAP_CLUSTER_MAX) pages when that many can be had), drains the stocks once,
retries MAX_RECLAIM_RETRIES (16) times without progress, and only then OOM-kills inside
the cgroup; limit reclaim walks only the cgroup's subtree and is not counted as direct
reclaim in /proc/vmstat; a page sits on its memcg's lruvec (folio_lruvec)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.gfp import GFP_KERNEL
from guestkernel.kernel import Kernel
from guestkernel.memcontrol import (
    MAX_RECLAIM_RETRIES,
    MEMCG_CHARGE_BATCH,
    MEMCG_RECLAIM_MAY_SWAP,
    PAGE_COUNTER_MAX,
    PageCounter,
)
from guestkernel.page_alloc import SWAP_CLUSTER_MAX
from guestkernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from guestkernel.vmscan import LRU_INACTIVE_ANON, LRU_INACTIVE_FILE
from guestkernel.workingset import MEM_CGROUP_ID_SHIFT, WORKINGSET_SHIFT

MiB = 1 << 20
PAGE = 4096
V1 = "/sys/fs/cgroup/memory"
V2 = "/sys/fs/cgroup"


def boot(version: int = 1, swap: str = "64MiB", memory: str = "192MiB", **kw) -> Kernel:
    return Kernel(memory=memory, swap=swap, cgroup_version=version, **kw)


def anon(task, nbytes: int) -> int:
    addr = task.mmap(0, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    assert addr > 0
    return addr


def in_cgroup(k: Kernel, name: str, limit: str | None, comm: str = "t"):
    cg = k.cgroup
    path = f"{cg.mount_point}/{name}"
    if not cg.exists(path):
        cg.mkdir(path)
    if limit is not None:
        cg.write(f"{path}/memory.limit_in_bytes" if cg.version == 1 else f"{path}/memory.max", limit)
    t = k.spawn(comm)
    cg.attach(t, path)
    return cg.lookup(path), t


def stock_of(k: Kernel, memcg) -> int:
    t = k.memcgs
    return sum(n for m, n in zip(t.stock_cached, t.stock_nr) if m is memcg)


def user_pages(k: Kernel, memcg) -> int:
    """The pages charged to memcg for user memory: its usage less the stock and the
    kernel pages charged beside them (MEMCG_KMEM: page tables, the task's slab objects;
    memcontrol.validate holds it to the kernel pages and objects recorded)."""
    return memcg.memory.usage - stock_of(k, memcg) - memcg.kstat["kernel"]


# ----------------------------------------------------------------------- page_counter
def test_page_counter_try_charge_fails_at_the_level_over_its_max():
    """page_counter_try_charge: the parent's max is hit; its failcnt counts, the child's
    charge is cancelled, nothing changes usage; page_counter_charge ignores max."""
    parent = PageCounter(None)
    child = PageCounter(parent)
    parent.max = 10
    assert child.try_charge(8) is None
    assert (child.usage, parent.usage) == (8, 8)
    assert child.try_charge(3) is parent
    assert (child.usage, parent.usage, parent.failcnt, child.failcnt) == (8, 8, 1, 0)
    child.charge(3)  # forced
    assert (child.usage, parent.usage, parent.watermark) == (11, 11, 11)
    child.uncharge(11)
    assert (child.usage, parent.usage, child.watermark) == (0, 0, 11)
    assert child.set_max(5) == 0 and child.try_charge(6) is child and child.failcnt == 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["try", "force", "un", "max"]), st.integers(0, 2),
                          st.integers(0, 40)), max_size=60))
def test_page_counter_invariants_under_random_operations(ops):
    """mm/page_counter.c over a root -> a -> b chain: each level's usage is what was
    charged through it less what was uncharged; try_charge never leaves a level above its
    max (only page_counter_charge may); watermark is the highest usage seen (a failed
    try_charge's levels below the failing one included: it charged them first); failcnt
    counts the failures at the failing level; set_max refuses a max below usage
    (-EBUSY)."""
    root = PageCounter(None)
    a = PageCounter(root)
    b = PageCounter(a)
    levels = [root, a, b]
    charged = [0, 0, 0]  # what each level holds by the model
    fails = [0, 0, 0]
    peak = [0, 0, 0]
    for op, lvl, n in ops:
        c = levels[lvl]
        chain = list(range(lvl, -1, -1))  # lvl and its ancestors
        if op == "try":
            over = next((i for i in chain if charged[i] + n > levels[i].max), None)
            got = c.try_charge(n)
            if over is None:
                assert got is None
                for i in chain:
                    charged[i] += n
                    assert levels[i].usage <= levels[i].max
            else:
                assert got is levels[over]
                fails[over] += 1
                for i in chain[:chain.index(over)]:
                    # the levels below were charged, then cancelled: their watermark
                    # saw it (page_counter_try_charge raises it before going up)
                    peak[i] = max(peak[i], charged[i] + n)
        elif op == "force":
            c.charge(n)
            for i in chain:
                charged[i] += n
        elif op == "un":
            n = min(n, min(charged[i] for i in chain))
            c.uncharge(n)
            for i in chain:
                charged[i] -= n
        else:
            ret = c.set_max(n)
            assert ret == (-16 if charged[lvl] > n else 0)
        for i in range(3):
            peak[i] = max(peak[i], charged[i])
            assert levels[i].usage == charged[i]
            assert levels[i].failcnt == fails[i]
            assert levels[i].watermark == peak[i]


def test_try_charge_fails_below_max_never_raises_usage_above_it():
    """page_counter_try_charge: a charge that would pass max fails; usage stays at most
    max whatever the sequence of charges (force aside)."""
    c = PageCounter(None)
    c.max = 100
    for n in (30, 30, 30, 30, 10, 1, 64):
        c.try_charge(n)
        assert c.usage <= 100
    assert c.usage == 100 and c.watermark == 100 and c.failcnt == 3


# ----------------------------------------------------------------------- the interface
def test_v1_files_limits_and_errors():
    """mem_cgroup_legacy_files: limit_in_bytes through page_counter_memparse (bytes
    rounded down to pages, "-1" unlimited: PAGE_COUNTER_MAX pages), the root's limit
    refused (EINVAL), failcnt and max_usage_in_bytes reset by a write; unknown files and
    cgroups FileNotFoundError; a busy cgroup's rmdir EBUSY."""
    k = boot(1)
    cg = k.cgroup
    cg.mkdir(f"{V1}/a")
    assert cg.read(f"{V1}/a/memory.limit_in_bytes") == f"{PAGE_COUNTER_MAX * PAGE}\n"
    cg.write(f"{V1}/a/memory.limit_in_bytes", "10000")
    assert cg.read(f"{V1}/a/memory.limit_in_bytes") == "8192\n"  # 2 pages
    cg.write(f"{V1}/a/memory.limit_in_bytes", "32M")
    assert cg.read(f"{V1}/a/memory.limit_in_bytes") == f"{32 * MiB}\n"
    cg.write(f"{V1}/a/memory.limit_in_bytes", "-1")
    assert cg.read(f"{V1}/a/memory.limit_in_bytes") == f"{PAGE_COUNTER_MAX * PAGE}\n"
    with pytest.raises(OSError) as e:
        cg.write(f"{V1}/memory.limit_in_bytes", "32M")
    assert e.value.errno == 22
    with pytest.raises(ValueError):
        cg.write(f"{V1}/a/memory.limit_in_bytes", "lots")
    with pytest.raises(FileNotFoundError):
        cg.read(f"{V1}/a/memory.max")
    with pytest.raises(FileNotFoundError):
        cg.read(f"{V1}/b/memory.stat")
    t = k.spawn("t")
    cg.write(f"{V1}/a/cgroup.procs", str(t.pid))
    assert cg.read(f"{V1}/a/cgroup.procs") == f"{t.pid}\n"
    assert str(t.pid) not in cg.read(f"{V1}/cgroup.procs").split()
    with pytest.raises(OSError) as e:
        cg.rmdir(f"{V1}/a")
    assert e.value.errno == 16
    cg.write(f"{V1}/cgroup.procs", str(t.pid))
    cg.rmdir(f"{V1}/a")
    assert not cg.exists(f"{V1}/a")


def test_v2_files():
    """memory_files (v2): memory.max / memory.high "max" when unlimited, bytes otherwise;
    memory.events lists 6.1's six events; the root has no memory.current."""
    k = boot(2)
    cg = k.cgroup
    assert cg.mount_point == V2
    cg.mkdir(f"{V2}/a")
    assert cg.read(f"{V2}/a/memory.max") == "max\n"
    cg.write(f"{V2}/a/memory.max", "16M")
    cg.write(f"{V2}/a/memory.high", "8M")
    assert cg.read(f"{V2}/a/memory.max") == f"{16 * MiB}\n"
    assert cg.read(f"{V2}/a/memory.high") == f"{8 * MiB}\n"
    assert [ln.split()[0] for ln in cg.read(f"{V2}/a/memory.events").splitlines()] == [
        "low", "high", "max", "oom", "oom_kill", "oom_group_kill"]
    with pytest.raises(FileNotFoundError):
        cg.read(f"{V2}/memory.current")


# ----------------------------------------------------------------------- charging
def test_charge_batch_and_the_per_cpu_stock():
    """try_charge_memcg: a charge of one page comes from the CPU's stock, or charges
    MEMCG_CHARGE_BATCH to the counter and refills the stock with 63. The task's kernel
    memory takes the same path (6.1 CONFIG_MEMCG_KMEM): mmap's vm_area_struct (200 + 8
    bytes, SLAB_ACCOUNT) makes obj_cgroup_charge charge one page, the first batch; each
    page-table page a fault allocates (GFP_PGTABLE_USER) is one more page charged before
    the page itself. Usage is always the pages charged plus the stock."""
    k = boot(1, memory="128MiB")
    m, t = in_cgroup(k, "a", "256M")
    addr = anon(t, 200 * PAGE)
    assert (m.memory.usage, stock_of(k, m), m.kstat["kernel"]) == (
        MEMCG_CHARGE_BATCH, MEMCG_CHARGE_BATCH - 1, 1)
    pt = t.mm.pgtable
    usage, stock, kernel = MEMCG_CHARGE_BATCH, MEMCG_CHARGE_BATCH - 1, 1
    for i in range(130):
        vpn = (addr >> 12) + i
        tables = sum((vpn >> sh) not in pt.counts[lv] for lv, sh in enumerate(pt.shifts))
        for _ in range(tables + 1):  # __pte_alloc's tables, then the page
            if stock:
                stock -= 1
            else:
                usage, stock = usage + MEMCG_CHARGE_BATCH, MEMCG_CHARGE_BATCH - 1
        kernel += tables
        t.access_range(addr + i * PAGE, PAGE, True)
        assert (m.memory.usage, stock_of(k, m), m.kstat["kernel"]) == (usage, stock, kernel)
    assert usage == 3 * MEMCG_CHARGE_BATCH and kernel >= 2
    k.reclaim.validate()


def test_uncharge_on_free_returns_usage_to_its_value():
    """mem_cgroup_uncharge (uncharge_batch): munmap frees the pages, each uncharged from
    the memcg it was charged to; what stays is the stock."""
    k = boot(1, memory="128MiB")
    m, t = in_cgroup(k, "a", "256M")
    before = user_pages(k, m)
    addr = anon(t, 100 * PAGE)
    t.access_range(addr, 100 * PAGE, True)
    assert user_pages(k, m) == before + 100
    assert m.pgpgin == 100
    t.munmap(addr, 100 * PAGE)
    assert user_pages(k, m) == before
    assert m.pgpgout == 100
    k.reclaim.validate()


def test_a_page_is_on_its_memcgs_lruvec():
    """folio_lruvec: a page a task of the cgroup faults in is on the cgroup's lruvec of
    its node; a root task's page on the root memcg's."""
    k = boot(1, memory="128MiB")
    m, t = in_cgroup(k, "a", "256M")
    r = k.spawn("r")
    a1 = anon(t, 4 * PAGE)
    a2 = anon(r, 4 * PAGE)
    t.access_range(a1, 4 * PAGE, True)
    r.access_range(a2, 4 * PAGE, True)
    mine = [p.pfn for p in m.lruvec(0).lists[LRU_INACTIVE_ANON]]
    roots = [p.pfn for p in k.reclaim.lruvecs[0].lists[LRU_INACTIVE_ANON]]
    pfn_t = t.mm.pgtable.ptes[a1 >> 12] >> 12
    pfn_r = r.mm.pgtable.ptes[a2 >> 12] >> 12
    assert pfn_t in mine and pfn_t not in roots
    assert pfn_r in roots and pfn_r not in mine
    assert k.reclaim.lruvec_of(k.mem_map[pfn_t]) is m.lruvec(0)
    k.reclaim.validate()


def test_attach_does_not_move_charges():
    """v1 without move_charge_at_immigrate: a moved task's pages stay charged to the old
    cgroup (and are uncharged from it when freed); its new pages are charged to the new
    one (mem_cgroup_charge: the task's cgroup at fault time)."""
    k = boot(1, memory="128MiB")
    a, t = in_cgroup(k, "a", "256M")
    k.cgroup.mkdir(f"{V1}/b")
    b = k.cgroup.lookup(f"{V1}/b")
    x = anon(t, 100 * PAGE)
    t.access_range(x, 100 * PAGE, True)
    k.cgroup.attach(t, f"{V1}/b")
    y = anon(t, 50 * PAGE)
    t.access_range(y, 50 * PAGE, True)
    own = {}
    for m in k.memcgs.folio_memcg.values():
        own[m.name] = own.get(m.name, 0) + 1
    assert own == {"a": 100, "b": 50}
    t.munmap(x, 100 * PAGE)
    assert user_pages(k, a) == 0
    assert user_pages(k, b) == 50


# ----------------------------------------------------------------------- the limit
def test_usage_never_exceeds_the_limit_and_reaches_it():
    """With swap, a task writing twice its cgroup's limit: page_counter_try_charge keeps
    usage at most the limit; the watermark (max_usage_in_bytes) reaches it exactly (the
    single page charged last fits); failcnt counts; the overflow goes to swap."""
    k = boot(1)
    m, t = in_cgroup(k, "a", "8M")
    limit = 8 * MiB // PAGE
    addr = anon(t, 16 * MiB)
    peak = 0
    for off in range(0, 16 * MiB, 64 * PAGE):
        t.access_range(addr + off, 64 * PAGE, True)
        peak = max(peak, m.memory.usage)
        assert m.memory.usage <= limit
    assert t.state == "running"
    assert m.memory.watermark == limit
    assert k.cgroup.read(f"{V1}/a/memory.max_usage_in_bytes") == f"{8 * MiB}\n"
    assert m.memory.failcnt > 0
    assert k.vmstat["pswpout"] >= 16 * MiB // PAGE - limit
    k.reclaim.validate()


def test_limit_reclaim_is_not_direct_reclaim_in_vmstat():
    """6.1 shrink_inactive_list: PGSCAN_DIRECT / PGSTEAL_DIRECT count globally only if
    !cgroup_reclaim(sc); pgscan_anon / pgsteal_anon always (as the limit fixture shows:
    pgscan_direct 0, pgscan_anon not); the memcg's own events count them."""
    k = boot(2)
    m, t = in_cgroup(k, "a", "8M")
    addr = anon(t, 16 * MiB)
    t.access_range(addr, 16 * MiB, True)
    vm = k.vmstat
    assert vm["pgscan_direct"] == vm["pgsteal_direct"] == 0
    assert vm["pgscan_anon"] > 0 and vm["pgsteal_anon"] > 0
    stat = dict(ln.split() for ln in k.cgroup.read(f"{V2}/a/memory.stat").splitlines())
    assert int(stat["pgscan_direct"]) == vm["pgscan_anon"]
    assert int(stat["pgsteal_direct"]) == vm["pgsteal_anon"]


def test_try_to_free_mem_cgroup_pages_reclaims_a_batch_from_the_cgroup_only():
    """try_to_free_mem_cgroup_pages(memcg, 1, ...): nr_to_reclaim = max(1,
    SWAP_CLUSTER_MAX) = 32; it reclaims at least that many of the cgroup's pages and
    none of the root memcg's (limit reclaim scans only the subtree)."""
    k = boot(1)
    m, t = in_cgroup(k, "a", "256M")
    r = k.spawn("r")
    a1 = anon(t, 4 * MiB)
    t.access_range(a1, 4 * MiB, True)
    a2 = anon(r, 4 * MiB)
    r.access_range(a2, 4 * MiB, True)
    root_lists = [lst.nr for lst in k.reclaim.lruvecs[0].lists]
    mine = sum(lst.nr for lst in m.lruvec(0).lists)
    got = k.reclaim.try_to_free_mem_cgroup_pages(m, 1, GFP_KERNEL, MEMCG_RECLAIM_MAY_SWAP)
    assert got >= SWAP_CLUSTER_MAX
    assert [lst.nr for lst in k.reclaim.lruvecs[0].lists] == root_lists
    assert sum(lst.nr for lst in m.lruvec(0).lists) == mine - got
    k.reclaim.validate()


def test_resize_below_usage_reclaims_or_fails_with_ebusy():
    """mem_cgroup_resize_max: a limit below usage reclaims the cgroup down to it (with
    swap); with nothing reclaimable (no swap, anonymous only) -EBUSY and the old limit
    stays."""
    k = boot(1)
    m, t = in_cgroup(k, "a", None)
    addr = anon(t, 8 * MiB)
    t.access_range(addr, 8 * MiB, True)
    k.cgroup.write(f"{V1}/a/memory.limit_in_bytes", "4M")
    assert m.memory.usage <= 4 * MiB // PAGE and m.memory.max == 4 * MiB // PAGE
    k2 = boot(1, swap="0")
    m2, t2 = in_cgroup(k2, "a", None)
    addr = anon(t2, 8 * MiB)
    t2.access_range(addr, 8 * MiB, True)
    with pytest.raises(OSError) as e:
        k2.cgroup.write(f"{V1}/a/memory.limit_in_bytes", "4M")
    assert e.value.errno == 16
    assert m2.memory.max == PAGE_COUNTER_MAX


# ----------------------------------------------------------------------- the memcg OOM
def _count_reclaims(k):
    calls = []
    orig = k.reclaim.try_to_free_mem_cgroup_pages

    def counted(memcg, nr_pages, gfp, opts):
        got = orig(memcg, nr_pages, gfp, opts)
        calls.append(got)
        return got

    k.reclaim.try_to_free_mem_cgroup_pages = counted
    return calls


@pytest.mark.parametrize("swap, swappiness", [("0", None), ("64MiB", 0)])
def test_memcg_oom_kills_inside_the_cgroup_after_16_retries(swap, swappiness):
    """try_charge_memcg with nothing reclaimable (no swap; or swap with the cgroup's
    memory.swappiness 0, which get_scan_count turns into SCAN_FILE for cgroup reclaim):
    reclaim once, once more after drain_all_stock, then MAX_RECLAIM_RETRIES more, each
    counted as MEMCG_MAX; then mem_cgroup_oom (MEMCG_OOM) kills the task of the cgroup
    with the highest oom_badness (the big writer, the current task), never the small
    one inside or the one outside; its charge then fails after another 1 + 16 reclaims
    (passed_oom and task_is_dying: -ENOMEM), so the fault ends the task. Nothing is
    scanned."""
    k = boot(1, swap=swap)
    m, small = in_cgroup(k, "oom", "16M", "small")
    if swappiness is not None:
        k.cgroup.write(f"{V1}/oom/memory.swappiness", str(swappiness))
    a = anon(small, 4 * MiB)
    small.access_range(a, 4 * MiB, True)
    outside = k.spawn("outside")
    b = anon(outside, 4 * MiB)
    outside.access_range(b, 4 * MiB, True)
    big = k.spawn("big")
    k.cgroup.attach(big, f"{V1}/oom")
    calls = _count_reclaims(k)
    c = anon(big, 48 * MiB)
    big.access_range(c, 48 * MiB, True)
    assert big.state != "running" and big.term_signal == 9
    assert small.state == "running" and outside.state == "running"
    # the kill's charge: 1 + 1 (after the drain) + 16; the retry after the kill: the
    # stocks are drained already (drained stays true), so 1 + 16
    n = (2 + MAX_RECLAIM_RETRIES) + (1 + MAX_RECLAIM_RETRIES)
    assert calls == [0] * n
    assert m.events["max"] == n
    assert (m.events["oom"], m.events["oom_kill"]) == (1, 1)
    assert k.vmstat["oom_kill"] == 1
    assert k.vmstat["pgscan_anon"] == k.vmstat["pgscan_file"] == 0
    assert k.cgroup.read(f"{V1}/oom/memory.oom_control").splitlines()[2] == "oom_kill 1"
    assert user_pages(k, m) == 4 * MiB // PAGE
    k.reclaim.validate()


# ----------------------------------------------------------------------- global reclaim
def test_global_reclaim_walks_every_memcg():
    """shrink_node_memcgs: global reclaim (no target memcg) shrinks the root's lruvec and
    each child's in mem_cgroup_iter order: a cgroup without a limit loses pages to a
    root task's pressure, counted in its own events as direct reclaim."""
    k = boot(1, memory="96MiB", swap="128MiB")
    m, t = in_cgroup(k, "a", None)
    a = anon(t, 24 * MiB)
    t.access_range(a, 24 * MiB, True)
    held = sum(lst.nr for lst in m.lruvec(0).lists)
    r = k.spawn("r")
    b = anon(r, 80 * MiB)
    r.access_range(b, 80 * MiB, True)
    assert m.vmevents["pgscan_direct"] > 0 and m.vmevents["pgsteal_direct"] > 0
    assert sum(lst.nr for lst in m.lruvec(0).lists) < held
    assert k.vmstat["pgscan_direct"] >= m.vmevents["pgscan_direct"]
    k.reclaim.validate()


def test_page_cache_is_charged_to_the_reader():
    """filemap_add_folio: mem_cgroup_charge of the reading task's memcg; the cgroup's
    page cache stays within its limit and sits on its inactive file list."""
    k = boot(1, swap="0")
    m, t = in_cgroup(k, "a", "4M")
    k.fs.create("/data", 16 * MiB)
    fd = t.open("/data", 0)
    buf = anon(t, 64 * 1024)
    while t.read(fd, buf, 64 * 1024) > 0:
        pass
    assert m.memory.usage <= 4 * MiB // PAGE
    assert m.lruvec(0).lists[LRU_INACTIVE_FILE].nr > 0
    assert m.memory.failcnt > 0
    k.reclaim.validate()


# ----------------------------------------------------------------------- Case 3
def _writer_under_limit(version: int):
    """A clocked guest (asynchronous swap writes, the block plug) with a task writing
    twice its cgroup's 8 MiB limit; every Case-3 wait recorded (the page's flags before,
    whether it was clean after)."""
    import simpy

    from guestkernel.page import PG_reclaim, PG_writeback

    env = simpy.Environment()
    k = Kernel(memory="192MiB", swap="64MiB", cgroup_version=version, env=env)
    waits = []
    orig = k.reclaim._wait_on_writeback

    def wait(page, sc):
        f = page.flags
        clean = orig(page, sc)
        waits.append((f & PG_reclaim, f & PG_writeback, clean, sc.target_mem_cgroup is not None))
        return clean

    k.reclaim._wait_on_writeback = wait
    m, t = in_cgroup(k, "a", "8M")
    addr = anon(t, 16 * MiB)

    def run():
        for off in range(0, 16 * MiB, 256 * PAGE):
            yield env.timeout(t.access_range(addr + off, 256 * PAGE, True))

    env.process(run())
    env.run(until=60)
    return k, m, t, waits


def test_cgroup_v1_reclaim_waits_on_pages_marked_for_reclaim():
    """shrink_folio_list's Case 3 (6.1): cgroup v1 reclaim is not writeback_throttling_sane,
    so a page under writeback that reclaim marked PG_reclaim before (may_enter_fs) is
    waited for (folio_wait_writeback: its sleep sends the task's block plug, so the held
    write goes out and ends) and tried again; each wait ends with the page clean."""
    k, m, t, waits = _writer_under_limit(1)
    assert t.state == "running"
    assert waits, "cgroup v1 reclaim never met a page under writeback"
    assert all(r and w and clean and cg for r, w, clean, cg in waits)
    assert m.memory.watermark == 8 * MiB // PAGE
    k.reclaim.validate()


def test_cgroup_v2_reclaim_does_not_wait_on_writeback():
    """Case 2 for cgroup v2 (writeback_throttling_sane): pages under writeback are marked
    and activated, never waited for in shrink_folio_list."""
    k, m, t, waits = _writer_under_limit(2)
    assert t.state == "running"
    assert waits == []
    k.reclaim.validate()


# ----------------------------------------------------------------------- THP
def test_a_thp_fault_charges_its_folio_and_falls_back_over_the_limit():
    """do_huge_pmd_anonymous_page: mem_cgroup_charge of the 512-page folio (a batch of
    512: max(MEMCG_CHARGE_BATCH, nr_pages), no stock left over); the folio sits on the
    cgroup's lruvec and munmap uncharges it whole. Over the limit the charge fails
    (order 9 > PAGE_ALLOC_COSTLY_ORDER: no memcg OOM) and the fault falls back to 4 KiB
    pages (thp_fault_fallback_charge)."""
    from guestkernel.uapi import MADV_HUGEPAGE

    k = boot(1, thp_enabled="madvise")
    m, t = in_cgroup(k, "a", "256M")
    h = 2 * MiB
    addr = anon(t, 2 * h)
    addr = (addr + h - 1) & ~(h - 1)
    t.madvise(addr, h, MADV_HUGEPAGE)
    t.access_range(addr, PAGE, True)
    assert k.vmstat["thp_fault_alloc"] == 1
    assert user_pages(k, m) == 512
    assert m.lruvec(0).lists[LRU_INACTIVE_ANON].nr == 512
    k.reclaim.validate()
    t.munmap(addr, h)
    assert user_pages(k, m) == 0
    k.reclaim.validate()
    k2 = boot(1, thp_enabled="madvise", swap="0")
    m2, t2 = in_cgroup(k2, "a", "1M")
    addr = anon(t2, 2 * h)
    addr = (addr + h - 1) & ~(h - 1)
    t2.madvise(addr, h, MADV_HUGEPAGE)
    t2.access_range(addr, PAGE, True)
    assert k2.vmstat["thp_fault_alloc"] == 0
    assert k2.vmstat["thp_fault_fallback_charge"] == 1
    assert m2.events["oom"] == 0 and t2.state == "running"
    assert user_pages(k2, m2) == 1
    k2.reclaim.validate()


# ----------------------------------------------------------------------- memory.high
def test_calculate_high_delay():
    """calculate_overage / calculate_high_delay (6.1): overage = (usage - high) << 20 /
    high; penalty = overage^2 * HZ >> 20 >> 14 jiffies, times nr_pages / 64. 64 pages
    over 1024: overage 65536, 65536^2 * 250 >> 34 = 62 jiffies; twice the high: 2^20,
    2^40 * 250 >> 34 = 16000 jiffies (capped at 2 * HZ by the caller)."""
    from guestkernel.memcontrol import MemCgroupTree

    assert MemCgroupTree.calculate_high_delay(64, (64 << 20) // 1024) == 62
    assert MemCgroupTree.calculate_high_delay(32, (64 << 20) // 1024) == 31
    assert MemCgroupTree.calculate_high_delay(64, 1 << 20) == 16000
    assert MemCgroupTree.calculate_high_delay(64, 0) == 0


def test_over_high_reclaims_then_sleeps_the_penalty():
    """mem_cgroup_handle_over_high: with nothing reclaimable (no swap) a task 64 pages
    over a high its cgroup exceeds twice over reclaims once and MAX_RECLAIM_RETRIES more
    (reclaim_high: a MEMCG_HIGH event each), then sleeps min(16000, 2 * HZ) jiffies: 2 s.
    With swap, charges above high reclaim the cgroup back to it: no sleep, no OOM, usage
    kept near high while max is far."""
    k = boot(2, swap="0")
    m, t = in_cgroup(k, "a", None)
    addr = anon(t, 8 * MiB)
    t.access_range(addr, 8 * MiB, True)
    m.memory.high = m.memory.usage // 2
    t.memcg_nr_pages_over_high = MEMCG_CHARGE_BATCH
    before = k.iowait_throttle
    t._kdepth += 1  # as inside the return to user
    k.memcgs.mem_cgroup_handle_over_high(t)
    t._kdepth -= 1
    assert m.events["high"] == 1 + MAX_RECLAIM_RETRIES
    assert k.iowait_throttle - before == pytest.approx(2.0)
    k2 = boot(2)
    m2, t2 = in_cgroup(k2, "a", None)
    k2.cgroup.write(f"{V2}/a/memory.high", "4M")
    addr = anon(t2, 8 * MiB)
    t2.access_range(addr, 8 * MiB, True)
    high = 4 * MiB // PAGE
    assert m2.events["high"] > 0 and m2.events["max"] == 0 and m2.events["oom"] == 0
    assert m2.memory.usage <= high + MEMCG_CHARGE_BATCH  # a batch over, then reclaimed
    assert k2.iowait_throttle == 0.0
    k2.reclaim.validate()


# ----------------------------------------------------------------------- protection
def test_effective_protection_follows_the_header_example():
    """effective_protection (6.1), include/linux/memcontrol.h's example: A (low 2G, usage
    3G, children_low_usage 1.5G), B (low 1G, usage 0.5G), C (low 1G, usage 2.5G). B's
    elow is its usage (0.5G); C's min(usage, low) = 1G without memory_recursiveprot, and
    with it 1G plus A's unclaimed 0.5G by C's unprotected share (1.5G of 1.5G): 1.5G.
    Siblings claiming more than the parent has share it: 1G * 2G / 4G = 0.5G."""
    k = boot(2)
    t = k.memcgs
    G = 1 << 18  # pages in a GiB
    half = G // 2
    assert t.recursive_prot
    assert t.effective_protection(half, 3 * G, G, 2 * G, 3 * half) == half
    assert t.effective_protection(5 * half, 3 * G, G, 2 * G, 3 * half) == 3 * half
    t.recursive_prot = False
    assert t.effective_protection(5 * half, 3 * G, G, 2 * G, 3 * half) == G
    assert t.effective_protection(2 * G, 4 * G, G, 2 * G, 4 * G) == half


def _protected_and_pressure(setting: str):
    k = Kernel(memory="96MiB", swap="128MiB", cgroup_version=2)
    m, t = in_cgroup(k, "p", None)
    k.cgroup.write(f"{V2}/p/{setting}", "32M")
    a = anon(t, 8 * MiB)
    t.access_range(a, 8 * MiB, True)
    r = k.spawn("r")
    b = anon(r, 96 * MiB)
    r.access_range(b, 96 * MiB, True)
    return k, m


def test_global_reclaim_skips_a_cgroup_below_memory_min():
    """shrink_node_memcgs: a memcg whose usage is within its effective memory.min
    (mem_cgroup_below_min) is never shrunk; the root's pages are reclaimed instead."""
    k, m = _protected_and_pressure("memory.min")
    assert m.vmevents["pgscan_direct"] == m.vmevents["pgscan_kswapd"] == 0
    assert user_pages(k, m) == 8 * MiB // PAGE
    assert k.vmstat["pgscan_direct"] > 0
    k.reclaim.validate()


def test_global_reclaim_skips_a_cgroup_below_memory_low_while_others_can_give():
    """mem_cgroup_below_low: skipped (memcg_low_skipped) while reclaim finds pages
    elsewhere; MEMCG_LOW counts only when a retry overrides it."""
    k, m = _protected_and_pressure("memory.low")
    assert m.vmevents["pgscan_direct"] == 0
    assert m.events["low"] == 0
    assert user_pages(k, m) == 8 * MiB // PAGE
    k.reclaim.validate()


def test_a_childs_evictions_age_its_parents_lruvecs():
    """workingset_age_nonresident (6.1) walks parent_lruvec: every eviction and
    activation in a child memcg's lruvec ages the root's lruvec of the node by as much;
    a shadow entry carries the child's id (the refault is measured on its clock)."""
    k = boot(1)
    m, t = in_cgroup(k, "a", "256M")
    a = anon(t, 4 * MiB)
    t.access_range(a, 4 * MiB, True)
    child = m.lruvec(0)
    root = k.reclaim.lruvecs[0]
    c0, r0 = child.nonresident_age, root.nonresident_age
    got = k.reclaim.try_to_free_mem_cgroup_pages(m, 64, GFP_KERNEL, MEMCG_RECLAIM_MAY_SWAP)
    assert got >= 64
    assert child.nonresident_age - c0 >= got
    assert root.nonresident_age - r0 == child.nonresident_age - c0
    ws = k.workingset
    shadows = k.swap.ws.shadows if k.swap.ws is not None else {}
    ids = {(sh >> (WORKINGSET_SHIFT + ws.nodes_shift)) & ((1 << MEM_CGROUP_ID_SHIFT) - 1)
           for sh in shadows.values()}
    assert ids == {m.id}


def test_a_shmem_thp_is_charged_whole_or_falls_back():
    """shmem_get_folio_gfp: the huge folio is charged with mem_cgroup_charge (512 pages
    at once) and sits on the cgroup's lruvec; a charge that fails counts
    THP_FILE_FALLBACK and THP_FILE_FALLBACK_CHARGE and the write takes 4 KiB pages."""
    k = boot(1, thp_shmem_enabled="always")
    m, t = in_cgroup(k, "a", "256M")
    src = anon(t, 2 * MiB)
    t.access_range(src, PAGE, True)
    before = user_pages(k, m)
    fd = t.memfd_create("w")
    assert t.write(fd, src, 2 * MiB) == 2 * MiB
    assert k.vmstat["thp_file_alloc"] == 1
    assert user_pages(k, m) == before + 512
    assert sum(lst.nr for lst in m.lruvec(0).lists) == before + 512
    k.reclaim.validate()
    k2 = boot(1, thp_shmem_enabled="always", swap="0")
    m2, t2 = in_cgroup(k2, "a", "1M")
    src = anon(t2, 64 * PAGE)
    t2.access_range(src, PAGE, True)
    fd = t2.memfd_create("w")
    assert t2.write(fd, src, 64 * PAGE) == 64 * PAGE
    assert k2.vmstat["thp_file_alloc"] == 0
    assert k2.vmstat["thp_file_fallback_charge"] >= 1
    assert k2.vmstat["thp_file_fallback"] >= k2.vmstat["thp_file_fallback_charge"]
    assert m2.memory.usage <= 1 * MiB // PAGE
    k2.reclaim.validate()


def test_a_file_collapse_charges_its_folio_to_the_mm_owners_memcg():
    """collapse_file (read-only file THP) through alloc_charge_hpage: the new folio is
    charged (512 pages) to the memcg of the VMA's mm owner, the small pages it replaces
    uncharged as they leave the cache; a folio larger than the limit cannot be charged
    (SCAN_CGROUP_CHARGE_FAIL: MADV_COLLAPSE returns an error), after limit reclaim."""
    from guestkernel import uapi as U

    base, path = 0x40000000, "/usr/bin/big"

    def run(limit: str):
        k = Kernel(memory="256MiB", swap="64MiB", thp_enabled="madvise",
                   read_only_thp_for_fs=True, cgroup_version=1)
        k.fs.ra_pages = 0
        m, t = in_cgroup(k, "a", limit)
        k.fs.create(path, 4 * MiB)
        fd = t.open(path, U.O_RDONLY)
        assert t.mmap(base, 2 * MiB, U.PROT_READ | U.PROT_EXEC,
                      U.MAP_PRIVATE | U.MAP_FIXED, fd, 0) == base
        t.close(fd)
        for i in range(10):
            t.access(base + i * PAGE, False)
        before = user_pages(k, m)
        try:
            ret = t.madvise(base, 2 * MiB, U.MADV_COLLAPSE)
        except OSError as e:
            ret = -e.errno
        return k, m, before, ret

    k, m, before, ret = run("256M")
    assert ret == 0 and k.vmstat["nr_file_hugepages"] == 1
    assert before == 10
    assert user_pages(k, m) == 512
    k.reclaim.validate()
    k, m, before, ret = run("1M")
    # 512 pages cannot fit under 256: reclaim and the retries run (MEMCG_MAX), the memcg
    # OOM is skipped (order 9 > PAGE_ALLOC_COSTLY_ORDER), -ENOMEM
    assert ret != 0 and k.vmstat["nr_file_hugepages"] == 0
    assert m.events["max"] > 0 and m.events["oom"] == 0
    assert user_pages(k, m) <= before
    k.reclaim.validate()
