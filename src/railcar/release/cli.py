"""``railcar key``: payload signing keys."""

from __future__ import annotations

from pathlib import Path

import click

from railcar.clitools import RailcarGroup, emit_json, json_option
from railcar.release.keys import ALLOWED_BITS, generate_key


@click.group(cls=RailcarGroup)
def key() -> None:
    """Create and inspect payload signing keys."""


@key.command("generate")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Directory for payload-key.pem and payload-key.pub.pem.",
)
@click.option(
    "--bits",
    default=2048,
    show_default=True,
    type=click.Choice([str(b) for b in ALLOWED_BITS]),
    help="RSA modulus size.",
)
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
def key_generate(out_dir: Path, bits: str, force: bool, json_output: bool) -> None:
    """Write a new RSA key pair: private PKCS#8 PEM (mode 0600) and public PEM."""
    result = generate_key(out_dir, bits=int(bits), overwrite=force)
    if json_output:
        emit_json(
            {
                "private_key": str(result.private_path),
                "public_key": str(result.public_path),
                "bits": result.bits,
                "fingerprint_sha256": result.fingerprint,
            }
        )
    else:
        click.echo(f"private key  {result.private_path}  (keep it secret)")
        click.echo(f"public key   {result.public_path}")
        click.echo(f"RSA-{result.bits}, sha256 {result.fingerprint}")
