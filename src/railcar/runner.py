"""The one way Railcar runs external tools (mkfs.erofs, veritysetup, qemu, …).

:func:`run` logs the command, captures output, and on failure raises :class:`ToolError` with
the tool's exit status and the tail of its stderr, so the CLI reports one clear line.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from railcar.errors import RailcarError

log = logging.getLogger(__name__)
_TAIL_LINES = 8


class ToolError(RailcarError):
    """An external tool is missing or failed."""


def run(cmd: Sequence[str | Path], *, cwd: Path | None = None, timeout: float | None = None) -> str:
    """Run ``cmd``; return its stdout; raise ToolError with stderr's tail on failure."""
    argv = [str(c) for c in cmd]
    if shutil.which(argv[0]) is None:
        raise ToolError(f"{argv[0]} is not installed", hint="run scripts/setup")
    log.info("running %s", shlex.join(argv))
    try:
        proc = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{argv[0]} did not finish within {timeout} s") from exc
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-_TAIL_LINES:])
        raise ToolError(f"{shlex.join(argv)} failed with exit status {proc.returncode}: {tail}")
    return proc.stdout
