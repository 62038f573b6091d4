"""The image's own systemd units, read as the files the builder installs: what they make every
boot wait for."""

from __future__ import annotations

from pathlib import Path

from railcar.image.bootentries import IGNITION_FIRSTBOOT
from railcar.image.rootfs import data_dir


def _settings(unit: Path) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            pairs.append((key.strip(), value.strip()))
    return pairs


def _units() -> list[Path]:
    root = data_dir()
    found = sorted((root / "units").glob("*.service")) + sorted(root.glob("dracut/*/*.service"))
    assert len(found) >= 5, found  # the directory layout the builder reads
    return found


def test_no_unit_mounts_the_esp_on_every_boot() -> None:
    """The ESP is automounted at /boot: a unit that requires the mount has every boot mount it
    before local-fs.target, even when the unit's own condition then skips it."""
    for unit in _units():
        for key, value in _settings(unit):
            if key == "RequiresMountsFor":
                assert not {"/boot", "/boot/"} & set(value.split()), unit.name
            if key in ("Requires", "Wants", "BindsTo", "After"):
                assert "boot.mount" not in value.split(), unit.name


def test_first_boot_unit_runs_on_the_provisioning_boot_only() -> None:
    """It keys on the kernel argument the loader entries carry while the first-boot flag is on
    the ESP (``bootentries``), which needs no mounted ESP to check."""
    unit = data_dir() / "units" / "railcar-first-boot.service"
    settings = _settings(unit)
    assert ("ConditionKernelCommandLine", IGNITION_FIRSTBOOT) in settings
    assert not [k for k, _ in settings if k == "ConditionPathExists"]


def test_root_mount_does_not_wait_for_the_usr_slot() -> None:
    """The verity unit orders itself before /usr's mount only: ordered before
    initrd-root-device.target it held ROOT's fsck and mount back by ~1.8 s of every TCG boot."""
    unit = data_dir() / "dracut" / "90railcar-usr" / "railcar-usr-verity.service"
    before = [v for k, value in _settings(unit) if k == "Before" for v in value.split()]
    assert "sysusr-usr.mount" in before and "initrd-usr-fs.target" in before
    assert "initrd-root-device.target" not in before and "sysroot.mount" not in before
