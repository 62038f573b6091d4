"""Checking a translated config with Debian's ``ignition-validate`` (package ``ignition``).

The tool reads the config on stdin (``-``) and reports ``error at $.path, line L col C: …`` and
``warning at …`` lines on stdout; it exits non-zero only for errors. Warnings come back to the
caller, which shows them or, with ``--strict``, fails.
"""

from __future__ import annotations

import shutil
import subprocess

from railcar.ignition.errors import IgnitionValidateError
from railcar.runner import ToolError

TOOL = "ignition-validate"


def ignition_validate(config_json: str, *, timeout: float = 60) -> list[str]:
    """Warnings ``ignition-validate`` reports; :class:`IgnitionValidateError` if it rejects."""
    tool = shutil.which(TOOL)
    if tool is None:
        raise ToolError(f"{TOOL} is not installed", hint="apt-get install ignition (scripts/setup)")
    try:
        proc = subprocess.run(
            [tool, "-"],
            input=config_json,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"{TOOL} did not finish within {timeout} s") from exc
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode != 0:
        errors = [line for line in lines if line.startswith("error")] or lines
        detail = "; ".join(errors) or f"exit status {proc.returncode}"
        raise IgnitionValidateError(f"{TOOL} rejected the config: {detail}")
    return [line for line in lines if line.startswith("warning")]
