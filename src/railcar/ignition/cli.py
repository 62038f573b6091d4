"""``railcar ignition``: translate Railcar configs (Butane-style YAML) into Ignition configs.

The translation itself is :func:`railcar.ignition.translate`; this module reads the YAML and any
``local:`` files, prints warnings, optionally runs ``ignition-validate``, and writes the JSON
only once everything has passed (to a temporary file renamed into place for ``-o``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from railcar.clitools import RailcarGroup
from railcar.ignition.errors import LocalFileError, StrictWarningError
from railcar.ignition.source import decode, load
from railcar.ignition.translate import translate
from railcar.ignition.validate import ignition_validate


class DirectoryFiles:
    """``local:`` contents from one directory; names may not climb out of it."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()

    def read(self, name: str) -> bytes:
        path = (self._root / name).resolve()
        if not path.is_relative_to(self._root):
            raise LocalFileError(f"{name!r} is outside the files directory {self._root}")
        try:
            return path.read_bytes()
        except OSError as exc:
            raise LocalFileError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="names are relative to --files-dir",
            ) from exc


@click.group(cls=RailcarGroup)
def ignition() -> None:
    """Provisioning: Ignition configs for Railcar nodes."""


@ignition.command("translate")
@click.argument(
    "config", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the Ignition config here (default: stdout).",
)
@click.option(
    "--files-dir",
    "-d",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory that contents.local names are relative to (like butane -d).",
)
@click.option("--strict", is_flag=True, help="Fail on warnings instead of printing them.")
@click.option("--pretty", is_flag=True, help="Indent the JSON for people.")
@click.option("--validate", is_flag=True, help="Check the result with ignition-validate.")
def translate_command(
    config: Path,
    output: Path | None,
    files_dir: Path | None,
    strict: bool,
    pretty: bool,
    validate: bool,
) -> None:
    """Translate CONFIG (Butane-style YAML, variant: railcar; - for stdin) into Ignition JSON.

    The result is an Ignition config (spec 3.3.0) for Debian's Ignition 2.14, which Railcar
    nodes run in the initrd with platform qemu.
    """
    if str(config) == "-":
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        data, name = config.read_bytes(), str(config)
    text = decode(data, name)
    local_files = DirectoryFiles(files_dir) if files_dir is not None else None
    result = translate(load(text, name), local_files=local_files)
    rendered = (
        json.dumps(result.config, indent=2, ensure_ascii=False)
        if pretty
        else json.dumps(result.config, separators=(",", ":"), ensure_ascii=False)
    ) + "\n"
    warnings = [str(w) for w in result.warnings]
    if validate:
        warnings += [f"ignition-validate: {w}" for w in ignition_validate(rendered)]
    if strict and warnings:
        raise StrictWarningError(warnings[0], hint="--strict turns warnings into errors")
    for warning in warnings:
        click.echo(f"railcar: warning: {warning}", err=True)
    if output is None:
        click.echo(rendered, nl=False)
    else:
        _write_atomically(output, rendered)


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
