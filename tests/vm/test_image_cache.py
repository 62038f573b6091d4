"""The VM suite's image cache (``~/.cache/railcar/vm-images``): pruning old builds while the
builders of other versions keep working (each holds only its own version's lock)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from railcar.vm import images


def _entry(root: Path, name: str, mtime: int) -> Path:
    entry = root / name
    entry.mkdir()
    (entry / "done").write_text("")
    os.utime(entry, (mtime, mtime))
    return entry


def test_prune_keeps_the_two_newest_builds_per_version(tmp_path: Path) -> None:
    for i in range(4):
        _entry(tmp_path, f"1.0.0-{i:016x}", 1000 + i)
    _entry(tmp_path, "3.0.0-00000000000000aa", 500)
    (tmp_path / "keys").mkdir()
    images._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "1.0.0-0000000000000002",
        "1.0.0-0000000000000003",
        "3.0.0-00000000000000aa",
        "keys",
    ]


def test_prune_skips_a_build_removed_while_it_looks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker removes an entry between the listing and the look at its age (a suite run
    failed on that with FileNotFoundError): the prune goes on without it."""
    for i in range(3):
        _entry(tmp_path, f"1.0.0-{i:016x}", 1000 + i)
    gone = _entry(tmp_path, "3.0.0-00000000000000aa", 2000)
    is_dir = Path.is_dir

    def listed_then_removed(path: Path) -> bool:
        found = is_dir(path)
        if found and path == gone:
            shutil.rmtree(path)
        return found

    monkeypatch.setattr(Path, "is_dir", listed_then_removed)
    images._prune(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "1.0.0-0000000000000001",
        "1.0.0-0000000000000002",
    ]
