"""A node updates itself from the real server: ``railcar agent run --once`` on a Flatcar-layout
disk image checks, downloads, installs into USR-B, switches (as Debian's cgpt reads it), and a
simulated reboot into B reports 3/2 with previousversion, which completes the instance."""

from __future__ import annotations

from pathlib import Path

from railcar.agent.slots import Slot
from railcar.gpt import GptPrio
from tests.agent.node_env import (
    FRESH_A,
    NEW_VERSION,
    OLD_VERSION,
    ZERO,
    Node,
    make_release,
    update_server,
)
from tests.conftest import KeyPair
from tests.gpt.tools import MIB, sgdisk_verify

COMPLETE, DOWNLOADING = 4, 7  # server instance statuses (spec §3.3)


def test_update_install_switch_reboot_complete(tmp_path: Path, keypair: KeyPair) -> None:
    release = make_release(tmp_path / "release", keypair.private, usr_bytes=3 * MIB)
    with update_server(tmp_path / "server", release.payload) as server:
        node = Node(tmp_path / "node", keypair, server.omaha_url)
        assert node.cgpt() == (FRESH_A, ZERO)

        status = node.status(node.agent("run", Slot.A))
        assert status["current_operation"] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
        assert (status["new_version"], status["new_size"]) == (
            NEW_VERSION,
            release.payload.stat().st_size,
        )
        assert node.slot_bytes(Slot.B, len(release.usr)) == release.usr
        assert node.kernel(Slot.B).read_bytes() == release.kernel
        assert node.slot_bytes(Slot.A, len(node.old_usr)) == node.old_usr
        assert node.cgpt() == (FRESH_A, GptPrio(2, 1, False))  # cgpt add -S0 -T1; prioritize
        sgdisk_verify(node.disk)
        assert node.next_slot() is Slot.B
        assert node.reboot_required.exists()
        events = server.events()
        assert [(t, r, c) for t, r, c, _ in events] == [(13, 1, None), (14, 1, None), (3, 1, None)]
        assert server.instance()["status"] != COMPLETE

        # The agent restarts in the same boot: still waiting for the reboot, nothing redone.
        again = node.status(node.agent("run", Slot.A))
        assert again["current_operation"] == "UPDATE_STATUS_UPDATED_NEED_REBOOT"
        assert len(server.events()) == 3

        # Reboot: GRUB takes B's one try; the image now says 2.0.0; a new boot id.
        assert node.grub_boots() is Slot.B
        node.set_release(NEW_VERSION)
        node.new_boot()
        after = node.status(node.agent("run", Slot.B, "--no-health-gate"))
        assert after["current_operation"] == "UPDATE_STATUS_IDLE"
        assert after["running_version"] == NEW_VERSION
        assert node.cgpt() == (GptPrio(1, 0, True), GptPrio(2, 0, True))  # committed
        assert server.events()[-1] == (3, 2, None, OLD_VERSION)
        instance = server.instance()
        assert instance["status"] == COMPLETE
        assert instance["version"] == NEW_VERSION
        assert DOWNLOADING in [h["status"] for h in instance["history"]]
