"""A/B transitions on a disk image: the GPT (read back by cgpt) and the systemd-boot entries on
the ESP (read back by mtools) tell the same story after install, trial, commit and fallback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from railcar.agent.slots import BootedSlotTargetError, Slot
from railcar.gpt import GptDisk, GptPrio
from railcar.image.bootcontrol import SystemdBootControl
from railcar.image.bootentries import (
    ENTRIES_DIR,
    FIRST_BOOT_FLAG,
    IGNITION_FIRSTBOOT,
    DirectoryEsp,
    MtoolsEsp,
    SystemdBootEntries,
    parse_entry_name,
    wanted_entry,
)
from railcar.image.disk import assemble
from railcar.image.layout import FRESH_USR_A, FRESH_USR_B, disk_layout
from railcar.image.spec import parse_spec
from tests.image.small import SMALL


def _cgpt(disk: Path, number: int) -> tuple[int, int, int]:
    def field(flag: str) -> int:
        out = subprocess.run(
            ["cgpt", "show", "-i", str(number), flag, str(disk)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(out.stdout.strip())

    return field("-P"), field("-T"), field("-S")


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    spec = parse_spec(SMALL)
    layout = disk_layout(spec)
    esp_img = tmp_path / "esp.img"
    with open(esp_img, "wb") as f:
        f.truncate(layout.by_label("EFI-SYSTEM").size_bytes)
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "EFI-SYSTEM", str(esp_img)], check=True,
                   capture_output=True)  # fmt: skip
    kernel = tmp_path / "vmlinuz-1"
    kernel.write_bytes(b"kernel one")
    entries = SystemdBootEntries(MtoolsEsp(esp_img))
    entries.install(Slot.A, kernel, "1.0.0")
    entries.apply({Slot.A: FRESH_USR_A, Slot.B: FRESH_USR_B}, {Slot.A: 3, Slot.B: 4}, {})
    return assemble(layout, {"EFI-SYSTEM": esp_img}, tmp_path / "disk.bin")


def _esp(disk: Path) -> MtoolsEsp:
    return MtoolsEsp(disk, disk_layout(parse_spec(SMALL)).by_label("EFI-SYSTEM").offset)


def _entries(disk: Path) -> list[str]:
    return _esp(disk).list(ENTRIES_DIR)


def _control(disk: GptDisk, image: Path, booted: Slot) -> SystemdBootControl:
    return SystemdBootControl(disk, SystemdBootEntries(_esp(image)), booted)


def _loader_attempt(image: Path, name: str) -> None:
    """What systemd-boot does before starting a counted entry: +T becomes +(T-1)-1."""
    parsed = parse_entry_name(name)
    assert parsed is not None and parsed.tries_left
    after = f"railcar-{parsed.slot.value.lower()}+{parsed.tries_left - 1}-{parsed.tries_done + 1}"
    subprocess.run(
        ["mren", "-i", _esp(image).target, f"::/{ENTRIES_DIR}/{name}",
         f"::/{ENTRIES_DIR}/{after}.conf"],
        check=True, capture_output=True, env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def test_fresh_disk(disk: Path) -> None:
    assert _entries(disk) == ["railcar-a.conf"]
    assert _cgpt(disk, 3) == (1, 0, 1)
    assert _cgpt(disk, 4) == (0, 0, 0)
    text = _esp(disk).read(f"{ENTRIES_DIR}/railcar-a.conf").decode()
    assert "efi /railcar/vmlinuz-a" in text and "sort-key railcar-14-3" in text


def _install_b_from_a(disk: Path, tmp_path: Path) -> None:
    """The agent on A installs 2.0.0 into B and marks it the install target."""
    kernel = tmp_path / "vmlinuz-2"
    kernel.write_bytes(b"kernel two")
    with GptDisk.open(disk, writable=True) as gpt:
        control = _control(gpt, disk, Slot.A)
        control.install(Slot.B, kernel, "2.0.0")
        control.mark_install_target(Slot.B)


def test_install_trial_commit(disk: Path, tmp_path: Path) -> None:
    _install_b_from_a(disk, tmp_path)
    # flatcar-postinst: target P2 T1 S0, the running slot P1; B's entry counted and sorted first.
    assert _cgpt(disk, 4) == (2, 1, 0)
    assert _cgpt(disk, 3) == (1, 0, 1)
    assert _entries(disk) == ["railcar-a.conf", "railcar-b+1.conf"]
    text = _esp(disk).read(f"{ENTRIES_DIR}/railcar-b+1.conf").decode()
    assert "sort-key railcar-13-4" in text and "version 2.0.0" in text
    assert _esp(disk).read("railcar/vmlinuz-b") == b"kernel two"

    _loader_attempt(disk, "railcar-b+1.conf")
    with GptDisk.open(disk, writable=True) as gpt:
        control = _control(gpt, disk, Slot.B)
        control.sync_from_loader()
        assert control.slot_state(Slot.B) == GptPrio(2, 0, False)  # the try is recorded
        control.mark_booted_good()
    assert _cgpt(disk, 4) == (2, 0, 1)
    assert _cgpt(disk, 3) == (1, 0, 1)
    assert _entries(disk) == ["railcar-a.conf", "railcar-b.conf"]


def test_failed_trial_falls_back_and_cgpt_says_so(disk: Path, tmp_path: Path) -> None:
    _install_b_from_a(disk, tmp_path)
    _loader_attempt(disk, "railcar-b+1.conf")  # B is tried and never comes up
    with GptDisk.open(disk, writable=True) as gpt:
        control = _control(gpt, disk, Slot.A)  # the loader fell back to A
        control.sync_from_loader()
        assert control.next_boot() is Slot.A
    # spec §2.3 "boot failed": B P2 T0 S0 (dead until the next update), A P1 S1.
    assert _cgpt(disk, 4) == (2, 0, 0)
    assert _cgpt(disk, 3) == (1, 0, 1)
    assert _entries(disk) == ["railcar-a.conf", "railcar-b+0-1.conf"]


def test_projection_rules() -> None:
    assert wanted_entry(Slot.A, GptPrio(0, 1, False)) is None
    assert wanted_entry(Slot.A, GptPrio(1, 0, True)).filename == "railcar-a.conf"  # type: ignore[union-attr]
    assert wanted_entry(Slot.B, GptPrio(2, 3, False)).filename == "railcar-b+3.conf"  # type: ignore[union-attr]
    assert parse_entry_name("railcar-b+0-3.conf") is not None
    assert parse_entry_name("other.conf") is None


def test_directory_esp_round_trip(tmp_path: Path) -> None:
    esp = DirectoryEsp(tmp_path)
    entries = SystemdBootEntries(esp)
    esp.write("railcar/version-a", b"1\n")
    assert entries.installed_version(Slot.A) == "1"
    entries.apply({Slot.A: GptPrio(1, 2, False), Slot.B: GptPrio()}, {Slot.A: 3, Slot.B: 4},
                  {Slot.A: "1"})  # fmt: skip
    assert sorted(p.name for p in (tmp_path / ENTRIES_DIR).iterdir()) == ["railcar-a+2.conf"]
    entries.apply({Slot.A: GptPrio(1, 0, True), Slot.B: GptPrio()}, {Slot.A: 3, Slot.B: 4},
                  {Slot.A: "1"})  # fmt: skip
    assert sorted(p.name for p in (tmp_path / ENTRIES_DIR).iterdir()) == ["railcar-a.conf"]


def test_agent_wrote_the_kernel_already(tmp_path: Path) -> None:
    """On a node the agent puts the kernel at <boot>/railcar/vmlinuz-x and then calls install."""
    esp = DirectoryEsp(tmp_path)
    (tmp_path / "railcar").mkdir()
    kernel = tmp_path / "railcar" / "vmlinuz-b"
    kernel.write_bytes(b"new kernel")
    SystemdBootEntries(esp).install(Slot.B, kernel, "2.0.0")
    assert kernel.read_bytes() == b"new kernel"
    assert (tmp_path / "railcar" / "version-b").read_text() == "2.0.0\n"


def test_slot_being_overwritten_has_no_entry(disk: Path, tmp_path: Path) -> None:
    _install_b_from_a(disk, tmp_path)
    with GptDisk.open(disk, writable=True) as gpt:
        control = _control(gpt, disk, Slot.A)
        control.mark_unbootable(Slot.B)
        with pytest.raises(BootedSlotTargetError):
            control.mark_unbootable(Slot.A)
    assert _cgpt(disk, 4) == (0, 0, 0)
    assert _entries(disk) == ["railcar-a.conf"]


def test_interrupted_end_of_first_boot_is_finished_by_the_next_boot(
    disk: Path, tmp_path: Path
) -> None:
    """The provisioning boot's end re-projected the entries without Ignition's options, then
    the node lost power before the flag went. The next boot (no ``ignition.firstboot``) removes
    the flag, so a later projection cannot give the entries Ignition's options again."""
    esp = _esp(disk)
    esp.write(FIRST_BOOT_FLAG, b"")
    booted = "root=LABEL=ROOT mount.usr=/dev/mapper/usr verity.usrhash=ab"
    with GptDisk.open(disk, writable=True) as gpt:
        control = _control(gpt, disk, Slot.A)
        # the provisioning boot itself is railcar-first-boot.service's to end
        assert not control.finish_interrupted_first_boot(f"{booted} {IGNITION_FIRSTBOOT}")
        assert "first_boot" in esp.list("railcar")
        assert control.finish_interrupted_first_boot(booted)
        assert not control.finish_interrupted_first_boot(booted)  # once only
    assert "first_boot" not in esp.list("railcar")
    _install_b_from_a(disk, tmp_path)  # a later projection of the entries
    for name in _entries(disk):
        assert IGNITION_FIRSTBOOT not in esp.read(f"{ENTRIES_DIR}/{name}").decode(), name
