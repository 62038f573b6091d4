"""``railcar build``: build a bootable Railcar OS image from a TOML spec."""

from __future__ import annotations

from pathlib import Path

import click

from railcar.clitools import emit_json, json_option
from railcar.image.build import build_image, default_cache
from railcar.image.spec import load_spec, settings_help
from railcar.payload.signing import FileKeySigner

_existing = click.Path(path_type=Path, exists=True, dir_okay=False)


def _help_spec(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(settings_help())
        ctx.exit()


@click.command()
@click.argument("spec", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, file_okay=False), required=True,
    help="Directory for the artifacts (replaced when the build succeeds).",
)  # fmt: skip
@click.option(
    "--cache", type=click.Path(path_type=Path, file_okay=False), default=None,
    help="Build cache (rootfs trees, wheels) [env RAILCAR_CACHE; default ~/.cache/railcar].",
)  # fmt: skip
@click.option(
    "--help-spec", is_flag=True, expose_value=False, is_eager=True, callback=_help_spec,
    help="List every spec setting with its default and exit.",
)  # fmt: skip
@click.option(
    "--payload-key", "payload_keys", multiple=True, type=_existing,
    help="Sign railcar_production_update.gz with this RSA key (PEM); the image trusts it.",
)  # fmt: skip
@click.option(
    "--format", "formats", multiple=True, type=click.Choice(["raw", "qcow2"]),
    help="Disk formats to write; raw always, qcow2 on request.",
)  # fmt: skip
@json_option
def build(
    spec: Path,
    output: Path,
    cache: Path | None,
    payload_keys: tuple[Path, ...],
    formats: tuple[str, ...],
    json_output: bool,
) -> None:
    """Build the OS image SPEC describes into --output.

    Makes the raw disk (GPT, systemd-boot, USR-A with erofs + dm-verity, ROOT), the USR
    partition image a payload carries, the slot's kernel and reports. Needs root for the
    first build of a package set (mmdebstrap); later builds reuse the cached tree.
    """
    image_spec = load_spec(spec)
    report = (lambda _line: None) if json_output else (lambda line: click.echo(line, err=True))
    result = build_image(
        image_spec, output, cache=cache or default_cache(), report=report,
        payload_signers=[FileKeySigner(key) for key in payload_keys],
        qcow2="qcow2" in formats,
    )  # fmt: skip
    if json_output:
        emit_json(result.to_json())
    else:
        click.echo(f"built {result.name} {result.version} in {output}")
        click.echo(f"  disk:      {result.files[f'{result.name}_production_image.bin']}")
        click.echo(f"  root hash: {result.root_hash}")
