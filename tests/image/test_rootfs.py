"""The rootfs cache on a new machine: the bootstrap, the package resolution beside it and the
venv layer made during the bootstrap (ADR 0028), with the real mmdebstrap, archive and dracut."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

import railcar.image.rootfs as rootfs_module
from railcar.image import parse_spec
from railcar.image.build import default_cache
from railcar.image.errors import RootfsError
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


@pytest.mark.slow
def test_empty_cache_bootstraps_beside_resolution_and_makes_the_venv(tmp_path: Path) -> None:
    """An empty cache: one bootstrap gives the tree, the stored resolution that names it and the
    venv layer; the tree has no trace of the venv; the next lookup is a hit that reuses the
    resolution; and the layer's Railcar runs in the image's python3."""
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

    built = build_rootfs(spec, cache, log=tmp_path / "mmdebstrap.log")
    assert not built.cached and not built.resolution_reused
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

    again = build_rootfs(spec, cache)
    assert again.cached and again.resolution_reused
    assert (again.key, again.packages) == (built.key, built.packages)

    stage = stage_copy(again.tree, tmp_path / "stage")
    install_railcar(spec, stage, cache)
    out = subprocess.run(
        ["chroot", stage, f"{RAILCAR_VENV}/bin/railcar", "--help"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "agent" in out.stdout
