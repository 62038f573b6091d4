"""The image's own systemd units, read as the files the builder installs: what they make every
boot wait for."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from railcar.agent.node import DEFAULT_KEY_PATHS
from railcar.image.bootentries import IGNITION_FIRSTBOOT
from railcar.image.content import SYSTEMD_UNITS, disable_unit, factory_line
from railcar.image.errors import SpecError
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


def test_agent_starts_only_with_a_key_it_would_trust() -> None:
    """The unit's triggering conditions are the agent's own default key paths, in its order."""
    unit = data_dir() / "units" / "railcar-agent.service"
    keys = [v[1:] for k, v in _settings(unit) if k == "ConditionPathExists" and v.startswith("|")]
    assert keys == [str(p) for p in DEFAULT_KEY_PATHS]


def test_agent_starts_after_the_boot_it_serves() -> None:
    """The agent is wanted by multi-user.target and ordered after it (ADR 0041): the boot
    neither waits for its start nor shares the CPU with it while units the boot waits for
    (containerd) start. Ordered only after network-online.target, it started with them."""
    settings = _settings(data_dir() / "units" / "railcar-agent.service")
    after = [v for k, value in settings if k == "After" for v in value.split()]
    assert "multi-user.target" in after
    assert ("WantedBy", "multi-user.target") in settings
    assert not [k for k, _ in settings if k == "Before"]


def test_boot_report_leaves_the_esp_unmounted() -> None:
    """The report runs on every boot, and its line is what `railcar vm boot` and the boot
    benchmark wait for: a path under /boot would mount the ESP on every boot, in its way."""
    script = (data_dir() / "units" / "boot-report").read_text()
    code = [line for line in script.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "/boot" in line]


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


def _package_stage(tmp_path: Path) -> Path:
    """A staged tree as Debian's docker.io leaves it: the units in /usr, enabled in /etc by the
    maintainer script, and one of them also enabled in /usr."""
    stage = tmp_path / "stage"
    usr_units = stage / SYSTEMD_UNITS
    usr_units.mkdir(parents=True)
    for unit in ("docker.service", "docker.socket", "containerd.service"):
        (usr_units / unit).write_text("[Install]\nWantedBy=multi-user.target\n")
    links = {
        "etc/systemd/system/multi-user.target.wants/docker.service": "/lib/systemd/system/x",
        "etc/systemd/system/multi-user.target.wants/containerd.service": "/lib/systemd/system/x",
        "etc/systemd/system/sockets.target.wants/docker.socket": "/lib/systemd/system/x",
        f"{SYSTEMD_UNITS}/multi-user.target.wants/docker.service": "../docker.service",
        f"{SYSTEMD_UNITS}/sysinit.target.requires/docker.service": "../docker.service",
    }
    for path, target in links.items():
        (stage / path).parent.mkdir(parents=True, exist_ok=True)
        (stage / path).symlink_to(target)
    return stage


def test_disabling_a_unit_removes_every_link_packages_and_the_spec_made(tmp_path: Path) -> None:
    stage = _package_stage(tmp_path)
    disable_unit(stage, "docker.service")
    left = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_symlink())
    assert left == [
        "etc/systemd/system/multi-user.target.wants/containerd.service",
        "etc/systemd/system/sockets.target.wants/docker.socket",
    ]
    assert (stage / SYSTEMD_UNITS / "docker.service").is_file()  # still startable


@pytest.mark.parametrize(
    ("unit", "message"),
    [
        ("railcar-agent.service", "railcar-agent.service is Railcar's own"),
        ("podman.service", "podman.service is not in the image"),
    ],
)
def test_units_that_cannot_be_disabled(tmp_path: Path, unit: str, message: str) -> None:
    stage = _package_stage(tmp_path)
    with pytest.raises(SpecError, match=message):
        disable_unit(stage, unit)


def test_factory_lines_copy_entries_and_remake_links(tmp_path: Path) -> None:
    """/etc entries missing on ROOT come back at boot (tmpfiles.d): files and directories as
    copies of the factory /etc in /usr, symlinks with their own targets. Debian's relative
    os-release link, copied, would point nowhere from the factory directory."""
    etc = tmp_path / "etc"
    (etc / "ssh").mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (etc / "os-release").symlink_to("../usr/lib/os-release")
    (etc / "localtime").symlink_to("/usr/share/zoneinfo/Etc/UTC")
    (etc / "odd").symlink_to("../usr/lib/100%")
    lines = {name: factory_line(name, etc / name) for name in sorted(os.listdir(etc))}
    assert lines == {
        "localtime": "L /etc/localtime - - - - /usr/share/zoneinfo/Etc/UTC",
        "odd": "L /etc/odd - - - - ../usr/lib/100%%",
        "os-release": "L /etc/os-release - - - - ../usr/lib/os-release",
        "passwd": "C /etc/passwd - - - -",
        "ssh": "C /etc/ssh - - - -",
    }
