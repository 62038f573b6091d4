"""A Flatcar-shaped GPT image per test, copied from one made by sgdisk per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.gpt.tools import make_image


@pytest.fixture(scope="session")
def pristine_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Never written to: tests compare against its bytes."""
    return make_image(tmp_path_factory.mktemp("gpt") / "flatcar.img")


@pytest.fixture
def image(pristine_image: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "disk.img"
    shutil.copyfile(pristine_image, copy)
    return copy
