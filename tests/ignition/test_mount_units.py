"""``with_mount_unit`` generates the unit Butane would: named like ``systemd-escape --path``,
enabled, and accepted by Ignition."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from railcar.ignition.units import escape_path
from tests.ignition.tools import translate_yaml


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/var/lib/data",
        "/var/lib/my-data/",
        "//srv//x",
        "/mnt/.hidden",
        "/mnt/a b/ü",
        "/a:b_c.d",
    ],
)
def test_escape_matches_systemd_escape(path: str) -> None:
    tool = shutil.which("systemd-escape")
    assert tool is not None, "systemd-escape missing; run scripts/setup (systemd)"
    want = subprocess.run(
        [tool, "--path", path], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert escape_path(path) == want


def test_mount_unit_for_a_filesystem() -> None:
    config = translate_yaml(
        """
        storage:
          filesystems:
            - device: /dev/disk/by-label/DATA
              format: ext4
              path: /var/lib/data
              label: DATA
              mount_options: [noatime, discard]
              with_mount_unit: true
        """
    ).config
    assert config["storage"]["filesystems"] == [
        {
            "device": "/dev/disk/by-label/DATA",
            "format": "ext4",
            "path": "/var/lib/data",
            "label": "DATA",
            "mountOptions": ["noatime", "discard"],
        }
    ]
    (unit,) = config["systemd"]["units"]
    assert unit["name"] == "var-lib-data.mount"
    assert unit["enabled"] is True
    body = unit["contents"]
    assert "Requires=systemd-fsck@dev-disk-by\\x2dlabel-DATA.service\n" in body
    assert "What=/dev/disk/by-label/DATA\nWhere=/var/lib/data\nType=ext4\n" in body
    assert "Options=noatime,discard\n" in body
    assert body.endswith("[Install]\nRequiredBy=local-fs.target\n")


def test_swap_unit() -> None:
    config = translate_yaml(
        """
        storage:
          filesystems:
            - {device: /dev/vdc, format: swap, with_mount_unit: true}
        """
    ).config
    (unit,) = config["systemd"]["units"]
    assert unit["name"] == "dev-vdc.swap"
    assert "[Swap]\nWhat=/dev/vdc\n" in unit["contents"]
    assert "RequiredBy=swap.target" in unit["contents"]


def test_generated_unit_follows_the_declared_ones() -> None:
    config = translate_yaml(
        """
        storage:
          filesystems:
            - {device: /dev/vdb, format: xfs, path: /srv, with_mount_unit: true}
        systemd:
          units:
            - {name: a.service, mask: true}
        """
    ).config
    assert [u["name"] for u in config["systemd"]["units"]] == ["a.service", "srv.mount"]
