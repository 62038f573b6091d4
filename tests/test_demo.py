"""The README's main job, short of serving forever: everything it sets up works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_builds_applies_and_publishes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "railcar.demo", "--work", str(tmp_path), "--no-serve"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "image identical to source" in result.stdout
    assert "payload 0.1.0 published on 'stable'" in result.stdout
    assert "/dashboard/  (log in with the admin token)" in result.stdout
    assert (tmp_path / "server" / "admin-token").stat().st_mode & 0o777 == 0o600
    # Idempotent: a second run reuses key and server and still succeeds.
    again = subprocess.run(
        [sys.executable, "-m", "railcar.demo", "--work", str(tmp_path), "--no-serve"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert again.returncode == 0, again.stderr
