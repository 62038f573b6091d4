"""``railcar agent status|check|update|reset-status|watch``: talk to a running agent over D-Bus.

Also update_engine_client's flags (``shared/spec/omaha-delivery.md`` §6.5, update_engine
``src/update_engine/update_engine_client.cc``), with its output: ``railcar agent -status`` and
the console script ``update_engine_client -status`` print ``LAST_CHECKED_TIME=…``,
``PROGRESS=…`` (``%f``), ``CURRENT_OP=…``, ``NEW_VERSION=…``, ``NEW_SIZE=…``, one per line.

The bus is ``--bus`` (sub-commands), else ``$RAILCAR_AGENT_BUS``, else the system bus.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from railcar.agent import dbus_names as n
from railcar.agent.dbus_client import AgentClient, Details, follow_update
from railcar.agent.machine import UpdateStatus
from railcar.agent.status import StatusSnapshot
from railcar.clitools import emit_json, fail, json_option
from railcar.errors import RailcarError

bus_option = click.option(
    "--bus",
    envvar=n.BUS_ENV,
    default=n.SYSTEM_BUS,
    show_default=True,
    help=f"D-Bus bus: system, session or an address (unix:path=…); env {n.BUS_ENV}.",
)
name_option = click.option(
    "--bus-name",
    default=n.BUS_NAME,
    show_default=True,
    help=f"The agent's well-known name ({n.BUS_NAME} or {n.RAILCAR_BUS_NAME}).",
)


def status_dict(snapshot: StatusSnapshot, details: Details | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "last_checked_time": snapshot.last_checked_time,
        "progress": snapshot.progress,
        "current_operation": str(snapshot.current_operation),
        "new_version": snapshot.new_version,
        "new_size": snapshot.new_size,
    }
    if details is not None:
        data["running_version"] = details.running_version
        data["rolled_back_from"] = list(details.rolled_back_from)
        data["last_error_code"] = details.last_error_code
    return data


def _checked(seconds: int) -> str:
    if seconds <= 0:
        return "never"
    when = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return f"{when:%Y-%m-%d %H:%M:%S} UTC ({seconds})"


def _human(snapshot: StatusSnapshot, details: Details | None) -> str:
    lines = [
        f"current operation: {snapshot.current_operation}",
        f"last checked:      {_checked(snapshot.last_checked_time)}",
        f"progress:          {snapshot.progress * 100:.1f}%",
        f"new version:       {snapshot.new_version}",
        f"new size:          {snapshot.new_size}",
    ]
    if details is not None:
        lines.append(f"running version:   {details.running_version}")
        if details.rolled_back_from:
            lines.append(f"rolled back from:  {', '.join(details.rolled_back_from)}")
        if details.last_error_code:
            lines.append(f"last error code:   {details.last_error_code}")
    return "\n".join(lines)


def _one_line(snapshot: StatusSnapshot, json_output: bool) -> str:
    if json_output:
        return json.dumps(status_dict(snapshot, None), sort_keys=True)
    return (
        f"{snapshot.current_operation} progress={snapshot.progress * 100:.1f}% "
        f"new_version={snapshot.new_version} new_size={snapshot.new_size}"
    )


@click.command("status")
@bus_option
@name_option
@json_option
def status(bus: str, bus_name: str, json_output: bool) -> None:
    """Show the agent's status (GetStatus, plus Railcar's details when the agent has them)."""
    with AgentClient(bus, name=bus_name) as client:
        snapshot = client.status()
        details = client.details()
    if json_output:
        emit_json(status_dict(snapshot, details))
    else:
        click.echo(_human(snapshot, details))


def _request(name: str, call: Callable[[AgentClient], None], done: str, doc: str) -> click.Command:
    """A sub-command that makes one call to the agent and says so on stderr."""

    @click.command(name, help=doc)
    @bus_option
    @name_option
    def command(bus: str, bus_name: str) -> None:
        with AgentClient(bus, name=bus_name) as client:
            call(client)
        click.echo(done, err=True)

    return command


check = _request(
    "check",
    AgentClient.attempt_update,
    "update check requested",
    "Ask the agent to check for an update now (AttemptUpdate); return at once.",
)
reset_status = _request(
    "reset-status",
    AgentClient.reset_status,
    "status reset to idle",
    "Set the agent back to IDLE (ResetStatus); refused while an update is in progress.",
)


@click.command("update")
@bus_option
@name_option
@json_option
@click.option(
    "--interval",
    type=click.FloatRange(min=0.01),
    default=5.0,
    show_default=True,
    help="Seconds between GetStatus polls (signals are followed as they come).",
)
def update(bus: str, bus_name: str, json_output: bool, interval: float) -> None:
    """Check for an update and follow it to the end.

    Exit 0 when an update is installed (UPDATED_NEED_REBOOT) or none is available; 1 when the
    attempt reported an error.
    """
    with AgentClient(bus, name=bus_name) as client:
        outcome = follow_update(
            client,
            interval=interval,
            on_status=lambda s: click.echo(_one_line(s, json_output)),
        )
        details = client.details() if outcome.failed else None
    if outcome.failed:
        code = f" (error code {details.last_error_code})" if details else ""
        fail(
            f"the update attempt failed{code}; the agent is back to "
            f"{outcome.final.current_operation}",
            hint="see the agent's log (journalctl -u railcar-agent)",
        )
    if outcome.final.current_operation == UpdateStatus.UPDATED_NEED_REBOOT:
        click.echo(f"update to {outcome.final.new_version} installed; reboot needed", err=True)
    else:
        click.echo("no update available", err=True)


@click.command("watch")
@bus_option
@name_option
@json_option
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many lines.")
def watch(bus: str, bus_name: str, json_output: bool, count: int | None) -> None:
    """Print the current status, then one line per StatusUpdate signal (--json: JSON lines)."""
    with AgentClient(bus, name=bus_name) as client:
        updates = client.updates()  # subscribed before the first GetStatus: nothing is missed
        printed = 0
        snapshot: StatusSnapshot | None = client.status()
        while snapshot is not None:
            click.echo(_one_line(snapshot, json_output))
            sys.stdout.flush()
            printed += 1
            if count is not None and printed >= count:
                return
            snapshot = updates.next()


# -- update_engine_client's flags ----------------------------------------------------------

UE_FLAGS = ("check_for_update", "status", "reset_status", "update", "watch_for_updates")
_UE_HELP = {
    "check_for_update": "update_engine_client: AttemptUpdate, return at once.",
    "status": "update_engine_client: print LAST_CHECKED_TIME=… … NEW_SIZE=… lines.",
    "reset_status": "update_engine_client: ResetStatus.",
    "update": "update_engine_client: AttemptUpdate, poll every 5 s until IDLE or need-reboot.",
    "watch_for_updates": "update_engine_client: print every StatusUpdate signal.",
}


def _ue_options() -> list[click.Option]:
    return [
        click.Option([f"-{flag}", f"--{flag}", flag], is_flag=True, help=_UE_HELP[flag])
        for flag in UE_FLAGS
    ]


def ue_status_block(snapshot: StatusSnapshot) -> str:
    """update_engine_client's ``-status`` output (its printf formats: %PRIi64, %f, %s)."""
    checked, progress, op, version, size = n.status_body(snapshot)
    return (
        f"LAST_CHECKED_TIME={checked}\nPROGRESS={progress:f}\nCURRENT_OP={op}\n"
        f"NEW_VERSION={version}\nNEW_SIZE={size}"
    )


def _ue_signal_block(snapshot: StatusSnapshot) -> str:
    checked, progress, op, version, size = n.status_body(snapshot)
    return (
        f"Got status update:\n  last_checked_time: {checked}\n  progress: {progress:g}\n"
        f"  current_operation: {op}\n  new_version: {version}\n  new_size: {size}"
    )


def run_update_engine_client(bus: str, **flags: bool) -> int:
    """update_engine_client's main(): the first flag in its order wins; returns the exit code."""
    if not any(flags.values()):  # update_engine_client does nothing and exits 0
        click.echo("nothing to do (see --help)", err=True)
        return 0
    with AgentClient(bus) as client:
        if flags.get("reset_status"):
            client.reset_status()
            click.echo("status reset to idle", err=True)
            return 0
        if flags.get("status"):
            click.echo(ue_status_block(client.status()))
            return 0
        if flags.get("check_for_update") or flags.get("update"):
            client.attempt_update()
            if not flags.get("update"):
                return 0
            return _ue_poll(client)
        if flags.get("watch_for_updates"):
            client.require_agent()
            for snapshot in client.updates():
                click.echo(_ue_signal_block(snapshot))
                sys.stdout.flush()
    return 0


def _ue_poll(client: AgentClient, interval: float = 5.0) -> int:
    """``-update``: GetStatus every 5 s (printing it) until IDLE or UPDATED_NEED_REBOOT."""
    while True:
        time.sleep(interval)
        snapshot = client.status()
        click.echo(ue_status_block(snapshot))
        if snapshot.current_operation == UpdateStatus.IDLE:
            click.echo("no update available", err=True)
            return 0
        if snapshot.current_operation == UpdateStatus.UPDATED_NEED_REBOOT:
            click.echo("update installed; reboot needed", err=True)
            return 0


def _ue_bus() -> str:
    return os.environ.get(n.BUS_ENV, n.SYSTEM_BUS)


def _ue_command() -> click.Command:
    def main(**flags: bool) -> None:
        try:
            code = run_update_engine_client(_ue_bus(), **flags)
        except RailcarError as exc:
            fail(exc.message, hint=exc.hint, code=exc.exit_code)
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(code)

    return click.Command(
        "update_engine_client",
        callback=main,
        params=list(_ue_options()),
        help=f"update_engine_client-compatible client for the Railcar agent (bus: ${n.BUS_ENV} "
        "or the system bus).",
    )


update_engine_client = _ue_command()

COMMANDS = (status, check, update, reset_status, watch)


def install(group: click.Group) -> None:
    """Add the client sub-commands and update_engine_client's flags to ``railcar agent``."""
    for command in COMMANDS:
        group.add_command(command)
    group.params.extend(_ue_options())
    group.invoke_without_command = True
    inner: Callable[..., Any] | None = group.callback

    @functools.wraps(inner or (lambda: None))
    def callback(**kwargs: Any) -> Any:
        flags = {flag: bool(kwargs.pop(flag, False)) for flag in UE_FLAGS}
        ctx = click.get_current_context()
        if any(flags.values()):
            if ctx.invoked_subcommand is not None:
                raise click.UsageError("update_engine_client flags take no sub-command")
            ctx.exit(run_update_engine_client(_ue_bus(), **flags))
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help())
            ctx.exit(0)
        return inner(**kwargs) if inner is not None else None

    group.callback = callback
