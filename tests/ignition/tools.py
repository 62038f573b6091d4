"""Debian's real ``ignition-validate`` as the judge of every translated config, and small
helpers to translate YAML text the way the CLI does."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from railcar.ignition import Translation, load, translate
from railcar.ignition.cli import DirectoryFiles

HEADER = "variant: railcar\nversion: 1.0.0\n"


def require_ignition_validate() -> str:
    path = shutil.which("ignition-validate")
    if path is None:
        pytest.fail(
            "ignition-validate is not installed; run scripts/setup (apt-get install ignition)"
        )
    return path


def ignition_accepts(config: dict[str, Any] | str) -> list[str]:
    """Run ignition-validate on ``config``; fail the test on any error; return its warnings."""
    text = config if isinstance(config, str) else json.dumps(config)
    proc = subprocess.run(
        [require_ignition_validate(), "-"], input=text, capture_output=True, text=True, check=False
    )
    report = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, f"ignition-validate rejected {text}: {report}"
    assert "error" not in report, report
    return [line for line in report.splitlines() if line.startswith("warning")]


def translate_yaml(body: str, files_dir: Path | None = None) -> Translation:
    """Translate a config body (the header is added); the result must pass ignition-validate."""
    document = load(HEADER + textwrap.dedent(body))
    local = DirectoryFiles(files_dir) if files_dir is not None else None
    result = translate(document, local_files=local)
    ignition_accepts(result.config)
    return result
