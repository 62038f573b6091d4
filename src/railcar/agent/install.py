"""Installing a downloaded payload into the passive USR slot, and switching to it.

The order, after update_engine's pipeline (``shared/spec/image-and-payload.md`` §2.3, §4.7) with
Railcar's crash-safety additions:

1. :meth:`Installer.verify` — signature over the signed range with the trusted keys, a read-only
   pass over the local file **before any byte of the slot is written** (the download already
   checked size and base64 SHA-256 against the Omaha response, :mod:`railcar.agent.download`);
2. :meth:`Installer.install` — the target slot (3↔4, never the booted one) is taken out of the
   boot order (P0 T0 S0), then the payload is applied with :mod:`railcar.payload.apply`: blob
   hashes, the signature again over the bytes applied, then SHA-256 of the written slot and
   kernel. The kernel goes to ``<boot_dir>/railcar/vmlinuz-a|b`` under a temporary name and is
   renamed into place once verified and fsynced (then the directory is fsynced);
3. the bootloader-specific part (:class:`BootEntries`; by default nothing beyond the kernel —
   the image builder adds systemd-boot entries);
4. the optional post-install hook (:class:`PostinstallHook`); a failure fails the update with
   update_engine's PostinstallRunnerError (5);
5. :meth:`Installer.switch` — ``BootControl.mark_install_target``: S0 T1 and prioritize.

A crash anywhere before 5 leaves the target slot unbootable (priority 0) and the booted slot
untouched; the GPT write in 5 is itself crash-safe (:mod:`railcar.gpt.disk`).

Slots are found by :class:`SlotLocator`: :class:`ImageSlots` for a disk image file (writes go to
the partition's byte range, found in the GPT; no root, no loop device), :class:`DeviceSlots`
for a node (``/dev/disk/by-partuuid/<fixed USR GUID>``, else ``/dev/disk/by-partlabel``).

Errors::

    AgentError
    └── InstallError          ``code`` is the update_engine ActionExitCode to report
        └── PostinstallError  the post-install hook failed (5)
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from railcar.agent.disk import fsync_dir
from railcar.agent.errors import AgentError
from railcar.agent.slots import BootControl, Slot, SlotError, find_slot, other
from railcar.errors import RailcarError
from railcar.gpt import GptDisk
from railcar.gpt.errors import GptError
from railcar.omaha.model import ErrorCode
from railcar.payload import errors as pe
from railcar.payload.apply import apply_file_or_stream, verify_signature
from railcar.payload.reader import PayloadReader
from railcar.payload.signing import TrustedKeys
from railcar.progress import NO_PROGRESS, Progress
from railcar.runner import ToolError
from railcar.runner import run as run_tool

log = logging.getLogger(__name__)

# update_engine action_processor.h ActionExitCode values not in railcar.omaha.model (spec §3.2).
INSTALL_DEVICE_OPEN_ERROR = 7  # kActionCodeInstallDeviceOpenError
SET_BOOTABLE_FLAG_ERROR = 6  # kActionCodeSetBootableFlagError (unused upstream; ADR 0008)
DOWNLOAD_OPERATION_EXECUTION_ERROR = 28  # kActionCodeDownloadOperationExecutionError
SIGNATURE_MISSING_IN_MANIFEST = 22  # kActionCodeDownloadSignatureMissingInManifest
PUBKEY_VERIFICATION_ERROR = 18  # kActionCodeDownloadPayloadPubKeyVerificationError

DEFAULT_BOOT_DIR = Path("/boot")
KERNEL_DIR_NAME = "railcar"  # Flatcar: /boot/flatcar/vmlinuz-{a,b} (spec §6.7)
# Where the new /usr carries its post-install program (Flatcar: /usr/postinst, spec §4.7).
NEW_USR_HOOK = Path("lib/railcar/postinst")
SECTOR_BYTES = 512
HOOK_TIMEOUT = 600.0  # Railcar choice: a hook that runs for 10 minutes is stuck


class InstallError(AgentError):
    """Installing or switching failed; ``code`` is update_engine's ActionExitCode for it."""

    def __init__(self, code: int, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{message} (error code {code})", hint=hint)
        self.code = code


class PostinstallError(InstallError):
    """The post-install hook failed."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.POSTINSTALL_RUNNER_ERROR, message)


def kernel_path(boot_dir: Path, slot: Slot) -> Path:
    """``<boot_dir>/railcar/vmlinuz-a|b`` (update_engine GetKernelPath: target 3 → -a)."""
    return boot_dir / KERNEL_DIR_NAME / f"vmlinuz-{slot.value.lower()}"


def payload_error_code(exc: pe.PayloadError) -> int:
    """The update_engine ActionExitCode for a payload that failed to verify or apply (§3.2)."""
    if isinstance(exc, pe.UnsignedPayloadError):
        return SIGNATURE_MISSING_IN_MANIFEST
    if isinstance(exc, pe.SignatureError):
        return PUBKEY_VERIFICATION_ERROR
    if isinstance(exc, pe.BadMagicError):
        return ErrorCode.DOWNLOAD_INVALID_METADATA_MAGIC
    if isinstance(
        exc, pe.ManifestDecodeError | pe.ManifestTooLargeError | pe.UnsupportedVersionError
    ):
        return ErrorCode.DOWNLOAD_MANIFEST_PARSE_ERROR
    if isinstance(exc, pe.HashMissingError):
        return ErrorCode.DOWNLOAD_OPERATION_HASH_MISSING
    if isinstance(exc, pe.HashMismatchError):
        return ErrorCode.DOWNLOAD_OPERATION_HASH_MISMATCH
    if isinstance(exc, pe.ExtentError | pe.UnsupportedOperationError):
        return DOWNLOAD_OPERATION_EXECUTION_ERROR
    if isinstance(exc, pe.TargetVerificationError):
        if exc.message.startswith("kernel"):
            return ErrorCode.NEW_KERNEL_VERIFICATION_ERROR
        return ErrorCode.NEW_ROOTFS_VERIFICATION_ERROR
    if isinstance(exc, pe.TargetError):
        return INSTALL_DEVICE_OPEN_ERROR
    return ErrorCode.DOWNLOAD_PAYLOAD_VERIFICATION_ERROR


@dataclass(frozen=True)
class SlotTarget:
    """Where a slot's bytes go: a device, or a byte range ``window`` of an image file."""

    path: Path
    window: tuple[int, int] | None = None  # (offset, length) in bytes

    def describe(self) -> str:
        if self.window is None:
            return str(self.path)
        offset, length = self.window
        return f"{self.path} bytes {offset}..{offset + length}"


class SlotLocator(Protocol):
    def target(self, slot: Slot) -> SlotTarget: ...


class ImageSlots:
    """Slots inside a disk image file: each partition's byte range from the GPT."""

    def __init__(self, image: Path) -> None:
        self.image = image

    def target(self, slot: Slot) -> SlotTarget:
        with GptDisk.open(self.image) as disk:
            entry = disk.table.entries[find_slot(disk.table, slot) - 1]
            sector = disk.sector_size
        return SlotTarget(self.image, (entry.first_lba * sector, entry.size_sectors * sector))


class DeviceSlots:
    """Slots on a node: the partition device named by the slot's fixed GUID, else its label."""

    def __init__(
        self,
        by_partuuid: Path = Path("/dev/disk/by-partuuid"),
        by_partlabel: Path = Path("/dev/disk/by-partlabel"),
    ) -> None:
        self.by_partuuid, self.by_partlabel = by_partuuid, by_partlabel

    def target(self, slot: Slot) -> SlotTarget:
        for candidate in (self.by_partuuid / str(slot.uuid), self.by_partlabel / slot.label):
            if candidate.exists():
                return SlotTarget(candidate.resolve())
        raise InstallError(
            INSTALL_DEVICE_OPEN_ERROR,
            f"slot {slot.value}: neither {self.by_partuuid / str(slot.uuid)} nor "
            f"{self.by_partlabel / slot.label} exists",
            hint="is this a Flatcar-layout disk? USR-A and USR-B are partitions 3 and 4",
        )


class BootEntries(Protocol):
    """The bootloader-specific part of an install (completed by the image builder)."""

    def install(self, slot: Slot, kernel: Path, new_version: str) -> None: ...


class KernelOnly:
    """GRUB with gptprio needs nothing beyond the kernel file at its fixed path."""

    def install(self, slot: Slot, kernel: Path, new_version: str) -> None:
        pass


class PostinstallHook(Protocol):
    """Runs after the slot and kernel are written and before the switch; raises
    :class:`PostinstallError` to fail the update."""

    def run(self, slot: Slot, target: SlotTarget, kernel: Path, new_version: str) -> None: ...


def _hook_env(slot: Slot, target: SlotTarget, kernel: Path, version: str) -> dict[str, str]:
    env = {
        **os.environ,
        "RAILCAR_SLOT": slot.value,
        "RAILCAR_NEW_VERSION": version,
        "RAILCAR_KERNEL": str(kernel),
        "RAILCAR_TARGET": str(target.path),
    }
    if target.window is not None:
        env["RAILCAR_TARGET_OFFSET"], env["RAILCAR_TARGET_LENGTH"] = map(str, target.window)
    return env


def _run_hook(argv: Sequence[str], env: dict[str, str]) -> None:
    try:
        done = subprocess.run(
            list(argv), env=env, capture_output=True, text=True, timeout=HOOK_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostinstallError(f"post-install hook {shlex.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        raise PostinstallError(
            f"post-install hook {shlex.join(argv)} exited with {done.returncode}: {tail}"
        )


class CommandHook:
    """A hook command from the configuration, run as ``CMD… TARGET KERNEL=<path>`` (the
    arguments update_engine gives ``/usr/postinst``) with ``RAILCAR_*`` in its environment.
    On a disk image, where the new /usr cannot be mounted, this is the only kind of hook."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)

    def run(self, slot: Slot, target: SlotTarget, kernel: Path, new_version: str) -> None:
        argv = [*self.argv, str(target.path), f"KERNEL={kernel}"]
        _run_hook(argv, _hook_env(slot, target, kernel, new_version))


class NewUsrHook:
    """The new /usr's own post-install program: the slot is mounted read-only and
    ``<mnt>/lib/railcar/postinst`` runs if present (update_engine PostinstallRunnerAction)."""

    def __init__(self, relative: Path = NEW_USR_HOOK) -> None:
        self.relative = relative

    def run(self, slot: Slot, target: SlotTarget, kernel: Path, new_version: str) -> None:
        if target.window is not None:
            return  # an image's partition cannot be mounted without a loop device
        with tempfile.TemporaryDirectory(prefix="railcar-postinst-") as mnt:
            try:
                run_tool(["mount", "-o", "ro", str(target.path), mnt])
            except ToolError as exc:
                raise PostinstallError(f"cannot mount the new /usr: {exc}") from exc
            try:
                program = Path(mnt) / self.relative
                if program.exists():
                    argv = [str(program), str(target.path), f"KERNEL={kernel}"]
                    _run_hook(argv, _hook_env(slot, target, kernel, new_version))
            finally:
                run_tool(["umount", mnt])


@dataclass(frozen=True)
class Installed:
    slot: Slot
    target: SlotTarget
    kernel: Path | None


class Installer:
    """Verifies, writes and switches to the slot that is not booted."""

    def __init__(
        self,
        slots: SlotLocator,
        boot: BootControl,
        trusted: TrustedKeys,
        *,
        boot_dir: Path = DEFAULT_BOOT_DIR,
        entries: BootEntries | None = None,
        hook: PostinstallHook | None = None,
        progress: Progress = NO_PROGRESS,
        workers: int | None = None,
    ) -> None:
        self.slots, self.boot, self.trusted = slots, boot, trusted
        self.boot_dir = boot_dir
        self.entries = entries or KernelOnly()
        self.hook = hook
        self.progress = progress
        self.workers = workers

    @property
    def target_slot(self) -> Slot:
        """The passive slot: update_engine GetInstallDev swaps 3↔4."""
        return other(self.boot.booted_slot())

    def verify(self, payload: Path) -> None:
        """Signature check over the local file; nothing is written."""
        with _reading(payload) as f:
            verify_signature(f, self.trusted)

    def install(self, payload: Path, new_version: str) -> Installed:
        """Steps 2–4 of the module docstring; the slot is left unbootable until :meth:`switch`."""
        slot = self.target_slot
        try:
            self.boot.mark_unbootable(slot)
            target = self.slots.target(slot)
        except (SlotError, GptError) as exc:
            raise InstallError(INSTALL_DEVICE_OPEN_ERROR, str(exc)) from exc
        kernel = kernel_path(self.boot_dir, slot) if _has_kernel(payload) else None
        try:
            if kernel is not None:
                kernel.parent.mkdir(parents=True, exist_ok=True)
                # The slot no longer boots (above), so its old kernel is garbage: removing it
                # first leaves room on a small ESP for the new one (two unified kernels and a
                # temporary copy need not fit side by side).
                kernel.unlink(missing_ok=True)
            apply_file_or_stream(
                payload,
                None,
                target.path,
                kernel,
                self.trusted,
                workers=self.workers,
                progress=self.progress,
                window=target.window,
            )
            if kernel is not None:
                fsync_dir(kernel.parent)
        except pe.PayloadError as exc:
            raise InstallError(payload_error_code(exc), f"slot {slot.value}: {exc}") from exc
        except OSError as exc:
            raise InstallError(
                INSTALL_DEVICE_OPEN_ERROR, f"slot {slot.value} ({target.describe()}): {exc}"
            ) from exc
        log.info("wrote %s to slot %s (%s)", new_version, slot.value, target.describe())
        written_kernel = kernel if kernel is not None else kernel_path(self.boot_dir, slot)
        try:
            self.entries.install(slot, written_kernel, new_version)
        except (RailcarError, OSError) as exc:
            raise InstallError(SET_BOOTABLE_FLAG_ERROR, f"boot entries: {exc}") from exc
        if self.hook is not None:
            self.hook.run(slot, target, written_kernel, new_version)
        return Installed(slot, target, kernel)

    def switch(self) -> Slot:
        """Make the freshly written slot boot next, once (S0 T1, prioritize)."""
        slot = self.target_slot
        try:
            self.boot.mark_install_target(slot)
        except (SlotError, GptError, OSError) as exc:
            message = f"switching to slot {slot.value}: {exc}"
            raise InstallError(SET_BOOTABLE_FLAG_ERROR, message) from exc
        return slot


@contextmanager
def _reading(payload: Path) -> Iterator[BinaryIO]:
    """The payload file open for reading; payload and read errors become InstallErrors."""
    try:
        with open(payload, "rb") as f:
            yield f
    except pe.PayloadError as exc:
        raise InstallError(payload_error_code(exc), f"payload {payload}: {exc}") from exc
    except OSError as exc:
        raise InstallError(
            ErrorCode.DOWNLOAD_WRITE_ERROR, f"cannot read payload {payload}: {exc.strerror}"
        ) from exc


def _has_kernel(payload: Path) -> bool:
    with _reading(payload) as f:
        return PayloadReader(f).layout.kernel_info is not None
