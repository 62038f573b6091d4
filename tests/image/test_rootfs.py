"""The rootfs cache on a new machine: the bootstrap, the package resolution beside it and the
venv layer made during the bootstrap (ADR 0028), with the real mmdebstrap, archive and dracut."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from railcar.image import parse_spec
from railcar.image.build import default_cache
from railcar.image.rootfs import (
    RAILCAR_VENV,
    build_rootfs,
    consistent_with_resolution,
    install_railcar,
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
    assert list((cache / "resolve").glob("*.json")), "the resolution was not stored"
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
