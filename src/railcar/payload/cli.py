"""``railcar payload``: generate, digest, sign, inspect, verify and apply CrAU payloads."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import click

from railcar.clitools import RailcarGroup, emit_json, json_option, progress_for
from railcar.payload.apply import apply_file_or_stream
from railcar.payload.errors import SignatureError
from railcar.payload.generate import generate_payload
from railcar.payload.inspect import inspect_payload, render
from railcar.payload.reader import PayloadReader, require_signed
from railcar.payload.signing import (
    DetachedSignature,
    FileKeySigner,
    PayloadSigner,
    Pkcs11Signer,
    TrustedKeys,
)
from railcar.payload.writer import (
    WrittenPayload,
    open_blob_area,
    reserve_signatures,
    signing_digest,
    write_payload,
)
from railcar.release.keys import load_public_key

_path = click.Path(path_type=Path)
_existing = click.Path(path_type=Path, exists=True, dir_okay=False)


@click.group(cls=RailcarGroup)
def payload() -> None:
    """CrAU update payloads, wire-compatible with Flatcar's update_engine."""


def _signer_options(f: click.decorators.FC) -> click.decorators.FC:
    f = click.option(
        "--pkcs11-module",
        type=_existing,
        envvar="RAILCAR_PKCS11_MODULE",
        help="PKCS#11 module (.so) for --pkcs11-uri [env RAILCAR_PKCS11_MODULE].",
    )(f)
    f = click.option(
        "--pkcs11-uri",
        "pkcs11_uris",
        multiple=True,
        metavar="URI",
        help="Sign with a key in an HSM: 'pkcs11:token=T;object=LABEL' (repeatable)."
        " PIN from pin-value/pin-source in the URI or RAILCAR_PKCS11_PIN.",
    )(f)
    f = click.option(
        "--key",
        "keys",
        multiple=True,
        type=_existing,
        metavar="PRIV.pem",
        help="Sign with this RSA private key (repeatable, for key rotation).",
    )(f)
    return f


def _signers(
    keys: tuple[Path, ...],
    uris: tuple[str, ...],
    module: Path | None,
    detached: tuple[Path, ...] = (),
) -> list[PayloadSigner]:
    """Signers in signature order; the last one gets version 2, the slot Flatcar checks."""
    signers: list[PayloadSigner] = [FileKeySigner(k) for k in keys]
    signers += [Pkcs11Signer(u, module=str(module) if module else None) for u in uris]
    signers += [DetachedSignature(d) for d in detached]
    return signers


def _report_written(result: WrittenPayload, json_output: bool) -> None:
    data = {
        "path": str(result.path),
        "size": result.size,
        "sha256": result.file_sha256.hex(),
        "sha256_base64": base64.b64encode(result.file_sha256).decode(),
        "signed_digest": result.signed_digest.hex() if result.signed_digest else None,
        "signers": list(result.signers),
    }
    if json_output:
        emit_json(data)
        return
    click.echo(f"wrote {result.path} ({result.size:,} bytes)")
    click.echo(f"  sha256 {data['sha256']}  (Omaha action sha256: {data['sha256_base64']})")
    for signer in result.signers:
        click.echo(f"  signed by {signer}")
    if not result.signers:
        click.echo("  unsigned: run 'railcar payload digest' and 'railcar payload sign'")


@payload.command("generate")
@click.option("--usr", required=True, type=_existing, help="The /usr partition image.")
@click.option("--kernel", type=_existing, help="The kernel for this /usr (a KERNEL procedure).")
@click.option("--out", required=True, type=_path, help="Payload file to write (…_update.gz).")
@_signer_options
@click.option("--unsigned", is_flag=True, help="Write an unsigned payload for offline signing.")
@click.option("--workers", type=click.IntRange(1, 256), help="Compression threads [all cores].")
@click.option("--min-saving", type=click.IntRange(0, 100), default=0, show_default=True,
              metavar="PERCENT",
              help="Store a chunk bzip2'd only if that saves at least PERCENT of it (0: any"
                   " saving); higher means a bigger payload and less CPU per install.")  # fmt: skip
@json_option
def generate(
    usr: Path,
    kernel: Path | None,
    out: Path,
    keys: tuple[Path, ...],
    pkcs11_uris: tuple[str, ...],
    pkcs11_module: Path | None,
    unsigned: bool,
    workers: int | None,
    min_saving: int,
    json_output: bool,
) -> None:
    """Build a full payload: 1 MiB bzip2 chunks of USR, the kernel, and signatures."""
    signers = _signers(keys, pkcs11_uris, pkcs11_module)
    if not signers and not unsigned:
        raise click.UsageError("give --key or --pkcs11-uri to sign, or --unsigned")
    if signers and unsigned:
        raise click.UsageError("--unsigned contradicts --key/--pkcs11-uri")
    result = generate_payload(
        usr, kernel, out, signers, workers=workers, min_saving=min_saving,
        progress=progress_for(json_output),
    )  # fmt: skip
    _report_written(result, json_output)


def _signature_sizes(sizes: tuple[int, ...], pub_keys: tuple[Path, ...]) -> list[int]:
    if sizes and pub_keys:
        raise click.UsageError("give either --signature-size or --key, not both")
    if pub_keys:
        return [(load_public_key(k).key_size + 7) // 8 for k in pub_keys]
    if not sizes:
        raise click.UsageError("give --signature-size N (bytes) or --key PUB.pem per signature")
    return list(sizes)


@payload.command("digest")
@click.argument("unsigned_payload", type=_existing)
@click.option(
    "--signature-size",
    "sizes",
    multiple=True,
    type=click.IntRange(1, 1024),
    help="Size in bytes of each signature to come, in order (256 for RSA-2048).",
)
@click.option(
    "--key",
    "pub_keys",
    multiple=True,
    type=_existing,
    metavar="PUB.pem",
    help="Take each signature's size from this public key, in order.",
)
@click.option("--out", "out_file", type=_path, help="Also write the raw 32-byte digest here.")
@json_option
def digest(
    unsigned_payload: Path,
    sizes: tuple[int, ...],
    pub_keys: tuple[Path, ...],
    out_file: Path | None,
    json_output: bool,
) -> None:
    """Print the SHA-256 an HSM must sign for UNSIGNED_PAYLOAD.

    Sign it with RSA PKCS#1 v1.5 over SHA-256 (e.g. 'openssl pkeyutl -sign -pkeyopt
    digest:sha256'), then attach with 'railcar payload sign --signature FILE'.
    """
    sig_sizes = _signature_sizes(sizes, pub_keys)
    f, manifest, blobs_length = open_blob_area(unsigned_payload)
    with f:
        reserved = reserve_signatures(manifest, blobs_length, sig_sizes)
        value = signing_digest(reserved, f, blobs_length)
    if out_file is not None:
        out_file.write_bytes(value)
    if json_output:
        emit_json(
            {
                "sha256": value.hex(),
                "sha256_base64": base64.b64encode(value).decode(),
                "signature_sizes": sig_sizes,
            }
        )
    else:
        click.echo(value.hex())


@payload.command("sign")
@click.argument("unsigned_payload", type=_existing)
@click.option("--out", required=True, type=_path, help="Signed payload to write.")
@_signer_options
@click.option(
    "--signature",
    "detached",
    multiple=True,
    type=_existing,
    metavar="SIG",
    help="Attach a raw RSA signature made elsewhere over 'payload digest' output.",
)
@click.option(
    "--verify-key",
    "verify_keys",
    multiple=True,
    type=_existing,
    metavar="PUB.pem",
    help="Public key(s) that detached signatures must verify with.",
)
@json_option
def sign(
    unsigned_payload: Path,
    out: Path,
    keys: tuple[Path, ...],
    pkcs11_uris: tuple[str, ...],
    pkcs11_module: Path | None,
    detached: tuple[Path, ...],
    verify_keys: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Sign UNSIGNED_PAYLOAD with every given signer at once.

    Signature order: --key, then --pkcs11-uri, then --signature; the last gets version 2,
    the one Flatcar's update_engine checks.
    """
    signers = _signers(keys, pkcs11_uris, pkcs11_module, detached)
    if not signers:
        raise click.UsageError("give at least one --key, --pkcs11-uri or --signature")
    f, manifest, blobs_length = open_blob_area(unsigned_payload)
    with f:
        result = write_payload(
            out,
            manifest,
            f,
            blobs_length,
            signers,
            verify_keys=[load_public_key(k) for k in verify_keys],
            progress=progress_for(json_output),
        )
    _report_written(result, json_output)


@payload.command("inspect")
@click.argument("payload_file", type=_existing)
@json_option
def inspect(payload_file: Path, json_output: bool) -> None:
    """Show header, manifest summary, operations per type, sizes and signatures."""
    summary = inspect_payload(payload_file)
    if json_output:
        emit_json(summary)
    else:
        click.echo(render(summary))


@payload.command("verify")
@click.argument("payload_file", type=_existing)
@click.option(
    "--key",
    "pub_keys",
    multiple=True,
    required=True,
    type=_existing,
    metavar="PUB.pem",
    help="A trusted public key (repeatable).",
)
@json_option
def verify(payload_file: Path, pub_keys: tuple[Path, ...], json_output: bool) -> None:
    """Check structure, every operation's hash, blob layout, size and signature.

    Exits 0 only if all hold.
    """
    trusted = TrustedKeys.from_files(pub_keys)
    with open(payload_file, "rb") as f:
        reader = PayloadReader(f)
        reader.skip_blobs()
        digests = reader.finish()
    check = trusted.check(require_signed(digests), digests.signatures)
    data = {
        "path": str(payload_file),
        "valid": True,
        "size": digests.size,
        "sha256": digests.file_sha256.hex(),
        "sha256_base64": base64.b64encode(digests.file_sha256).decode(),
        "operations": len(reader.layout.ops),
        "signature_version": check.version,
        "key": check.key_source,
        "key_fingerprint_sha256": check.key_fingerprint,
    }
    if json_output:
        emit_json(data)
    else:
        click.echo(
            f"{payload_file}: valid — {data['operations']} operations, {digests.size:,} bytes, "
            f"signature v{check.version} by {check.key_source}"
        )


@payload.command("apply")
@click.argument(
    "payload_file",
    metavar="PAYLOAD|-",
    type=click.Path(path_type=Path, allow_dash=True, dir_okay=False),
)
@click.option(
    "--key",
    "pub_keys",
    multiple=True,
    required=True,
    type=_existing,
    metavar="PUB.pem",
    help="A trusted public key (repeatable).",
)
@click.option(
    "--target",
    required=True,
    type=_path,
    help="Partition to write: a block device or an image file.",
)
@click.option("--kernel-out", type=_path, help="Where the payload's kernel goes.")
@click.option("--workers", type=click.IntRange(1, 256), help="Decompression threads [all cores].")
@json_option
def apply(
    payload_file: Path,
    pub_keys: tuple[Path, ...],
    target: Path,
    kernel_out: Path | None,
    workers: int | None,
    json_output: bool,
) -> None:
    """Write PAYLOAD's /usr image to TARGET and its kernel to --kernel-out.

    A local file's signature is verified before anything is written; from stdin ('-') the
    payload is written as it arrives and verified at the end, and any failure exits non-zero:
    never mark such a target bootable unless this command succeeded.
    """
    trusted = TrustedKeys.from_files(pub_keys)
    from_stdin = str(payload_file) == "-"
    result = apply_file_or_stream(
        None if from_stdin else payload_file,
        sys.stdin.buffer if from_stdin else None,
        target,
        kernel_out,
        trusted,
        workers=workers,
        progress=progress_for(json_output),
    )
    if result.signature is None:
        raise SignatureError("payload applied without a signature check")
    data = {
        "target": str(target),
        "partition_size": result.partition.size,
        "partition_sha256": (result.partition.hash or b"").hex(),
        "kernel": str(kernel_out) if result.kernel_written else None,
        "kernel_size": result.kernel.size if result.kernel else None,
        "payload_sha256": result.digests.file_sha256.hex(),
        "signature_version": result.signature.version,
        "key": result.signature.key_source,
    }
    if json_output:
        emit_json(data)
    else:
        click.echo(f"applied to {target}: {result.partition.size:,} bytes verified")
        if result.kernel_written:
            size = result.kernel.size if result.kernel else 0
            click.echo(f"kernel written to {kernel_out}: {size:,} bytes verified")
        elif result.kernel is not None:
            click.echo("kernel in payload verified but not written (no --kernel-out)")
