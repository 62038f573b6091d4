"""The demo behind ``scripts/demo``: the example OS built, its signed update published, served.

Steps, each reusing what an earlier run left in ``--work`` (default ``.railcar/demo``):

1. a payload signing key, made once (``keys/``);
2. the example image (``examples/railcar.toml``) built by the image builder with its cache
   (``~/.cache/railcar``) into ``image/``, trusting that key and with the signed payload
   ``railcar_production_update.gz`` — skipped while spec, Railcar's sources and key are
   unchanged; or ``--image-dir``: a finished build (signed here if it has no payload);
3. the update server on 127.0.0.1:8080, SQLite in ``server/``, its first admin token kept in
   ``admin-token`` (0600); the payload hosted by the server on channel and group ``stable``;
4. where the dashboard, API, Omaha endpoint and token are, and how to boot a node;

then it serves until SIGINT or SIGTERM, stops the server and exits 0.

Errors::

    RailcarError
    └── DemoError   the address is taken, the image output is incomplete, or the server stopped
"""

from __future__ import annotations

import errno
import hashlib
import json
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click

from railcar.clitools import fail
from railcar.endpoint import Endpoint, listen_option
from railcar.errors import RailcarError
from railcar.image import BuildResult, build_image, load_spec
from railcar.image.build import default_cache
from railcar.image.rootfs import railcar_digest
from railcar.payload import FileKeySigner, generate_payload
from railcar.progress import for_terminal
from railcar.release.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_key
from railcar.server.hosting import file_digests
from railcar.vm.hostserver import HostServer

PAYLOAD_NAME = "railcar_production_update.gz"
DISK_NAME = "railcar_production_image.bin"
TRACK = "stable"


class DemoError(RailcarError):
    """The demo cannot go on: address taken, image output incomplete, or the server stopped."""


@dataclass(frozen=True)
class Release:
    image: BuildResult
    payload: Path
    update_server: str | None  # update.conf's SERVER in the image, when the demo built it


def say(line: str) -> None:
    click.echo(line)


def signing_key(keys: Path) -> Path:
    """The demo's payload key, made on the first run and reused."""
    private = keys / PRIVATE_KEY_NAME
    if private.is_file():
        say(f"1. signing key     {private} (reused)")
    else:
        made = generate_key(keys)
        say(f"1. signing key     {private} (new, sha256:{made.fingerprint[:16]})")
    return private


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()


def _fresh(stamp: Path, fingerprint: str, product: Path) -> bool:
    return product.is_file() and stamp.is_file() and stamp.read_text().strip() == fingerprint


def build(spec_path: Path, out: Path, key: Path, *, rebuild: bool) -> Release:
    """The spec's image with the demo key's signed payload, built unless already up to date."""
    spec = load_spec(spec_path)
    inputs = [spec_path, *(f.source for f in spec.files), key.with_name(PUBLIC_KEY_NAME)]
    fingerprint = _digest(railcar_digest().encode(), *(p.read_bytes() for p in inputs))
    stamp = out.with_name(out.name + ".source")
    if not rebuild and _fresh(stamp, fingerprint, out / "build.json"):
        say(f"2. image           {out}: up to date (spec, sources and key unchanged; --rebuild)")
        return Release(_finished(out), out / PAYLOAD_NAME, spec.update_server)
    say(f"2. image           building {spec_path} into {out} (cache {default_cache()})")
    started = time.monotonic()
    result = build_image(
        spec, out, report=lambda line: say(f"   {line}"), payload_signers=[FileKeySigner(key)]
    )
    stamp.write_text(fingerprint + "\n")
    rootfs = "cached" if result.rootfs_cached else "built"
    say(f"   built {result.name} {result.version} in {time.monotonic() - started:.1f} s "
        f"(root filesystem {rootfs})")  # fmt: skip
    return Release(result, out / PAYLOAD_NAME, spec.update_server)


def _finished(image_dir: Path) -> BuildResult:
    try:
        result = BuildResult(**json.loads((image_dir / "build.json").read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise DemoError(
            f"{image_dir}/build.json: {exc}; expected the output of a finished `railcar build`"
        ) from None
    for name in (DISK_NAME, "railcar_production_update.bin", "railcar_production_image.vmlinuz"):
        if not (image_dir / name).is_file():
            raise DemoError(f"{image_dir} has no {name}; expected a finished `railcar build`")
    return result


def existing_image(image_dir: Path, work: Path, key: Path) -> Release:
    """A finished build's image and payload; signed here with the demo key if it has none."""
    result = _finished(image_dir)
    say(f"2. image           {image_dir}: {result.name} {result.version} (given, not built)")
    if (image_dir / PAYLOAD_NAME).is_file():
        return Release(result, image_dir / PAYLOAD_NAME, None)
    payload = work / "payload" / PAYLOAD_NAME
    stamp = payload.with_name(PAYLOAD_NAME + ".source")
    digests = (image_dir / "DIGESTS").read_bytes() if (image_dir / "DIGESTS").is_file() else b""
    fingerprint = _digest(digests, key.with_name(PUBLIC_KEY_NAME).read_bytes())
    if not digests or not _fresh(stamp, fingerprint, payload):
        say("   the build has no payload: signing one with the demo key (its nodes do not "
            "trust that key unless built with it: `railcar build --payload-key`)")  # fmt: skip
        payload.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        generate_payload(
            image_dir / "railcar_production_update.bin",
            image_dir / "railcar_production_image.vmlinuz",
            payload, [FileKeySigner(key)], progress=for_terminal(),
        )  # fmt: skip
        stamp.write_text(fingerprint + "\n")
        say(f"   signed payload made in {time.monotonic() - started:.1f} s")
    return Release(result, payload, None)


def publish(server: HostServer, payload: Path, version: str) -> str:
    """Host ``payload`` as ``version`` on ``stable``; a different file of that version replaces
    the old one, the same file is left as it is."""
    size, _sha1, sha256 = file_digests(payload)
    for package in server.packages():
        if package["version"] == version and package["arch"] == "amd64":
            if package["sha256"] == sha256 and package["hosted"]:
                return f"{version} already published ({size:,} bytes)"
            server.delete_package(package["id"])
    server.publish(payload, version, track=TRACK)
    return f"{version} published ({size:,} bytes), hosted by the server"


def check_listen(listen: Endpoint) -> None:
    """Refuse an address that cannot be bound before the (long) build rather than after it."""
    with socket.socket(listen.family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((listen.host, listen.port))
        except OSError as exc:
            why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc})"
            raise DemoError(
                f"{listen.authority} {why}",
                hint="stop what listens there or pass --listen HOST:PORT",
            ) from None


def _update_conf_note(server: HostServer, update_server: str | None) -> str:
    if update_server is None:
        return "Its update.conf is what that build set (SERVER=, GROUP=)."
    if update_server == server.guest_url:
        return f"Its update.conf says SERVER={update_server} GROUP={TRACK}."
    return (
        f"Its update.conf says SERVER={update_server}, not {server.guest_url}:\n"
        "                     set SERVER= in /etc/railcar/update.conf on the node."
    )


def instructions(server: HostServer, work: Path, token_file: Path, release: Release) -> None:
    base, vm_dir, railcar = server.base, work / "vm", ".venv/bin/railcar"
    disk = Path(release.image.output) / DISK_NAME
    say(f"""
   dashboard         {base}/dashboard/   (paste the admin token)
   admin token       {token_file}
                     RAILCAR_TOKEN=$(cat {token_file}) {railcar} admin --server {base} groups
   admin API         {base}/api/   (OpenAPI: {base}/docs)
   Omaha endpoint    {base}/v1/update/   (in a VM: {server.guest_url})
   server log        {server.directory / "server.log"}
   boot a node       {railcar} vm boot {disk} --run-dir {vm_dir}
                     (QEMU; the disk is not changed; console in {vm_dir}/console.log).
                     {_update_conf_note(server, release.update_server)}
                     The agent checks in 2-12 min after boot; the node then shows on the
                     dashboard (it runs the published version, so it is told: no update).""")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@listen_option("Where the update server listens (guests reach 127.0.0.1 as 10.0.2.2).")
@click.option(
    "--work",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path(".railcar/demo"),
    show_default=True,
    help="Keys, image, server data and admin token; reused by later runs.",
)
@click.option(
    "--spec",
    "spec_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=Path("examples/railcar.toml"),
    show_default=True,
    help="The image spec to build.",
)
@click.option(
    "--image-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Serve this finished `railcar build` output instead of building.",
)
@click.option(
    "--rebuild", is_flag=True, help="Build even when spec, Railcar's sources and key are unchanged."
)
def demo(
    listen: Endpoint, work: Path, spec_path: Path, image_dir: Path | None, rebuild: bool
) -> None:
    """Build the example Railcar OS and its signed update, serve it, and say how to boot it.

    Runs until interrupted (Ctrl-C or SIGTERM), then stops the server and exits 0.
    """
    check_listen(listen)
    work.mkdir(parents=True, exist_ok=True)
    key = signing_key(work / "keys")
    if image_dir is None:
        release = build(spec_path, work / "image", key, rebuild=rebuild)
    else:
        release = existing_image(image_dir, work, key)
    payload = release.payload
    say(f"3. signed payload  {payload} ({payload.stat().st_size:,} bytes)")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    token_file = work / "admin-token"
    with HostServer(work, host=listen.host, port=listen.port, token_file=token_file) as server:
        say(f"4. update server   {server.base}, data in {server.data}")
        say(f"   {publish(server, payload, release.image.version)} on channel and group {TRACK!r}")
        instructions(server, work, token_file, release)
        say(f"ready: serving on {server.base} until interrupted (Ctrl-C)")
        while not stop.wait(0.5):
            if not server.running() and not stop.wait(1):
                raise DemoError(f"the update server stopped: {server.log_tail()}")
        for sig in (signal.SIGINT, signal.SIGTERM):
            # `uv run` passes a terminal's Ctrl-C on as well: a second one, however late, must
            # not kill the interpreter while it stops the server or exits (Python restores
            # default handlers at exit, but leaves ignored signals ignored).
            signal.signal(sig, signal.SIG_IGN)
    say("stopped")


def main() -> None:
    try:
        demo(prog_name="scripts/demo")
    except RailcarError as exc:
        fail(exc.message, hint=exc.hint, code=exc.exit_code)
    except OSError as exc:
        fail(f"{exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}")


if __name__ == "__main__":
    main()
