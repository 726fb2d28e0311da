"""Memory image formats detected by content: raw, ELF core (gABI program headers), capture.

ELF constants from the System V gABI (ELF-64 Object File Format 1.5 and the gABI's
"Program Header" chapter): e_type ET_CORE = 4, p_type PT_LOAD = 1, PN_XNUM = 0xffff with
the real e_phnum in section header 0's sh_info; a segment's p_filesz bytes are in the
file and p_memsz - p_filesz follow as not present.
"""

import os
import shutil
import struct
import subprocess
import sys

import pytest

from guestkernel.physmem import ZERO_PAGE
from hypervisor.machine import MachineMemory
from hypervisor.memimage import (
    CANDIDATE,
    NOT_IN_DUMP,
    ImageError,
    open_image,
)
from hypervisor.p2m import P2M_NONE, P2M_PRIVATE
from hypervisor.vm import VM

from .helpers import page

P = 4096


def elf64_core(segments, phnum_xnum=False, e_type=4, endian="<"):
    """An ELF64 core file: segments = [(p_type, data, memsz)]; data at page-aligned offsets."""
    n = len(segments)
    phoff = 64
    shoff = phoff + 56 * n
    data_at = -(-(shoff + 64) // P) * P
    phdrs = b""
    blobs = b""
    off = data_at
    for p_type, data, memsz in segments:
        phdrs += struct.pack(endian + "IIQQQQQQ", p_type, 6, off, 0x1000 * off, 0, len(data), memsz, P)
        blobs += data
        off += len(data)
    ident = b"\x7fELF" + bytes([2, 1 if endian == "<" else 2, 1, 0]) + bytes(8)
    header = ident + struct.pack(endian + "HHIQQQIHHHHHH", e_type, 62, 1, 0, phoff,
                                 shoff if phnum_xnum else 0, 0, 64, 56,
                                 0xFFFF if phnum_xnum else n, 64, 1 if phnum_xnum else 0, 0)
    sh0 = struct.pack(endian + "IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, n, 0, 0)
    body = header + phdrs + sh0
    return body + bytes(data_at - len(body)) + blobs


def test_elf_core_pt_load_pages_and_the_part_not_in_the_dump(tmp_path):
    a = page(1) + page(2)
    b = page(3)
    core = elf64_core([(4, b"note", 4), (1, a, 2 * P), (1, b, 3 * P)])  # PT_NOTE skipped
    path = tmp_path / "core"
    path.write_bytes(core)
    img = open_image(path)
    assert img.format == "elf-core" and not img.residency_known
    # 2 pages + (1 in the file, 2 beyond p_filesz)
    assert img.nr_pages == 5
    kinds = [(k, bytes(v) if v is not None else None) for k, v in img.pages()]
    assert kinds == [(CANDIDATE, page(1)), (CANDIDATE, page(2)), (CANDIDATE, page(3)),
                     (NOT_IN_DUMP, None), (NOT_IN_DUMP, None)]
    assert "cannot tell resident pages" in img.note


def test_elf_core_pn_xnum_and_big_endian(tmp_path):
    path = tmp_path / "core"
    path.write_bytes(elf64_core([(1, page(1), P), (1, page(2), P)], phnum_xnum=True, endian=">"))
    img = open_image(path)
    assert [bytes(v) for _, v in img.pages()] == [page(1), page(2)]


def test_a_vm_from_an_elf_core_leaves_pages_not_in_the_dump_unbacked(tmp_path):
    path = tmp_path / "core"
    path.write_bytes(elf64_core([(1, page(1) + ZERO_PAGE, 4 * P)]))
    vm = VM.from_image(MachineMemory(64), "core", path)
    assert vm.nr_pages == 4
    assert [vm.p2m.state[i] for i in range(4)] == [P2M_PRIVATE, P2M_PRIVATE, P2M_NONE, P2M_NONE]
    assert vm.load(0) == page(1) and vm.load(1) == ZERO_PAGE


@pytest.mark.parametrize("content, message", [
    (lambda: elf64_core([(1, page(1), P)], e_type=2), "an executable, not an ELF core file"),
    (lambda: elf64_core([(4, b"x", 1)]), "without a PT_LOAD segment"),
    (lambda: elf64_core([(1, page(1) + page(2), 2 * P)])[:-100], "truncated ELF core file: PT_LOAD segment 0"),
    (lambda: b"\x7fELF\x02\x01", "truncated ELF header"),
    (lambda: b"KDUMP   " + bytes(P - 8), "makedumpfile compressed kdump format"),
    (lambda: b"\x1f\x8b\x08" + bytes(P - 3), "gzip-compressed"),
    (lambda: b"HVSIMCAP" + struct.pack("<II", 1, 0) + b"SNAP" + struct.pack("<Q", 1000), "truncated hvsim capture"),
    (lambda: b"x" * 5000, "not a multiple of the 4096-byte page"),
    (lambda: b"", "image is empty"),
])
def test_bad_images_get_one_line(tmp_path, content, message):
    path = tmp_path / "img"
    path.write_bytes(content())
    with pytest.raises(ImageError, match=message) as e:
        open_image(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_an_executable_is_refused_by_content_not_name(tmp_path):
    exe = tmp_path / "looks-like.core"
    shutil.copy(sys.executable, exe)
    with pytest.raises(ImageError, match="not an ELF core file"):
        open_image(exe)


def _readelf_loads(path):
    """(offset, filesz, memsz) of every LOAD from binutils' readelf, independently of hvsim."""
    out = subprocess.run(["readelf", "-lW", str(path)], capture_output=True, text=True, check=True).stdout
    loads = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            loads.append((int(f[1], 16), int(f[4], 16), int(f[5], 16)))
    return loads


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed: no gcore to test with")
@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf is not installed")
def test_gdb_gcore_of_a_process_reads_as_readelf_lists_it(tmp_path):
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import mmap,sys,time\n"
         "m = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)\n"
         "for i in range(64): m[i * 4096:(i + 1) * 4096] = b'hvsim-gcore-page' * 256\n"
         "print('ready', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        base = tmp_path / "core"
        res = subprocess.run(["gdb", "-nx", "-batch", "-p", str(child.pid), "-ex", f"gcore {base}"],
                             capture_output=True, text=True, timeout=120)
        if res.returncode != 0 or not os.path.exists(f"{base}"):
            pytest.skip(f"gdb could not attach (ptrace refused?): {res.stderr.strip()[:200]}")
    finally:
        child.kill()
        child.wait()
    img = open_image(base)
    assert img.format == "elf-core"
    loads = _readelf_loads(base)
    assert img.nr_pages == sum(-(-max(m, f) // P) for _, f, m in loads)
    with open(base, "rb") as fh:
        raw = fh.read()
    expected = []
    for off, filesz, _memsz in loads:
        for o in range(off, off + filesz // P * P, P):
            expected.append(raw[o : o + P])
    got = [bytes(v) for k, v in img.pages() if k == CANDIDATE]
    assert got == expected
    assert got.count(b"hvsim-gcore-page" * 256) >= 64


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="QEMU is not installed")
@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils readelf is not installed")
def test_qemu_dump_guest_memory_reads_as_readelf_lists_it(tmp_path):
    # a 16 MiB TCG guest (SeaBIOS only) dumped by QEMU's monitor: ELF, PT_LOAD per RAM
    # block (RAM and the BIOS ROM), segments at offsets that are not page-aligned
    path = tmp_path / "guest.elf"
    res = subprocess.run(
        ["qemu-system-x86_64", "-m", "16M", "-display", "none", "-monitor", "stdio", "-serial", "none",
         "-nodefaults", "-accel", "tcg"],
        input=f"dump-guest-memory {path}\nquit\n", capture_output=True, text=True, timeout=120)
    if not path.exists():
        pytest.skip(f"QEMU could not dump: {res.stderr.strip()[:200]}")
    loads = _readelf_loads(path)
    assert sum(f for _, f, _m in loads) >= 16 << 20
    img = open_image(path)
    assert img.format == "elf-core"
    assert img.nr_pages == sum(-(-max(m, f) // P) for _, f, m in loads)
    raw = path.read_bytes()
    expected = [raw[o : o + P] for off, f, _m in loads for o in range(off, off + f // P * P, P)]
    assert [bytes(v) for _, v in img.pages()] == expected
    vm = VM.from_image(MachineMemory(img.nr_pages + 16), "guest", path)
    assert [vm.load(i) for i in range(vm.nr_pages)] == expected
    # the compressed kdump format (-z) is recognised and refused with what to do
    z = tmp_path / "guest.kdump"
    subprocess.run(
        ["qemu-system-x86_64", "-m", "16M", "-display", "none", "-monitor", "stdio", "-serial", "none",
         "-nodefaults", "-accel", "tcg"],
        input=f"dump-guest-memory -z {z}\nquit\n", capture_output=True, text=True, timeout=120)
    if z.exists():
        with pytest.raises(ImageError, match="makedumpfile flattened format"):
            open_image(z)
