"""Relocations per page of a real x86_64 kernel image: which kernel pages KASLR changes.

Source: Debian 12's linux-image-6.1.0-50-cloud-amd64-unsigned (6.1.176-1), fetched with
`apt-get download`. Its bzImage payload (LZ4) is vmlinux.bin followed by vmlinux.relocs,
the table arch/x86/boot/compressed/misc.c:handle_relocations() applies at boot when
CONFIG_RANDOMIZE_BASE moves the kernel: from the end, 32-bit relocations, a zero, 32-bit
inverse relocations, a zero, 64-bit relocations, a zero. Each entry is the (sign-extended)
virtual address of a word that gets the KASLR delta added (or subtracted). A page with at
least one entry differs between two boots with different offsets; a page with none is the
same bytes in every boot.

    apt-get download linux-image-6.1.0-50-cloud-amd64-unsigned
    dpkg-deb -x linux-image-*.deb img
    python measure_relocs.py img/boot/vmlinuz-6.1.0-50-cloud-amd64 > relocs-6.1.0-50-cloud-amd64.json

(run with lz4 installed: `unlz4` decompresses the payload)
"""

import json
import struct
import subprocess
import sys


def main(path: str) -> None:
    d = open(path, "rb").read()
    setup_sects = d[0x1F1] or 4
    off, ln = struct.unpack_from("<II", d, 0x248)  # payload_offset, payload_length
    start = (setup_sects + 1) * 512 + off
    # unlz4 exits 1 on the 4-byte decompressed size the kernel build appends: ignored
    blob = subprocess.run(["unlz4", "-c"], input=d[start:start + ln], capture_output=True).stdout
    assert blob[:4] == b"\x7fELF", "payload did not decompress to vmlinux.bin"
    shoff = struct.unpack_from("<Q", blob, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", blob, 0x3C)

    def sh(i):
        return struct.unpack_from("<IIQQQQIIQQ", blob, shoff + i * 64)

    stro = sh(shstrndx)[4]
    secs = {}
    for i in range(shnum):
        name, _t, _f, addr, _o, size, *_ = sh(i)
        secs[blob[stro + name:blob.index(b"\0", stro + name)].decode()] = (addr, size)
    n = (len(blob) - (shoff + shnum * 64)) // 4
    u = struct.unpack_from(f"<{n}I", blob, len(blob) - n * 4)
    i = n - 1
    kinds = {"reloc32": [], "reloc32_inverse": [], "reloc64": []}
    for kind in kinds:
        while u[i]:
            kinds[kind].append(u[i] | (0xFFFFFFFF00000000 if u[i] & 0x80000000 else 0))
            i -= 1
        i -= 1
    # the kernel's own ranges as the boot "Memory:" line counts them (_stext.._etext,
    # __start_rodata..__end_rodata, _sdata.._edata and the rest of the RW segment)
    text = (secs[".text"][0], secs[".text"][0] + secs[".text"][1])
    rodata = (secs[".rodata"][0], secs[".BTF_ids"][0] + secs[".BTF_ids"][1])
    data = (secs[".data"][0], secs[".vvar"][0] + secs[".vvar"][1])
    out = {"kernel": "6.1.0-50-cloud-amd64 (Debian 6.1.176-1)",
           "entries": {k: len(v) for k, v in kinds.items()}, "sections": {}}
    allrel = [a for v in kinds.values() for a in v]
    for name, (lo, hi) in (("text", text), ("rodata", rodata), ("data", data)):
        pages = {}
        for a in allrel:
            if lo <= a < hi:
                pages[(a - lo) >> 12] = pages.get((a - lo) >> 12, 0) + 1
        npages = (hi - lo + 4095) >> 12
        counts = sorted(pages.values())
        out["sections"][name] = {
            "pages": npages,
            "pages_relocated": len(pages),
            "relocations": sum(counts),
            "median_per_relocated_page": counts[len(counts) // 2] if counts else 0,
        }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
