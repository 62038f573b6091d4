"""systemd-boot entries as a projection of the USR slots' gptprio state (ADR 0011).

Each slot that may boot has one Boot Loader Spec type #1 entry on the ESP,
``loader/entries/railcar-a[+LEFT[-DONE]].conf``, starting that slot's kernel
``/railcar/vmlinuz-a`` — a unified kernel image whose command line carries the slot's verity
root hash. The entry is derived from the slot's gptprio fields:

=====================================  ==============================================
gptprio (spec §2.1)                    entry
=====================================  ==============================================
priority 0                             none (the slot never boots)
successful                             ``railcar-x.conf`` (no counter: always bootable)
not successful, tries T                ``railcar-x+T.conf`` (T attempts, then skipped)
priority P                             ``sort-key railcar-{15-P:02}-{partition}``
=====================================  ==============================================

systemd-boot 252 sorts entries with no tries left last, then by ``sort-key`` ascending, so the
highest priority boots first and ties go to the lower partition number — GRUB's
``gptprio.next`` rule. systemd-boot counts an attempt by renaming ``+T`` to ``+(T-1)-1``
before starting the kernel, as ``gptprio.next`` decrements tries; :meth:`SystemdBootEntries.
observed_tries` reads that back so the GPT can be brought up to date (:mod:`railcar.image.
bootcontrol`).

First boot: while the flag file ``railcar/first_boot`` is on the ESP (the image builder puts it
there), each entry also carries ``options``: the slot kernel's own command line plus
``ignition.firstboot``, so Ignition runs in the initrd (its generator reads only the kernel
command line). With Secure Boot off, systemd-stub passes the loader's options instead of the
embedded ones (systemd-stub(7)). ``SystemdBootControl.finish_first_boot``
(:mod:`railcar.image.bootcontrol`) removes the options, then the flag, once the node is up —
as Flatcar's GRUB turns ``/flatcar/first_boot`` into a kernel argument until Ignition has run
(spec §1, ESP files).

The ESP is reached through :class:`EspFiles`: a mounted directory on a node
(:class:`DirectoryEsp`) or the partition inside a disk image file via mtools (:class:`MtoolsEsp`,
no loop device, no mount).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from railcar.agent.slots import Slot
from railcar.gpt import GptPrio
from railcar.image.errors import DiskAssemblyError
from railcar.image.uki import uki_cmdline

ENTRIES_DIR = "loader/entries"
KERNEL_DIR = "railcar"
_ENTRY = re.compile(r"^railcar-([ab])(?:\+(\d+)(?:-(\d+))?)?\.conf$")

FIRST_BOOT_FLAG = f"{KERNEL_DIR}/first_boot"
# Ignition's dracut generator (ignition-generator, Ignition 2.14): this argument selects
# ignition-complete.target, i.e. a provisioning run.
IGNITION_FIRSTBOOT = "ignition.firstboot"

LOADER_CONF = "timeout 0\nconsole-mode keep\nauto-entries no\nauto-firmware no\neditor no\n"


def version_path(slot: Slot) -> str:
    """The version of the kernel and /usr installed in a slot."""
    return f"{KERNEL_DIR}/version-{slot.value.lower()}"


def kernel_path(slot: Slot) -> str:
    """Where a slot's kernel lives on the ESP (Flatcar: ``/flatcar/vmlinuz-a``)."""
    return f"{KERNEL_DIR}/vmlinuz-{slot.value.lower()}"


@dataclass(frozen=True)
class EntryName:
    slot: Slot
    tries_left: int | None  # None: no boot counting (blessed)
    tries_done: int

    @property
    def filename(self) -> str:
        base = f"railcar-{self.slot.value.lower()}"
        if self.tries_left is None:
            return f"{base}.conf"
        done = f"-{self.tries_done}" if self.tries_done else ""
        return f"{base}+{self.tries_left}{done}.conf"


def parse_entry_name(name: str) -> EntryName | None:
    m = _ENTRY.match(name)
    if m is None:
        return None
    left = None if m[2] is None else int(m[2])
    return EntryName(Slot(m[1].upper()), left, int(m[3] or 0))


def wanted_entry(slot: Slot, prio: GptPrio) -> EntryName | None:
    """The entry a slot with ``prio`` should have, or None when it must not boot."""
    if prio.priority == 0:
        return None
    return EntryName(slot, None if prio.successful else prio.tries, 0)


def entry_text(
    slot: Slot, prio: GptPrio, *, partition: int, version: str, name: str, options: str = ""
) -> str:
    text = (
        f"title {name} {version} (USR-{slot.value})\n"
        f"version {version}\n"
        f"sort-key {name}-{15 - prio.priority:02d}-{partition}\n"
        f"efi /{kernel_path(slot)}\n"
    )
    return text + (f"options {options}\n" if options else "")


class EspFiles(Protocol):
    """The few file operations boot entries need on an ESP (paths relative to its root)."""

    def list(self, directory: str) -> list[str]: ...

    def read(self, path: str) -> bytes: ...

    def write(self, path: str, data: bytes) -> None: ...

    def put(self, path: str, source: Path) -> None: ...

    def remove(self, path: str) -> None: ...

    def holds(self, path: str, source: Path) -> bool:
        """Whether ``path`` on the ESP is the file ``source`` itself."""
        ...


class DirectoryEsp:
    """An ESP mounted at ``root`` (``/boot`` on a node)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, directory: str) -> list[str]:
        d = self.root / directory
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)

    def put(self, path: str, source: Path) -> None:
        self.write(path, source.read_bytes())

    def remove(self, path: str) -> None:
        (self.root / path).unlink(missing_ok=True)

    def holds(self, path: str, source: Path) -> bool:
        target = self.root / path
        return target.exists() and source.exists() and target.samefile(source)


class MtoolsEsp:
    """The ESP inside a disk image file at byte ``offset``, edited with mtools. With a
    ``timestamp`` (a build's SOURCE_DATE_EPOCH, which mtools honours) every file and directory
    written gets that time instead of the clock's."""

    def __init__(self, image: Path, offset: int = 0, *, timestamp: int | None = None) -> None:
        self.target = f"{image}@@{offset}" if offset else str(image)
        self.env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        if timestamp is not None:
            self.env["SOURCE_DATE_EPOCH"] = str(timestamp)

    def _mtool(self, *args: str, data: bytes | None = None) -> bytes:
        proc = subprocess.run(
            [args[0], "-i", self.target, *args[1:]], input=data, capture_output=True, env=self.env,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise DiskAssemblyError(
                f"{args[0]} on the ESP of {self.target} failed: {proc.stderr.decode().strip()}"
            )
        return proc.stdout

    def _mkdirs(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if parts[i - 1] not in self.list("/".join(parts[: i - 1])):
                self._mtool("mmd", f"::/{d}")

    def list(self, directory: str) -> list[str]:
        proc = subprocess.run(
            ["mdir", "-b", "-i", self.target, f"::/{directory}"], capture_output=True, env=self.env,
            check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            return []
        return sorted(
            line.rstrip("/").rsplit("/", 1)[-1]
            for line in proc.stdout.decode().splitlines()
            if line.strip()
        )

    def read(self, path: str) -> bytes:
        return self._mtool("mtype", f"::/{path}")

    def write(self, path: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile() as tmp:
            tmp.write(data)
            tmp.flush()
            self.put(path, Path(tmp.name))

    def put(self, path: str, source: Path) -> None:
        self._mkdirs(path)
        self._mtool("mcopy", "-o", "-D", "o", str(source), f"::/{path}")

    def holds(self, path: str, source: Path) -> bool:
        return False  # a host file is never the image's own

    def remove(self, path: str) -> None:
        if path.rsplit("/", 1)[-1] in self.list(path.rsplit("/", 1)[0] if "/" in path else ""):
            self._mtool("mdel", f"::/{path}")


class SystemdBootEntries:
    """Keeps the ESP's entries equal to the projection of the slots' gptprio state."""

    def __init__(self, esp: EspFiles, *, name: str = "railcar") -> None:
        self.esp = esp
        self.name = name

    def entries(self) -> dict[Slot, list[EntryName]]:
        found: dict[Slot, list[EntryName]] = {slot: [] for slot in Slot}
        for filename in self.esp.list(ENTRIES_DIR):
            parsed = parse_entry_name(filename)
            if parsed is not None:
                found[parsed.slot].append(parsed)
        return found

    def observed_tries(self) -> dict[Slot, int | None]:
        """Tries left per slot as the loader last left them (None: blessed or no entry)."""
        return {
            slot: (names[0].tries_left if names else None) for slot, names in self.entries().items()
        }

    def installed_version(self, slot: Slot) -> str | None:
        """The version :meth:`install` recorded for ``slot`` (None: never installed)."""
        if f"version-{slot.value.lower()}" not in self.esp.list(KERNEL_DIR):
            return None
        return self.esp.read(version_path(slot)).decode().strip() or None

    def first_boot(self) -> bool:
        """Whether the ESP still carries the first-boot flag (Ignition has not run yet)."""
        return FIRST_BOOT_FLAG.rsplit("/", 1)[1] in self.esp.list(KERNEL_DIR)

    def first_boot_options(self, slot: Slot) -> str:
        """The command line a first boot of ``slot`` gets: its kernel's, plus Ignition's flag."""
        return f"{uki_cmdline(self.esp.read(kernel_path(slot)))} {IGNITION_FIRSTBOOT}"

    def install(self, slot: Slot, kernel: Path, version: str) -> None:
        """Put a slot's kernel and version in place; the entry that boots it comes later."""
        if not self.esp.holds(kernel_path(slot), kernel):
            self.esp.put(kernel_path(slot), kernel)
        self.esp.write(version_path(slot), f"{version}\n".encode())

    def apply(
        self,
        states: Mapping[Slot, GptPrio],
        partitions: Mapping[Slot, int],
        versions: Mapping[Slot, str | None],
        *,
        first_boot: bool | None = None,
    ) -> None:
        """Write each slot's wanted entry, then remove its other entries.

        ``first_boot`` (default: whether the flag is on the ESP) adds Ignition's options.

        A slot whose entry already has the wanted counter state keeps its file, so a
        ``+0-1`` left by systemd-boot stays as it is when the GPT says tries 0.
        """
        current = self.entries()
        if first_boot is None:
            first_boot = self.first_boot()
        for slot in Slot:
            wanted = wanted_entry(slot, states[slot])
            version = versions.get(slot) or self.installed_version(slot)
            keep: str | None = None
            if wanted is not None:
                if version is None:
                    raise DiskAssemblyError(
                        f"slot {slot.value} should boot but its version is unknown",
                        hint="install a kernel and version for it first",
                    )
                same = [n for n in current[slot] if n.tries_left == wanted.tries_left]
                keep = same[0].filename if same else wanted.filename
                text = entry_text(
                    slot, states[slot], partition=partitions[slot], version=version,
                    name=self.name,
                    options=self.first_boot_options(slot) if first_boot else "",
                )  # fmt: skip
                self.esp.write(f"{ENTRIES_DIR}/{keep}", text.encode())
            for old in current[slot]:
                if old.filename != keep:
                    self.esp.remove(f"{ENTRIES_DIR}/{old.filename}")
