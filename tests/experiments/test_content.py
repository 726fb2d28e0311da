"""Page content: determinism, cross-VM identity of image pages, ASLR, calibration."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.content import (
    IMAGES,
    PROFILES,
    ZRAM_HUGE_CLASS,
    ContentSource,
    DataProfile,
    OSImage,
    content_stats,
    raw_image_pages,
)
from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE

N = 3000  # pages sampled per profile


def binomial_tol(p: float, n: int, sigmas: float = 4.0) -> float:
    """Allowed |observed - p| for a fraction of n Bernoulli(p) draws: `sigmas` standard
    deviations, plus the 1/65536 quantisation of the profile's thresholds."""
    return sigmas * math.sqrt(p * (1 - p) / n) + 1 / 65536


def pages_of(src: ContentSource, profile, n: int = N, pid: int = 0) -> list[bytes]:
    return [src.app_page(profile, k, pid) for k in range(n)]


# --- determinism -----------------------------------------------------------------------


def test_same_seed_same_bytes_and_other_seed_other_bytes():
    a = pages_of(ContentSource(42, "vm1"), "webserver", 200)
    b = pages_of(ContentSource(42, "vm1"), "webserver", 200)
    c = pages_of(ContentSource(43, "vm1"), "webserver", 200)
    assert a == b
    # another seed: only zero and same-filled pages may coincide
    same = [x for x, y in zip(a, c, strict=True) if x == y]
    assert all(x == x[:8] * (PAGE_SIZE // 8) for x in same)


def test_pages_do_not_depend_on_python_hash_seed():
    code = (
        "from experiments.content import ContentSource, OSImage;import xxhash;"
        "s=ContentSource(5,'vm');"
        "d=b''.join(s.app_page(p,k,1) for p in ('idle','jvm') for k in ('a',7,'x/y'));"
        "d+=OSImage.get('alpine-3.19').page('/bin/busybox',3);"
        "print(xxhash.xxh64_hexdigest(d))"
    )
    here = {}
    exec(code.replace("print(", "out=("), here)  # this process: its own hash seed
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={"PYTHONHASHSEED": "12345", "PATH": ""}, check=True)
    assert r.stdout.strip() == here["out"]


@settings(max_examples=60, deadline=None)
@given(profile=st.sampled_from(PROFILES),
       key=st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=30)),
       pid=st.integers(0, 2**22))
def test_every_page_is_one_page_and_a_pure_function(profile, key, pid):
    src = ContentSource(9, "guest")
    page = src.app_page(profile, key, pid)
    assert type(page) is bytes and len(page) == PAGE_SIZE
    assert page == ContentSource(9, "guest").app_page(profile, key, pid)
    assert page == src.page(("app", profile, key, pid))


# --- ASLR and private data ------------------------------------------------------------


def expected_identical(p: DataProfile, same_vm: bool) -> float:
    """Chance that one key gives byte-identical pages in two processes.

    Zero and same-filled pages are equal everywhere. Other data is the same logical data
    when the key is common or both processes are in one VM; it is then byte-identical
    only without pointers (incompressible pages have none; a structured page has none
    with the probability of a 0 in the profile's pointer-count table).
    """
    uniform = p.zero + p.filled
    structured = 1 - uniform - p.incompressible
    pointer_free = p._pointers.count(0) / 256
    logical = 1.0 if same_vm else p.common
    return uniform + logical * (p.incompressible + structured * pointer_free)


@pytest.mark.parametrize("profile", ["webserver", "compile", "jvm"])
def test_aslr_spoils_sharing_across_vms_and_processes(profile):
    p = DataProfile.get(profile)
    vm1, vm2 = ContentSource(1, "vm1"), ContentSource(1, "vm2")
    a = pages_of(vm1, profile)
    for other, same_vm in ((pages_of(vm2, profile), False),
                           (pages_of(vm1, profile, pid=77), True)):
        equal = sum(x == y for x, y in zip(a, other, strict=True)) / N
        want = expected_identical(p, same_vm)
        assert abs(equal - want) <= binomial_tol(want, N)


def test_common_data_differs_only_in_one_run_of_user_pointers():
    p = replace(DataProfile.get("compile"), name="compile-common", common=1.0)
    a = pages_of(ContentSource(3, "vm1"), p, 400)
    b = pages_of(ContentSource(3, "vm2"), p, 400)
    differing = 0
    for x, y in zip(a, b, strict=True):
        diff = [i for i in range(PAGE_SIZE) if x[i] != y[i]]
        if not diff:
            continue
        differing += 1
        first, last = diff[0], diff[-1]
        run = x[first - first % 8: last + 8 - last % 8]
        # one run of at most 64 8-byte words, each a canonical user-space pointer
        # (0x0000_55xx_xxxx_xxxx heap or 0x0000_7fxx_xxxx_xxxx mmap)
        assert len(run) <= 64 * 8
        words = [run[i:i + 8] for i in range(0, len(run), 8)]
        assert all(w[6:] == b"\0\0" and w[5] in (0x55, 0x7F) for w in words), words
    assert differing > 0



@pytest.mark.parametrize("profile", ["webserver", "compile", "database"])
def test_vms_running_one_input_hold_the_same_data(profile):
    # private keys follow the input, not the VM: only pointers can still differ
    p = DataProfile.get(profile)
    a = pages_of(ContentSource(4, "vm1", input="ref"), profile)
    b = pages_of(ContentSource(4, "vm2", input="ref"), profile)
    equal = sum(x == y for x, y in zip(a, b, strict=True)) / N
    want = expected_identical(p, same_vm=True)  # as two processes of one VM
    assert abs(equal - want) <= binomial_tol(want, N)
    # another input is another VM's data: only common keys agree logically
    c = pages_of(ContentSource(4, "vm2", input="train"), profile)
    equal = sum(x == y for x, y in zip(a, c, strict=True)) / N
    want = expected_identical(p, same_vm=False)
    assert abs(equal - want) <= binomial_tol(want, N)


def test_without_aslr_one_input_is_byte_identical_in_every_vm_and_process():
    a = pages_of(ContentSource(4, "vm1", input="ref", randomize_va_space=0), "compile")
    b = pages_of(ContentSource(4, "vm2", input="ref", randomize_va_space=0), "compile",
                 pid=345)
    assert a == b
    # without an input each VM's private data stays its own, ASLR or not
    c = pages_of(ContentSource(4, "vm2", randomize_va_space=0), "compile")
    p = DataProfile.get("compile")
    equal = sum(x == y for x, y in zip(a, c, strict=True)) / N
    want = p.zero + p.filled + p.common * (1 - p.zero - p.filled)
    assert abs(equal - want) <= binomial_tol(want, N)


def test_randomize_va_space_1_fixes_the_brk_heap_only():
    # 0x55.. heap pointers agree across VMs, 0x7f.. mmap pointers do not
    pools = [ContentSource(1, vm, randomize_va_space=1)._pointer_pool("jvm", 9)
             for vm in ("vm1", "vm2")]
    words = [[pool[i:i + 8] for i in range(0, len(pool), 8)] for pool in pools]
    heap = [(x, y) for x, y in zip(*words, strict=True) if x[5] == 0x55]
    mmap = [(x, y) for x, y in zip(*words, strict=True) if x[5] == 0x7F]
    assert heap and mmap
    assert all(x == y for x, y in heap)
    assert all(x != y for x, y in mmap)
    fixed = ContentSource(1, "vm1", randomize_va_space=0)._pointer_pool("jvm", 9)
    assert fixed == ContentSource(2, "vm9", randomize_va_space=0)._pointer_pool("jvm", 1)


def test_configured_keeps_the_vm_and_checks_the_sysctl():
    src = ContentSource(6, "vm1")
    assert src.configured() is src
    other = src.configured(input="ref", randomize_va_space=0)
    assert (other.seed, other.vm_name, other.input, other.randomize_va_space) == (
        6, "vm1", "ref", 0)
    assert other.app_page("idle", 3) == ContentSource(6, "vm1", "ref", 0).app_page("idle", 3)
    with pytest.raises(ValueError, match="randomize_va_space must be 0, 1 or 2"):
        ContentSource(6, "vm1", randomize_va_space=3)

# --- images ---------------------------------------------------------------------------


def test_two_vms_booting_debian_share_every_image_page_object():
    image = OSImage.get("debian-12")
    vm1, vm2 = ContentSource(1, "vm1"), ContentSource(2, "vm2")  # even other seeds
    for region in image.regions:
        for i in range(region.pages):
            a = vm1.image_page("debian-12", region, i)
            b = vm2.image_page("debian-12", region.name, i)
            assert a is b
            assert len(a) == PAGE_SIZE


def nonzero_contents(name: str, stride: int = 1) -> dict[int, str]:
    """128-bit digests of an image's non-zero pages (every `stride`-th page), without
    keeping the pages: a whole Windows image is hundreds of MiB."""
    return {xxhash.xxh3_128_intdigest(page): r.artifact
            for r, i, page in OSImage.get(name).pages(cache=False)
            if i % stride == 0 and page != ZERO_PAGE}


def test_images_share_nothing_but_zero_pages_and_identical_builds():
    debian = nonzero_contents("debian-12")
    ubuntu = nonzero_contents("ubuntu-22.04")
    both = set(debian) & set(ubuntu)
    # Debian and Ubuntu ship the same tzdata build: exactly its non-zero pages match
    assert both and {debian[c] for c in both} == {"tzdata-2024a"}
    tz = OSImage.get("debian-12").region("/usr/share/zoneinfo")
    assert len(both) == tz.pages
    others = {name: nonzero_contents(name, stride=3) for name in
              ("centos-7", "alpine-3.19", "windows-2019", "windows-xp")}
    for name, contents in others.items():
        assert not set(contents) & set(debian), name
        assert not set(contents) & set(ubuntu), name
    assert not set(others["windows-xp"]) & set(others["windows-2019"])


@pytest.mark.parametrize("name", IMAGES)
def test_region_pages_and_file_tails(name):
    image = OSImage.get(name)
    for r in image.regions:
        assert r.pages == -(-r.size // PAGE_SIZE)
        tail = r.size % PAGE_SIZE
        if tail and not r.small_files:
            # past the end of the file the page cache page is zero
            assert image.page(r, r.pages - 1)[tail:] == bytes(PAGE_SIZE - tail)
    assert image.total_pages == sum(r.pages for r in image.regions)


def test_reader_serves_a_region_as_file_content():
    image = OSImage.get("alpine-3.19")
    read = image.reader("/bin/busybox")
    region = image.region("/bin/busybox")
    assert [read(i) for i in range(region.pages)] == [
        image.page(region, i) for i in range(region.pages)]
    assert read(0) is image.page("/bin/busybox", 0)


def test_kernel_text_compresses_like_code_and_images_have_their_kernels():
    debian = OSImage.get("debian-12")
    text = debian.region("vmlinux:.text")
    assert 8 << 20 <= text.size <= 12 << 20
    stats = content_stats(debian.page(text, i) for i in range(0, text.pages, 3))
    assert 2.0 <= stats.ratio <= 3.0
    assert stats.zero_fraction == 0.0
    bss = debian.region("vmlinux:.bss")
    assert all(debian.page(bss, i) is ZERO_PAGE for i in range(bss.pages))
    linux = max(OSImage.get(n).total_pages for n in IMAGES if OSImage.get(n).family == "linux")
    assert OSImage.get("windows-2019").total_pages > linux


# --- calibration ----------------------------------------------------------------------


@pytest.mark.parametrize("profile", PROFILES)
def test_zero_and_same_filled_fractions_as_configured(profile):
    p = DataProfile.get(profile)
    pages = pages_of(ContentSource(11, "vm"), profile)
    zero = sum(page is ZERO_PAGE for page in pages) / N
    filled = sum(page is not ZERO_PAGE and page == bytes((p.fill_byte,)) * PAGE_SIZE
                 for page in pages) / N
    assert abs(zero - p.zero) <= binomial_tol(p.zero, N)
    assert abs(filled - p.filled) <= binomial_tol(p.filled, N)


@pytest.mark.parametrize("profile", ["webserver", "database", "compile", "jvm"])
def test_typical_profiles_compress_like_typical_memory(profile):
    stats = content_stats(pages_of(ContentSource(12, "vm"), profile))
    assert 2.5 <= stats.ratio <= 4.0


@pytest.mark.parametrize("profile", ["media", "encrypted"])
def test_media_and_ciphertext_do_not_compress(profile):
    stats = content_stats(pages_of(ContentSource(13, "vm"), profile, 1000))
    assert stats.ratio <= 1.05


def test_idle_memory_matches_the_lkml_zram_dataset():
    # mean compressed size 694 B with 11 % zero pages; allowed within 15 %
    stats = content_stats(pages_of(ContentSource(14, "vm"), "idle"))
    assert 0.85 * 694 <= stats.mean_compressed <= 1.15 * 694
    assert abs(stats.zero_fraction - 0.11) <= binomial_tol(0.11, N)


# --- identity and stats rules ---------------------------------------------------------


def test_identical_contents_are_one_object():
    src = ContentSource(1, "vm")
    hog = pages_of(src, "memhog", 50)
    assert all(page is hog[0] for page in hog)
    assert hog[0] == b"\xff" * PAGE_SIZE
    zeros = [pg for pg in pages_of(src, "jvm", 400) if pg == ZERO_PAGE]
    assert zeros and all(pg is ZERO_PAGE for pg in zeros)
    img = OSImage.get("alpine-3.19")
    assert img.page("/bin/busybox", 0) is ContentSource(2, "x").image_page(
        "alpine-3.19", "/bin/busybox", 0)


def test_content_stats_counts_pages_as_zram_stores_them():
    random_page = ContentSource(1, "vm").app_page("encrypted", 0)
    same_filled = b"\x01\x02\x03\x04\x05\x06\x07\x08" * (PAGE_SIZE // 8)
    stats = content_stats([ZERO_PAGE, same_filled, random_page, random_page])
    # zero and same-filled pages: no data; random pages exceed the huge class: a page
    assert stats.zero_fraction == 0.25
    assert stats.mean_compressed == 2 * PAGE_SIZE / 4
    assert stats.ratio == 2.0
    assert ZRAM_HUGE_CLASS == 3072
    assert content_stats([ZERO_PAGE]).ratio == math.inf


def test_user_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match="unknown content profile 'webservr'"):
        ContentSource(1, "vm").app_page("webservr", 1)
    with pytest.raises(ValueError, match="unknown OS image 'debian-13'"):
        OSImage.get("debian-13")
    with pytest.raises(ValueError, match="no region '/nope'"):
        OSImage.get("debian-12").page("/nope", 0)
    with pytest.raises(IndexError, match="/var/log/messages has 25 pages, no page 25"):
        OSImage.get("alpine-3.19").page("/var/log/messages", 25)
    with pytest.raises(ValueError, match="profile bad: zero must be in"):
        DataProfile("bad", "", corpus="idle", zero=1.5)
    with pytest.raises(ValueError, match="profile bad: corpus must be one of code, idle"):
        DataProfile("bad", "", corpus="movies")
    with pytest.raises(ValueError, match="kind must be 'app' or 'image'"):
        ContentSource(1, "vm").page(("disk", 1))


def test_raw_image_pages_interns_identical_pages(tmp_path):
    a, b = b"\x11" * PAGE_SIZE, bytes(range(256)) * 16
    path = tmp_path / "guest.mem"
    path.write_bytes(bytes(PAGE_SIZE) + a + b + a + b"tail")
    pages = raw_image_pages(path)
    assert pages == [ZERO_PAGE, a, b, a, b"tail" + bytes(PAGE_SIZE - 4)]
    assert pages[0] is ZERO_PAGE and pages[1] is pages[3]
    with pytest.raises(ValueError, match="raw memory image .*nope.mem: No such file"):
        raw_image_pages(tmp_path / "nope.mem")


def test_logs_are_each_machines_own():
    image = OSImage.get("debian-12")
    log = image.region("/var/log/journal/system.journal")
    libc = image.region("/usr/lib/x86_64-linux-gnu/libc.so.6")
    assert log.per_machine and not libc.per_machine
    assert [r.name for r in OSImage.get("windows-xp").regions if r.per_machine] == ["config\\*.evt"]
    vm1, vm2 = ContentSource(1, "vm1"), ContentSource(1, "vm2")
    a = [vm1.image_reader("debian-12", log)(i) for i in range(log.pages)]
    b = [vm2.image_reader("debian-12", log)(i) for i in range(log.pages)]
    assert a == [vm1.image_reader("debian-12", log)(i) for i in range(log.pages)]  # pure
    same = [x for x, y in zip(a, b, strict=True) if x == y]
    assert same and all(x is ZERO_PAGE for x in same)  # only the zeroed tails agree
    z = DataProfile.get("journal").zero  # both zero by chance: z * z
    assert abs(len(same) / len(a) - z * z) <= binomial_tol(z * z, len(a))
    # the image's own pages, and every other file, are the same objects in every VM
    assert vm1.image_reader("debian-12", libc)(5) is vm2.image_reader("debian-12", libc)(5)
    assert image.reader(log)(7) is image.page(log, 7)


# --- writes (issue 12, section 1) -----------------------------------------------------


def _written_pages(profile, n: int = N, seed: int = 21):
    """n pages of `profile` as lazy recipes, each after one write of unknown data."""
    from guestkernel.physmem import write_digest, written

    src = ContentSource(seed, "vm")
    pages = [src.app_page(profile, k, 0, True) for k in range(n)]
    return pages, [written(p, write_digest(seed, i, 1)) for i, p in enumerate(pages)]


@pytest.mark.parametrize("profile", ["webserver", "database", "compile", "jvm"])
def test_written_pages_are_new_pages_of_their_profile(profile):
    """A write of the profile's data keeps the page's class and draws new content: every
    written structured page has new bytes (a new checksum for KSM), and the written
    pages still compress as typical memory does (zram with zstd 3.4-4.0:1; the band of
    test_typical_profiles_compress_like_typical_memory)."""
    from experiments.content import AppPage

    before, after = _written_pages(profile)
    lazy = [(b, a) for b, a in zip(before, after, strict=True) if isinstance(b, AppPage)]
    assert len(lazy) > 0.8 * N
    for b, a in lazy:
        assert type(a) is AppPage and a.p is b.p and a.c == b.c and a.ptrs is b.ptrs
        assert a.materialize() != b.materialize()
    stats = content_stats([a.materialize() for _, a in lazy])
    assert 2.5 <= stats.ratio <= 4.0


def test_written_idle_memory_still_matches_the_lkml_zram_dataset():
    # mean compressed size 694 B with 11 % zero pages, within 15 % (as before the write):
    # zero pages written with unknown data keep all but 16 bytes zero (physmem.WrittenPage)
    before, after = _written_pages("idle")
    stats = content_stats([page if isinstance(page, bytes) else page.materialize()
                           for page in after])
    assert 0.85 * 694 <= stats.mean_compressed <= 1.15 * 694


def test_a_profile_declares_the_share_of_writes_that_store_the_same_bytes():
    from guestkernel.physmem import write_digest, written

    p = replace(DataProfile.get("webserver"), name="webserver-rewrite", rewrite=0.3)
    src = ContentSource(3, "vm")
    pages = [src.app_page(p, k, 0, True) for k in range(N)]
    pages = [page for page in pages if not isinstance(page, bytes)]
    same = sum(written(page, write_digest(3, i, 1)) is page for i, page in enumerate(pages))
    assert abs(same / len(pages) - 0.3) <= binomial_tol(0.3, len(pages))
    # the shipped profiles: every write without data stores new data (see profiles.py)
    assert all(DataProfile.get(name).rewrite == 0.0 for name in PROFILES)
    with pytest.raises(ValueError, match="rewrite"):
        replace(p, rewrite=1.5)


def test_a_write_of_part_of_a_page_changes_only_that_part():
    from guestkernel.physmem import written

    src = ContentSource(4, "vm")
    page = next(pg for k in range(50)
                if not isinstance(pg := src.app_page("database", k, 0, True), bytes))
    whole = written(page, 99)  # the whole page: a new page of the profile
    part = written(page, 99, 1024, 100)
    old, new, got = page.materialize(), whole.materialize(), part.materialize()
    assert got[:1024] == old[:1024] and got[1124:] == old[1124:]
    assert got[1024:1124] == new[1024:1124] != old[1024:1124]


@settings(max_examples=200, deadline=None)
@given(profile=st.sampled_from(PROFILES), key=st.integers(0, 2**40),
       digest=st.integers(0, 2**64 - 1), rewrite=st.sampled_from([0.0, 0.5]))
def test_inlined_app_page_written_is_its_plain_twin(profile, key, digest, rewrite):
    """AppPage.written (splitmix64 and the constructor inlined) against its plain form:
    the profile's rewrite fraction keeps the recipe, else AppPage(p, c, _remix(h ^
    digest), ptrs) (guestkernel.physmem.LazyPage.written's protocol)."""
    from experiments.content import AppPage, _remix

    src = ContentSource(3, "vm")
    page = src.app_page(profile, key, 2, True)
    if not isinstance(page, AppPage):
        return  # zero and same-filled pages are shared bytes
    if rewrite:
        page = AppPage(replace(page.p, rewrite=rewrite), page.c, page.h, page.ptrs)
    p = page.p
    new = page.written(digest, -1, 0)
    if (digest & 0xFFFF) < p._rewrite_cut:
        assert new is page
        return
    plain = AppPage(p, page.c, _remix(page.h ^ digest), page.ptrs)
    assert type(new) is AppPage
    assert (new.p, new.c, new.h, new.ptrs) == (plain.p, plain.c, plain.h, plain.ptrs)
    assert new.materialize() == plain.materialize()
