"""Installing into the passive slot of a Flatcar-layout image: only that partition's bytes and
the slot's kernel change, the signature is checked before any write, the slot is unbootable
while written, the hook runs before the switch and can veto it; update_engine's codes."""

from __future__ import annotations

import hashlib
import random
import subprocess
from pathlib import Path

import pytest

from railcar.agent.install import (
    BootEntries,
    CommandHook,
    DeviceSlots,
    ImageSlots,
    Installer,
    InstallError,
    PostinstallError,
    kernel_path,
    payload_error_code,
)
from railcar.agent.slots import GptBootControl, Slot
from railcar.gpt import GptDisk, GptPrio
from railcar.payload import FileKeySigner, TrustedKeys, generate_payload
from railcar.payload import errors as pe
from tests.agent.fakes import Boot
from tests.conftest import KeyPair
from tests.gpt.tools import MIB, cgpt_prio, make_image, sgdisk_verify


def _payload(tmp: Path, key: Path, *, kernel: bool = True) -> tuple[bytes, bytes, Path]:
    rng = random.Random(11)
    usr, vmlinuz = rng.randbytes(MIB + 1000), rng.randbytes(50_000)
    (tmp / "usr.img").write_bytes(usr)
    (tmp / "vmlinuz").write_bytes(vmlinuz)
    out = tmp / "update.gz"
    generate_payload(
        tmp / "usr.img", tmp / "vmlinuz" if kernel else None, out, [FileKeySigner(key)]
    )
    return usr, vmlinuz, out


def _installer(
    image: Path,
    boot: Boot,
    keypair: KeyPair,
    tmp_path: Path,
    *,
    hook: CommandHook | None = None,
    entries: BootEntries | None = None,
) -> Installer:
    return Installer(
        ImageSlots(image),
        boot,
        TrustedKeys.from_files([keypair.public]),
        boot_dir=tmp_path / "boot",
        hook=hook,
        entries=entries,
    )


def _window(image: Path, slot: Slot) -> tuple[int, int]:
    with GptDisk.open(image) as disk:
        entry = disk.table.entries[slot.partition_number - 1]
    return entry.first_lba * 512, entry.size_sectors * 512


def _outside(image: Path, slot: Slot) -> str:
    """SHA-256 of every byte of the image except ``slot``'s partition."""
    offset, length = _window(image, slot)
    data = image.read_bytes()
    return hashlib.sha256(data[:offset] + data[offset + length :]).hexdigest()


@pytest.mark.parametrize("booted", [Slot.A, Slot.B])
def test_install_writes_only_the_passive_slot_and_its_kernel(
    tmp_path: Path, keypair: KeyPair, booted: Slot
) -> None:
    image = make_image(tmp_path / "disk.img")
    usr, vmlinuz, payload = _payload(tmp_path, keypair.private)
    target = Slot.B if booted is Slot.A else Slot.A
    before = _outside(image, target)
    boot_dir = tmp_path / "boot"
    with GptDisk.open(image, writable=True) as disk:
        control = GptBootControl(disk, booted)
        if booted is Slot.B:
            control.mark_booted_good()  # as after an earlier update to B: B P2 S1, A P1 S1
        installer = Installer(
            ImageSlots(image), control, TrustedKeys.from_files([keypair.public]), boot_dir=boot_dir
        )
        assert installer.target_slot is target
        installer.verify(payload)
        done = installer.install(payload, "2.0.0")
        assert done.slot is target and done.kernel == kernel_path(boot_dir, target)
        assert control.slot_state(target) == GptPrio()  # unbootable until switched
        if booted is Slot.A:  # B was unbootable already: the install wrote B's bytes only
            assert _outside(image, target) == before
        installer.switch()
    offset, _ = _window(image, target)
    with open(image, "rb") as f:
        f.seek(offset)
        assert f.read(len(usr)) == usr
    letter = target.value.lower()
    assert (boot_dir / "railcar" / f"vmlinuz-{letter}").read_bytes() == vmlinuz
    assert sorted(p.name for p in (boot_dir / "railcar").iterdir()) == [f"vmlinuz-{letter}"]
    assert cgpt_prio(image, target.partition_number) == GptPrio(2, 1, False)
    sgdisk_verify(image)


def test_untrusted_signature_is_refused_before_any_write(
    tmp_path: Path, keypair: KeyPair, other_keypair: KeyPair
) -> None:
    image = make_image(tmp_path / "disk.img")
    _, _, payload = _payload(tmp_path, other_keypair.private)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    boot = Boot()
    installer = Installer(ImageSlots(image), boot, TrustedKeys.from_files([keypair.public]))
    with pytest.raises(InstallError) as caught:
        installer.verify(payload)
    assert caught.value.code == 18  # DownloadPayloadPubKeyVerificationError
    assert "error code 18" in str(caught.value)
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before
    assert boot.calls == []


def test_hook_runs_after_the_write_and_before_the_switch(tmp_path: Path, keypair: KeyPair) -> None:
    image = make_image(tmp_path / "disk.img")
    _, _, payload = _payload(tmp_path, keypair.private)
    log = tmp_path / "hook.log"
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\necho "$RAILCAR_SLOT $RAILCAR_NEW_VERSION $*" > {log}\n')
    hook.chmod(0o755)
    boot = Boot()
    installer = _installer(image, boot, keypair, tmp_path, hook=CommandHook([str(hook)]))
    installer.install(payload, "2.0.0")
    assert boot.calls == ["unbootable B"]
    kernel = tmp_path / "boot" / "railcar" / "vmlinuz-b"
    assert log.read_text().split() == ["B", "2.0.0", str(image), f"KERNEL={kernel}"]
    installer.switch()
    assert boot.calls == ["unbootable B", "target B"]


def test_failing_hook_fails_the_update_with_code_5(tmp_path: Path, keypair: KeyPair) -> None:
    image = make_image(tmp_path / "disk.img")
    _, _, payload = _payload(tmp_path, keypair.private)
    boot = Boot()
    hook = CommandHook(["sh", "-c", "echo oem hook broke >&2; exit 3"])
    installer = _installer(image, boot, keypair, tmp_path, hook=hook)
    with pytest.raises(PostinstallError, match="exited with 3: oem hook broke") as caught:
        installer.install(payload, "2.0.0")
    assert caught.value.code == 5  # PostinstallRunnerError
    assert "target B" not in boot.calls


def test_boot_entries_are_told_slot_kernel_and_version(tmp_path: Path, keypair: KeyPair) -> None:
    image = make_image(tmp_path / "disk.img")
    _, _, payload = _payload(tmp_path, keypair.private, kernel=False)
    told: list[tuple[Slot, Path, str]] = []

    class Entries:
        def install(self, slot: Slot, kernel: Path, new_version: str) -> None:
            told.append((slot, kernel, new_version))

    installer = _installer(image, Boot(), keypair, tmp_path, entries=Entries())
    done = installer.install(payload, "2.0.0")
    assert done.kernel is None  # the payload carries no kernel: none written
    assert not (tmp_path / "boot" / "railcar").exists()
    assert told == [(Slot.B, tmp_path / "boot" / "railcar" / "vmlinuz-b", "2.0.0")]


def test_device_slots_by_partuuid_then_label(tmp_path: Path) -> None:
    by_uuid, by_label = tmp_path / "by-partuuid", tmp_path / "by-partlabel"
    by_uuid.mkdir()
    by_label.mkdir()
    (tmp_path / "sda3").write_bytes(b"")
    (tmp_path / "sda4").write_bytes(b"")
    (by_uuid / str(Slot.A.uuid)).symlink_to(tmp_path / "sda3")
    (by_label / "USR-B").symlink_to(tmp_path / "sda4")
    slots = DeviceSlots(by_uuid, by_label)
    assert slots.target(Slot.A).path == tmp_path / "sda3"
    assert slots.target(Slot.B).path == tmp_path / "sda4"
    (by_label / "USR-B").unlink()
    with pytest.raises(InstallError, match=r"slot B: neither .*e03dd35c.* nor .*USR-B exists"):
        slots.target(Slot.B)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (pe.UnsignedPayloadError("x"), 22),
        (pe.NoTrustedSignatureError("x"), 18),
        (pe.BadMagicError("x"), 21),
        (pe.ManifestDecodeError("x"), 23),
        (pe.HashMismatchError("x"), 29),
        (pe.HashMissingError("x"), 38),
        (pe.ExtentError("x"), 28),
        (pe.TruncatedPayloadError("x"), 12),
        (pe.TargetVerificationError("partition /dev/sda4 does not match"), 15),
        (pe.TargetVerificationError("kernel /boot/x does not match"), 16),
        (pe.TargetError("cannot open"), 7),
    ],
)
def test_payload_errors_map_to_update_engine_codes(error: pe.PayloadError, code: int) -> None:
    assert payload_error_code(error) == code


def test_reinstall_fits_a_small_esp_by_dropping_the_slots_old_kernel(
    tmp_path: Path, keypair: KeyPair
) -> None:
    """The second install into B on an ESP with room for one kernel of B, not two: the old
    kernel of the slot being overwritten goes first (it no longer boots), so no ENOSPC."""
    image = make_image(tmp_path / "disk.img")
    _, vmlinuz, payload = _payload(tmp_path, keypair.private)
    boot_dir = tmp_path / "boot"
    boot_dir.mkdir()
    # 160 KiB: the old kernel (120 KiB) and the new one (49 KiB) do not fit side by side.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(boot_dir)],
                   check=True)  # fmt: skip
    try:
        (boot_dir / "railcar").mkdir()
        (boot_dir / "railcar" / "vmlinuz-b").write_bytes(bytes(120 * 1024))
        with GptDisk.open(image, writable=True) as disk:
            installer = Installer(
                ImageSlots(image), GptBootControl(disk, Slot.A),
                TrustedKeys.from_files([keypair.public]), boot_dir=boot_dir,
            )  # fmt: skip
            installer.verify(payload)
            installer.install(payload, "3.0.1")
        assert (boot_dir / "railcar" / "vmlinuz-b").read_bytes() == vmlinuz
    finally:
        subprocess.run(["umount", str(boot_dir)], check=True)
