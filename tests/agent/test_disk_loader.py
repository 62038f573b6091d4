"""The thin disk loader reads the same files the in-memory tests describe, under a root."""

from __future__ import annotations

from pathlib import Path

import railcar.agent
from railcar.agent.disk import load_node_config
from tests.agent.nodes import BOOT_ID, MACHINE_ID, RELEASE


def test_loads_a_node_tree(tmp_path: Path) -> None:
    for rel, text in {
        "usr/lib/railcar/release": RELEASE,
        "etc/machine-id": MACHINE_ID,
        "proc/sys/kernel/random/boot_id": BOOT_ID,
        "etc/railcar/update.conf": "SERVER=https://r.example/v1/update/\nGROUP=beta\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    config = load_node_config(tmp_path)
    assert (config.conf.group, config.release.version) == ("beta", "4152.2.3")
    assert config.arch


def test_public_names_are_pinned() -> None:
    assert sorted(railcar.agent.__all__) == railcar.agent.__all__
    assert all(hasattr(railcar.agent, name) for name in railcar.agent.__all__)
