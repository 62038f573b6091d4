"""What every ``railcar`` sub-command shares: error reporting, JSON output, progress choice.

Exit codes: 0 success; 1 a :class:`~railcar.errors.RailcarError` or an I/O failure, reported as
``railcar: error: …`` (plus ``hint: …``) on stderr; 2 wrong usage (click); 130 interrupted.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Mapping
from typing import Any

import click

from railcar.errors import RailcarError
from railcar.progress import NO_PROGRESS, Progress, for_terminal


class RailcarGroup(click.Group):
    """A click group that turns Railcar errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RailcarError as exc:
            fail(exc.message, hint=exc.hint, code=exc.exit_code)
        except ModuleNotFoundError as exc:
            _refuse(ctx, _missing_package(exc))
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            fail(f"{exc.strerror or exc}{where}")
        except KeyboardInterrupt:
            click.echo("railcar: interrupted", err=True)
            sys.exit(130)


class LazyGroup(RailcarGroup):
    """A group whose sub-commands are imported when one is run, named ``module:attribute``.

    ``railcar agent run`` (started on every node's boot) then imports the agent and not the
    image builder, the server or the VM harness with their dependencies.

    A node's venv has only the agent's packages (the ``server`` and ``build`` extras are left
    out, ADR 0040): a command whose packages are missing is still listed, and running it says
    which package is missing and how to install it, instead of a traceback.
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            try:
                command = getattr(importlib.import_module(module), attribute)
            except ModuleNotFoundError as exc:
                command = _not_installed(cmd_name, _missing_package(exc))
            if not isinstance(command, click.Command) or command.name != cmd_name:
                raise TypeError(f"{self.lazy[cmd_name]} is not the click command {cmd_name!r}")
            self.add_command(command)
        return super().get_command(ctx, cmd_name)


EXTRAS_HINT = "install Railcar with its extras: pip install 'railcar[server,build]'"


def _missing_package(exc: ModuleNotFoundError) -> str:
    """The package whose import failed; ``exc`` again when it is Railcar's own (a broken
    install, not a missing extra)."""
    if not exc.name or exc.name.partition(".")[0] == "railcar":
        raise exc
    return exc.name


def _refuse(ctx: click.Context, package: str) -> None:
    fail(f"'{ctx.command_path}' needs the Python package {package!r}, which is not installed "
         "here", hint=EXTRAS_HINT)  # fmt: skip


def _not_installed(name: str, package: str) -> click.Command:
    """A stand-in for command ``name``, whose module needs ``package``, absent here (a node)."""

    @click.pass_context
    def refuse(ctx: click.Context, args: tuple[str, ...]) -> None:
        _refuse(ctx, package)

    return click.Command(
        name,
        callback=refuse,
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True, "help_option_names": []},
        help=f"Not installed here (needs {package}).",
        short_help=f"Not installed here (needs {package}).",
    )


def fail(message: str, *, hint: str | None = None, code: int = 1) -> None:
    click.echo(f"railcar: error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def progress_for(json_output: bool) -> Progress:
    """Progress on a terminal's stderr, never when a script reads our JSON."""
    return NO_PROGRESS if json_output else for_terminal()


json_option = click.option("--json", "json_output", is_flag=True, help="Print JSON for scripts.")
