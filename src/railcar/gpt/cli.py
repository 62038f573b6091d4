"""``railcar gpt``: show, repair and change gptprio attributes of a GPT disk, like ``cgpt``.

Works on disk image files and block devices alike; partitions are named by number (``-i``,
1-based as in cgpt), label (``-l``) or unique GUID (``-u``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import click

from railcar.clitools import RailcarGroup, emit_json, json_option
from railcar.gpt.disk import CopyStatus, DiskState, GptDisk
from railcar.gpt.partition_type import PartitionType
from railcar.gpt.prio import is_usr, next_boot, prio_of, prioritize, set_prio
from railcar.gpt.table import GptEntry, GptTable

_disk = click.argument(
    "disk", type=click.Path(path_type=Path, exists=True, dir_okay=False, readable=True)
)
_nibble = click.IntRange(0, 15)


@click.group(cls=RailcarGroup)
def gpt() -> None:
    """GPT partition tables and the gptprio A/B boot attributes, compatible with cgpt."""


def _partition_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("-u", "--uuid", "unique_guid", type=click.UUID, help="Unique GUID.")(f)
    f = click.option("-l", "--label", help="Partition label, e.g. USR-B.")(f)
    f = click.option("-i", "--index", "number", type=click.IntRange(1), help="Partition number.")(f)
    return f


def _resolve(
    table: GptTable, number: int | None, label: str | None, unique_guid: UUID | None
) -> int:
    if number is None and label is None and unique_guid is None:
        raise click.UsageError("name a partition with -i NUMBER, -l LABEL or -u GUID")
    if number is not None:
        if label is not None or unique_guid is not None:
            raise click.UsageError("-i cannot be combined with -l or -u")
        table.partition(number)
        return number
    return table.find(label=label, unique_guid=unique_guid)


def _copy_json(status: CopyStatus) -> dict[str, Any]:
    return {"lba": status.lba, "health": str(status.health), "problem": status.problem}


def _partition_json(table: GptTable, number: int) -> dict[str, Any]:
    entry = table.entries[number - 1]
    return {
        "number": number,
        "label": entry.label,
        "type": PartitionType.name_of(entry.type_guid),
        "type_guid": str(entry.type_guid),
        "unique_guid": str(entry.unique_guid),
        "first_lba": entry.first_lba,
        "last_lba": entry.last_lba,
        "size_sectors": entry.size_sectors,
        "attributes": f"{entry.attributes:#018x}",
        "gptprio": prio_of(entry).as_dict() if is_usr(entry) else None,
    }


def _state_json(disk: Path, state: DiskState) -> dict[str, Any]:
    table = state.table
    return {
        "disk": str(disk),
        "disk_guid": str(table.disk_guid),
        "sector_size": table.sector_size,
        "disk_sectors": state.disk_sectors,
        "read_from": str(state.source),
        "primary": _copy_json(state.primary),
        "backup": _copy_json(state.backup),
        "protective_mbr_problem": state.mbr_problem,
        "partitions": [_partition_json(table, n) for n in table.used_numbers()],
    }


def _prio_text(table: GptTable, number: int) -> str:
    entry = table.entries[number - 1]
    prio = prio_of(entry)
    return (
        f"{number:>3}  {entry.label:<12} priority={prio.priority} tries={prio.tries}"
        f" successful={int(prio.successful)}  {entry.unique_guid}"
    )


def _warn_problems(state: DiskState) -> None:
    for problem in state.problems():
        click.echo(f"railcar: warning: {problem}", err=True)
    if state.needs_repair:
        click.echo("hint: 'railcar gpt repair DISK' rewrites the bad copy", err=True)


def _report(disk: Path, state: DiskState, json_output: bool) -> None:
    """After a change: the USR partitions' gptprio."""
    if json_output:
        emit_json(_state_json(disk, state))
        return
    for n in state.table.used_numbers():
        if is_usr(state.table.entries[n - 1]):
            click.echo(_prio_text(state.table, n))


@gpt.command("show")
@_disk
@click.option("-i", "--index", "number", type=click.IntRange(1), help="Only this partition.")
@json_option
def show(disk: Path, number: int | None, json_output: bool) -> None:
    """Show both copies' health and every partition, with gptprio for USR partitions."""
    with GptDisk.open(disk) as gdisk:
        state = gdisk.state
    table = state.table
    numbers = table.used_numbers() if number is None else [number]
    if number is not None:
        table.partition(number)
    if json_output:
        data = _state_json(disk, state)
        if number is not None:
            data["partitions"] = [_partition_json(table, number)]
        emit_json(data)
        return
    _warn_problems(state)
    click.echo(
        f"disk {disk}: GUID {table.disk_guid}, {state.disk_sectors} sectors of"
        f" {table.sector_size} B; read from the {state.source} copy"
        f" (primary {state.primary.health}, backup {state.backup.health})"
    )
    click.echo(f"{'start':>12} {'size':>12} {'part':>5}  contents")
    for n in numbers:
        entry = table.entries[n - 1]
        click.echo(f"{entry.first_lba:>12} {entry.size_sectors:>12} {n:>5}  {entry.label}")
        click.echo(f"{'':>33}Type: {PartitionType.name_of(entry.type_guid)}")
        click.echo(f"{'':>33}UUID: {entry.unique_guid}")
        if is_usr(entry):
            prio = prio_of(entry)
            click.echo(
                f"{'':>33}Attr: priority={prio.priority} tries={prio.tries}"
                f" successful={int(prio.successful)}"
            )
        elif entry.attributes:
            click.echo(f"{'':>33}Attr: {entry.attributes:#018x}")


@gpt.command("prioritize")
@_disk
@_partition_options
@click.option(
    "-P", "--max-priority", type=click.IntRange(1, 15), help="Highest priority to use [groups]."
)
@click.option("-f", "--friends", is_flag=True, help="Move the partition's whole group up.")
@json_option
def prioritize_cmd(
    disk: Path,
    number: int | None,
    label: str | None,
    unique_guid: UUID | None,
    max_priority: int | None,
    friends: bool,
    json_output: bool,
) -> None:
    """Give a USR partition the highest priority and re-rank the others (cgpt prioritize)."""
    with GptDisk.open(disk, writable=True) as gdisk:
        target = _resolve(gdisk.table, number, label, unique_guid)
        state = gdisk.update(
            lambda entries: prioritize(entries, target, max_priority=max_priority, friends=friends)
        )
    _report(disk, state, json_output)


@gpt.command("set")
@_disk
@_partition_options
@click.option("-P", "--priority", type=_nibble, help="Priority 0-15 (0: never boot).")
@click.option("-T", "--tries", type=_nibble, help="Boot attempts left, 0-15.")
@click.option("-S", "--successful", type=click.IntRange(0, 1), help="1 once a boot succeeded.")
@json_option
def set_cmd(
    disk: Path,
    number: int | None,
    label: str | None,
    unique_guid: UUID | None,
    priority: int | None,
    tries: int | None,
    successful: int | None,
    json_output: bool,
) -> None:
    """Set priority, tries or successful of a partition (cgpt add -P/-T/-S)."""
    if priority is None and tries is None and successful is None:
        raise click.UsageError("give at least one of -P, -T and -S")
    with GptDisk.open(disk, writable=True) as gdisk:
        target = _resolve(gdisk.table, number, label, unique_guid)
        state = gdisk.update(
            lambda entries: set_prio(
                entries,
                target,
                priority=priority,
                tries=tries,
                successful=None if successful is None else bool(successful),
            )
        )
    _report(disk, state, json_output)


@gpt.command("next")
@_disk
@json_option
def next_cmd(disk: Path, json_output: bool) -> None:
    """Pick the USR partition to boot and spend one try, as GRUB's gptprio.next; print its GUID."""
    chosen: list[int] = []

    def choose(entries: tuple[GptEntry, ...]) -> tuple[GptEntry, ...]:
        number, updated = next_boot(entries)
        chosen.append(number)
        return updated

    with GptDisk.open(disk, writable=True) as gdisk:
        state = gdisk.update(choose)
    number = chosen[0]
    if json_output:
        emit_json(_partition_json(state.table, number))
        return
    click.echo(str(state.table.entries[number - 1].unique_guid))


@gpt.command("repair")
@_disk
@json_option
def repair(disk: Path, json_output: bool) -> None:
    """Rewrite a damaged or stale GPT copy from the good one (cgpt repair)."""
    with GptDisk.open(disk, writable=True) as gdisk:
        before = gdisk.state
        after = gdisk.repair()
    repaired = before.copy_problems()
    if json_output:
        emit_json({"repaired": repaired, "state": _state_json(disk, after)})
        return
    for problem in repaired:
        click.echo(f"repaired {problem}")
    if not repaired:
        click.echo("both GPT copies are valid and agree; nothing to do")
    if after.mbr_problem:
        click.echo(f"railcar: warning: protective MBR (not changed): {after.mbr_problem}", err=True)
