"""Finding the host tools a build needs, on machines set up in different ways."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from railcar.image.errors import RootfsError
from railcar.image.rootfs import uv_command


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_uv_is_found_without_being_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/setup installs uv outside PATH on a fresh machine; `uv run` names it in $UV."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("RAILCAR_TOOLS", str(tmp_path / "no-tools"))
    running = _executable(tmp_path / "running" / "uv")
    monkeypatch.setenv("UV", str(running))
    assert uv_command() == str(running)

    monkeypatch.delenv("UV")
    installed = _executable(tmp_path / "tools" / "bin" / "uv")
    monkeypatch.setenv("RAILCAR_TOOLS", str(installed.parents[1]))
    assert uv_command() == str(installed)

    on_path = _executable(tmp_path / "path" / "uv")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert uv_command() == str(on_path)


def test_missing_uv_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("RAILCAR_TOOLS", str(tmp_path / "no-tools"))
    monkeypatch.setenv("UV", str(tmp_path / "gone" / "uv"))  # a stale $UV is not trusted
    (tmp_path / "uv").write_text("not executable")
    assert not os.access(tmp_path / "uv", os.X_OK)
    with pytest.raises(RootfsError, match="uv is not installed") as raised:
        uv_command()
    assert "scripts/setup" in (raised.value.hint or "")
