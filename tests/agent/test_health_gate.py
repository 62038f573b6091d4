"""Commit after boot, end to end: a node updated to B boots it (GRUB spends B's one try) and
runs ``railcar agent commit`` against a systemctl that reports the boot's health. A failing
gate reports 3/0/44 to the server, commits nothing, reboots (REBOOT_STRATEGY=reboot) and gptprio
falls back to A, where the next check reports the rollback; a passing gate marks B good."""

from __future__ import annotations

import json
from pathlib import Path

from railcar.agent.slots import Slot
from railcar.gpt import GptPrio
from tests.agent.node_env import (
    FRESH_A,
    NEW_VERSION,
    OLD_VERSION,
    Node,
    make_release,
    update_server,
)
from tests.conftest import KeyPair
from tests.gpt.tools import MIB, sgdisk_verify

ERROR_STATUS = 3


def fake_systemctl(path: Path, *, target_active: bool, unit_state: str) -> Path:
    """A systemctl answering ``is-active --quiet UNIT`` and ``show --property=ActiveState
    --value UNIT`` the way systemd does, for a boot in the given state."""
    path.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        f"  is-active) exit {0 if target_active else 3} ;;\n"
        f"  show) echo {unit_state} ;;\n"
        "  *) exit 1 ;;\n"
        "esac\n"
    )
    path.chmod(0o755)
    return path


def updated_node(tmp_path: Path, keypair: KeyPair, server_url: str) -> Node:
    """A node that installed 2.0.0 into B and rebooted into it (B's try spent)."""
    node = Node(tmp_path / "node", keypair, server_url)
    installed = node.status(node.agent("run", Slot.A))
    assert installed["current_operation"] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    assert node.grub_boots() is Slot.B
    assert node.cgpt() == (FRESH_A, GptPrio(2, 0, False))
    node.set_release(NEW_VERSION)
    node.new_boot()
    return node


def test_failing_gate_reports_and_falls_back(tmp_path: Path, keypair: KeyPair) -> None:
    release = make_release(tmp_path / "release", keypair.private, usr_bytes=MIB)
    with update_server(tmp_path / "server", release.payload) as server:
        node = updated_node(tmp_path, keypair, server.omaha_url)
        node.set_conf("HEALTH_CHECK_UNITS=app.service\n", strategy="reboot")
        systemctl = fake_systemctl(tmp_path / "systemctl", target_active=False, unit_state="failed")
        rebooted = tmp_path / "rebooted"

        done = node.agent(
            "commit",
            Slot.B,
            "--systemctl",
            str(systemctl),
            "--reboot-command",
            f"touch {rebooted}",
        )

        assert done.returncode == 1
        assert "slot B not committed: failed units: app.service" in done.stderr
        report = json.loads(done.stdout)
        assert (report["committed"], report["verdict"], report["next_boot"]) == (
            False,
            "unhealthy",
            "A",
        )
        assert node.cgpt() == (FRESH_A, GptPrio(2, 0, False))  # no commit
        assert rebooted.exists()  # REBOOT_STRATEGY=reboot: so that GRUB falls back
        assert server.events()[-1][:3] == (3, 0, 44)
        assert server.instance()["status"] == ERROR_STATUS

        # The reboot: gptprio skips B (tries 0, not successful) and boots A.
        assert node.grub_boots() is Slot.A
        node.set_release(OLD_VERSION)
        node.new_boot()
        node.set_conf()
        back = node.status(node.agent("run", Slot.A))
        assert back["rolled_back_from"] == [NEW_VERSION]
        assert back["current_operation"] == "UPDATE_STATUS_IDLE"  # 2.0.0 is not taken again
        assert node.cgpt() == (FRESH_A, GptPrio(2, 0, False))
        sgdisk_verify(node.disk)


def test_passing_gate_commits(tmp_path: Path, keypair: KeyPair) -> None:
    release = make_release(tmp_path / "release", keypair.private, usr_bytes=MIB)
    with update_server(tmp_path / "server", release.payload) as server:
        node = updated_node(tmp_path, keypair, server.omaha_url)
        node.set_conf("HEALTH_CHECK_UNITS=app.service\n")
        systemctl = fake_systemctl(tmp_path / "systemctl", target_active=True, unit_state="active")

        report = node.status(node.agent("commit", Slot.B, "--systemctl", str(systemctl)))

        assert (report["committed"], report["verdict"], report["next_boot"]) == (
            True,
            "healthy",
            "B",
        )
        assert node.cgpt() == (GptPrio(1, 0, True), GptPrio(2, 0, True))
        again = node.status(node.agent("commit", Slot.B, "--systemctl", str(systemctl)))
        assert again["verdict"] == "already committed"
