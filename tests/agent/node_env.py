"""A node on the host for end-to-end agent tests: a Flatcar-layout disk image made by sgdisk,
a config root (release file, update.conf, machine and boot ids), a signed payload, the real
update server in a subprocess, and ``railcar agent`` in a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from railcar.agent.slots import Slot
from railcar.cli import cli
from railcar.gpt import GptDisk, GptPrio, next_boot, prio_of
from railcar.omaha.model import FLATCAR_APP_ID
from railcar.payload import FileKeySigner, generate_payload
from tests.conftest import KeyPair
from tests.gpt.tools import FLATCAR_LAYOUT, MIB, cgpt_prio, make_image
from tests.servers import free_port, running

OLD_VERSION = "1.0.0"
NEW_VERSION = "2.0.0"
MACHINE_ID = "0d9c7b5e3a1f4e2d8c6b4a29f0e1d2c3"
FRESH_A = GptPrio(1, 0, True)  # disk_util leaves USR-A P1 T0 S1 (spec §1.3)
ZERO = GptPrio()
PAYLOAD_NAME = "railcar_production_update.gz"


def railcar(*args: str | Path) -> tuple[int, str]:
    """A ``railcar`` command in-process (the server itself runs as a subprocess)."""
    done = CliRunner().invoke(cli, [str(a) for a in args])
    return done.exit_code, done.output


@dataclass(frozen=True)
class Release:
    """A new /usr image and kernel, and the signed payload that installs them."""

    usr: bytes
    kernel: bytes
    payload: Path


def make_release(
    directory: Path, signer_key: Path, *, usr_bytes: int, seed: int = 7, kernel_bytes: int = 96_000
) -> Release:
    """Incompressible bytes, so the payload is as large as the image."""
    rng = random.Random(seed)
    usr, kernel = rng.randbytes(usr_bytes), rng.randbytes(kernel_bytes)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "usr.img").write_bytes(usr)
    (directory / "vmlinuz").write_bytes(kernel)
    out = directory / PAYLOAD_NAME
    generate_payload(directory / "usr.img", directory / "vmlinuz", out, [FileKeySigner(signer_key)])
    return Release(usr, kernel, out)


@dataclass
class UpdateServer:
    base: str
    token: str
    data: Path

    @property
    def omaha_url(self) -> str:
        return f"{self.base}/v1/update/"

    def instance(self, machine_id: str = MACHINE_ID) -> dict[str, Any]:
        answer = httpx.get(
            f"{self.base}/api/apps/{FLATCAR_APP_ID}/instances/{machine_id}",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        answer.raise_for_status()
        data: dict[str, Any] = answer.json()
        return data

    def events(self, machine_id: str = MACHINE_ID) -> list[tuple[int, int, int | None, str]]:
        """(type, result, error code, previous version), oldest first, from the admin API."""
        answer = httpx.get(
            f"{self.base}/api/apps/{FLATCAR_APP_ID}/instances/{machine_id}/events",
            headers={"Authorization": f"Bearer {self.token}"},
        )
        answer.raise_for_status()
        return [
            (e["event_type"], e["event_result"], e["error_code"], e["previous_version"])
            for e in reversed(answer.json())
        ]


def publish(data: Path, payload: Path, version: str = NEW_VERSION) -> dict[str, Any]:
    code, out = railcar(
        "server", "publish", "--data-dir", data, "--file", payload, "--version", version, "--json"
    )
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


@contextmanager
def update_server(
    data: Path, payload: Path | None, *, public_url: str | None = None, port: int | None = None
) -> Iterator[UpdateServer]:
    """The real server (``railcar server init|publish|run``) on loopback."""
    code, out = railcar("server", "init", "--data-dir", data, "--json")
    assert code == 0, out
    token = json.loads(out)["admin_token"]
    if payload is not None:
        publish(data, payload)
    port = port or free_port()
    cmd = [sys.executable, "-m", "railcar", "server", "run", "--data-dir", str(data)]
    cmd += ["--listen", f"127.0.0.1:{port}"]
    if public_url:
        cmd += ["--public-url", public_url]
    with running(cmd, port) as base:
        yield UpdateServer(base, token, data)


def _layout(usr_mib: int) -> tuple[Any, ...]:
    return tuple(
        replace(p, mib=usr_mib) if p.label in ("USR-A", "USR-B") else p for p in FLATCAR_LAYOUT
    )


@dataclass
class Node:
    """A node's disk image, config root, state dir and boot dir."""

    home: Path
    key: KeyPair
    server_url: str
    usr_mib: int = 8

    def __post_init__(self) -> None:
        self.root = self.home / "root"
        self.state = self.home / "state"
        self.boot = self.home / "boot"
        self.reboot_required = self.home / "run" / "reboot-required"
        self.home.mkdir(parents=True, exist_ok=True)
        self.disk = make_image(self.home / "disk.img", _layout(self.usr_mib), 24 + 2 * self.usr_mib)
        self.old_usr = random.Random(3).randbytes(self.usr_mib * MIB // 2)
        self.write_slot(Slot.A, self.old_usr)
        self.set_release(OLD_VERSION)
        self.set_conf()
        self.write("etc/machine-id", MACHINE_ID + "\n")
        self.new_boot()

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def set_release(self, version: str) -> None:
        self.write(
            "usr/lib/railcar/release",
            f"RAILCAR_RELEASE_VERSION={version}\nRAILCAR_RELEASE_BOARD=amd64-usr\n",
        )

    def set_conf(self, extra: str = "", strategy: str = "off") -> None:
        self.write(
            "etc/railcar/update.conf",
            f"SERVER={self.server_url}\nGROUP=stable\nREBOOT_STRATEGY={strategy}\n{extra}",
        )

    def new_boot(self) -> None:
        self.write("proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")

    def window(self, slot: Slot) -> tuple[int, int]:
        with GptDisk.open(self.disk) as disk:
            entry = disk.table.entries[slot.partition_number - 1]
        return entry.first_lba * 512, entry.size_sectors * 512

    def write_slot(self, slot: Slot, data: bytes) -> None:
        offset, length = self.window(slot)
        assert len(data) <= length
        with open(self.disk, "r+b") as f:
            f.seek(offset)
            f.write(data)

    def slot_bytes(self, slot: Slot, length: int) -> bytes:
        offset, _ = self.window(slot)
        with open(self.disk, "rb") as f:
            f.seek(offset)
            return f.read(length)

    def slot_digest(self, slot: Slot) -> str:
        offset, length = self.window(slot)
        with open(self.disk, "rb") as f:
            f.seek(offset)
            return hashlib.sha256(f.read(length)).hexdigest()

    def kernel(self, slot: Slot) -> Path:
        return self.boot / "railcar" / f"vmlinuz-{slot.value.lower()}"

    def prio(self, slot: Slot) -> GptPrio:
        with GptDisk.open(self.disk) as disk:
            return prio_of(disk.table.entries[slot.partition_number - 1])

    def cgpt(self) -> tuple[GptPrio, GptPrio]:
        return cgpt_prio(self.disk, 3), cgpt_prio(self.disk, 4)

    def next_slot(self) -> Slot:
        """gptprio ``next`` as a dry run: which slot GRUB would boot."""
        with GptDisk.open(self.disk) as disk:
            number, _ = next_boot(disk.table.entries)
        return {3: Slot.A, 4: Slot.B}[number]

    def grub_boots(self) -> Slot:
        """GRUB's gptprio.next on disk: pick a slot and spend one of its tries."""
        with GptDisk.open(self.disk, writable=True) as disk:
            number, entries = next_boot(disk.table.entries)
            disk.update(lambda _: entries)
        return {3: Slot.A, 4: Slot.B}[number]

    def agent_args(self, command: str, booted: Slot, extra: Sequence[str] = ()) -> list[str]:
        args = [sys.executable, "-m", "railcar", "agent", command, "--disk", str(self.disk)]
        args += ["--booted-slot", booted.value, "--state-dir", str(self.state)]
        args += ["--config-root", str(self.root), "--boot-dir", str(self.boot)]
        args += ["--trusted-key", str(self.key.public), "--json"]
        args += ["--reboot-required-file", str(self.reboot_required), *extra]
        if command == "run":
            args.append("--once")
        return args

    def agent(
        self, command: str = "run", booted: Slot = Slot.A, *extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.agent_args(command, booted, extra),
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def status(self, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result
