"""An in-memory node filesystem for the agent's config loader."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from railcar.agent.config import AgentConfig, load_agent_config

RELEASE = "RAILCAR_RELEASE_VERSION=4152.2.3\nRAILCAR_RELEASE_BOARD=amd64-usr\n"
MACHINE_ID = "5f3c2a1b9e8d4c7fa6b5e4d3c2b1a090\n"
BOOT_ID = "0b6a0c0e-2f0b-4f5e-9d6a-3c1d2e4f5a6b\n"


class MemoryFiles:
    def __init__(self, files: dict[str, str]) -> None:
        self.files = {Path(k): v for k, v in files.items()}

    def read_text(self, path: Path) -> str | None:
        return self.files.get(path)


def node_files(overrides: Mapping[str, str | None] | None = None) -> MemoryFiles:
    """A node with a release file, machine and boot ids; ``None`` in ``overrides`` removes one."""
    files: dict[str, str | None] = {
        "/usr/lib/railcar/release": RELEASE,
        "/etc/machine-id": MACHINE_ID,
        "/proc/sys/kernel/random/boot_id": BOOT_ID,
        **(overrides or {}),
    }
    return MemoryFiles({k: v for k, v in files.items() if v is not None})


def node_config(overrides: Mapping[str, str | None] | None = None) -> AgentConfig:
    return load_agent_config(node_files(overrides), arch="x86_64")
