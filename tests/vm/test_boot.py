"""Built images booted in QEMU (UEFI, systemd-boot): multi-user with /usr from dm-verity, and a
slot whose /usr was altered by one byte fails its attempt so the loader falls back."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from railcar.agent.slots import Slot
from railcar.gpt import GptDisk, GptPrio
from railcar.image import BuildResult
from railcar.image.bootcontrol import SystemdBootControl
from railcar.image.bootentries import ENTRIES_DIR, MtoolsEsp, SystemdBootEntries
from railcar.image.disk import copy_sparse
from railcar.image.layout import disk_layout
from railcar.vm import Accel, Vm, VmConfig
from railcar.vm.containerimage import busybox_image
from railcar.vm.hostserver import free_port
from railcar.vm.images import VARIANTS, suite_image, variant_spec
from railcar.vm.nodes import IGNITION_VERSION, Ssh, wait_boot
from tests.imagebuild import built_image

pytestmark = pytest.mark.slow

# The GUID every built image starts with (spec §1: cgpt create -g …0001).
BUILD_DISK_GUID = "00000000-0000-0000-0000-000000000001"
# One boot under TCG on two shared cores takes 1-3 min; leave room for a slow host.
BOOT_TIMEOUT = 600.0


def _copy_disk(image: BuildResult, dest: Path) -> Path:
    disk = dest / "disk.bin"
    src = Path(image.output) / "railcar_production_image.bin"
    subprocess.run(["cp", "--sparse=always", str(src), str(disk)], check=True)
    return disk


def _first_boot_config(public_key: str) -> dict[str, object]:
    """A user ``core`` and root with our SSH key, and a unit whose output goes to the console."""
    hello = (
        "[Unit]\nDescription=Ignition-provisioned test unit\nAfter=multi-user.target\n"
        "[Service]\nType=oneshot\nStandardOutput=tty\nTTYPath=/dev/ttyS0\n"
        "ExecStart=/bin/sh -c 'echo IGNITION-UNIT-RAN user=$$(id -un core) groups=$$(id -Gn core)"
        ' | tr " " _\'\n'
        "[Install]\nWantedBy=multi-user.target\n"
    )
    return {
        "ignition": {"version": IGNITION_VERSION},
        "passwd": {
            "users": [
                {"name": "core", "sshAuthorizedKeys": [public_key], "groups": ["docker"]},
                {"name": "root", "sshAuthorizedKeys": [public_key]},
            ]
        },
        "systemd": {"units": [{"name": "ignition-hello.service", "enabled": True,
                               "contents": hello}]},
    }  # fmt: skip


def _best_sha256(proc_crypto: str) -> str:
    """The driver the kernel hands out for ``sha256``: the highest priority in /proc/crypto."""
    drivers = []
    for block in proc_crypto.split("\n\n"):
        fields = dict(
            (k.strip(), v.strip())
            for k, _, v in (line.partition(":") for line in block.splitlines())
        )
        if fields.get("name") == "sha256" and fields.get("type") in ("shash", "ahash"):
            drivers.append((int(fields["priority"]), fields["driver"]))
    return max(drivers)[1]


@pytest.mark.long(3)
def test_first_boot_provisions_with_ignition_and_runs_containers(tmp_path: Path) -> None:
    """The example image's first boot: Ignition (fw_cfg, qemu platform) creates a user with an
    SSH key and a unit; /usr is dm-verity, read-only; ROOT grew; the disk GUID is random;
    containerd and docker each run a container from an image built here (no registry)."""
    image = built_image("1.0.0")
    disk = Path(image.output) / "railcar_production_image.bin"
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    ignition = tmp_path / "config.ign"
    ignition.write_text(json.dumps(_first_boot_config(key.with_suffix(".pub").read_text())))
    port = free_port()
    # A disk 1 GiB larger than the image, like a cloud volume: ROOT grows into it on boot.
    size = disk.stat().st_size + (1 << 30)
    config = VmConfig(image=disk, run_dir=tmp_path / "vm", disk_size=size, ignition=ignition,
                      ssh_port=port)  # fmt: skip
    with Vm(config) as vm:
        report = wait_boot(vm, 1, BOOT_TIMEOUT)
        vm.wait_for("IGNITION-UNIT-RAN", 120)
        ssh = Ssh(port, key)
        ssh.wait(300)
        assert ssh.run("id -un").strip() == "core"
        root = ssh.as_user("root")
        usr = root.run("findmnt -n -o SOURCE,OPTIONS /usr").split()
        entry = root.run("cat /boot/loader/entries/railcar-a.conf")
        flag = root.run("ls /boot/railcar")
        cpu_flags = root.run("grep -m1 '^flags' /proc/cpuinfo").split()
        verity_hash = root.run("dmesg | grep -m1 'verity: sha256 using implementation'")
        crypto = root.run("cat /proc/crypto")
        agent = root.run("systemctl show -p ConditionResult -p NRestarts railcar-agent.service")
        tmpfiles = root.run("journalctl -b -o cat -t systemd-tmpfiles --no-pager")
        os_release = root.run("readlink /etc/os-release && grep -c . /etc/os-release")
        # Before anything used docker's socket: dockerd has not run (ADR 0039).
        runtimes = root.run(
            "systemctl show -p Id -p ActiveState docker.service docker.socket containerd.service"
        )
        tarball = tmp_path / "hello.tar"
        busybox_image(tarball, "railcar-test/hello:1")
        root.run("cat > /root/hello.tar", stdin=tarball.read_bytes())
        docker = root.run("docker load -i /root/hello.tar && docker run --rm railcar-test/hello:1")
        ctr = root.run(
            "ctr -n railcar images import /root/hello.tar >/dev/null && "
            "ctr -n railcar run --rm docker.io/railcar-test/hello:1 hello1"
        )
    # the unit Ignition wrote and enabled ran, and saw the user Ignition made (in docker)
    assert "IGNITION-UNIT-RAN_user=core_groups=core_docker" in vm.console_text()
    assert (report["slot"], report["version"]) == ("A", "1.0.0")
    assert report["usr"] == "/dev/mapper/usr"
    assert (report["verity"], report["readonly"]) == ("yes", "yes")
    assert usr[0] == "/dev/mapper/usr" and "ro" in usr[1].split(",")
    assert report["entry"] == "railcar-a.conf"
    assert report["multi-user"] == "active"
    assert int(report["root_mib"]) > 1024  # ROOT was 1024 MiB in the image (examples/railcar.toml)
    assert report["disk"] not in ("none", BUILD_DISK_GUID)
    # Ignition ran on this first boot only: the loader entry no longer asks for it.
    assert "ignition.firstboot" not in entry and "first_boot" not in flag.split()
    assert "hello from railcar-test/hello:1" in docker
    blocks = [dict(line.split("=", 1) for line in b.splitlines()) for b in runtimes.split("\n\n")]
    states = {b["Id"]: b["ActiveState"] for b in blocks if b}
    assert states == {"docker.service": "inactive", "docker.socket": "active",
                      "containerd.service": "active"}, runtimes  # fmt: skip
    if config.accel is Accel.TCG:  # ADR 0025: no byte-string instructions for TCG to crawl through
        assert "sse4_2" in cpu_flags and "erms" not in cpu_flags
    assert "hello from railcar-test/hello:1" in ctr
    # The example is built without --payload-key: no key to verify an update with, so the agent
    # is not started (rather than failing and being restarted every 30 s).
    assert sorted(agent.split()) == ["ConditionResult=no", "NRestarts=0"], agent
    # /etc's factory copy restores what it can without errors: links are links (os-release).
    assert "/usr/share/factory" not in tmpfiles, tmpfiles
    assert os_release.split()[0] == "../usr/lib/os-release" and int(os_release.split()[1]) > 3
    # /usr's hashes use the best SHA-256 the CPU offers, not the one that happened to be loaded
    # when the initrd opened the slot.
    assert f'implementation "{_best_sha256(crypto)}"' in verity_hash, (verity_hash, crypto)


@pytest.mark.long(4)
def test_corrupted_slot_fails_its_try_and_the_other_slot_boots(tmp_path: Path) -> None:
    # The update tests' images (railcar.vm.images: cached between runs, no container runtime).
    v1, v2 = suite_image("1.0.0").build, suite_image("2.0.0").build
    assert v1.root_hash != v2.root_hash
    disk = _copy_disk(v1, tmp_path)
    layout = disk_layout(variant_spec(VARIANTS["1.0.0"], tmp_path))
    esp = MtoolsEsp(disk, layout.by_label("EFI-SYSTEM").offset)
    usr_a, usr_b = layout.by_label("USR-A"), layout.by_label("USR-B")

    # What the agent does, offline: v2 into USR-B, tried and committed; then v1 again into
    # USR-A as the new trial, so A is the slot on trial and B the known-good fallback.
    with GptDisk.open(disk, writable=True) as gpt:
        control = SystemdBootControl(gpt, SystemdBootEntries(esp), Slot.A)
        copy_sparse(Path(v2.output) / "railcar_production_update.bin", disk, usr_b.offset,
                    usr_b.size_bytes)  # fmt: skip
        control.install(Slot.B, Path(v2.output) / "railcar_production_image.vmlinuz", "2.0.0")
        control.mark_install_target(Slot.B)
    with GptDisk.open(disk, writable=True) as gpt:
        control = SystemdBootControl(gpt, SystemdBootEntries(esp), Slot.B)
        control.mark_booted_good()
        control.install(Slot.A, Path(v1.output) / "railcar_production_image.vmlinuz", "1.0.0")
        control.mark_install_target(Slot.A)
        assert control.slot_state(Slot.A) == GptPrio(2, 1, False)
        assert control.slot_state(Slot.B) == GptPrio(1, 0, True)
    assert esp.list(ENTRIES_DIR) == ["railcar-a+1.conf", "railcar-b.conf"]

    # Flip one byte of USR-A's data: the erofs superblock, read when /usr is mounted.
    with open(disk, "r+b") as f:
        f.seek(usr_a.offset + 1024 + 8)
        byte = f.read(1)
        f.seek(usr_a.offset + 1024 + 8)
        f.write(bytes([byte[0] ^ 0xFF]))

    with Vm(VmConfig(image=disk, run_dir=tmp_path / "vm")) as vm:
        report = wait_boot(vm, 1, BOOT_TIMEOUT)
    after = vm.export_disk(tmp_path / "after.bin")
    esp = MtoolsEsp(after, layout.by_label("EFI-SYSTEM").offset)
    console = vm.console_text()
    assert "verity" in console and "corrupted" in console  # the kernel saw the bad block
    assert (report["slot"], report["version"], report["verity"]) == ("B", "2.0.0", "yes")
    # A's attempt was counted on the ESP: systemd-boot renamed its entry to +0-1.
    assert "railcar-a+0-1.conf" in esp.list(ENTRIES_DIR)
    with GptDisk.open(after, writable=True) as gpt:
        control = SystemdBootControl(gpt, SystemdBootEntries(esp), Slot.B)
        control.sync_from_loader()
        assert control.slot_state(Slot.A) == GptPrio(2, 0, False)  # spec §2.3: a failed slot
        assert control.next_boot() is Slot.B
