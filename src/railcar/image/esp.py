"""The kernel a slot boots and the EFI system partition that holds it.

The kernel is a unified kernel image (UKI): systemd's EFI stub with the Debian kernel, the
dracut initrd, ``os-release`` and the command line as PE sections at the addresses of the recipe
in systemd-stub(7) for 252, which has no ukify (written as ``objcopy --add-section`` would:
:func:`railcar.image.uki.write_uki`). The command line carries ``verity.usrhash=`` for
exactly the /usr image built with it, so a payload's one kernel blob plus its USR partition is a
complete, self-checking slot (ADR 0011). With Secure Boot off, systemd-stub uses the embedded
command line when the loader passes none, which our entries never do.
"""

from __future__ import annotations

from pathlib import Path

from railcar.agent.slots import Slot
from railcar.image.bootentries import (
    FIRST_BOOT_FLAG,
    LOADER_CONF,
    MtoolsEsp,
    SystemdBootEntries,
)
from railcar.image.layout import FRESH_USR_A, FRESH_USR_B, VerityGeometry, derived_uuid
from railcar.image.spec import ImageSpec
from railcar.image.uki import write_uki
from railcar.runner import run

# systemd-stub(7) (systemd 252): section addresses for unified kernel images.
SECTION_VMA = {".osrel": 0x20000, ".cmdline": 0x30000, ".linux": 0x2000000, ".initrd": 0x3000000}


def kernel_cmdline(spec: ImageSpec, root_hash: str, geometry: VerityGeometry) -> str:
    """The command line of a slot's kernel (Flatcar's names where Flatcar has one)."""
    args = [
        "root=LABEL=ROOT",
        "rootfstype=ext4",
        "rw",
        "mount.usr=/dev/mapper/usr",
        "mount.usrfstype=erofs",
        "mount.usrflags=ro",
        f"verity.usrhash={root_hash}",
        f"railcar.verity_hash_offset={geometry.hash_offset}",
        # A verity error panics (veritysetup --panic-on-corruption); panic= reboots, and a
        # failure in the initrd reboots rather than waiting in an emergency shell.
        "panic=10",
        "rd.emergency=reboot",
        "rd.shell=0",
        # Ignition's platform (its qemu provider reads the config from fw_cfg); Ignition reads
        # ignition.platform.id from the kernel command line (ignition-generator, 2.14).
        f"ignition.platform.id={spec.oem_id}",
        *spec.cmdline,
    ]
    return " ".join(args)


def build_uki(
    stage: Path,
    kernel_version: str,
    cmdline: str,
    os_release: str,
    out: Path,
    *,
    timestamp: int,
) -> Path:
    """A unified kernel image from the staged tree's kernel, initrd and EFI stub, stamped with
    ``timestamp`` (SOURCE_DATE_EPOCH)."""
    efi = stage / "usr/lib/systemd/boot/efi"
    sections = {
        ".osrel": os_release.encode(),
        ".cmdline": cmdline.encode() + b"\0",
        ".linux": (stage / "boot" / f"vmlinuz-{kernel_version}").read_bytes(),
        ".initrd": (stage / "boot" / f"initrd.img-{kernel_version}").read_bytes(),
    }
    layout = [(name, data, SECTION_VMA[name]) for name, data in sections.items()]
    write_uki((efi / "linuxx64.efi.stub").read_bytes(), layout, out, timestamp=timestamp)
    return out


def make_esp(
    spec: ImageSpec, stage: Path, uki: Path, out: Path, *, size_bytes: int, partition_a: int
) -> Path:
    """The ESP image: systemd-boot, slot A's kernel and entry, loader.conf, first-boot flag."""
    out.unlink(missing_ok=True)
    with open(out, "wb") as f:
        f.truncate(size_bytes)
    volume_id = derived_uuid(spec, "esp").hex[:8]
    # --invariant fixes the FAT's times; the volume id after it replaces its constant one.
    run(["mkfs.vfat", "-F", "32", "-n", "EFI-SYSTEM", "--invariant", "-i", volume_id, out])
    esp = MtoolsEsp(out, timestamp=spec.source_date_epoch)
    loader = stage / "usr/lib/systemd/boot/efi" / f"systemd-boot{spec.architecture.efi_suffix}.efi"
    esp.put(f"EFI/BOOT/BOOT{spec.architecture.efi_suffix.upper()}.EFI", loader)
    esp.write("loader/loader.conf", LOADER_CONF.encode())
    esp.write(FIRST_BOOT_FLAG, b"")
    entries = SystemdBootEntries(esp, name=spec.name)
    entries.install(Slot.A, uki, spec.version)
    entries.apply(
        {Slot.A: FRESH_USR_A, Slot.B: FRESH_USR_B},
        {Slot.A: partition_a, Slot.B: partition_a + 1},
        {Slot.A: spec.version, Slot.B: None},
    )
    return out
