"""`railcar build` on the example spec: the disk, the USR image and the kernel, checked with the
real tools (sgdisk, cgpt, veritysetup, objcopy, blkid, sha256sum); and a rebuild is identical."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from railcar.agent.slots import Slot
from railcar.cli import cli
from railcar.gpt import USR_A_UUID, USR_B_UUID, GptDisk, PartitionType
from railcar.image import BuildResult, build_image, parse_spec
from railcar.image.bootcontrol import SystemdBootControl
from railcar.image.bootentries import ENTRIES_DIR, MtoolsEsp, SystemdBootEntries
from railcar.image.build import default_cache
from railcar.image.esp import SECTION_VMA
from railcar.image.layout import derived_uuid, disk_layout
from railcar.image.uki import pe_section, uki_cmdline
from tests.conftest import KeyPair
from tests.imagebuild import EXAMPLE, built_image, example_spec_text

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def image() -> BuildResult:
    return built_image("1.0.0")


def _out(image: BuildResult, name: str) -> Path:
    return Path(image.output) / name


def _sh(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=True).stdout


def test_disk_has_the_container_linux_layout(image: BuildResult) -> None:
    disk = _out(image, "railcar_production_image.bin")
    _sh("sgdisk", "-v", disk)
    table = _sh("sgdisk", "-p", disk)
    assert "00000000-0000-0000-0000-000000000001" in table
    for number, label, ptype in [
        (1, "EFI-SYSTEM", PartitionType.EFI),
        (2, "BIOS-BOOT", PartitionType.BIOS),
        (3, "USR-A", PartitionType.FLATCAR_USR),
        (4, "USR-B", PartitionType.FLATCAR_USR),
        (6, "OEM", PartitionType.LINUX_DATA),
        (7, "OEM-CONFIG", PartitionType.FLATCAR_RESERVED),
        (9, "ROOT", PartitionType.FLATCAR_RESIZE),
    ]:
        info = _sh("sgdisk", "-i", str(number), disk)
        assert f"Partition name: '{label}'" in info
        assert str(ptype.guid).upper() in info
    assert str(USR_A_UUID).upper() in _sh("sgdisk", "-i", "3", disk)
    assert str(USR_B_UUID).upper() in _sh("sgdisk", "-i", "4", disk)
    assert _sh("cgpt", "show", "-i", "3", "-P", disk).strip() == "1"
    assert _sh("cgpt", "show", "-i", "3", "-S", disk).strip() == "1"
    assert _sh("cgpt", "show", "-i", "4", "-A", disk).strip() == "0"
    # ROOT and OEM are ext4 with their labels; the ESP is FAT32 labelled EFI-SYSTEM.
    starts = {n: int(_sh("cgpt", "show", "-i", str(n), "-b", disk)) * 512 for n in (1, 6, 9)}
    root = _sh("blkid", "-p", "-O", str(starts[9]), "-o", "export", disk)
    assert "LABEL=ROOT" in root and "TYPE=ext4" in root
    assert "LABEL=OEM" in _sh("blkid", "-p", "-O", str(starts[6]), "-o", "export", disk)
    esp = _sh("blkid", "-p", "-O", str(starts[1]), "-o", "export", disk)
    assert "LABEL=EFI-SYSTEM" in esp
    # The FAT's volume id is the spec's own (derived like the partition GUIDs), not the
    # constant mkfs.vfat --invariant would give every ESP.
    serial = derived_uuid(parse_spec(example_spec_text("1.0.0"), path=EXAMPLE), "esp").hex[:8]
    assert f"UUID={serial[:4].upper()}-{serial[4:].upper()}" in esp


def test_usr_image_verifies_and_detects_one_flipped_byte(
    image: BuildResult, tmp_path: Path
) -> None:
    usr = _out(image, "railcar_production_update.bin")
    assert usr.stat().st_size == 1 << 30  # exactly one USR partition
    offset = f"--hash-offset={image.verity_hash_offset}"
    _sh("veritysetup", "verify", offset, usr, usr, image.root_hash)
    bad = tmp_path / "usr.bin"
    subprocess.run(["cp", "--sparse=always", str(usr), str(bad)], check=True)
    with open(bad, "r+b") as f:
        f.seek(1024 + 8)  # inside the erofs superblock (data block 0)
        byte = f.read(1)
        f.seek(1024 + 8)
        f.write(bytes([byte[0] ^ 0xFF]))
    proc = subprocess.run(
        ["veritysetup", "verify", offset, str(bad), str(bad), image.root_hash],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0


def test_kernel_carries_the_root_hash(image: BuildResult, tmp_path: Path) -> None:
    kernel = _out(image, "railcar_production_image.vmlinuz")
    cmdline = tmp_path / "cmdline"
    _sh("objcopy", "-O", "binary", "--only-section=.cmdline", kernel, cmdline)
    text = cmdline.read_bytes().rstrip(b"\0").decode()
    assert f"verity.usrhash={image.root_hash}" in text
    assert f"railcar.verity_hash_offset={image.verity_hash_offset}" in text
    assert "mount.usr=/dev/mapper/usr" in text
    assert ".linux" in _sh("objdump", "-h", kernel)
    # objdump's reading of the PE header: the build's SOURCE_DATE_EPOCH, not objcopy's "now"
    spec = parse_spec(example_spec_text("1.0.0"), path=EXAMPLE)
    header = subprocess.run(
        ["objdump", "-p", kernel], env={**os.environ, "TZ": "UTC"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    stamp = re.search(r"^Time/Date\s+(.+)$", header, re.MULTILINE)
    assert stamp is not None, header
    when = datetime.strptime(stamp.group(1).strip(), "%a %b %d %H:%M:%S %Y")
    assert when.replace(tzinfo=UTC).timestamp() == spec.source_date_epoch


def test_kernel_is_what_objcopy_makes_of_the_stub(image: BuildResult, tmp_path: Path) -> None:
    """The UKI writer against the tool it replaced (ADR 0034): objcopy adding the same sections at
    the same addresses to the same stub gives the same bytes, but for the header fields the
    writer sets apart (time stamp, no COFF symbol table, checksum) and the symbol table that
    objcopy carries at the end."""
    ours = _out(image, "railcar_production_image.vmlinuz").read_bytes()
    tree = default_cache() / "rootfs" / image.rootfs_key / "tree"
    files = {
        ".osrel": tmp_path / "osrel",
        ".cmdline": tmp_path / "cmdline",
        ".linux": tree / "boot" / f"vmlinuz-{image.kernel_version}",
        ".initrd": tree / "boot" / f"initrd.img-{image.kernel_version}",
    }
    files[".osrel"].write_bytes(pe_section(ours, ".osrel"))
    files[".cmdline"].write_bytes(pe_section(ours, ".cmdline"))
    args: list[str | Path] = ["objcopy"]
    for name, path in files.items():
        args += ["--add-section", f"{name}={path}",
                 "--change-section-vma", f"{name}={SECTION_VMA[name]:#x}"]  # fmt: skip
    stub = tree / "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
    _sh(*args, stub, tmp_path / "objcopy.efi")
    theirs = (tmp_path / "objcopy.efi").read_bytes()
    (pe,) = struct.unpack_from("<I", ours, 0x3C)
    coff = pe + 4

    def apart(data: bytes) -> bytes:
        fields = bytearray(data)
        struct.pack_into("<III", fields, coff + 4, 0, 0, 0)  # time, symbol table, symbols
        struct.pack_into("<I", fields, coff + 20 + 64, 0)  # CheckSum
        return bytes(fields)

    (symbols,) = struct.unpack_from("<I", theirs, coff + 8)
    assert len(ours) == symbols
    assert apart(ours) == apart(theirs[:symbols])


def test_first_boot_runs_ignition_once(image: BuildResult, tmp_path: Path) -> None:
    """The fresh image's entry passes the kernel's own command line plus ignition.firstboot
    (its initrd holds Ignition for the qemu platform); finishing the first boot takes the
    options off and then the flag, and the entry boots the embedded command line again."""
    kernel = _out(image, "railcar_production_image.vmlinuz")
    embedded = uki_cmdline(kernel.read_bytes())
    objcopy = tmp_path / "cmdline"
    _sh("objcopy", "-O", "binary", "--only-section=.cmdline", kernel, objcopy)
    assert embedded == objcopy.read_bytes().rstrip(b"\0").decode()  # our PE reader agrees
    assert "ignition.platform.id=qemu" in embedded.split()
    initrd = tmp_path / "initrd"
    _sh("objcopy", "-O", "binary", "--only-section=.initrd", kernel, initrd)
    listing = subprocess.run(
        f"zstd -dc {initrd} | cpio -t --quiet", shell=True, capture_output=True, text=True,
        check=True,
    ).stdout.split()  # fmt: skip
    for path in ("usr/bin/ignition", "usr/lib/systemd/system-generators/ignition-generator",
                 "usr/lib/railcar/railcar-disk-guid", "usr/sbin/sgdisk",
                 "etc/udev/rules.d/90-railcar-disk-guid.rules"):  # fmt: skip
        assert path in listing, path
    # the disk-GUID unit is queued by udev for a disk with the build's GUID only, so later boots
    # do not hold ROOT's mount behind it
    assert not [p for p in listing if p.endswith(".wants/railcar-disk-guid.service")]
    # only the filesystems the initrd mounts (dracut.conf filesystems+=), not all of the kernel's
    modules = f"usr/lib/modules/{image.kernel_version}/kernel/fs"
    fs = {p.split("/")[6] for p in listing if p.startswith(modules + "/") and p.endswith(".ko")}
    assert {"erofs", "fat", "isofs"} <= fs, fs
    assert not fs & {"xfs", "btrfs", "smb", "ceph", "nfs", "squashfs"}, fs

    disk = tmp_path / "disk.bin"
    _sh("cp", "--sparse=always", _out(image, "railcar_production_image.bin"), disk)
    layout = disk_layout(parse_spec(example_spec_text("1.0.0"), path=EXAMPLE))
    esp = MtoolsEsp(disk, layout.by_label("EFI-SYSTEM").offset)
    entry = esp.read(f"{ENTRIES_DIR}/railcar-a.conf").decode()
    assert f"options {embedded} ignition.firstboot\n" in entry
    assert SystemdBootEntries(esp).first_boot()

    with GptDisk.open(disk, writable=True) as gpt:
        control = SystemdBootControl(gpt, SystemdBootEntries(esp), Slot.A)
        assert control.finish_first_boot()
        assert not control.finish_first_boot()  # once only
    assert "options" not in esp.read(f"{ENTRIES_DIR}/railcar-a.conf").decode()
    assert "first_boot" not in esp.list("railcar")
    assert esp.list(ENTRIES_DIR) == ["railcar-a.conf"]


def test_reports_and_digests(image: BuildResult) -> None:
    out = Path(image.output)
    version = dict(line.split("=", 1) for line in (out / "version.txt").read_text().splitlines())
    assert version["RAILCAR_VERSION"] == "1.0.0"
    assert version["RAILCAR_USR_ROOT_HASH"] == image.root_hash
    packages = (out / "railcar_production_image_packages.txt").read_text().split("\n")
    names = {line.split(" ")[0] for line in packages if line}
    assert {"systemd", "containerd", "docker.io", "openssh-server"} <= names
    contents = (out / "railcar_production_image_contents.txt").read_text()
    assert "/usr/lib/railcar/venv/bin/railcar\n" in contents
    # The node's venv has the agent's packages, not the server's or the build host's (ADR 0040).
    site = "/usr/lib/railcar/venv/lib/python3.11/site-packages"
    for present in ("httpx", "cryptography", "jeepney", "click", "defusedxml"):
        assert f"{site}/{present}/__init__.py\n" in contents, present
    for absent in ("sqlalchemy", "fastapi", "alembic", "psycopg", "uvicorn", "pkcs11", "yaml"):
        assert f"{site}/{absent}/" not in contents, absent
    assert "/usr/lib/systemd/system/multi-user.target.wants/railcar-agent.service\n" in contents
    # The example's disable_units: the units stay, the links that start them are gone.
    factory = "/usr/share/factory/etc/systemd/system"
    assert "/usr/lib/systemd/system/e2scrub_reap.service\n" in contents
    timers = ("e2scrub_all", "apt-daily", "apt-daily-upgrade", "dpkg-db-backup")
    links = [f"multi-user.target.wants/{s}.service" for s in ("e2scrub_reap", "docker")]
    links += [f"timers.target.wants/{t}.timer" for t in timers]
    for link in links:
        assert f"{factory}/{link}\n" not in contents, link
    # dockerd starts through its socket, as on Container Linux (ADR 0039); containerd at boot.
    assert "/usr/lib/systemd/system/docker.service\n" in contents
    assert "/usr/lib/systemd/system/sockets.target.wants/docker.socket\n" in contents
    assert "/usr/lib/systemd/system/multi-user.target.wants/containerd.service\n" in contents
    assert "multi-user.target.wants/docker.service\n" not in contents
    # The spec's path filters (the default ones): no manuals, translations or package
    # documentation, but every package's copyright file (a package whose doc directory is a
    # link to another's has its copyright there, and the link is left out).
    below = re.findall(r"^/usr/share/(?:man|info|locale)/.+$", contents, re.M)
    assert set(below) <= {"/usr/share/locale/locale.alias"}, below[:5]
    docs = re.findall(r"^/usr/share/doc/[^\n]*[^/\n]$", contents, re.M)  # not directories
    assert docs and all(d.endswith("/copyright") for d in docs), docs[:5]
    assert "/usr/share/doc/systemd/copyright\n" in contents
    assert "/usr/share/doc/containerd/copyright\n" in contents
    # One section per hash of the spec (the example's: SHA-256 alone), listing every other
    # output file (hashed in the background as each was finished); it checks with coreutils.
    text = (out / "DIGESTS").read_text()
    assert text.startswith("# SHA256 HASH\n") and text.count("# ") == 1
    lines = text.splitlines()[1:]
    expected = sorted(p.name for p in out.iterdir() if p.name != "DIGESTS")
    assert [line.split("  ", 1)[1] for line in lines] == expected
    proc = subprocess.run(
        ["sha256sum", "--check", "--strict", "-"], input="\n".join(lines) + "\n",
        cwd=out, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "railcar_production_image.bin: OK" in proc.stdout


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def test_rootfs_keeps_no_bootstrap_settings(image: BuildResult) -> None:
    """dpkg's force-unsafe-io is for mmdebstrap's run only; the initrd links the kernel's
    postinst would have made (INITRD=No skipped its initrd) are there."""
    tree = default_cache() / "rootfs" / image.rootfs_key / "tree"
    assert not (tree / "etc/dpkg/dpkg.cfg.d/99mmdebstrap").exists()
    initrd = f"boot/initrd.img-{image.kernel_version}"
    assert (tree / initrd).is_file()
    assert os.readlink(tree / "initrd.img") == os.readlink(tree / "initrd.img.old") == initrd


def test_rebuild_gives_the_same_usr_image(image: BuildResult, tmp_path: Path) -> None:
    again = build_image(
        parse_spec(example_spec_text("1.0.0"), path=EXAMPLE), tmp_path / "out",
        cache=default_cache(),
    )  # fmt: skip
    assert again.rootfs_key == image.rootfs_key
    assert again.root_hash == image.root_hash
    name = "railcar_production_update.bin"
    assert _sha256(tmp_path / "out" / name) == _sha256(_out(image, name))


def test_build_cli_signs_a_payload_the_image_trusts(
    cli_runner: CliRunner, keypair: KeyPair, tmp_path: Path
) -> None:
    spec = tmp_path / "railcar.toml"
    spec.write_text(example_spec_text("1.1.0"))
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "motd").write_text("payload test\n")
    out = tmp_path / "out"
    result = cli_runner.invoke(
        cli, ["build", str(spec), "--output", str(out), "--payload-key", str(keypair.private),
              "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    payload = Path(summary["files"]["railcar_production_update.gz"])
    verified = cli_runner.invoke(
        cli, ["payload", "verify", str(payload), "--key", str(keypair.public), "--json"]
    )
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["valid"] is True
    # The image carries the key its agent verifies payloads with.
    contents = (out / "railcar_production_image_contents.txt").read_text()
    assert "/usr/share/railcar/payload-key.pub.pem\n" in contents
    # Applying the payload reproduces the USR image byte for byte, and the kernel.
    applied, kernel = tmp_path / "usr.bin", tmp_path / "vmlinuz"
    with open(applied, "wb") as f:
        f.truncate(1 << 30)
    done = cli_runner.invoke(
        cli, ["payload", "apply", str(payload), "--target", str(applied), "--kernel-out",
              str(kernel), "--key", str(keypair.public)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert _sha256(applied) == _sha256(out / "railcar_production_update.bin")
    assert kernel.read_bytes() == (out / "railcar_production_image.vmlinuz").read_bytes()


def test_bad_spec_is_one_line_exit_1(cli_runner: CliRunner, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[image]\nversion = "1"\n[packages]\ninclude = "systemd"\n')
    result = cli_runner.invoke(cli, ["build", str(spec), "--output", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "packages.include: found str 'systemd', expected a list of strings" in result.output
    assert not (tmp_path / "o").exists()


def test_sbom_lists_every_package(image: BuildResult) -> None:
    out = Path(image.output)
    sbom = json.loads((out / "railcar_production_image_sbom.json").read_text())
    assert sbom["spdxVersion"] == "SPDX-2.3"
    listed = {(p["name"], p["versionInfo"]) for p in sbom["packages"][1:]}
    lines = (out / "railcar_production_image_packages.txt").read_text().splitlines()
    assert listed == {tuple(line.split(" ", 1)) for line in lines}
    ids = [p["SPDXID"] for p in sbom["packages"]]
    assert len(ids) == len(set(ids))
    purls = [p["externalRefs"][0]["referenceLocator"] for p in sbom["packages"][1:]]
    assert any(purl.startswith("pkg:deb/debian/systemd@") for purl in purls)
