"""image = { rootfs = PATH }: a real tree (a slice of this Python installation) as a
guest's files; the guest's page cache holds the files' real bytes; two VMs booting it
share those pages, two versions of it share what is byte-identical (direct count)."""

import io
import os
import shutil
import tarfile
from pathlib import Path

import pytest
import simpy

from experiments.config import ConfigError, config_from_dict, load_config
from experiments.content import OSImage
from experiments.rootfs import RootFS, RootFSError
from experiments.scenario import Scenario
from guestkernel.physmem import ZERO_PAGE

P = 4096


def python_slice(dest: Path) -> Path:
    """Copy the json and email packages of this Python (real text files) and one
    extension module (a real ELF shared object) under dest/usr/lib/python3/."""
    lib = Path(os.__file__).parent
    root = dest / "usr" / "lib" / "python3"
    for pkg in ("json", "email"):
        shutil.copytree(lib / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    so = sorted((lib / "lib-dynload").glob("*.so"))[0] if (lib / "lib-dynload").is_dir() else None
    if so is not None:
        shutil.copy(so, root / so.name)
    return dest


def file_pages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [(data[o : o + P] + bytes(P))[:P] for o in range(0, len(data), P)]


def test_a_directory_tree_lists_its_files_and_reads_real_bytes(tmp_path):
    tree = python_slice(tmp_path / "tree")
    img = RootFS.get(str(tree))
    files = sorted(p for p in tree.rglob("*") if p.is_file() and p.stat().st_size)
    assert [r.name for r in img.regions] == sorted("/" + str(p.relative_to(tree)) for p in files)
    r = img.region("/usr/lib/python3/json/decoder.py")
    assert [img.page(r, i) for i in range(r.pages)] == file_pages(tree / "usr/lib/python3/json/decoder.py")
    assert any(x.category == "library" for x in img.regions) == any(p.suffix == ".so" for p in files)
    # lazy: only the pages read so far are held
    assert sum(len(x._pages) for x in img.regions) == r.pages


def test_a_tar_layer_reads_the_same_bytes_uncompressed_and_gzipped(tmp_path):
    tree = python_slice(tmp_path / "tree")
    for mode, name in (("w", "layer.tar"), ("w:gz", "layer.tar.gz")):
        path = tmp_path / name
        with tarfile.open(path, mode) as tar:
            tar.add(tree, arcname=".")
            info = tarfile.TarInfo("usr/lib/.wh.removed")  # an OCI whiteout: skipped
            tar.addfile(info, io.BytesIO(b""))
        img = RootFS.get(str(path))
        d = RootFS.get(str(tree))
        assert [r.name for r in img.regions] == [r.name for r in d.regions]
        for r in img.regions[:5]:
            assert [img.page(r, i) for i in range(r.pages)] == [d.page(r.name, i) for i in range(r.pages)]


def test_bad_rootfs_paths_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    for path, message in ((tmp_path / "nope", "no such directory or tar archive"),
                          (tmp_path / "empty", "no regular file"),
                          (tmp_path / "junk.tar", "not a readable tar archive")):
        with pytest.raises(RootFSError, match=message) as e:
            RootFS(str(path))
        assert "\n" not in str(e.value)
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[vm]]\nname = "a"\nimage = { rootfs = "missing-tree" }\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.problems == [f"vm[0].image.rootfs: {tmp_path / 'missing-tree'}: no such directory or tar archive"]


def _boot(vms: list[tuple[str, str]], sharing: bool = True):
    """VMs booting rootfs trees and reading every file at boot (page_cache), 2 s."""
    cfg = config_from_dict({
        "experiment": {"name": "rootfs", "duration": "2s", "seed": 1},
        "host": {"memory": "512MiB", "sharing": {"enabled": sharing, "pages_to_scan": 100000}},
        "vm": [{"name": name, "memory": "128MiB", "image": {"rootfs": tree},
                "workload": {"profile": "memhog", "size": "1MiB", "page_cache": "64MiB"}}
               for name, tree in vms]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    sc.start()
    env.run(until=2.0)
    return sc


def _cached(vm, image):
    """{(path, index): bytes} of the page-cache pages of the image's files in the guest."""
    fs = vm.kernel.fs
    out = {}
    for r in image.regions:
        inode = fs.lookup(r.name)
        for index, page in inode.mapping.pages.items():
            out[(r.name, index)] = vm.load(page.pfn)
    return out


def test_two_vms_booting_one_tree_hold_its_real_bytes_and_share_them(tmp_path):
    tree = str(python_slice(tmp_path / "tree"))
    sc = _boot([("a", tree), ("b", tree)])
    img = OSImage.get(f"rootfs:{tree}")
    a, b = (_cached(vm, img) for vm in sc.host.vms)
    total = img.total_pages
    assert len(a) == len(b) == total  # every file read whole (64 MiB budget > the tree)
    for (path, index), data in a.items():
        assert data == file_pages(Path(tree + path))[index]
    # KSM merged the two page caches: every distinct non-zero file page is shared
    distinct = {d for d in a.values() if d != ZERO_PAGE}
    ksm = sc.host.sharing
    assert ksm.full_scans >= 2
    assert ksm.pages_sharing >= len(distinct)


def test_two_versions_of_a_tree_share_exactly_their_identical_pages(tmp_path):
    v1 = python_slice(tmp_path / "v1")
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    target = v2 / "usr/lib/python3/json/decoder.py"
    target.write_bytes(b"# patched\n" + target.read_bytes())  # every page of it shifts
    (v2 / "usr/lib/python3/json/new_module.py").write_text("x = 1\n" * 3000)
    i1, i2 = RootFS.get(str(v1)), RootFS.get(str(v2))
    p1 = {(r.name, i): i1.page(r, i) for r in i1.regions for i in range(r.pages)}
    p2 = {(r.name, i): i2.page(r, i) for r in i2.regions for i in range(r.pages)}
    same = {k for k in p1 if k in p2 and p1[k] == p2[k]}
    assert same and len(same) < len(p1)  # direct count: the untouched files' pages
    assert not any(k[0] == "/usr/lib/python3/json/decoder.py" for k in same)
    sc = _boot([("a", str(v1)), ("b", str(v2))])
    a, b = _cached(sc.host.vms[0], i1), _cached(sc.host.vms[1], i2)
    assert a == p1 and b == p2
    common = set(a.values()) & set(b.values())
    assert {p1[k] for k in same} <= common
