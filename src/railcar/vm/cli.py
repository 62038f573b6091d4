"""``railcar vm``: boot a built image in QEMU."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import click

from railcar.clitools import RailcarGroup, emit_json, json_option
from railcar.vm.qemu import Vm, VmConfig

_existing = click.Path(path_type=Path, exists=True, dir_okay=False)

BOOTED_MARKER = "RAILCAR-BOOTED"


@click.group(cls=RailcarGroup)
def vm() -> None:
    """Boot Railcar images in QEMU (UEFI, TCG or KVM, user networking only)."""


@vm.command()
@click.argument("image", type=_existing)
@click.option("--ignition", type=_existing, help="Ignition config passed through fw_cfg.")
@click.option("--ssh-port", type=click.IntRange(1, 65535), help="Forward 127.0.0.1:N to SSH.")
@click.option("--until", "until", metavar="MARKER",
              help=f"Stop once the console shows MARKER (e.g. {BOOTED_MARKER}).")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Give up after this many seconds.")  # fmt: skip
@click.option("--run-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Directory for overlay, variables, console.log (default: temp).")  # fmt: skip
@click.option("--memory", type=click.IntRange(256), default=1024, show_default=True,
              help="Guest memory in MiB.")  # fmt: skip
@json_option
def boot(
    image: Path,
    ignition: Path | None,
    ssh_port: int | None,
    until: str | None,
    timeout: float,
    run_dir: Path | None,
    memory: int,
    json_output: bool,
) -> None:
    """Boot IMAGE (a raw disk from `railcar build`) without changing it.

    Without --until the VM runs until it powers off, --timeout passes or Ctrl-C.
    """
    directory = run_dir or Path(tempfile.mkdtemp(prefix="railcar-vm-"))
    config = VmConfig(
        image=image, run_dir=directory, ignition=ignition, ssh_port=ssh_port, memory_mib=memory
    )
    with Vm(config) as machine:
        if not json_output:
            click.echo(f"vm: {config.accel.value}, console {machine.console}", err=True)
            if ssh_port:
                click.echo(f"vm: ssh -p {ssh_port} core@127.0.0.1", err=True)
        seconds: float | None = None
        if until:
            seconds = machine.wait_for(until, timeout)
        else:
            deadline = time.monotonic() + timeout
            while machine.running() and time.monotonic() < deadline:
                time.sleep(0.5)
    line = next((x for x in machine.console_text().splitlines() if until and until in x), "")
    if json_output:
        emit_json({"accel": config.accel.value, "console": str(machine.console),
                   "marker_seconds": seconds, "marker_line": line.strip()})  # fmt: skip
    elif until:
        click.echo(f"{until} after {seconds:.1f} s: {line.strip()}")
