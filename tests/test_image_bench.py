"""The pure parts of benchmarks/image_bench.py: where mkosi's packages come from, what it is asked
to build, how the two package sets are compared, and what the plain boot is booted with."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from benchmarks.image_boot_bench import (
    VERITY_UNIT,
    boot_order,
    boot_phases,
    expected_report,
    phase_medians,
    plain_cmdline,
    plain_layout,
)
from benchmarks.image_boot_bench import summarize as summarize_boots
from benchmarks.image_build_bench import (
    apt_source_uri,
    changed_spec_text,
    finalize_script,
    median,
    mirror_for,
    mkosi_command,
    package_diff,
    run_order,
)
from benchmarks.image_build_bench import summarize as summarize_builds

from railcar.image.esp import kernel_cmdline
from railcar.image.layout import MIB, disk_layout, sfdisk_script, verity_geometry
from railcar.image.spec import ImageSpec, parse_spec
from tests.imagebuild import EXAMPLE

DEB822 = """Types: deb
# a comment
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
"""


def _out(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True).stdout


@pytest.fixture
def spec() -> ImageSpec:
    return parse_spec(EXAMPLE.read_text(), path=EXAMPLE)


def test_apt_source_uri_reads_one_line_sources_with_options() -> None:
    text = (
        "# deb http://old.invalid/debian bookworm main\n"
        "deb-src http://src.invalid/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.invalid/debian bookworm main\n"
    )
    assert apt_source_uri("bookworm", text) == "http://one.invalid/debian"
    assert apt_source_uri("trixie", text) is None


def test_apt_source_uri_reads_deb822_stanzas_by_suite() -> None:
    assert apt_source_uri("bookworm", "", [DEB822]) == "http://mirror.invalid/debian"
    assert apt_source_uri("bookworm-security", "", [DEB822]) == (
        "http://mirror.invalid/debian-security"
    )
    disabled = "Enabled: no\n" + DEB822.split("\n\n", maxsplit=1)[0]
    assert apt_source_uri("bookworm", "", [disabled]) is None


def test_mirror_for_uses_the_hosts_sources_unless_the_spec_names_one(
    spec: ImageSpec, tmp_path: Path
) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    assert mirror_for(spec, tmp_path) == "http://mirror.invalid/debian"
    text = EXAMPLE.read_text().replace(
        "mirrors = []", 'mirrors = ["deb http://spec.invalid/debian bookworm main"]'
    )
    named = parse_spec(text, path=EXAMPLE)
    assert mirror_for(named, tmp_path) == "http://spec.invalid/debian"
    with pytest.raises(SystemExit, match="no apt source for suite 'bookworm'"):
        mirror_for(spec, tmp_path / "empty")


def test_mkosi_builds_the_specs_suite_and_packages_with_its_kernel(spec: ImageSpec) -> None:
    cmd = mkosi_command(spec, mirror="http://m.invalid/debian", cache=Path("/c"),
                        output=Path("/o/image.raw"), finalize=Path("/f.sh"),
                        skeleton=Path("/s"))  # fmt: skip
    assert cmd[0] == "mkosi" and cmd[-1] == "build"
    assert "--release=bookworm" in cmd and "--architecture=x86_64" in cmd
    assert "--mirror=http://m.invalid/debian" in cmd
    (packages,) = [a.split("=", 1)[1] for a in cmd if a.startswith("--package=")]
    assert packages.split(",") == [*spec.packages, spec.kernel_package]
    assert "docker.io" in packages.split(",")
    assert "--format=gpt_ext4" in cmd and "--with-docs" in cmd
    assert "--cache=/c" in cmd and "--finalize-script=/f.sh" in cmd
    assert "--skeleton-tree=/s" in cmd


def test_finalize_script_runs_railcars_dracut_step_in_the_tree(tmp_path: Path) -> None:
    script = finalize_script(tmp_path / "customize.sh")
    assert script.startswith("#!/bin/sh\n")
    assert f'sh "{tmp_path / "customize.sh"}" "$root"' in script
    assert "90railcar-usr" in script and "00-railcar.conf" in script
    # mkosi runs it for the build image too; only the final image gets the initrd
    assert '[ "$1" = final ] || exit 0' in script
    subprocess.run(["sh", "-n"], input=script, text=True, check=True)  # parses as sh


def test_package_diff_names_what_only_one_build_has() -> None:
    manifest = {
        "packages": [
            {"name": "systemd", "version": "252.39-1~deb12u2"},
            {"name": "apt", "version": "2.6.1"},
            {"name": "systemd-resolved", "version": "252.39-1~deb12u2"},
        ]
    }
    railcar = "systemd 252.39-1~deb12u2\napt 2.6.2\nlibgdbm6:amd64 1.23-3\n\n"
    diff = package_diff(manifest, railcar)
    assert diff.only_mkosi == ("systemd-resolved",)
    assert diff.only_railcar == ("libgdbm6",)
    assert diff.other_version == (("apt", "2.6.1", "2.6.2"),)
    assert diff.common == 2


def test_the_warm_build_changes_exactly_one_line_of_the_spec() -> None:
    old = EXAMPLE.read_text()
    new = changed_spec_text(old)
    changed = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
    assert changed == [('version = "1.0.0"', 'version = "1.0.1"')]
    with pytest.raises(SystemExit):
        changed_spec_text(new)


def test_median_and_orders() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        median([])
    assert run_order(0) == ["cold", "warm", "mkosi"]
    assert run_order(1) == ["mkosi", "cold", "warm"]
    assert boot_order(3) == ["railcar", "plain", "plain", "railcar", "railcar", "plain"]
    # with a variant: each kind once per round, first in one round of three
    kinds = ("railcar", "plain", "variant")
    assert boot_order(3, kinds) == [
        "railcar", "plain", "variant", "plain", "variant", "railcar",
        "variant", "railcar", "plain",
    ]  # fmt: skip


def test_build_summary_gives_the_goals_ratios_by_medians_and_per_run() -> None:
    runs = [
        {"cold_seconds": 50.0, "warm_seconds": 10.0, "mkosi_seconds": 40.0},
        {"cold_seconds": 60.0, "warm_seconds": 12.0, "mkosi_seconds": 60.0},
        {"cold_seconds": 44.0, "warm_seconds": 11.0, "mkosi_seconds": 40.0},
    ]
    got = summarize_builds(runs)
    assert got["median_seconds"] == {"cold": 50.0, "warm": 11.0, "mkosi": 40.0}
    assert got["ratios"] == {"warm/cold": 0.22, "railcar cold/mkosi": 1.25}
    # each run's builds against each other, then the median of those
    assert got["run_ratios"] == {
        "warm/cold": [0.2, 0.2, 0.25],
        "railcar cold/mkosi": [1.25, 1.0, 1.1],
    }
    assert got["median_run_ratios"] == {"warm/cold": 0.2, "railcar cold/mkosi": 1.1}


def test_boot_summary_gives_the_ratio_of_medians_and_per_pair() -> None:
    got = summarize_boots({"railcar": [50.0, 60.0, 44.0], "plain": [40.0, 60.0, 40.0]})
    assert got["median_seconds"] == {"railcar": 50.0, "plain": 40.0}
    assert got["ratio railcar/plain"] == 1.25
    # boot_order's pairs: the n-th boot of each kind, one right after the other
    assert got["pair_ratios"] == [1.25, 1.0, 1.1]
    assert got["median_pair_ratio"] == 1.1
    assert "ratio variant/railcar" not in got


def test_boot_summary_compares_a_variant_with_the_railcar_image_round_by_round() -> None:
    got = summarize_boots(
        {"railcar": [50.0, 60.0, 44.0], "plain": [40.0, 60.0, 40.0], "variant": [45.0, 66.0, 44.0]}
    )
    assert got["ratio railcar/plain"] == 1.25  # the goal's figure is the first image's still
    assert got["ratio variant/railcar"] == 0.9
    assert got["variant_pair_ratios"] == [0.9, 1.1, 1.0]
    assert got["median_variant_pair_ratio"] == 1.0


def test_plain_cmdline_is_railcars_without_usr_verity_and_ignition(spec: ImageSpec) -> None:
    railcar = kernel_cmdline(spec, "ab" * 32, verity_geometry(spec.partitions.usr * MIB)).split()
    plain = plain_cmdline(spec).split()
    dropped = {a.split("=", 1)[0] for a in set(railcar) - set(plain)}
    assert dropped == {
        "mount.usr", "mount.usrfstype", "mount.usrflags", "verity.usrhash",
        "railcar.verity_hash_offset", "ignition.platform.id",
    }  # fmt: skip
    assert set(plain) - set(railcar) == {f"rd.systemd.mask={VERITY_UNIT}"}
    assert plain[-len(spec.cmdline) :] == list(spec.cmdline)  # console= last, as in Railcar's


def test_plain_disk_is_one_root_partition_of_roots_type(spec: ImageSpec, tmp_path: Path) -> None:
    layout = plain_layout(spec)
    (root,) = layout.partitions
    railcar_root = disk_layout(spec).by_label("ROOT")
    assert root.label == "ROOT" and root.type == railcar_root.type
    assert root.size_bytes == (spec.partitions.root + spec.partitions.usr) * MIB
    disk = tmp_path / "plain.bin"
    with open(disk, "wb") as f:
        f.truncate(layout.size_bytes)
    subprocess.run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", str(disk)],
                   input=sfdisk_script(layout), text=True, check=True)  # fmt: skip
    assert "No problems found" in _out("sgdisk", "-v", disk)
    info = _out("sgdisk", "-i", "1", disk)
    assert str(railcar_root.type.guid).upper() in info
    assert "'ROOT'" in info


def test_expected_report_tells_the_two_boots_apart() -> None:
    railcar = {"multi-user": "active", "usr": "/dev/mapper/usr", "verity": "yes"}
    plain = {"multi-user": "active", "usr": "none", "verity": "no"}
    assert expected_report("railcar", railcar) is None
    assert expected_report("plain", plain) is None
    assert expected_report("plain", railcar) is not None
    assert expected_report("railcar", plain) is not None
    assert expected_report("plain", {**plain, "multi-user": "activating"}) is not None
    # a variant is another Railcar image: /usr through verity too
    assert expected_report("variant", railcar) is None
    assert expected_report("variant", plain) is not None


CONSOLE = """\
[    0.000000] Linux version 6.1.0-56-cloud-amd64
[    4.950321] Run /init as init process
[    5.100000] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT)
[   13.028664] device-mapper: verity: sha256 using implementation "sha256-generic"
[   14.100000] rcu: INFO: rcu_preempt self-detected stall on CPU
[   17.790000] systemd[1]: systemd 252.39-1~deb12u2 running in system mode (+PAM +AUDIT)
railcar login: RAILCAR-BOOTED slot=A version=1.0.0 usr=/dev/mapper/usr verity=yes
[   49.150000] boot-report[660]: RAILCAR-BOOTED slot=A version=1.0.0 usr=/dev/mapper/usr
"""


def test_boot_phases_split_a_boot_at_the_kernel_and_the_switch_root() -> None:
    assert boot_phases(CONSOLE, 56.1) == {
        "firmware": 7.0, "kernel": 5.0, "initrd": 17.8, "userspace": 31.4, "rcu_stalls": 1,
    }  # fmt: skip
    # without the kernel's mark (the control): no split either
    no_init = "\n".join(line for line in CONSOLE.splitlines() if "Run /init" not in line)
    assert boot_phases(no_init, 56.1) is None
    # without the real root's banner (e.g. a boot that never left the initrd): no split
    no_root = "\n".join(line for line in CONSOLE.splitlines() if "17.79" not in line)
    assert boot_phases(no_root, 56.1) is None
    assert boot_phases("RAILCAR-BOOTED slot=A\n", 56.1) is None


def test_phase_medians_take_each_figure_over_the_boots_that_split() -> None:
    one = {"firmware": 6.0, "kernel": 3.2, "initrd": 15.0, "userspace": 30.0, "rcu_stalls": 0}
    two = {"firmware": 7.0, "kernel": 4.4, "initrd": 17.0, "userspace": 40.0, "rcu_stalls": 2}
    got = phase_medians({"railcar": [one, None, two], "plain": [None]})
    assert got["railcar"] == {
        "firmware": 6.5, "kernel": 3.8, "initrd": 16.0, "userspace": 35.0, "rcu_stalls": 1.0,
    }  # fmt: skip
    assert got["plain"] == {}
