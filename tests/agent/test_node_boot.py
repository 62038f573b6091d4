"""Which boot control the agent uses on a node: a Railcar image's systemd-boot ESP (ADR 0011)
or plain gptprio; on the former the loader's counted attempts reach the GPT at start."""

from __future__ import annotations

from pathlib import Path

from railcar.agent.node import boot_control_for
from railcar.agent.slots import GptBootControl, Slot
from railcar.gpt import GptDisk, GptPrio
from railcar.image.bootcontrol import SystemdBootControl
from tests.gpt.tools import cgpt_prio, make_image


def _trial_of_b(disk_path: Path) -> None:
    with GptDisk.open(disk_path, writable=True) as disk:
        GptBootControl(disk, Slot.A).mark_install_target(Slot.B)
    assert cgpt_prio(disk_path, 4) == GptPrio(priority=2, tries=1, successful=False)


def test_plain_gptprio_without_loader_entries(tmp_path: Path) -> None:
    disk_path = make_image(tmp_path / "disk.img")
    _trial_of_b(disk_path)
    with GptDisk.open(disk_path, writable=True) as disk:
        control, entries = boot_control_for(disk, Slot.A, tmp_path / "boot")
        assert isinstance(control, GptBootControl) and entries is None


def test_systemd_boot_esp_counts_the_attempt_into_the_gpt(tmp_path: Path) -> None:
    disk_path = make_image(tmp_path / "disk.img")
    _trial_of_b(disk_path)
    esp = tmp_path / "boot"
    (esp / "loader/entries").mkdir(parents=True)
    # systemd-boot tried B once: railcar-b+1.conf became railcar-b+0-1.conf; B did not come
    # up healthy, the loader fell back to A, and the agent on A starts
    (esp / "loader/entries/railcar-b+0-1.conf").write_text("title b\nefi /railcar/vmlinuz-b\n")
    (esp / "loader/entries/railcar-a.conf").write_text("title a\nefi /railcar/vmlinuz-a\n")
    with GptDisk.open(disk_path, writable=True) as disk:
        control, entries = boot_control_for(disk, Slot.A, esp)
        assert isinstance(control, SystemdBootControl) and entries is control
        assert control.next_boot() == Slot.A
    # Flatcar's failed-slot state (spec §2.3), as cgpt reads it
    assert cgpt_prio(disk_path, 4) == GptPrio(priority=2, tries=0, successful=False)
    assert cgpt_prio(disk_path, 3).successful
