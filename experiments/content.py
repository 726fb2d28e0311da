"""Page content: the bytes every backed guest frame holds, generated from seeds.

Sharing and compression in hvsim act on real 4 KiB `bytes`. This module makes them:

* **Guest OS images** (`OSImage.get("debian-12")`): the kernel (text, rodata, data, bss,
  loaded modules), the shared libraries and the page-cache files a freshly booted guest
  has read, each a `Region` with a name (a path), a category ("kernel", "library",
  "file"), a size in bytes and a page count. An image's pages depend on nothing but the
  image: every VM booting `debian-12` gets byte-identical pages (and the very same
  `bytes` objects), so cross-VM sharing arises from content, never from a flag.
  Different images have different builds of everything and share only zero pages and
  the few files that really are byte-identical (Debian and Ubuntu ship the same
  `tzdata` build). Images are fixed artifacts, like a distribution release: their
  content does not depend on the experiment seed. The exception is what the running
  machine writes, its logs and journals (`Region.per_machine`): read through a VM's
  `image_reader`, those bytes are the VM's own.
* **Application data** (`DataProfile.get("webserver")`): profiles named like the
  workloads (`idle`, `webserver`, `database`, `compile`, `jvm`, `memhog`) plus `media`
  and `encrypted` (`memhog` is numactl's: every page memset to 0xff, which sharing and
  zram reclaim entirely; a pressure source that neither can reclaim is `encrypted`).
  Each draws per page: zero page or not, same-filled page, an
  incompressible page, or structured data with a random share of high-entropy bytes
  (its zstd ratio) and a number of embedded pointers. Pointers carry ASLR: their
  values are a per-(VM, process) base plus an offset that is the same everywhere, so
  equal logical data in two VMs (or two processes) differs exactly in its pointers
  (unless the guest runs without ASLR: randomize_va_space = 0).

API
---
``OSImage.get(name) -> OSImage``
    ``.regions`` (tuple of `Region`: ``name``, ``category``, ``size`` bytes, ``pages``,
    ``layout``, ``artifact``), ``.region(name)``, ``.total_pages``,
    ``.page(region, index) -> bytes`` (region: a `Region` or its name). Unknown names
    raise ``ValueError`` with one line naming the image and the known ones.
``DataProfile.get(name) -> DataProfile``
    Frozen parameters (fractions are of pages; see `DataProfile`). ``PROFILES`` lists
    the application profiles, ``IMAGES`` the images.
``ContentSource(seed, vm_name, input=None, randomize_va_space=2)``
    ``.app_page(profile, key, pid=0) -> bytes``: the page of application data with
    logical identity ``key`` (an int or str the workload chooses, e.g.
    ``f"{program}/heap/{index}"``) in process ``pid`` of this VM. Same (seed, profile,
    key): same logical data in every VM, except that only a profile's ``common``
    fraction of keys is data the VMs really have in common (static content, loaded
    classes); the rest is private to the VM, or, when the VM names an ``input``, to
    that input: VMs running the same program on the same input hold the same data.
    ``pid`` only moves the ASLR bases, which ``randomize_va_space`` (the guest's
    sysctl: 2 brk and mmap, 1 mmap only, 0 none) randomises.
    ``.configured(input, randomize_va_space) -> ContentSource``: the same VM's source
    with those options (what a workload uses).
    ``.image_page(image_name, region, index) -> bytes``: as ``OSImage.page``.
    ``.page(ref) -> bytes``: regenerate from a reference tuple
    ``("app", profile, key, pid)`` or ``("image", image_name, region_name, index)``.
``OSImage.reader(region, machine=None) -> (index -> bytes)``
    the content callable of a guest page-cache file (guestkernel/filemap ``Inode``);
    with a `machine`, its logs (``Region.per_machine``) are that machine's own
    (``ContentSource.image_reader(image, region)`` names the VM).
``OSImage.pages(category=None, cache=True)``
    yields (region, index, bytes); ``cache=False`` scans without keeping pages.
``drop_image_cache()``
    forgets cached image pages (long-lived sweep workers).
``raw_image_pages(path) -> list[bytes]``
    the pages of a raw guest memory dump, identical pages as one object.
``content_stats(pages, level=3) -> ContentStats(zero_fraction, mean_compressed, ratio)``
    zstd measured the way zram stores pages (see there).

Determinism and laziness
------------------------
A page's bytes are a pure function of (seed, vm_name or input, pid and
randomize_va_space, profile, key) or of
(image, region, index): callers may drop a page and regenerate it instead of storing
it. Every random stream is a `random.Random` seeded from
``xxhash.xxh64_intdigest(f"{seed}/{component}")`` (``f"content/{component}"`` for the
seed-independent corpora, tables and images); per page, the choices are read straight
from the bits of one or two xxh64 digests and their splitmix64 remixes (seeding a
Mersenne Twister costs ~5 us, too much per page). Nothing depends on Python's salted
``hash()``.

Choosing keys
-------------
A key names one logical page of data. Two pages with the same key in one VM are the
same data (byte-identical where no pointer differs), so a workload includes in the key
whatever makes data distinct: the program instance, the mapping, the page index
(``f"db{instance}/pool/{i}"``). Keys shared on purpose model data that really is the
same: every worker of a web server parsing the same templates, every VM's JVM loading
the same classes. ``pid`` names the address space whose ASLR bases fill the pointers:
a forked child keeps its parent's (use the parent's pid), an exec gets new ones.

Identity of contents
--------------------
The zero page is always ``guestkernel.physmem.ZERO_PAGE``; a same-filled page is one
object per fill byte; an image page is one object per (artifact, index), cached on
first use (the simulator's memory grows with distinct image contents, not with VMs).
Application pages are built fresh: by construction they equal no other page except
the same key regenerated (and a common key in another VM when it has no pointers);
callers that need object identity for those keep the object they got.

How bytes get a chosen compressibility, fast
--------------------------------------------
Each profile owns a 256 KiB *corpus* of low-entropy structured bytes built once from a
token dictionary (HTML/HTTP for the web server, row records for the database, x86-64
instruction templates for code, ...), and all share a 1 MiB pool of random bytes. A
structured page is the join of two corpus slices, a slice of the random pool whose
length is the page's random share, a run of ASLR pointers and an 8-byte stamp that
makes the page unique to its key. zstd sees the corpus slices compress at their
corpus's ratio and the random slice not at all, so the per-page random share, drawn
from a per-profile Beta distribution, sets the ratio distribution. No per-byte Python
work: ~3-6 us per page (see tests/experiments/bench_content.py).

Calibration
-----------
Targets from ../shared/reference/hypervisor.md: zram with zstd reaches 3.4-4.0:1 on
typical memory (webserver, compile, jvm land there; database a little lower, as a
buffer pool of real rows compresses less); an LKML dataset has a mean compressed size
of 694 B with 11 % zero pages (the `idle` profile); media and encrypted data do not
compress (<= 1.05:1); code compresses ~2-3:1 like real x86-64 text. Measured with
tests/experiments/bench_content.py --calibrate (zstd level 3, the kernel's default;
5000 pages; zero and same-filled pages cost 0 B, pages over ZRAM_HUGE_CLASS 4096 B):

    content            zero   mean B  ratio      content          zero   mean B  ratio
    idle              0.115     685    5.98      class code      0.000    1835   2.23
    webserver         0.083    1117    3.67      class rodata    0.010    1185   3.46
    database          0.049    1375    2.98      class kdata     0.156     928   4.41
    compile           0.071    1123    3.65      class text      0.000    1375   2.98
    jvm               0.120    1049    3.90      class registry  0.051    1180   3.47
    memhog            0.000       0    inf       class journal   0.299     838   4.89
    media             0.011    4049    1.01      image debian-12 0.097    1361   3.01
    encrypted         0.000    4096    1.00      image win-2019  0.044    1962   2.09

Per-page compressed sizes spread widely (webserver: 10 % of pages under ~210 B, a
median near 1 KiB, ~3 % incompressible), as in real zram dumps, not one size for all.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field
from typing import NamedTuple

import xxhash
import zstandard

from guestkernel.physmem import ZERO_PAGE, LazyPage, WrittenPage
from guestkernel.units import PAGE_SIZE

__all__ = [
    "ContentSource",
    "ContentStats",
    "DataProfile",
    "IMAGES",
    "OSImage",
    "PROFILES",
    "Region",
    "content_stats",
    "drop_image_cache",
    "raw_image_pages",
]

_CORPUS_BYTES = 1 << 18  # 256 KiB of structured bytes per profile
_CORPUS_MASK = (_CORPUS_BYTES - 1) & ~7  # 8-byte aligned slice offsets
_POOL_BYTES = 1 << 20  # 1 MiB of random bytes shared by all profiles
_POOL_MASK = (_POOL_BYTES - 1) & ~7
_PTR_POOL = 512  # pointers per (VM, pid, profile)
_PTR_MAX = 64  # most pointers one page embeds
_STAMP = 8  # bytes of per-key stamp in every non-uniform page
_BODY = PAGE_SIZE - _STAMP
_MASK64 = (1 << 64) - 1

# zram stores a page that compresses to more than about 3/4 of a page uncompressed
# (its "huge" class) and a same-filled page as a bare value, with no data.
ZRAM_HUGE_CLASS = PAGE_SIZE * 3 // 4  # bytes


def _rng(component: str) -> random.Random:
    """A random stream for a seed-independent component (corpora, image layouts)."""
    return random.Random(xxhash.xxh64_intdigest(f"content/{component}".encode()))


def _remix(h: int) -> int:
    """splitmix64 finaliser: 64 fresh bits from 64 bits, cheaper than another hash."""
    h = (h + 0x9E3779B97F4A7C15) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


# --------------------------------------------------------------------------------------
# Corpora: low-entropy structured bytes, built once per process from token dictionaries.


def _syllable_words(rng: random.Random, n: int) -> list[bytes]:
    """n distinct made-up words, 2-10 letters: a vocabulary with English-like letters."""
    onsets = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "st",
              "tr", "pr", "ch", "sh", "th", "w", "v", "k", "j", "qu", "cl", "gr", "sp"]
    vowels = ["a", "e", "i", "o", "u", "ea", "ou", "io", "ai", "ee", "y"]
    codas = ["", "", "n", "r", "s", "t", "l", "m", "nd", "ng", "st", "ck", "x", "rd"]
    words: set[str] = set()
    while len(words) < n:
        w = "".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                    for _ in range(rng.choice((1, 1, 2, 2, 2, 3))))
        if 2 <= len(w) <= 10:
            words.add(w)
    return [w.encode() for w in sorted(words)]


def _zipf_cum(n: int, s: float = 1.07) -> list[float]:
    cum, total = [], 0.0
    for i in range(1, n + 1):
        total += 1.0 / i**s
        cum.append(total)
    return cum


def _text(rng: random.Random, nbytes: int, tokens: list[bytes], vocab_size: int = 800,
          templates: int = 120) -> bytes:
    """Lines made from templates (log formats, markup, config stanzas): fixed words and
    flavour tokens with slots for Zipf-distributed words and numbers."""
    vocab = _syllable_words(rng, vocab_size)
    cum = _zipf_cum(len(vocab), 1.1)
    lines = []
    for _ in range(templates):
        parts: list[bytes | int | None] = []
        for _ in range(rng.randint(3, 12)):
            r = rng.random()
            if r < 0.12:
                parts.append(None)  # a variable word
            elif r < 0.18:
                parts.append(rng.choice((10, 1000, 100000)))  # a number below this
            elif tokens and r < 0.5:
                parts.append(rng.choice(tokens))
            else:
                parts.append(rng.choices(vocab, cum_weights=cum)[0])
        lines.append((parts, rng.choice((b"\n", b".\n", b";\n", b",\n", b"\n\n", b"\r\n"))))
    lcum = _zipf_cum(templates, 1.0)
    out: list[bytes] = []
    size = 0
    while size < nbytes:
        parts, end = rng.choices(lines, cum_weights=lcum)[0]
        words = []
        for part in parts:
            if part is None:
                words.append(rng.choices(vocab, cum_weights=cum)[0])
            elif type(part) is int:
                words.append(str(rng.randrange(part)).encode())
            else:
                words.append(part)
        chunk = b" ".join(words) + end
        out.append(chunk)
        size += len(chunk)
    return b"".join(out)[:nbytes]


def _records(rng: random.Random, nbytes: int, words: list[bytes], ptrs: bool,
             changed: float = 0.25, fresh: float = 0.2) -> bytes:
    """Fixed-layout records (rows, structs, objects) of a few dozen types. Records of one
    type share most values (defaults, enums, the same strings); each record changes a
    share `changed` of its fields and carries a sequence number. `ptrs` adds compressed
    in-heap references (32-bit offsets near recently allocated objects)."""
    kinds = "iiiqqfsszzzh" + ("pp" if ptrs else "")

    def value(f: str) -> bytes:
        if f == "i":
            return int(rng.expovariate(1 / 40)).to_bytes(4, "little")
        if f == "q":
            return rng.choice((0, 1, 2, 3, 1000, 4096, rng.getrandbits(20))).to_bytes(8, "little")
        if f == "f":
            return rng.choice((bytes(8), b"\x00\x00\x00\x00\x00\x00\xf0?",
                               b"\x00\x00\x00\x00\x00\x00Y@", rng.randbytes(8)))
        if f == "s":
            w = rng.choice(words)[:15]
            return w + bytes(16 - len(w))
        if f == "z":
            return bytes(8)
        if f == "h":
            return rng.getrandbits(16).to_bytes(2, "little") + bytes(2)
        return ((value.ref + rng.randint(-4096, 4096)) & 0xFFFFFFF8).to_bytes(4, "little")

    value.ref = rng.randint(1 << 20, 1 << 24)  # type: ignore[attr-defined]
    layouts = []
    for _ in range(24):  # a program has a few dozen hot struct types
        fields = [rng.choice(kinds) for _ in range(rng.randint(4, 20))]
        header = rng.randbytes(4) + bytes(4)
        # the values each field takes: a default and a few others (enums, flags, the
        # same strings); a fresh value only now and then
        choices = [[value(f) for _ in range(4)] for f in fields]
        layouts.append((header, fields, choices))
    lcum = _zipf_cum(len(layouts), 1.0)
    out: list[bytes] = []
    size = 0
    seq = rng.randint(1, 1 << 20)
    while size < nbytes:
        header, fields, choices = rng.choices(layouts, cum_weights=lcum)[0]
        seq += rng.randint(1, 3)
        value.ref += 64  # type: ignore[attr-defined]
        parts = [header, (seq & 0xFFFFFFFF).to_bytes(4, "little")]
        for f, vals in zip(fields, choices, strict=True):
            r = rng.random()
            if r >= changed:
                parts.append(vals[0])
            elif r < changed * fresh:
                parts.append(value(f))
            else:
                parts.append(rng.choice(vals))
        rec = b"".join(parts)
        out.append(rec)
        size += len(rec)
    return b"".join(out)[:nbytes]


# x86-64 instruction templates: (opcode bytes, random operand bytes, weight). Operands
# come from small sets where real code has them (stack offsets, struct offsets); call
# and jump displacements are random in their low bytes, sign-extended in the high ones.
_X86 = [
    (b"\x48\x89\xe5", 0, 3), (b"\x55", 0, 3), (b"\x5d", 0, 3), (b"\xc3", 0, 3),
    (b"\xf3\x0f\x1e\xfa", 0, 2), (b"\x53", 0, 2), (b"\x5b", 0, 2), (b"\x41\x54", 0, 2),
    (b"\x41\x5c", 0, 2), (b"\x41\x55", 0, 1), (b"\x41\x5d", 0, 1), (b"\x31\xc0", 0, 3),
    (b"\x85\xc0", 0, 4), (b"\x48\x85\xc0", 0, 3), (b"\x48\x89\xc7", 0, 3),
    (b"\x48\x89\xde", 0, 2), (b"\x4c\x89\xe7", 0, 2), (b"\x89\xc7", 0, 2),
    (b"\x48\x8b\x45", "d8", 5), (b"\x48\x89\x45", "d8", 4), (b"\x8b\x45", "d8", 3),
    (b"\x89\x45", "d8", 3), (b"\x48\x8b\x47", "s8", 4), (b"\x48\x8b\x43", "s8", 3),
    (b"\x8b\x47", "s8", 3), (b"\x48\x8b\x7b", "s8", 2), (b"\x48\x83\xec", "s8", 2),
    (b"\x48\x83\xc4", "s8", 2), (b"\x83\xf8", "i8", 3), (b"\x48\x83\xf8", "i8", 2),
    (b"\xe8", "rel32", 7), (b"\x0f\x84", "rel32s", 3), (b"\x0f\x85", "rel32s", 3),
    (b"\x74", "rel8", 5), (b"\x75", "rel8", 5), (b"\xeb", "rel8", 3), (b"\xe9", "rel32", 2),
    (b"\x48\x8d\x3d", "rel32", 3), (b"\x48\x8d\x35", "rel32", 2),
    (b"\x48\x8b\x05", "rel32", 2), (b"\xb8", "imm32", 2), (b"\xbf", "imm32", 2),
    (b"\xbe", "imm32", 1), (b"\x0f\x1f\x44\x00\x00", 0, 1), (b"\x0f\x1f\x40\x00", 0, 1),
    (b"\x66\x0f\x1f\x84\x00\x00\x00\x00\x00", 0, 1), (b"\x0f\xb6\x47", "s8", 1),
    (b"\x48\x63\xd0", 0, 1), (b"\x48\x01\xd0", 0, 1), (b"\x48\x29\xc2", 0, 1),
    (b"\x48\xc1\xe0", "i8", 1), (b"\x0f\xaf\xc2", 0, 1), (b"\x48\x8b\x14\xc5", "rel32", 1),
]


def _code(rng: random.Random, nbytes: int) -> bytes:
    """An x86-64-like instruction stream: functions (endbr64, prologue, body, epilogue,
    int3 padding to 16 bytes) whose bodies are drawn from a few hundred idioms with
    fixed operands, as compilers emit them; call and jump displacements differ at every
    site."""
    templates = [t[:2] for t in _X86]
    weights = [t[2] for t in _X86]
    d8 = [0xF8, 0xF0, 0xE8, 0xE0, 0xD8, 0xD0, 0xC8, 0xEC, 0xE4, 0xDC, 0xFC]
    s8 = [0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38, 0x40, 0x48, 0x50, 0x58, 0x60, 0x68, 0x70]

    def operand(arg) -> bytes:
        if arg == "d8":
            return bytes((rng.choice(d8),))
        if arg == "s8":
            return bytes((rng.choice(s8),))
        if arg == "i8":
            return bytes((rng.choice((0, 1, 2, 3, 4, 8, 16, 0x20, 0x40, 0xFF)),))
        if arg == "rel8":
            return bytes((rng.randint(2, 0x60),))
        if arg == "rel32":
            return (rng.randint(-(1 << 21), 1 << 21) & 0xFFFFFFFF).to_bytes(4, "little")
        if arg == "rel32s":
            return rng.randint(0x10, 0x800).to_bytes(4, "little")
        if arg == "imm32":
            return rng.choice((0, 1, 2, 0x10, 0x1000, rng.randint(0, 1 << 16))).to_bytes(
                4, "little")
        return b""

    idioms = []  # (instructions, per instruction: re-draw its operand at each site?)
    for _ in range(400):
        seq = []
        for op, arg in rng.choices(templates, weights, k=rng.randint(2, 6)):
            seq.append((op, arg, operand(arg), op == b"\xe8"))
        idioms.append(seq)
    icum = _zipf_cum(len(idioms), 1.2)
    out = bytearray()
    while len(out) < nbytes:
        out += b"\xf3\x0f\x1e\xfa\x55\x48\x89\xe5"
        for idiom in rng.choices(idioms, cum_weights=icum, k=rng.randint(5, 60)):
            for op, arg, fixed, redraw in idiom:
                out += op
                out += operand(arg) if redraw else fixed
        out += b"\x5d\xc3"
        out += b"\xcc" * (-len(out) % 16)
    return bytes(out[:nbytes])


_HTML = [b"<div", b"</div>", b'class="', b'">', b"<a href=\"/", b"</a>", b"<span>", b"</span>",
         b"<li>", b"</li>", b"HTTP/1.1 200 OK\r\n", b"Content-Type: text/html; charset=utf-8\r\n",
         b"Cache-Control: max-age=3600\r\n", b"GET /", b"Host: www.", b'{"id":', b'"name":"',
         b'"},', b"Accept-Encoding: gzip, deflate, br\r\n", b"User-Agent: Mozilla/5.0 ",
         b"<p>", b"</p>", b"<td>", b"</td>", b"<img src=\"/static/", b".png\"", b"\r\n"]
_SQL = [b"SELECT", b"FROM", b"WHERE", b"INSERT INTO", b"VALUES", b"UPDATE", b"SET", b"AND",
        b"=", b"?", b"(", b")", b",", b"ORDER BY", b"LIMIT", b"customer_id", b"order_id"]
_C = [b"static", b"int", b"struct", b"return", b"if (", b"} else {", b"const char *", b"void",
      b"#include <", b".h>", b"unsigned long", b"->", b"NULL", b"sizeof(", b"for (i = 0;",
      b"{", b"}", b";", b"*", b"&", b"==", b"!=", b"/*", b"*/", b"#define"]
_JAVA = [b"java/lang/String", b"java/util/HashMap", b"Ljava/lang/Object;", b"()V", b"<init>",
         b"org/springframework/", b"com/example/", b"get", b"set", b"Code", b"LineNumberTable"]
_CONF = [b"=", b"# ", b"yes", b"no", b"/usr/lib/", b"/etc/", b"[Unit]", b"[Service]",
         b"ExecStart=", b"Description=", b"root", b"true", b"false", b"0644", b"\t"]
_LOG = [b"systemd[1]:", b"kernel:", b"Started", b"Starting", b"Reached target", b".service",
        b"audit:", b"type=", b"pid=", b"uid=0", b"sshd[", b"CRON[", b"info", b"notice"]


def _utf16(b: bytes) -> bytes:
    """Java and Windows strings: UTF-16LE, a zero after every ASCII byte."""
    return b.decode("latin-1").encode("utf-16-le")


# Each corpus kind interleaves chunks of 256-2048 bytes: records, text and zero runs (the
# unused tails of buffers and structs that make real memory compress), in shares
# (records, zeros) of the bytes; the rest is text.
_MIXES: dict[str, tuple[float, float, list[bytes], bool]] = {
    "idle": (0.25, 0.65, _CONF + _LOG, True),
    "webserver": (0.3, 0.45, _HTML, True),
    "database": (0.65, 0.25, _SQL, False),
    "compile": (0.5, 0.3, _C, True),
    "jvm": (0.6, 0.3, _JAVA, True),
    "media": (0.9, 0.0, [], False),
    "rodata": (0.45, 0.25, _C + _CONF, False),
    "kdata": (0.6, 0.35, [], True),
    "text": (0.0, 0.0, _CONF + _LOG, False),
    "registry": (0.6, 0.2, [], False),
    "journal": (0.4, 0.3, _LOG, False),
}
_CORPUS_KINDS = ("code", *_MIXES)


def _build_corpus(kind: str) -> bytes:
    """The structured bytes of one corpus kind (seed-independent, deterministic)."""
    rng = _rng(f"corpus/{kind}")
    n = _CORPUS_BYTES + PAGE_SIZE  # slack so every slice is full length
    if kind == "code":
        return _code(rng, n)
    record_share, zero_share, tokens, ptrs = _MIXES[kind]
    return _interleave(rng, n, record_share, zero_share, tokens, ptrs, utf16=kind in (
        "jvm", "registry"))


def _interleave(rng: random.Random, n: int, record_share: float, zero_share: float,
                tokens: list[bytes], ptrs: bool, utf16: bool = False) -> bytes:
    words = _syllable_words(rng, 800)
    text = _text(rng, n, tokens)
    recs = _records(rng, n, words, ptrs)
    if utf16:
        text = _utf16(text)[:n]
    out = bytearray()
    ti = ri = 0
    while len(out) < n:
        size = rng.randint(256, 2048)
        r = rng.random()
        if r < zero_share:
            out += bytes(size & ~15)
        elif r < zero_share + record_share:
            out += recs[ri:ri + size]
            ri = (ri + size) % (n - 2048)
        else:
            out += text[ti:ti + size]
            ti = (ti + size) % (n - 2048)
    return bytes(out[:n])


_CORPORA: dict[str, bytes] = {}


def _corpus(kind: str) -> bytes:
    data = _CORPORA.get(kind)
    if data is None:
        data = _CORPORA[kind] = _build_corpus(kind)
    return data


_POOL: list[bytes] = []


def _pool() -> bytes:
    """1 MiB of random bytes (+ one page of slack): the high-entropy share of pages."""
    if not _POOL:
        _POOL.append(_rng("random-pool").randbytes(_POOL_BYTES + PAGE_SIZE))
    return _POOL[0]


_VIEWS: dict[str, memoryview] = {}  # corpus kind (or "" for the pool) -> memoryview


def _view(kind: str, data: bytes) -> memoryview:
    view = _VIEWS[kind] = memoryview(data)
    return view


_FILLED: dict[int, bytes] = {0: ZERO_PAGE}


def _filled(byte: int) -> bytes:
    """The one page object filled with `byte` (memset pages, zram's same-filled pages)."""
    page = _FILLED.get(byte)
    if page is None:
        page = _FILLED[byte] = bytes((byte,)) * PAGE_SIZE
    return page


# --------------------------------------------------------------------------------------
# Profiles


@dataclass(frozen=True)
class DataProfile:
    """How one kind of memory's pages are drawn. Fractions are of pages, in [0, 1].

    zero            pages left all zero (calloc'd, sparse arrays, untouched buffers)
    filled          pages memset to `fill_byte` (same-filled: zram stores no data)
    incompressible  pages of random bytes (compressed media, ciphertext, hashes)
    common          keys whose logical data all VMs running this profile have in common
                    (static content, loaded classes, shared datasets); the rest of the
                    keys are data private to the VM
    random_mean     mean share of high-entropy bytes in a structured page (Beta
                    distributed with concentration `random_kappa`, capped at
                    `random_max`); the lever that sets the zstd ratio
    pointer_free    structured pages without pointers; the others embed a run of
                    geometric(mean `pointer_mean`) 8-byte pointers, the ASLR carriers
    corpus          the structured corpus kind slices come from
    rewrite         writes (of data the workload does not spell out) that store the bytes
                    already there (a memset over its own value, a field set to what it
                    held); the others store new data of this profile: the written page is
                    a new page of the profile (new content digest, same class), so its
                    checksum changes and its compressibility stays the profile's
    """

    name: str
    description: str
    corpus: str
    zero: float = 0.0
    filled: float = 0.0
    fill_byte: int = 0xFF
    incompressible: float = 0.0
    common: float = 0.0
    random_mean: float = 0.2
    random_kappa: float = 4.0
    random_max: float = 0.95
    pointer_free: float = 1.0
    pointer_mean: float = 8.0
    rewrite: float = 0.0
    # derived per-page lookup tables (built in __post_init__)
    _zero_cut: int = field(default=0, init=False, repr=False, compare=False)
    _fill_cut: int = field(default=0, init=False, repr=False, compare=False)
    _incomp_cut: int = field(default=0, init=False, repr=False, compare=False)
    _common_cut: int = field(default=0, init=False, repr=False, compare=False)
    _rewrite_cut: int = field(default=0, init=False, repr=False, compare=False)
    _random_bytes: tuple = field(default=(), init=False, repr=False, compare=False)
    _pointers: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key in ("zero", "filled", "incompressible", "common", "random_mean",
                    "random_max", "pointer_free", "rewrite"):
            v = getattr(self, key)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"profile {self.name}: {key} must be in [0, 1], got {v}")
        if self.zero + self.filled + self.incompressible > 1.0:
            raise ValueError(f"profile {self.name}: zero + filled + incompressible exceed 1")
        if self.corpus not in _CORPUS_KINDS:
            raise ValueError(f"profile {self.name}: corpus must be one of "
                             f"{', '.join(_CORPUS_KINDS)}, got {self.corpus!r}")
        if not 0 <= self.fill_byte <= 255:
            raise ValueError(f"profile {self.name}: fill_byte must be a byte, got {self.fill_byte}")
        if self.random_kappa <= 0 or self.pointer_mean < 1:
            raise ValueError(f"profile {self.name}: random_kappa must be > 0 and "
                             f"pointer_mean >= 1")
        # 16-bit thresholds: the page's class is read from 16 bits of its digest.
        cut = round(self.zero * 65536)
        object.__setattr__(self, "_zero_cut", cut)
        cut += round(self.filled * 65536)
        object.__setattr__(self, "_fill_cut", cut)
        cut += round(self.incompressible * 65536)
        object.__setattr__(self, "_incomp_cut", cut)
        object.__setattr__(self, "_common_cut", round(self.common * 65536))
        object.__setattr__(self, "_rewrite_cut", round(self.rewrite * 65536))
        # 256-quantile tables: a page reads its random share and pointer count from
        # 8 bits each, so the distributions cost one index per page.
        rng = _rng(f"profile/{self.name}/tables")
        m, k = self.random_mean, self.random_kappa
        if 0.0 < m < 1.0:
            draws = sorted(rng.betavariate(m * k, (1 - m) * k) for _ in range(8192))
            shares = [min(draws[i * 32 + 16], self.random_max) for i in range(256)]
        else:
            shares = [m] * 256
        rb = tuple(int(s * (_BODY - 8 * _PTR_MAX)) & ~7 for s in shares)
        object.__setattr__(self, "_random_bytes", rb)
        counts = []
        for i in range(256):
            if (i + 0.5) / 256 < self.pointer_free:
                counts.append(0)
            else:
                u = rng.random()
                p = 1.0 / max(self.pointer_mean, 1.0)
                n = 1
                while u > p and n < _PTR_MAX:  # geometric, >= 1
                    u = rng.random()
                    n += 1
                counts.append(n)
        rng.shuffle(counts)  # decorrelate from the random-share quantile
        object.__setattr__(self, "_pointers", tuple(counts))

    @staticmethod
    def get(name: str | DataProfile) -> DataProfile:
        """The profile called `name` (application profiles and image content classes)."""
        if isinstance(name, DataProfile):
            return name
        try:
            return _ALL_PROFILES[name]
        except KeyError:
            raise ValueError(
                f"unknown content profile {name!r}; known: {', '.join(PROFILES)} "
                f"(image content classes: {', '.join(p.name for p in _IMAGE_CLASSES)})"
            ) from None


_APP_PROFILES = [
    DataProfile(
        "idle", "a booted system with daemons asleep: calibrated to the LKML zram dataset "
        "(mean compressed size 694 B, 11 % zero pages)",
        corpus="idle", zero=0.11, filled=0.005, incompressible=0.02, common=0.3,
        random_mean=0.013, random_kappa=2.0, pointer_free=0.3, pointer_mean=10),
    DataProfile(
        "webserver", "pre-forked web server: HTML, HTTP headers, JSON, session objects; "
        "some TLS buffers and compressed responses", corpus="webserver",
        zero=0.08, filled=0.002, incompressible=0.03, common=0.2,
        random_mean=0.048, random_kappa=3.0, pointer_free=0.2, pointer_mean=8),
    DataProfile(
        "database", "buffer pool of row pages: fixed-layout records with varchars, "
        "indexes; less compressible than the zram typical figure", corpus="database",
        zero=0.05, filled=0.001, incompressible=0.04, common=0.05,
        random_mean=0.108, random_kappa=3.0, pointer_free=0.6, pointer_mean=4),
    DataProfile(
        "compile", "compiler heaps: AST nodes and symbol tables (pointer-dense), source "
        "text", corpus="compile", zero=0.07, filled=0.002, incompressible=0.01,
        common=0.2, random_mean=0.029, random_kappa=3.0, pointer_free=0.1, pointer_mean=16),
    DataProfile(
        "jvm", "Java heap: object headers, compressed references, UTF-16 strings",
        corpus="jvm", zero=0.12, filled=0.001, incompressible=0.02, common=0.2,
        random_mean=0.08, random_kappa=3.0, pointer_free=0.3, pointer_mean=6),
    DataProfile(
        "memhog", "numactl's memhog: memset(0xff) over its whole mapping, so every page is "
        "the same-filled page (KSM merges it all, zram stores no data)", corpus="idle",
        filled=1.0, fill_byte=0xFF),
    DataProfile(
        "media", "compressed audio, video and images in buffers and page cache: "
        "incompressible but for container headers", corpus="media", zero=0.01, incompressible=0.97,
        random_mean=0.9),
    DataProfile(
        "encrypted", "ciphertext: every byte random", corpus="media", incompressible=1.0),
]

# Content classes of OS image pages (no pointers: images are identical in every VM).
_IMAGE_CLASSES = [
    DataProfile("code", "x86-64 machine code", corpus="code", random_mean=0.0,
                random_kappa=6.0),
    DataProfile("rodata", "read-only data: strings, tables, symbol names",
                corpus="rodata", zero=0.01, random_mean=0.019),
    DataProfile("kdata", "initialised data: structs, pointer tables", corpus="kdata",
                zero=0.15, random_mean=0.07),
    DataProfile("bss", "zero-initialised data", corpus="kdata", zero=1.0),
    DataProfile("text", "configuration, scripts, logs", corpus="text", random_mean=0.021),
    DataProfile("compressed", "compressed files: archives, definitions, fonts, images",
                corpus="media", incompressible=1.0),
    DataProfile("registry", "Windows registry hive cells: UTF-16 names and values",
                corpus="registry", zero=0.05, random_mean=0.086),
    DataProfile("journal", "binary logs (journald, evtx): entries and zeroed tails",
                corpus="journal", zero=0.3, random_mean=0.086),
]

_ALL_PROFILES: dict[str, DataProfile] = {p.name: p for p in _APP_PROFILES + _IMAGE_CLASSES}
PROFILES: tuple[str, ...] = tuple(p.name for p in _APP_PROFILES)


# --------------------------------------------------------------------------------------
# Page builders. NOTE: the hot path; plain slices and one join, no per-byte work.


def _page(p: DataProfile, c: int, h: int, ptrs: bytes) -> bytes:
    """The page of profile `p` whose class is read from digest `c` and whose content
    from digest `h` (equal to `c` for common data). `ptrs`: this process's pointer pool
    (b"" for image pages, which embed no ASLR pointers)."""
    u = c & 0xFFFF
    if u < p._zero_cut:
        return ZERO_PAGE
    if u < p._fill_cut:
        return _filled(p.fill_byte)
    # Content bits come from remixes of h: the low 32 bits of c already decided the
    # class and common/private, and reusing them would bias offsets and quantiles.
    # NOTE: h2 = _remix(h), h3 = _remix(h2) inlined for performance (a page made for
    # every hash of a recipe)
    x = (h + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    h2 = x ^ (x >> 31)
    x = (h2 + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    h3 = x ^ (x >> 31)
    # memoryviews of the pool and corpora: slicing them copies nothing, the join once
    pool = _VIEWS.get("") or _view("", _pool())
    o3 = h3 & _POOL_MASK
    stamp = h.to_bytes(8, "little")
    if u < p._incomp_cut:
        return b"".join((pool[o3:o3 + _BODY], stamp))
    rnd = p._random_bytes[h2 & 0xFF]
    nptr = (p._pointers[(h2 >> 8) & 0xFF] << 3) if ptrs else 0
    body = _BODY - rnd - nptr
    half = (body >> 4) << 3
    corpus = _VIEWS.get(p.corpus) or _view(p.corpus, _corpus(p.corpus))
    o1 = (h2 >> 16) & _CORPUS_MASK
    o2 = (h2 >> 36) & _CORPUS_MASK
    j = ((h3 >> 24) % (_PTR_POOL - _PTR_MAX)) << 3
    return b"".join((corpus[o1:o1 + half], pool[o3:o3 + rnd], ptrs[j:j + nptr], stamp,
                     corpus[o2:o2 + body - half]))


def _pointer_offsets(profile: str) -> list[tuple[bool, int]]:
    """Where a profile's pointers point, relative to the bases ASLR randomises: (into an
    mmap region?, byte offset). The same in every VM: only the bases differ."""
    rng = _rng(f"profile/{profile}/pointers")
    out = []
    for _ in range(_PTR_POOL):
        if rng.random() < 0.3:  # libraries, mmap'd arenas, thread stacks
            out.append((True, rng.randrange(0, 256 << 20, 8)))
        else:  # brk heap
            out.append((False, rng.randrange(0, 64 << 20, 16)))
    return out


_OFFSETS: dict[str, list[tuple[bool, int]]] = {}

# Where a PIE program's brk heap and its mmap area start when nothing is randomised
# (x86-64: ELF_ET_DYN_BASE 0x555555554000 plus the program's size; mmap_base below the
# stack's 8 MiB rlimit and its gap), the addresses gdb shows with ASLR off.
_NORANDOM_BRK = 0x555555559000
_NORANDOM_MMAP = 0x7FFFF7DC0000


_new_object = object.__new__


class AppPage(LazyPage):
    """A generated application page held as its recipe (profile, class and content
    digests, the process's pointer pool): ~150 bytes in the simulator instead of 4 KiB,
    its bytes made again whenever something reads them (see guestkernel.physmem)."""

    __slots__ = ("p", "c", "h", "ptrs")

    def __init__(self, p: DataProfile, c: int, h: int, ptrs: bytes) -> None:
        self.p = p
        self.c = c
        self.h = h
        self.ptrs = ptrs

    def materialize(self) -> bytes:
        return _page(self.p, self.c, self.h, self.ptrs)

    def written(self, digest: int, offset: int = -1, length: int = 0):
        """A write of the profile's data (guestkernel.physmem.LazyPage.written): for the
        profile's `rewrite` fraction of digests the same bytes again (this recipe), else
        a new page of the profile: same class (zero-free, structured or incompressible),
        a new content digest (its random share, pointers and stamp drawn anew). A write of
        part of the page changes only that part, to the new page's bytes there."""
        p = self.p
        if (digest & 0xFFFF) < p._rewrite_cut:
            return self
        # NOTE: _remix(self.h ^ digest) inlined for performance (a fold per written page),
        # its mask a constant (no global lookup)
        h = ((self.h ^ digest) + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        # NOTE: AppPage(p, self.c, h ^ (h >> 31), self.ptrs) without the __init__ call
        new = _new_object(AppPage)
        new.p = p
        new.c = self.c
        new.h = h ^ (h >> 31)
        new.ptrs = self.ptrs
        if offset < 0 or (offset == 0 and length == PAGE_SIZE):
            return new
        return WrittenPage(self, digest, offset, length, new)


# KASLR (CONFIG_RANDOMIZE_BASE): the boot adds the offset it drew to every word a
# relocation names. Which pages that changes, per content class of a kernel image: pages
# holding a relocation / pages, and the median relocations in such a page, measured in
# Debian 12's 6.1 kernel (tests/data/kaslr/relocs-6.1.0-50-cloud-amd64.json, made by
# tests/data/kaslr/measure_relocs.py from the kernel's own relocation table): text 2485 of
# 3586 pages (32-bit sign-extended immediates), rodata 269 of 2083, data 315 of 1560
# (64-bit pointers). bss is zeros at boot and moves nothing.
#                  relocated, pages, per page, bytes per word
KASLR_RELOCATIONS = {
    "code": (2485, 3586, 22, 4),
    "rodata": (269, 2083, 83, 8),
    "kdata": (315, 1560, 142, 8),
}


_RELOC_SITES: dict[tuple[str, int], array] = {}


def _reloc_sites(region: Region, index: int) -> array:
    """Word indexes of the relocations in page `index` of `region`: fixed by the image
    (the same in every boot), made once and kept (a few dozen small ints a page)."""
    key = (region.artifact, index)
    sites = _RELOC_SITES.get(key)
    if sites is None:
        _, _, count, width = KASLR_RELOCATIONS[region.profile_of(index).name]
        slots = PAGE_SIZE // width
        h = xxhash.xxh64_intdigest(f"{region.artifact}/reloc/{index}/sites".encode())
        out = set()
        for _ in range(count):
            h = _remix(h)
            out.add(h % slots)
        sites = _RELOC_SITES[key] = array("H", sorted(out))
    return sites


class RelocatedPage(LazyPage):
    """A kernel-image page with its relocations moved by the boot's KASLR offset: the
    image's bytes, with the page's relocated words (positions fixed by the image) plus
    `delta`. Made into bytes only when read."""

    __slots__ = ("region", "index", "delta")

    def __init__(self, region: Region, index: int, delta: int) -> None:
        self.region = region
        self.index = index
        self.delta = delta

    def materialize(self) -> bytes:
        region = self.region
        width = KASLR_RELOCATIONS[region.profile_of(self.index).name][3]
        words = array("Q" if width == 8 else "I", _region_page(region, self.index))
        mask = (1 << (8 * width)) - 1
        delta = self.delta
        for i in _reloc_sites(region, self.index):
            words[i] = (words[i] + delta) & mask
        return words.tobytes()


class ContentSource:
    """Page contents for one VM of one experiment (see the module docstring).

    seed     the experiment seed (int)
    vm_name  the VM's name: selects its private data and its ASLR bases
    input    the data set the VM's programs run on (a benchmark's input files, a site's
             documents, a database's tables), or None. With an input, the data private
             to the VM is the input's: VMs that name the same input compute the same
             data, as a deterministic program fed the same input does. Without one,
             each VM's private data is its own.
    randomize_va_space  the guest's kernel.randomize_va_space: 2 (Linux's default since
             2.6.12) randomises the brk heap and the mmap base of every process, 1 only
             the mmap base, 0 neither (Linux 2.4 and earlier, Windows before Vista):
             then a program's pointers hold the same values in every process and every
             VM that runs it, and equal data is byte-identical.
    """

    def __init__(self, seed: int, vm_name: str, input: str | None = None,
                 randomize_va_space: int = 2) -> None:
        if randomize_va_space not in (0, 1, 2):
            raise ValueError(f"randomize_va_space must be 0, 1 or 2, got {randomize_va_space!r}")
        self.seed = seed
        self.vm_name = vm_name
        self.input = input or None
        self.randomize_va_space = randomize_va_space
        self._prefix = f"{seed}/"
        owner = f"input/{self.input}" if self.input else f"private/{vm_name}"
        self._private_seed = xxhash.xxh64_intdigest(f"{seed}/{owner}".encode())
        self._ptr_pools: dict[tuple[str, int], bytes] = {}

    def configured(self, input: str | None = None, randomize_va_space: int = 2) -> ContentSource:
        """This VM's content source for a workload with these options (see the class)."""
        if (input or None) == self.input and randomize_va_space == self.randomize_va_space:
            return self
        return ContentSource(self.seed, self.vm_name, input, randomize_va_space)

    def _pointer_pool(self, profile: str, pid: int) -> bytes:
        """_PTR_POOL little-endian 8-byte pointers of process `pid`: user-space x86-64
        addresses, a PIE brk heap at 0x55.. and mmap regions at 0x7f.., each with 28
        bits of page-granular ASLR entropy (Linux's default mmap_rnd_bits) where
        randomize_va_space randomises it, else at the fixed bases of a process run
        without ASLR (as under `setarch -R`)."""
        pool = self._ptr_pools.get((profile, pid))
        if pool is None:
            rng = random.Random(xxhash.xxh64_intdigest(
                f"{self.seed}/aslr/{self.vm_name}/{pid}".encode()))
            heap = 0x550000000000 + (rng.getrandbits(28) << 12)
            mmap = 0x7F0000000000 + (rng.getrandbits(28) << 12)
            if self.randomize_va_space < 2:
                heap = _NORANDOM_BRK
            if self.randomize_va_space < 1:
                mmap = _NORANDOM_MMAP
            offsets = _OFFSETS.get(profile)
            if offsets is None:
                offsets = _OFFSETS[profile] = _pointer_offsets(profile)
            pool = b"".join(((mmap if m else heap) + off).to_bytes(8, "little")
                            for m, off in offsets)
            self._ptr_pools[(profile, pid)] = pool
        return pool

    def app_page(self, profile: str | DataProfile, key: int | str, pid: int = 0, lazy: bool = False):
        """The 4 KiB page of application data `key` of `profile` in process `pid`: bytes,
        or with `lazy` an AppPage (a LazyPage) for generated text, which a guest stores
        as it is (zero and fill pages are shared bytes objects either way)."""
        p = _ALL_PROFILES.get(profile) if type(profile) is str else profile
        if p is None:
            p = DataProfile.get(profile)
        c = xxhash.xxh64_intdigest(f"{self._prefix}{p.name}/{key}".encode())
        h = c
        if ((c >> 16) & 0xFFFF) >= p._common_cut:  # data private to this VM
            h = xxhash.xxh64_intdigest(c.to_bytes(8, "little"), self._private_seed)
        ptrs = self._ptr_pools.get((p.name, pid)) or self._pointer_pool(p.name, pid)
        if lazy and (c & 0xFFFF) >= p._fill_cut:
            return AppPage(p, c, h, ptrs)
        return _page(p, c, h, ptrs)

    def image_page(self, image: str, region: str | Region, index: int) -> bytes:
        """Page `index` of `region` of OS image `image` (the same object in every VM)."""
        return OSImage.get(image).page(region, index)

    def image_reader(self, image: str, region: str | Region):
        """The content callable of `region` of `image` as this VM's file: the image's
        pages, except a per_machine region (a log), which is this VM's own."""
        return OSImage.get(image).reader(region, f"{self.seed}/{self.vm_name}")

    def page(self, ref: tuple) -> bytes:
        """Regenerate a page from ("app", profile, key, pid) or
        ("image", image, region, index)."""
        if ref[0] == "app":
            return self.app_page(ref[1], ref[2], ref[3])
        if ref[0] == "image":
            return OSImage.get(ref[1]).page(ref[2], ref[3])
        raise ValueError(f"page reference {ref!r}: kind must be 'app' or 'image'")


# --------------------------------------------------------------------------------------
# Statistics


class ContentStats(NamedTuple):
    zero_fraction: float  # of pages all zero
    mean_compressed: float  # bytes per page as zram stores them (zero/same-filled: 0)
    ratio: float  # original bytes / stored bytes (inf if nothing needs storing)


def content_stats(pages, level: int = 3) -> ContentStats:
    """Compress each page alone with zstd at `level` (the kernel's default, 3) and count
    it as zram would: a same-filled page costs no data, a page that compresses to more
    than ZRAM_HUGE_CLASS bytes is stored uncompressed (PAGE_SIZE)."""
    cctx = zstandard.ZstdCompressor(level=level)
    n = zero = stored = 0
    for page in pages:
        n += 1
        if page is ZERO_PAGE or page == ZERO_PAGE:
            zero += 1
            continue
        if page == page[:8] * (PAGE_SIZE // 8):
            continue
        size = len(cctx.compress(page))
        stored += PAGE_SIZE if size > ZRAM_HUGE_CLASS else size
    if n == 0:
        raise ValueError("content_stats: no pages given")
    return ContentStats(zero / n, stored / n, n * PAGE_SIZE / stored if stored else float("inf"))


# --------------------------------------------------------------------------------------
# Guest OS images

# How a file's pages divide between content classes, in file order.
_LAYOUTS: dict[str, tuple[tuple[str, float], ...]] = {
    "code": (("code", 1.0),),
    "rodata": (("rodata", 1.0),),
    "data": (("kdata", 1.0),),
    "bss": (("bss", 1.0),),
    # ELF shared object or executable: .text, .rodata + .eh_frame, .data + .got
    "elf": (("code", 0.62), ("rodata", 0.28), ("kdata", 0.10)),
    # a Go binary: big rodata (pclntab, type data) next to its text
    "go": (("code", 0.45), ("rodata", 0.47), ("kdata", 0.08)),
    # PE image: .text, .rdata, .data, .rsrc (icons, strings: mostly compressed bitmaps)
    "pe": (("code", 0.55), ("rodata", 0.25), ("kdata", 0.08), ("compressed", 0.12)),
    "text": (("text", 1.0),),
    "compressed": (("compressed", 1.0),),
    "registry": (("registry", 1.0),),
    "journal": (("journal", 1.0),),
    "pyc": (("rodata", 0.7), ("text", 0.3)),  # bytecode, constants, names; sources
}


@dataclass(frozen=True)
class Region:
    """A part of an image in guest memory: kernel section, library or page-cache file.

    name      path (or section) as the guest sees it
    category  "kernel", "library" or "file"
    size      bytes; the last page is zero-padded past the end of the file
    layout    content classes in page order, each with its share of pages
    artifact  content identity: regions with the same artifact hold the same bytes
              (the same build of a file shipped by two images)
    small_files  the region stands for many small files, one page each, each with a
              zero tail (configuration directories)
    per_machine  the running machine writes the file (system logs, journals): every
              machine's bytes are its own (``OSImage.reader(region, machine)``); the
              image's pages stand for one machine. Binary-log layouts and /var/log/.
    """

    name: str
    category: str
    size: int
    layout: tuple[tuple[str, float], ...]
    artifact: str
    small_files: bool = False
    per_machine: bool = False
    pages: int = field(default=0, init=False)
    _bounds: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pages", -(-self.size // PAGE_SIZE))
        bounds, cum = [], 0.0
        for cls, share in self.layout:
            cum += share
            bounds.append((round(cum * self.pages), _ALL_PROFILES[cls]))
        object.__setattr__(self, "_bounds", tuple(bounds))

    def profile_of(self, index: int) -> DataProfile:
        """The content class of page `index`."""
        for end, profile in self._bounds:
            if index < end:
                return profile
        return self._bounds[-1][1]


_ARTIFACT_PAGES: dict[str, list] = {}


def _region_page(region: Region, index: int, cache: bool = True) -> bytes:
    pages = _ARTIFACT_PAGES.get(region.artifact)
    if pages is None:
        if not cache:
            return _make_region_page(region, index)
        pages = _ARTIFACT_PAGES[region.artifact] = [None] * region.pages
    page = pages[index]
    if page is None:
        page = _make_region_page(region, index)
        if cache:
            pages[index] = page
    return page


def _make_region_page(region: Region, index: int, machine: str | None = None) -> bytes:
    artifact = f"{region.artifact}@{machine}" if machine is not None else region.artifact
    h = xxhash.xxh64_intdigest(f"{artifact}/{index}".encode())
    page = _page(region.profile_of(index), h, h, b"")
    if page is not ZERO_PAGE:
        used = PAGE_SIZE
        if region.small_files:
            used = 64 + (h >> 40) % (PAGE_SIZE - 64)
        elif index == region.pages - 1 and region.size % PAGE_SIZE:
            used = region.size % PAGE_SIZE
        if used < PAGE_SIZE:
            # the stamp moves to the front so the cut keeps the page unique
            page = b"".join((h.to_bytes(8, "little"), page[8:used], bytes(PAGE_SIZE - used)))
    return page


@dataclass(frozen=True)
class OSImage:
    """A guest operating system as booted: its kernel, libraries and page-cache files.

    Sizes are the approximate sizes of the real files of that release (the part a
    freshly booted guest has read, for files larger than that), rounded; the list is
    what a default server install runs after boot, not every file on disk.
    """

    name: str
    family: str  # "linux" or "windows"
    kernel: str  # kernel release
    description: str
    regions: tuple[Region, ...]

    @staticmethod
    def get(name: str) -> OSImage:
        """The image called `name` (see IMAGES)."""
        if name.startswith("rootfs:"):  # a real root filesystem (experiments/rootfs.py)
            from .rootfs import RootFS

            return RootFS.get(name[len("rootfs:"):])
        image = _IMAGE_CACHE.get(name)
        if image is None:
            spec = _IMAGE_SPECS.get(name)
            if spec is None:
                raise ValueError(f"unknown OS image {name!r}; known: {', '.join(IMAGES)}")
            image = _IMAGE_CACHE[name] = _build_image(name, spec)
        return image

    @property
    def total_pages(self) -> int:
        return sum(r.pages for r in self.regions)

    def region(self, name: str) -> Region:
        for r in self.regions:
            if r.name == name:
                return r
        raise ValueError(f"OS image {self.name}: no region {name!r}")

    def page(self, region: str | Region, index: int) -> bytes:
        """Page `index` (0-based) of `region` (a Region of this image or its name)."""
        if type(region) is str:
            region = self.region(region)
        if not 0 <= index < region.pages:
            raise IndexError(f"OS image {self.name}: {region.name} has {region.pages} pages, "
                             f"no page {index}")
        return _region_page(region, index)

    def kernel_page(self, region: str | Region, index: int, kaslr_delta: int = 0):
        """Page `index` of a kernel `region` as a guest booted with KASLR holds it: the
        image's page where no relocation falls in it (or without KASLR, delta 0), else
        the page with its relocations moved by `kaslr_delta` bytes (a `RelocatedPage`)."""
        if type(region) is str:
            region = self.region(region)
        page = self.page(region, index)
        if not kaslr_delta or page is ZERO_PAGE:
            return page
        rel = KASLR_RELOCATIONS.get(region.profile_of(index).name)
        if rel is None:
            return page
        relocated, pages, _, _ = rel
        h = xxhash.xxh64_intdigest(f"{region.artifact}/reloc/{index}".encode())
        if (h & 0xFFFF) * pages >= relocated * 0x10000:
            return page  # no relocation in this page: the same bytes at every offset
        return RelocatedPage(region, index, kaslr_delta)

    def reader(self, region: str | Region, machine: str | None = None):
        """`index -> bytes` for `region`: the `content` callable of a guest file, e.g.
        ``fs.create(r.name, size=r.size, content=image.reader(r))`` (guestkernel/filemap).
        `machine` names the installed machine: a per_machine region (a log) then reads
        that machine's own bytes, built on demand and not cached (the guest's page cache
        holds what it read); every other region reads the image's shared pages."""
        if type(region) is str:
            region = self.region(region)
        if machine is not None and region.per_machine:
            return lambda index: _make_region_page(region, index, machine)
        return lambda index: _region_page(region, index)

    def pages(self, category: str | None = None, cache: bool = True):
        """Yield (region, index, bytes) for every page (of one category, if given).
        cache=False: do not keep pages not already cached (a scan of a whole image
        without keeping its hundreds of MiB)."""
        for r in self.regions:
            if category is None or r.category == category:
                for i in range(r.pages):
                    yield r, i, _region_page(r, i, cache)


def drop_image_cache() -> None:
    """Forget every cached image page (they are regenerated, as new objects, on demand).
    For long-lived processes, e.g. sweep workers, between runs that use other images."""
    _ARTIFACT_PAGES.clear()
    _RELOC_SITES.clear()


_K = 1 << 10
_M = 1 << 20

# (path, category, size in bytes, layout, artifact or None for image-private, small)
_IMAGE_SPECS: dict[str, tuple[str, str, str, list[tuple]]] = {
    "debian-12": ("linux", "6.1.0-18-amd64",
                  "Debian 12 bookworm server: systemd 252, glibc 2.36, OpenSSH, ifupdown", [
        ("vmlinux:.text", "kernel", 10 * _M, "code"),
        ("vmlinux:.rodata", "kernel", 4 * _M, "rodata"),
        ("vmlinux:.data", "kernel", 2 * _M, "data"),
        ("vmlinux:.bss", "kernel", 3 * _M, "bss"),
        ("modules (ext4, jbd2, virtio_*, crc32c, ...)", "kernel", 5 * _M, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "library", 1922 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "library", 210 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so", "library",
         3720 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libsystemd.so.0", "library", 900 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libm.so.6", "library", 907 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "library", 4610 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "library", 677 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "library", 2286 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libgcrypt.so.20", "library", 1270 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libzstd.so.1", "library", 826 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", "library", 617 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libmount.so.1", "library", 343 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libblkid.so.1", "library", 338 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libdbus-1.so.3", "library", 338 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libtinfo.so.6", "library", 200 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libcrypt.so.1", "library", 206 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libselinux.so.1", "library", 174 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/liblzma.so.5", "library", 170 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/liblz4.so.1", "library", 146 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libseccomp.so.2", "library", 142 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libz.so.1", "library", 121 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libkmod.so.2", "library", 99 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libcap.so.2", "library", 44 * _K, "elf"),
        ("/usr/lib/systemd/systemd", "file", 92 * _K, "elf"),
        ("/usr/lib/systemd/systemd-journald", "file", 175 * _K, "elf"),
        ("/usr/lib/systemd/systemd-logind", "file", 276 * _K, "elf"),
        ("/usr/bin/udevadm", "file", 605 * _K, "elf"),
        ("/usr/sbin/sshd", "file", 1044 * _K, "elf"),
        ("/usr/bin/bash", "file", 1234 * _K, "elf"),
        ("/usr/bin/dbus-daemon", "file", 250 * _K, "elf"),
        ("/usr/sbin/dhclient", "file", 552 * _K, "elf"),
        ("/usr/sbin/cron", "file", 64 * _K, "elf"),
        ("/usr/sbin/agetty", "file", 64 * _K, "elf"),
        ("/usr/bin (coreutils, util-linux: 24 programs)", "file", 1600 * _K, "elf"),
        ("/usr/lib/locale/C.utf8/LC_CTYPE", "file", 346 * _K, "rodata"),
        ("/usr/lib/modules/6.1.0-18-amd64/modules.*", "file", 1100 * _K, "rodata"),
        ("/usr/lib/udev/hwdb.bin (read part)", "file", 2 * _M, "rodata"),
        ("/var/log/journal/system.journal", "file", 8 * _M, "journal"),
        ("/etc (310 files)", "file", 310 * PAGE_SIZE, "text", None, True),
        ("/usr/share/zoneinfo", "file", 12 * PAGE_SIZE, "rodata", "tzdata-2024a", True),
    ]),
    "ubuntu-22.04": ("linux", "5.15.0-105-generic",
                     "Ubuntu 22.04 jammy cloud server: systemd 249, glibc 2.35, snapd, "
                     "cloud-init and other Python 3.10 services, multipathd", [
        ("vmlinux:.text", "kernel", 14 * _M, "code"),
        ("vmlinux:.rodata", "kernel", 5 * _M, "rodata"),
        ("vmlinux:.data", "kernel", 3 * _M, "data"),
        ("vmlinux:.bss", "kernel", 4 * _M, "bss"),
        ("modules (ext4, virtio_*, overlay, nf_tables, dm_multipath, ...)", "kernel",
         18 * _M, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "library", 2168 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "library", 236 * _K, "elf"),
        ("/usr/lib/systemd/libsystemd-shared-249.so", "library", 2950 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libsystemd.so.0", "library", 827 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libm.so.6", "library", 920 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libcrypto.so.3", "library", 4350 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libssl.so.3", "library", 650 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "library", 2200 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libglib-2.0.so.0", "library", 1250 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libgio-2.0.so.0", "library", 1800 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libzstd.so.1", "library", 820 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libpcre2-8.so.0", "library", 600 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu/libapparmor.so.1", "library", 100 * _K, "elf"),
        ("/usr/lib/x86_64-linux-gnu (24 smaller libraries)", "library", 3 * _M, "elf"),
        ("/usr/lib/snapd/snapd", "file", 20 * _M, "go"),
        ("/usr/bin/python3.10", "file", 5800 * _K, "elf"),
        ("/usr/lib/python3.10 (cloud-init, networkd-dispatcher, unattended-upgrades)",
         "file", 18 * _M, "pyc"),
        ("/usr/lib/systemd/systemd-networkd", "file", 1400 * _K, "elf"),
        ("/usr/lib/systemd/systemd-resolved", "file", 570 * _K, "elf"),
        ("/usr/lib/systemd/systemd-journald", "file", 150 * _K, "elf"),
        ("/sbin/multipathd", "file", 580 * _K, "elf"),
        ("/usr/sbin/sshd", "file", 900 * _K, "elf"),
        ("/usr/bin/bash", "file", 1370 * _K, "elf"),
        ("/usr/bin (coreutils, util-linux: 30 programs)", "file", 2 * _M, "elf"),
        ("/usr/lib/locale/C.utf8/LC_CTYPE", "file", 340 * _K, "rodata"),
        ("/usr/lib/udev/hwdb.bin (read part)", "file", 2 * _M, "rodata"),
        ("/var/log/journal/system.journal", "file", 16 * _M, "journal"),
        ("/etc (520 files)", "file", 520 * PAGE_SIZE, "text", None, True),
        ("/usr/share/zoneinfo", "file", 12 * PAGE_SIZE, "rodata", "tzdata-2024a", True),
    ]),
    "centos-7": ("linux", "3.10.0-1160.el7.x86_64",
                 "CentOS 7.9 minimal server: systemd 219, glibc 2.17, NetworkManager, "
                 "firewalld and tuned (Python 2.7), polkit (mozjs), rsyslog", [
        ("vmlinux:.text", "kernel", 7 * _M, "code"),
        ("vmlinux:.rodata", "kernel", 3 * _M, "rodata"),
        ("vmlinux:.data", "kernel", 1536 * _K, "data"),
        ("vmlinux:.bss", "kernel", 2 * _M, "bss"),
        ("modules (xfs, virtio_*, nf_conntrack, ...)", "kernel", 6 * _M, "elf"),
        ("/usr/lib64/libc-2.17.so", "library", 2156 * _K, "elf"),
        ("/usr/lib64/ld-2.17.so", "library", 164 * _K, "elf"),
        ("/usr/lib64/libpthread-2.17.so", "library", 142 * _K, "elf"),
        ("/usr/lib64/libm-2.17.so", "library", 1137 * _K, "elf"),
        ("/usr/lib64/libcrypto.so.1.0.2k", "library", 2520 * _K, "elf"),
        ("/usr/lib64/libssl.so.1.0.2k", "library", 470 * _K, "elf"),
        ("/usr/lib64/libstdc++.so.6.0.19", "library", 991 * _K, "elf"),
        ("/usr/lib64/libpython2.7.so.1.0", "library", 1850 * _K, "elf"),
        ("/usr/lib64/libglib-2.0.so.0", "library", 1100 * _K, "elf"),
        ("/usr/lib64/libgio-2.0.so.0", "library", 1660 * _K, "elf"),
        ("/usr/lib64/libmozjs-17.0.so", "library", 5600 * _K, "elf"),
        ("/usr/lib64/libnm.so.0", "library", 1500 * _K, "elf"),
        ("/usr/lib64/libselinux.so.1", "library", 155 * _K, "elf"),
        ("/usr/lib64/libpcre.so.1", "library", 400 * _K, "elf"),
        ("/usr/lib64 (30 smaller libraries)", "library", 3 * _M, "elf"),
        ("/usr/lib/systemd/systemd", "file", 1600 * _K, "elf"),
        ("/usr/lib/systemd/systemd-journald", "file", 350 * _K, "elf"),
        ("/usr/lib/systemd/systemd-udevd", "file", 420 * _K, "elf"),
        ("/usr/sbin/NetworkManager", "file", 3300 * _K, "elf"),
        ("/usr/lib64/python2.7 (firewalld, tuned)", "file", 12 * _M, "pyc"),
        ("/usr/sbin/rsyslogd", "file", 660 * _K, "elf"),
        ("/usr/sbin/auditd", "file", 130 * _K, "elf"),
        ("/usr/sbin/sshd", "file", 850 * _K, "elf"),
        ("/usr/bin/bash", "file", 960 * _K, "elf"),
        ("/usr/lib/locale/locale-archive (read part)", "file", 2 * _M, "rodata"),
        ("/run/log/journal/system.journal", "file", 8 * _M, "journal"),
        ("/etc (640 files)", "file", 640 * PAGE_SIZE, "text", None, True),
    ]),
    "alpine-3.19": ("linux", "6.6.14-0-virt",
                    "Alpine Linux 3.19 virt: musl 1.2.4, busybox, OpenRC, OpenSSH", [
        ("vmlinux:.text", "kernel", 8 * _M, "code"),
        ("vmlinux:.rodata", "kernel", 3 * _M, "rodata"),
        ("vmlinux:.data", "kernel", 1536 * _K, "data"),
        ("vmlinux:.bss", "kernel", 2 * _M, "bss"),
        ("modules (ext4, virtio_*, ...)", "kernel", 2 * _M, "elf"),
        ("/lib/ld-musl-x86_64.so.1", "library", 654 * _K, "elf"),
        ("/lib/libcrypto.so.3", "library", 4200 * _K, "elf"),
        ("/lib/libssl.so.3", "library", 600 * _K, "elf"),
        ("/lib/libz.so.1", "library", 100 * _K, "elf"),
        ("/lib/libapk.so.2", "library", 200 * _K, "elf"),
        ("/bin/busybox", "file", 820 * _K, "elf"),
        ("/sbin/openrc + /lib/librc.so.1", "file", 120 * _K, "elf"),
        ("/usr/sbin/sshd", "file", 940 * _K, "elf"),
        ("/sbin/apk", "file", 70 * _K, "elf"),
        ("/var/log/messages", "file", 100 * _K, "text"),
        ("/etc (120 files)", "file", 120 * PAGE_SIZE, "text", None, True),
    ]),
    "windows-2019": ("windows", "10.0.17763",
                     "Windows Server 2019 Datacenter with Desktop Experience: Defender, "
                     "Server Manager (.NET), WMI", [
        ("ntoskrnl.exe", "kernel", 9800 * _K, "pe"),
        ("hal.dll", "kernel", 600 * _K, "pe"),
        ("win32kbase.sys + win32kfull.sys + win32k.sys", "kernel", 6 * _M, "pe"),
        ("drivers (tcpip, ntfs, ndis, storport, netvsc, ...)", "kernel", 24 * _M, "pe"),
        ("nonpaged kernel data", "kernel", 8 * _M, "data"),
        ("REGISTRY: SYSTEM hive", "kernel", 20 * _M, "registry"),
        ("REGISTRY: SOFTWARE hive (read part)", "kernel", 40 * _M, "registry"),
        ("ntdll.dll", "library", 1950 * _K, "pe"),
        ("kernel32.dll", "library", 700 * _K, "pe"),
        ("KernelBase.dll", "library", 2600 * _K, "pe"),
        ("user32.dll", "library", 1600 * _K, "pe"),
        ("gdi32full.dll", "library", 1600 * _K, "pe"),
        ("combase.dll", "library", 3400 * _K, "pe"),
        ("rpcrt4.dll", "library", 1150 * _K, "pe"),
        ("ole32.dll", "library", 1300 * _K, "pe"),
        ("ucrtbase.dll", "library", 1000 * _K, "pe"),
        ("shell32.dll", "library", 6800 * _K, "pe"),
        ("windows.storage.dll", "library", 7200 * _K, "pe"),
        ("crypt32.dll", "library", 1500 * _K, "pe"),
        ("wininet.dll", "library", 4500 * _K, "pe"),
        ("System32 (150 other DLLs)", "library", 60 * _M, "pe"),
        (".NET native images (mscorlib.ni.dll, System.ni.dll, ...)", "library", 60 * _M,
         "pe"),
        ("explorer.exe", "file", 4500 * _K, "pe"),
        ("lsass.exe + lsasrv.dll", "file", 1500 * _K, "pe"),
        ("services.exe + svchost.exe", "file", 800 * _K, "pe"),
        ("MsMpEng.exe + mpengine.dll", "file", 14 * _M, "pe"),
        ("Defender definitions (mpavbase.vdm, mpasbase.vdm)", "file", 50 * _M,
         "compressed"),
        ("wbem\\Repository\\OBJECTS.DATA", "file", 20 * _M, "data"),
        ("winevt\\Logs (*.evtx)", "file", 20 * _M, "journal"),
        ("Fonts (segoeui.ttf, ...)", "file", 5 * _M, "compressed"),
        ("Prefetch (*.pf)", "file", 2 * _M, "compressed"),
    ]),
    "windows-xp": ("windows", "5.1.2600",
                   "Windows XP Professional SP3 desktop", [
        ("ntkrnlpa.exe", "kernel", 2100 * _K, "pe"),
        ("hal.dll", "kernel", 134 * _K, "pe"),
        ("win32k.sys", "kernel", 1800 * _K, "pe"),
        ("drivers (tcpip, ntfs, ndis, ...)", "kernel", 6 * _M, "pe"),
        ("nonpaged kernel data", "kernel", 2 * _M, "data"),
        ("config\\system", "kernel", 4 * _M, "registry"),
        ("config\\software (read part)", "kernel", 8 * _M, "registry"),
        ("ntdll.dll", "library", 700 * _K, "pe"),
        ("kernel32.dll", "library", 980 * _K, "pe"),
        ("user32.dll", "library", 570 * _K, "pe"),
        ("gdi32.dll", "library", 280 * _K, "pe"),
        ("advapi32.dll", "library", 600 * _K, "pe"),
        ("rpcrt4.dll", "library", 570 * _K, "pe"),
        ("ole32.dll", "library", 1300 * _K, "pe"),
        ("oleaut32.dll", "library", 540 * _K, "pe"),
        ("shell32.dll", "library", 8200 * _K, "pe"),
        ("comctl32.dll (6.0, WinSxS)", "library", 1000 * _K, "pe"),
        ("shlwapi.dll", "library", 460 * _K, "pe"),
        ("msvcrt.dll", "library", 340 * _K, "pe"),
        ("urlmon.dll + wininet.dll", "library", 1900 * _K, "pe"),
        ("system32 (80 other DLLs)", "library", 25 * _M, "pe"),
        ("explorer.exe", "file", 1000 * _K, "pe"),
        ("winlogon.exe + lsass.exe + lsasrv.dll", "file", 1250 * _K, "pe"),
        ("services.exe + svchost.exe + spoolsv.exe", "file", 200 * _K, "pe"),
        ("Fonts", "file", 3 * _M, "compressed"),
        ("config\\*.evt", "file", 1536 * _K, "journal"),
        ("Prefetch (*.pf)", "file", 1 * _M, "data"),
    ]),
}

IMAGES: tuple[str, ...] = tuple(_IMAGE_SPECS)
_IMAGE_CACHE: dict[str, OSImage] = {}


def _build_image(name: str, spec) -> OSImage:
    family, kernel, description, rows = spec
    regions = []
    for row in rows:
        path, category, size, layout = row[:4]
        artifact = row[4] if len(row) > 4 and row[4] else f"{name}:{path}"
        small = len(row) > 5 and row[5]
        per_machine = layout == "journal" or path.startswith("/var/log/")
        regions.append(Region(path, category, size, _LAYOUTS[layout], artifact, small,
                              per_machine))
    return OSImage(name, family, kernel, description, tuple(regions))


# --------------------------------------------------------------------------------------
# Raw memory images


def raw_image_pages(path) -> list[bytes]:
    """The pages of a raw guest memory image file (e.g. a `virsh dump --memory-only
    --format=raw` or a QEMU `pmemsave`), in file order: page i is guest frame i.

    Identical pages come back as one object (zero pages as ZERO_PAGE); a last partial
    page is zero-padded. A missing or unreadable file raises ValueError naming it.
    """
    intern: dict[bytes, bytes] = {ZERO_PAGE: ZERO_PAGE}
    pages: list[bytes] = []
    try:
        with open(path, "rb") as f:
            while chunk := f.read(PAGE_SIZE):
                if len(chunk) < PAGE_SIZE:
                    chunk += bytes(PAGE_SIZE - len(chunk))
                pages.append(intern.setdefault(chunk, chunk))
    except OSError as e:
        raise ValueError(f"raw memory image {path}: {e.strerror or e}") from None
    return pages
