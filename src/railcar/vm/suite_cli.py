"""``railcar test``: run named VM tests (kola-like) and print a summary."""

from __future__ import annotations

from pathlib import Path

import click

from railcar.clitools import emit_json, json_option


@click.command("test")
@click.argument("patterns", nargs=-1)
@click.option("--list", "list_only", is_flag=True, help="List the tests and exit.")
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("_vm-tests"),
    show_default=True,
    help="Directory for each test's console logs, server database and log.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 16),
    default=1,
    show_default=True,
    help="Tests run at the same time.",
)
@json_option
def test(
    patterns: tuple[str, ...], list_only: bool, output: Path, parallel: int, json_output: bool
) -> None:
    """Run VM tests by name or pattern (e.g. 'update.*'); all when none is given.

    Exit status: 0 when every selected test passed, 1 when one failed.
    """
    from railcar.vm import tests as _registered  # noqa: F401 - registers the tests
    from railcar.vm.suite import REGISTRY, run_tests, select_tests, summary

    chosen = select_tests(REGISTRY, patterns)
    if list_only:
        if json_output:
            emit_json([{"name": t.name, "description": t.description} for t in chosen])
        else:
            for t in chosen:
                click.echo(f"{t.name:<24} {t.description}")
        return

    def progress(outcome: object) -> None:
        if not json_output:
            click.echo(f"... {getattr(outcome, 'name', '')} done", err=True)

    outcomes = run_tests(chosen, output, parallel=parallel, on_done=progress)
    if json_output:
        emit_json([o.as_dict() for o in outcomes])
    else:
        click.echo(summary(outcomes))
    if not all(o.passed for o in outcomes):
        raise SystemExit(1)
