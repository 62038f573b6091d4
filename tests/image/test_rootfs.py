"""The rootfs cache on a new machine: the bootstrap, the package resolution beside it and the
venv layer made during the bootstrap (ADR 0028), with the real mmdebstrap, archive and dracut."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import railcar.image.rootfs as rootfs_module
from railcar.image import build_image, parse_spec
from railcar.image.build import default_cache
from railcar.image.errors import RootfsError
from railcar.image.layout import disk_layout
from railcar.image.resolve import Resolution
from railcar.image.rootfs import (
    RAILCAR_VENV,
    build_rootfs,
    consistent_with_resolution,
    install_railcar,
    python_unpacked,
    railcar_digest,
    stage_copy,
    venv_layer,
)
from tests.imagebuild import EXAMPLE, example_spec_text


def _run(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def test_a_tree_is_the_resolutions_when_it_installed_nothing_else() -> None:
    resolved = [("lsb-base", "11.6"), ("systemd", "252.39-1~deb12u1"), ("tini", "0.19.0-1")]
    assert consistent_with_resolution([("systemd", "252.39-1~deb12u1")], resolved)
    assert consistent_with_resolution([], resolved)
    # a newer version than resolved: the archive changed between the two apt updates
    assert not consistent_with_resolution([("systemd", "252.40-1~deb12u1")], resolved)
    assert not consistent_with_resolution([("runc", "1.1.5")], resolved)


def _python_tree(tree: Path) -> None:
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/python3.11").write_bytes(b"")
    (tree / "usr/bin/python3").symlink_to("python3.11")
    (tree / "usr/lib/python3.11/venv").mkdir(parents=True)
    (tree / "usr/lib/python3.11/venv/__init__.py").write_text("")
    (tree / "usr/share/python-wheels").mkdir(parents=True)
    (tree / "usr/share/python-wheels/pip-23.0.1-py3-none-any.whl").write_bytes(b"")


@pytest.mark.parametrize(
    "missing",
    [None, "usr/bin/python3.11", "usr/lib/python3.11/venv/__init__.py",
     "usr/share/python-wheels/pip-23.0.1-py3-none-any.whl", "usr/bin/python3"],
)  # fmt: skip
def test_python_is_unpacked_when_interpreter_venv_module_and_pip_wheel_are(
    tmp_path: Path, missing: str | None
) -> None:
    _python_tree(tmp_path)
    if missing:
        (tmp_path / missing).unlink()
    assert python_unpacked(tmp_path) is (missing is None)


class _FakeLayer:
    """Stands in for the venv layer maker: fails the first ``failures`` calls."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0
        self.ready_at_call: list[bool] = []

    def __call__(self, spec: object, root: Path, layer: Path, house: Path, *, keep: bool) -> None:
        self.calls += 1
        self.ready_at_call.append((root.parent / "venv-ready").exists())
        (root / RAILCAR_VENV.lstrip("/")).mkdir(parents=True)
        (root / "tmp/railcar-wheels").mkdir(parents=True, exist_ok=True)
        if self.calls <= self.failures:
            raise RootfsError("libpython not unpacked yet")
        (root / RAILCAR_VENV.lstrip("/")).rename(layer)


@pytest.mark.parametrize("failures", [0, 1, 2])
def test_venv_starts_once_python_is_unpacked_and_retries_after_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    """The venv is made during dpkg's run once Python is unpacked; if that attempt fails, it is
    made again at the first customize hook, and only a failure there fails the build."""
    spec = parse_spec(example_spec_text("1.0.0"), path=EXAMPLE)
    cache, work = tmp_path / "cache", tmp_path / "work"
    tree = work / "tree"
    tree.mkdir(parents=True)
    fake = _FakeLayer(failures)
    monkeypatch.setattr(rootfs_module, "_make_venv_layer", fake)
    monkeypatch.setattr(rootfs_module, "wheelhouse", lambda spec, cache: tmp_path / "wheels")
    monkeypatch.setattr(rootfs_module, "venv_layer", lambda spec, cache: tmp_path / "layer")
    venv = rootfs_module._VenvBeside(spec, cache, work)
    over = threading.Event()
    thread = threading.Thread(target=venv.run, args=(tree, over), daemon=True)
    thread.start()
    assert not venv.done.exists()  # nothing unpacked: it waits
    _python_tree(tree)  # dpkg unpacks Python and pip's wheel
    if failures:
        # the early attempt failed and was cleaned up; the retry waits for the customize hook
        while fake.calls < 1:
            over.wait(0.01)
        over.wait(0.3)
        assert not venv.done.exists()
        assert (
            not (tree / "usr/lib/railcar").exists() and not (tree / "tmp/railcar-wheels").exists()
        )
        venv.ready.touch()
    thread.join(timeout=10)
    assert venv.done.exists()
    assert fake.ready_at_call == [False] + [True] * (fake.calls - 1)
    assert fake.calls == min(failures, 1) + 1
    assert venv.made_early is (failures == 0)
    assert (venv.early_failure is not None) is (failures > 0)
    assert (venv.error is not None) is (failures > 1)


def _link_tree(source: Path, dest: Path) -> None:
    """Hard-link ``source``'s files to ``dest`` (a copy across filesystems)."""
    if source.is_dir():
        dest.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-a", "-l", source, dest], check=False)
        if not dest.exists():
            subprocess.run(["cp", "-a", source, dest], check=True)


def _bootstrapped(tmp_path: Path, dracut: list[str], kernel: str = "6.1.0-9-amd64") -> Any:
    """A bootstrapped tree in ``tmp_path/work`` whose "dracut" is the command ``dracut``."""
    work = tmp_path / "cache" / "rootfs" / ".key.partial"
    (work / "tree" / "boot").mkdir(parents=True)
    proc = subprocess.Popen(dracut, cwd=work / "tree", start_new_session=True)
    log = tmp_path / "mmdebstrap.log"
    boot = rootfs_module._Bootstrapped(work, [("systemd", "252")], kernel, proc, log)
    return boot.unfinished("key")


def test_a_new_tree_is_handed_out_before_its_initrd_and_published_with_it(tmp_path: Path) -> None:
    unfinished = _bootstrapped(
        tmp_path, ["sh", "-c", "sleep 0.3; echo initrd > boot/initrd.img-6.1.0-9-amd64"]
    )
    assert unfinished.initrd_pending
    assert unfinished.rootfs.tree == tmp_path / "cache/rootfs/.key.partial/tree"
    assert not (unfinished.rootfs.tree / "boot/initrd.img-6.1.0-9-amd64").exists()
    done = unfinished.finished()
    assert not unfinished.initrd_pending
    assert done.tree == tmp_path / "cache/rootfs/key/tree"
    assert (done.tree / "boot/initrd.img-6.1.0-9-amd64").read_text() == "initrd\n"
    assert (done.tree.parent / "manifest.json").is_file()
    assert unfinished.finished() == done


def test_the_initrd_is_ready_before_the_tree_enters_the_cache(tmp_path: Path) -> None:
    """The build takes the initrd as soon as dracut is done; the tree is synced and published
    when the block ends, and also when a later step fails, since the tree is complete."""
    unfinished = _bootstrapped(
        tmp_path, ["sh", "-c", "echo initrd > boot/initrd.img-6.1.0-9-amd64"]
    )
    with pytest.raises(RuntimeError), rootfs_module._handed_out(unfinished):
        ready = unfinished.initrd_ready()
        assert ready.tree == tmp_path / "cache/rootfs/.key.partial/tree"
        assert (ready.tree / "boot/initrd.img-6.1.0-9-amd64").read_text() == "initrd\n"
        assert unfinished.initrd_pending
        assert not (tmp_path / "cache/rootfs/key").exists()
        raise RuntimeError("the ESP step failed")
    assert not unfinished.initrd_pending
    assert unfinished.rootfs.tree == tmp_path / "cache/rootfs/key/tree"
    assert (tmp_path / "cache/rootfs/key/manifest.json").is_file()
    assert not (tmp_path / "cache/rootfs/.key.partial").exists()


@pytest.mark.parametrize("wait", ["initrd_ready", "finished"])
@pytest.mark.parametrize(
    ("dracut", "error"),
    [(["sh", "-c", "exit 3"], "exited with status 3"),
     (["true"], "wrote no /boot/initrd.img-6.1.0-9-amd64")],
)  # fmt: skip
def test_a_failed_initrd_fails_the_tree_and_leaves_nothing(
    tmp_path: Path, dracut: list[str], error: str, wait: str
) -> None:
    """dracut's failure (exit status, or no initrd written) is the build's error, named with the
    log, whether the build waits for the initrd alone (as it does) or for the cache entry;
    neither the partial tree nor a cache entry stays."""
    unfinished = _bootstrapped(tmp_path, dracut)
    with pytest.raises(RootfsError) as failed, rootfs_module._handed_out(unfinished):
        getattr(unfinished, wait)()
    log = tmp_path / "mmdebstrap.log"
    assert str(failed.value) == f"dracut {error} making the tree's initrd; see {log}"
    assert not list((tmp_path / "cache" / "rootfs").iterdir())


def test_leaving_early_stops_dracut_and_drops_the_tree(tmp_path: Path) -> None:
    """A build that fails while dracut runs (staging, /usr) stops it: the process group ends and
    the partial tree goes; no cache entry is made."""
    marker = tmp_path / "still-running"
    unfinished = _bootstrapped(tmp_path, ["sh", "-c", f"sleep 30 & wait; touch {marker}"])
    unfinished_proc = unfinished._bootstrapped.dracut
    pid = unfinished_proc.pid
    with pytest.raises(RuntimeError), rootfs_module._handed_out(unfinished):
        raise RuntimeError("staging failed")
    assert not unfinished.initrd_pending
    assert unfinished_proc.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the group's last member (sleep) is reaped by init
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("dracut's process group outlived the build")
    assert not marker.exists()
    assert not list((tmp_path / "cache" / "rootfs").iterdir())


@pytest.mark.slow
def test_empty_cache_bootstraps_beside_resolution_and_makes_the_venv(tmp_path: Path) -> None:
    """An empty cache: one cold build gives the tree, the stored resolution that names it and the
    venv layer; the tree has no trace of the venv; the warm rebuild from that cache gives the same
    files, byte for byte (the cold one staged the tree and made /usr while dracut made the initrd,
    ADR 0033); the next lookup is a hit that reuses the resolution; and the layer's Railcar runs
    in the image's python3."""
    if os.geteuid() != 0:
        pytest.fail("mmdebstrap --mode=root needs root: run the suite as root (README)")
    spec = parse_spec(example_spec_text("1.0.0"), path=EXAMPLE)
    cache = tmp_path / "cache"
    # The shared cache's .debs and wheels, so that the test downloads nothing it has.
    shared = default_cache()
    suite = f"{spec.suite}-{spec.architecture.value}"
    _link_tree(shared / "debs" / suite, cache / "debs" / suite)
    wheels = f"{railcar_digest()[:24]}-{spec.architecture.value}"
    _link_tree(shared / "wheels" / wheels, cache / "wheels" / wheels)

    reports: list[str] = []
    cold = build_image(spec, tmp_path / "cold", cache=cache, report=reports.append)
    assert not cold.rootfs_cached
    assert any("built, initrd being made (resolved)" in line for line in reports), reports
    warm = build_image(spec, tmp_path / "warm", cache=cache)
    assert warm.rootfs_cached and warm.root_hash == cold.root_hash
    # The same bytes in every file but build.json (step times, paths), the disk included: its
    # ESP and ext4 partitions take their times from SOURCE_DATE_EPOCH.
    digests = [
        [line for line in (tmp_path / kind / "DIGESTS").read_text().splitlines()
         if not line.endswith("  build.json")]
        for kind in ("cold", "warm")
    ]  # fmt: skip
    assert digests[0] == digests[1]
    for name in ("railcar_production_image.vmlinuz", "railcar_production_image.bin"):
        assert any(line.endswith(f"  {name}") for line in digests[0]), name
    # ROOT holds the same files: as many blocks and inodes in use, and nothing dracut wrote
    # while the cold build copied the tree (its scratch directory is in /var/tmp).
    offset = disk_layout(spec).by_label("ROOT").offset
    roots = [f"{tmp_path / kind / 'railcar_production_image.bin'}?offset={offset}"
             for kind in ("cold", "warm")]  # fmt: skip
    counts = [re.findall(r"^Free (?:blocks|inodes): +\d+$", _run("dumpe2fs", "-h", root), re.M)
              for root in roots]  # fmt: skip
    assert len(counts[0]) == 2 and counts[0] == counts[1]
    assert _run("debugfs", "-R", "ls /var/tmp", roots[0]).split()[2::3] == [".", ".."]

    built = build_rootfs(spec, cache)  # the tree the cold build made, now a cache hit
    assert built.cached and built.resolution_reused and built.key == cold.rootfs_key
    assert built.tree == cache / "rootfs" / built.key / "tree"
    stored = list((cache / "resolve").glob("*.json"))
    assert stored, "the resolution was not stored"
    resolution = Resolution.from_json(stored[0].read_text())
    assert resolution is not None
    # The key's package list is what the bootstrap installed: no usrmerge or Perl, which only
    # a simulation without the merged-/usr hook would choose (ADR 0032). lsb-base, a
    # transitional package sysvinit-utils provides, is the one name it still adds.
    extra = {n for n, _ in resolution.packages} - {n for n, _ in built.packages}
    assert extra <= {"lsb-base"}, extra
    assert set(built.packages) <= set(resolution.packages)
    assert not (built.tree / "usr/lib/railcar").exists(), "the venv was left in the cached tree"
    assert not (built.tree / "tmp/railcar-wheels").exists()
    assert not list((cache / "rootfs").glob(".*")), "a partial tree was left behind"
    layer = venv_layer(spec, cache)
    assert (layer / ".complete").is_file()
    assert (layer / "venv" / "pyvenv.cfg").is_file()
    assert ("python3", dict(built.packages)["python3"]) in built.packages

    stage = stage_copy(built.tree, tmp_path / "stage")
    install_railcar(spec, stage, cache)
    out = subprocess.run(
        ["chroot", stage, f"{RAILCAR_VENV}/bin/railcar", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "agent" in out.stdout
