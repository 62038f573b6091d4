"""The real :class:`~railcar.agent.config.Files` (the only reader of node files for the
agent's core), and :func:`fsync_dir` for the IO modules that write."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from railcar.agent.config import AgentConfig, load_agent_config


class DiskFiles:
    """Reads files under ``root`` (``/`` on a node; a directory tree in tests)."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root

    def read_text(self, path: Path) -> str | None:
        try:
            return (self.root / path.relative_to("/")).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None


def load_node_config(root: Path = Path("/")) -> AgentConfig:
    """The agent's configuration from the running node."""
    return load_agent_config(DiskFiles(root), arch=platform.machine())


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
