"""``railcar agent``: run the on-node update agent and talk to a running one."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from railcar.agent import dbus_cli
from railcar.agent.dbus_names import BUS_ENV, SYSTEM_BUS
from railcar.agent.install import DEFAULT_BOOT_DIR
from railcar.agent.reboot import DEFAULT_REBOOT_COMMAND
from railcar.agent.slots import Slot
from railcar.agent.status import AgentControl, StatusSnapshot
from railcar.clitools import RailcarGroup, emit_json, json_option

if TYPE_CHECKING:  # the agent's IO stack loads only when an agent command runs
    from railcar.agent.node import NodeOptions

DEFAULT_STATE_DIR = Path("/var/lib/railcar")
NO_BUS = "none"


@click.group(cls=RailcarGroup)
def agent() -> None:
    """The on-node update agent (update_engine-compatible)."""


def attach_front_ends(
    control: AgentControl, bus: str, on_failure: Callable[[Exception], None]
) -> AbstractContextManager[object]:
    """Expose the running agent: update_engine's D-Bus service (``com.coreos.update1`` and
    the Railcar name) on ``bus``, unless it is ``none``; the context lasts as long as the
    agent runs. Losing the bus calls ``on_failure`` (the agent then exits and systemd
    restarts it, as update_engine does)."""
    if bus == NO_BUS:
        return contextlib.nullcontext()
    from railcar.agent.dbus import DbusFrontEnd

    return DbusFrontEnd(control, bus, on_failure=on_failure)


def snapshot_json(snap: StatusSnapshot) -> dict[str, Any]:
    return {
        "last_checked_time": snap.last_checked_time,
        "progress": snap.progress,
        "current_operation": str(snap.current_operation),
        "new_version": snap.new_version,
        "new_size": snap.new_size,
        "running_version": snap.running_version,
        "rolled_back_from": list(snap.rolled_back_from),
        "last_error_code": snap.last_error_code,
    }


def _dir_option(name: str, default: Path, help: str) -> Callable[[Any], Any]:
    return click.option(
        name,
        type=click.Path(path_type=Path, file_okay=False),
        default=default,
        show_default=True,
        help=help,
    )


def _node_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--disk",
            type=click.Path(path_type=Path, exists=True, dir_okay=False),
            help="A disk image holding the USR slots (no root or loop device needed).",
        ),
        click.option(
            "--booted-slot",
            type=click.Choice([s.value for s in Slot]),
            help="The running slot (required with --disk; else found from /usr).",
        ),
        _dir_option(
            "--state-dir",
            DEFAULT_STATE_DIR,
            "Prefs (STATE_DIR/prefs) and the download (STATE_DIR/download).",
        ),
        _dir_option(
            "--config-root",
            Path("/"),
            "Prefix for /usr/share/railcar, /etc/railcar, /etc/flatcar and the ids.",
        ),
        _dir_option("--boot-dir", DEFAULT_BOOT_DIR, "Where BOOT_DIR/railcar/vmlinuz-a|b go."),
        click.option(
            "--trusted-key",
            "trusted_keys",
            type=click.Path(path_type=Path, exists=True, dir_okay=False),
            multiple=True,
            help="Public key payloads must be signed with (repeatable) [the image's].",
        ),
        click.option(
            "--health-gate/--no-health-gate",
            default=True,
            show_default=True,
            help="Commit a new slot only once boot-complete.target is reached.",
        ),
        click.option(
            "--health-timeout",
            type=click.IntRange(1),
            help="Seconds to wait for a healthy boot [HEALTH_CHECK_TIMEOUT or 300].",
        ),
        click.option(
            "--systemctl",
            default="systemctl",
            show_default=True,
            help="The systemctl the health gate asks.",
        ),
        click.option(
            "--reboot-command",
            default=" ".join(DEFAULT_REBOOT_COMMAND),
            show_default=True,
            help="How REBOOT_STRATEGY=reboot reboots.",
        ),
        click.option(
            "--reboot-required-file",
            type=click.Path(path_type=Path, dir_okay=False),
            default=Path("/run/reboot-required"),
            show_default=True,
            help="Created once an update is installed (kured's sentinel).",
        ),
        json_option,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _options(kwargs: dict[str, Any], **extra: Any) -> NodeOptions:
    from railcar.agent.node import NodeOptions, split_words

    booted = kwargs.pop("booted_slot")
    return NodeOptions(
        state_dir=kwargs.pop("state_dir"),
        config_root=kwargs.pop("config_root"),
        disk=kwargs.pop("disk"),
        booted_slot=Slot(booted) if booted else None,
        boot_dir=kwargs.pop("boot_dir"),
        trusted_keys=tuple(kwargs.pop("trusted_keys")),
        reboot_required=kwargs.pop("reboot_required_file"),
        health_gate=kwargs.pop("health_gate"),
        health_timeout=kwargs.pop("health_timeout"),
        reboot_command=split_words(kwargs.pop("reboot_command")),
        systemctl=kwargs.pop("systemctl"),
        **extra,
    )


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="railcar-agent: %(message)s", force=True
    )


@agent.command("run")
@_node_options
@click.option("--once", is_flag=True, help="Start, commit if due, resume, check once, exit.")
@click.option(
    "--interval",
    type=click.IntRange(1),
    help="Seconds between checks, unfuzzed [45 ± 5 min].",
)
@click.option(
    "--initial-delay",
    type=click.FloatRange(0),
    help="Seconds before the first check [7 ± 5 min].",
)
@click.option(
    "--postinstall-hook",
    metavar="COMMAND",
    help="Run COMMAND TARGET KERNEL=PATH before switching [the new /usr's hook on a node].",
)
@click.option(
    "--bus",
    envvar=BUS_ENV,
    default=SYSTEM_BUS,
    show_default=True,
    help=f"D-Bus bus for the update_engine interface: system, session, an address, or "
    f"'{NO_BUS}'; env {BUS_ENV}.",
)
def run(
    once: bool, interval: int | None, initial_delay: float | None, bus: str, **kwargs: Any
) -> None:
    """Run the update agent: check, download, install into the other slot, switch."""
    from railcar.agent.node import build_driver, split_words

    json_output = kwargs.pop("json_output")
    hook = split_words(kwargs.pop("postinstall_hook"))
    options = _options(
        kwargs, interval=interval, initial_delay=initial_delay, postinstall_hook=hook
    )
    _log_to_stderr()
    with ExitStack() as stack:
        driver = build_driver(options, stack)
        if once:
            snap = driver.run_once()
            if json_output:
                emit_json(snapshot_json(snap))
            else:
                click.echo(f"{snap.current_operation} {snap.new_version}")
            return
        signal.signal(signal.SIGTERM, lambda *_: driver.stop())
        with attach_front_ends(driver, bus, on_failure=lambda _: driver.stop()):
            driver.serve()


@agent.command("commit")
@_node_options
def commit(**kwargs: Any) -> None:
    """Run the health gate once; mark the booted slot good if it passes."""
    from railcar.agent.node import NodeError, build_driver

    json_output = kwargs.pop("json_output")
    options = _options(kwargs)
    _log_to_stderr()
    with ExitStack() as stack:
        driver = build_driver(options, stack)
        driver.start()
        verdict = driver.commit_boot()
        boot = driver.io.boot
        slot = boot.booted_slot()
        data = {
            "slot": slot.value,
            "committed": boot.slot_state(slot).successful,
            "verdict": "already committed" if verdict is None else verdict.verdict.value,
            "reason": "" if verdict is None else verdict.reason,
            "next_boot": boot.next_boot().value,
        }
        if json_output:
            emit_json(data)
        if not data["committed"]:
            raise NodeError(f"slot {slot.value} not committed: {data['reason']}")
        if not json_output:
            click.echo(f"slot {slot.value} committed ({data['verdict']})")


@agent.command("first-boot-done")
@_node_options
def first_boot_done(**kwargs: Any) -> None:
    """Take Ignition's first-boot flag off the loader entries and the ESP (run once the node is
    up after its provisioning boot; a no-op after that)."""
    from railcar.agent.node import finish_first_boot

    json_output = kwargs.pop("json_output")
    done = finish_first_boot(_options(kwargs))
    if json_output:
        emit_json({"finished": done})
    else:
        click.echo("first boot finished" if done else "not a first boot: nothing to do")


dbus_cli.install(agent)  # status, check, update, reset-status, watch and the -flags
