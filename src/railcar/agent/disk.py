"""The real :class:`~railcar.agent.config.Files`: the only module of the agent's core that
reads the disk."""

from __future__ import annotations

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
