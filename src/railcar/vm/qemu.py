"""Boot a Railcar disk image in QEMU: UEFI (OVMF), a copy-on-write overlay, serial to a file.

Networking is QEMU's user mode only; the one way in is SSH forwarded from ``127.0.0.1:PORT``.
The guest reaches the host as 10.0.2.2 (QEMU's user-mode gateway). The image file is never
written: the VM writes to a qcow2 overlay in its run directory, next to its own copy of the
OVMF variable store (where systemd-boot keeps its variables).

KVM is used when ``/dev/kvm`` can be opened read-write, else TCG; ``RAILCAR_VM_ACCEL=tcg``
forces TCG (CI figures are TCG's). Under KVM the guest gets the host's CPU; under TCG QEMU's
``max`` model without the fast-string features (:data:`TCG_CPU`, ADR 0025), which
``RAILCAR_VM_CPU`` replaces for experiments.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType

from railcar.errors import RailcarError
from railcar.runner import run
from railcar.vm.qmp import QmpError, hmp, qmp
from railcar.vm.resetwatch import RESET_SILENCE, ResetWatch

# Debian's ovmf package: the 4 MiB flash layout (code read-only, variables per VM).
OVMF_DIRS = (Path("/usr/share/OVMF"),)
OVMF_CODE = "OVMF_CODE_4M.fd"
OVMF_VARS = "OVMF_VARS_4M.fd"
# QEMU docs (fw_cfg): Ignition's qemu platform reads its config from this fw_cfg name.
IGNITION_FW_CFG = "opt/com.coreos/config"
# The guest CPU under TCG (ADR 0025): QEMU's `max` without ERMS and FSRM (Intel SDM vol. 2A,
# CPUID leaf 7 subleaf 0: ERMS is EBX bit 9, FSRM is EDX bit 4). With them a Linux guest clears
# pages with `rep stosb` (arch/x86/lib/clear_page_64.S, clear_page_erms), copies to user space
# and memsets with `rep movsb`/`rep stosb`, and glibc's memcpy picks its `_erms` variants;
# QEMU 7.2's TCG executes such an instruction one element per iteration, so a byte string is
# 5-6x slower than the same work in 8-byte steps (rep stosq, or plain moves). The RCU stalls of
# 15-20 s seen in TCG boots were all in clear_page_erms.
TCG_CPU = "max,erms=off,fsrm=off"


_ANSI = re.compile(r"\x1b(\[[0-9;=?]*[A-Za-z]|[()][A-Z0-9])")


def finished_lines(console: str) -> str:
    """``console`` up to its last newline: without a line the guest is still printing."""
    return console[: console.rfind("\n") + 1]


class VmError(RailcarError):
    """The VM could not be started, or did not reach what was waited for."""


class MarkerTimeoutError(VmError):
    """The console never showed the marker within the timeout."""


class Accel(StrEnum):
    KVM = "kvm"
    TCG = "tcg"


def pick_accel() -> Accel:
    forced = os.environ.get("RAILCAR_VM_ACCEL")
    if forced:
        try:
            return Accel(forced)
        except ValueError:
            raise VmError(f"RAILCAR_VM_ACCEL={forced!r}, expected 'kvm' or 'tcg'") from None
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return Accel.TCG
    os.close(fd)
    return Accel.KVM if _kvm_starts() else Accel.TCG


@functools.cache
def _kvm_starts() -> bool:
    """Whether QEMU can set up a KVM vCPU here (nested hosts may refuse its MSRs and abort).

    QEMU answers QMP commands only from its main loop, which starts after the machine and its
    vCPUs were created and reset, so an answer to ``query-status`` means KVM works and an exit
    means it does not. (Waiting a fixed time for an abort was wrong under I/O load: a QEMU
    slow to start looked like a working one.)"""
    commands = (
        b'{"execute": "qmp_capabilities"}\n{"execute": "query-status"}\n{"execute": "quit"}\n'
    )
    try:
        done = subprocess.run(
            ["qemu-system-x86_64", "-machine", "q35,accel=kvm", "-cpu", "host", "-nodefaults",
             "-display", "none", "-monitor", "none", "-S", "-m", "64", "-qmp", "stdio"],
            input=commands, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False
    return b'"status"' in done.stdout


def firmware() -> tuple[Path, Path]:
    for d in OVMF_DIRS:
        code, variables = d / OVMF_CODE, d / OVMF_VARS
        if code.is_file() and variables.is_file():
            return code, variables
    raise VmError("OVMF firmware not found (OVMF_CODE_4M.fd)", hint="run scripts/setup (ovmf)")


@dataclass
class VmConfig:
    image: Path
    run_dir: Path
    ignition: Path | None = None
    ssh_port: int | None = None
    memory_mib: int = 1024
    cpus: int = 2
    accel: Accel = field(default_factory=pick_accel)
    disk_size: int | None = None  # bytes; a larger virtual disk than the image (cloud volume)
    extra_args: tuple[str, ...] = ()
    # console silence after the guest asked for a reset that counts as a hung reset (ADR 0026)
    reset_silence: float = RESET_SILENCE


class Vm:
    """One guest, run by one QEMU process at a time; use as a context manager so it is always
    stopped (by its PID).

    A watcher thread power-cycles the guest when a reset it asked for hangs (ADR 0026): it
    saves QEMU's state to ``reset-hang-N.txt``, notes it on the console, and starts a new QEMU
    on the same overlay and variable store. The console file is appended to, never truncated,
    by every QEMU of the VM, so it reads as one machine's log."""

    def __init__(self, config: VmConfig) -> None:
        self.config = config
        self.console = config.run_dir / "console.log"
        self.overlay = config.run_dir / "disk.qcow2"
        self.vars = config.run_dir / "OVMF_VARS.fd"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.power_cycles = 0  # hung resets recovered so far
        self._control: Path | None = None  # QMP's directory (Unix socket paths are limited)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def qmp_socket(self) -> Path:
        """QEMU's control socket (QMP) while the VM runs; removed with its directory on stop."""
        if self._control is None:
            raise VmError("the VM has no control socket: it is not running")
        return self._control / "qmp.sock"

    def command(self) -> list[str]:
        c = self.config
        code, _ = firmware()
        cpu = "host" if c.accel is Accel.KVM else os.environ.get("RAILCAR_VM_CPU") or TCG_CPU
        nic = "user,model=virtio-net-pci"
        if c.ssh_port is not None:
            nic += f",hostfwd=tcp:127.0.0.1:{c.ssh_port}-:22"
        cmd = [
            "qemu-system-x86_64",
            "-machine", f"q35,accel={c.accel.value}",
            "-cpu", cpu,
            "-smp", str(c.cpus),
            "-m", str(c.memory_mib),
            "-display", "none",
            "-monitor", "none",
            "-chardev", f"file,id=console,path={self.console},append=on",
            "-serial", "chardev:console",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
            "-drive", f"if=pflash,format=raw,unit=1,file={self.vars}",
            "-drive", f"file={self.overlay},if=virtio,format=qcow2",
            "-nic", nic,
        ]  # fmt: skip
        if self._control is not None:  # made by start()
            cmd += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        if c.ignition is not None:
            cmd += ["-fw_cfg", f"name={IGNITION_FW_CFG},file={c.ignition}"]
        return [*cmd, *c.extra_args]

    def start(self) -> Vm:
        c = self.config
        if not c.image.is_file():
            raise VmError(f"{c.image} is not a disk image file")
        c.run_dir.mkdir(parents=True, exist_ok=True)
        _, variables = firmware()
        shutil.copyfile(variables, self.vars)
        self.overlay.unlink(missing_ok=True)
        info = json.loads(run(["qemu-img", "info", "--output=json", str(c.image)]))
        run(
            ["qemu-img", "create", "-q", "-f", "qcow2", "-F", info["format"], "-b",
             str(c.image.resolve()), str(self.overlay),
             *([str(c.disk_size)] if c.disk_size else [])]
        )  # fmt: skip
        self.console.write_bytes(b"")
        (c.run_dir / "qemu.log").write_bytes(b"")
        if shutil.which("qemu-system-x86_64") is None:
            raise VmError("qemu-system-x86_64 is not installed", hint="run scripts/setup")
        self._control = Path(tempfile.mkdtemp(prefix="railcar-vm-"))  # short: a socket path
        self._launch()
        self.started = time.monotonic()
        self._stopping.clear()
        self._watcher = threading.Thread(target=self._watch, name="railcar-vm-reset", daemon=True)
        self._watcher.start()
        return self

    def _launch(self) -> None:
        with open(self.config.run_dir / "qemu.log", "ab") as qlog:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog
            )

    def running(self) -> bool:
        with self._lock:  # not while a hung reset is being replaced by a new QEMU
            return self.proc is not None and self.proc.poll() is None

    def _watch(self) -> None:
        watch = ResetWatch(self.config.reset_silence)
        while not self._stopping.wait(1.0):
            if not self.running():
                continue
            size, last = self._console_tail()
            if watch.observe(size, last, time.monotonic()):
                self._power_cycle(last, watch.silent_for(time.monotonic()))
                watch.restart(time.monotonic())

    def _console_tail(self) -> tuple[int, str]:
        """The console's size and its last finished line."""
        try:
            with open(self.console, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4096))
                tail = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return 0, ""
        lines = finished_lines(_ANSI.sub("", tail).replace("\r", "")).splitlines()
        return size, lines[-1] if lines else ""

    def _power_cycle(self, last: str, silent: float) -> None:
        """Record the stuck QEMU's state, end it, and boot the same disk in a new one."""
        with self._lock:
            if self._stopping.is_set():
                return
            self.power_cycles += 1
            report = self.config.run_dir / f"reset-hang-{self.power_cycles}.txt"
            try:
                (status,) = qmp(self.qmp_socket, {"execute": "query-status"})
                registers = hmp(self.qmp_socket, "info registers -a")
                state = f"query-status: {json.dumps(status)}\n{registers}"
            except QmpError as e:
                state = f"QEMU's state could not be read: {e}\n"
            report.write_text(
                f"no console output for {silent:.0f} s after {last.strip()!r}\n{state}"
            )
            self._end_process()
            with open(self.console, "a") as console:
                console.write(
                    # not quoting the kernel's line: the note must not look like a reset request
                    f"\n[railcar vm] the guest's reset hung (no output for {silent:.0f} s);"
                    f" QEMU's state is in {report.name}; power-cycling: a new QEMU on the same"
                    " disk and variables\n"
                )
            self._launch()

    def console_text(self) -> str:
        """The serial console so far, without terminal escape sequences."""
        try:
            raw = self.console.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return _ANSI.sub("", raw).replace("\r", "")

    def wait_for(self, marker: str, timeout: float, *, count: int = 1) -> float:
        """Seconds from start until ``marker`` appeared ``count`` times on the console, each
        in a line the guest has finished (so the caller can read the whole line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if finished_lines(self.console_text()).count(marker) >= count:
                return time.monotonic() - self.started
            if not self.running():
                if self.console_text().count(marker) >= count:
                    return time.monotonic() - self.started
                raise VmError(
                    f"QEMU exited (status {self.proc.returncode if self.proc else '?'}) before"
                    f" the console showed {marker!r}; console: {self.console}"
                )
            time.sleep(0.5)
        raise MarkerTimeoutError(
            f"the console did not show {marker!r} within {timeout:.0f} s; console: {self.console}"
        )

    def export_disk(self, dest: Path) -> Path:
        """The VM's disk as it is now (image plus overlay) as a raw file; stop the VM first."""
        if self.running():
            raise VmError("stop the VM before exporting its disk")
        run(["qemu-img", "convert", "-O", "raw", "-S", "4k", str(self.overlay), str(dest)])
        return dest

    def stop(self) -> None:
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None
        self._end_process()
        if self._control is not None:
            shutil.rmtree(self._control, ignore_errors=True)
            self._control = None

    def _end_process(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Vm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
