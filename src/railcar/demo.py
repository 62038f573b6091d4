"""The demo behind ``scripts/demo``: a signed payload made, checked, applied, and served.

Until the image builder exists, the demo stands in for a release: it stages a small /usr tree,
packs it as erofs, takes the host's kernel (or a stand-in), does what a release and a node do
with a payload, then hosts it on a Railcar update server on 127.0.0.1 and runs the server.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from railcar.payload.apply import apply_file_or_stream
from railcar.payload.generate import generate_payload
from railcar.payload.inspect import inspect_payload, render
from railcar.payload.signing import FileKeySigner, TrustedKeys
from railcar.progress import for_terminal
from railcar.release.keys import PRIVATE_KEY_NAME, PUBLIC_KEY_NAME, generate_key
from railcar.runner import run

USR_PARTITION_BYTES = 64 << 20
DEMO_VERSION = "0.1.0"


def _stage_usr(tree: Path) -> None:
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "lib").mkdir(parents=True)
    (tree / "lib/os-release").write_text(
        'NAME="Railcar demo"\nID=railcar\nVERSION=0.1.0\nVERSION_ID=0.1.0\n'
    )
    (tree / "bin").mkdir()
    for tool in ("bash", "ls", "cat", "sha256sum"):
        found = shutil.which(tool)
        if found:
            shutil.copy2(found, tree / "bin" / tool)
    share = tree / "share/doc"
    share.mkdir(parents=True)
    for doc in sorted(Path("/usr/share/common-licenses").glob("*"))[:20]:
        if doc.is_file():
            shutil.copy2(doc, share / doc.name)


def _kernel(work: Path) -> tuple[Path, str]:
    for candidate in sorted(Path("/boot").glob("vmlinuz-*")):
        if os.access(candidate, os.R_OK):
            return candidate, f"host kernel {candidate}"
    stand_in = work / "vmlinuz"
    stand_in.write_bytes(hashlib.sha256(b"railcar").digest() * 40000)
    return stand_in, "a stand-in kernel file (no readable /boot/vmlinuz-* here)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--work", type=Path, default=Path(".railcar/demo"))
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument(
        "--no-serve", action="store_true", help="Set the server up but do not run it (for tests)."
    )
    args = parser.parse_args()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    progress = for_terminal()

    keys = work / "keys"
    if not (keys / PRIVATE_KEY_NAME).exists():
        generate_key(keys)
    print(f"1. signing key        {keys / PRIVATE_KEY_NAME} (public: {PUBLIC_KEY_NAME})")

    _stage_usr(work / "usr-tree")
    usr = work / "railcar_production_update.bin"
    run(["mkfs.erofs", "-zlz4hc", "-T0", usr, work / "usr-tree"])
    with open(usr, "r+b") as f:
        f.truncate(USR_PARTITION_BYTES)
    print(f"2. /usr image         {usr} (erofs, padded to {USR_PARTITION_BYTES >> 20} MiB)")
    kernel, kernel_note = _kernel(work)
    print(f"   kernel             {kernel_note}")

    out = work / "railcar_production_update.gz"
    started = time.monotonic()
    written = generate_payload(
        usr, kernel, out, [FileKeySigner(keys / PRIVATE_KEY_NAME)], progress=progress
    )
    print(
        f"3. signed payload     {out} ({written.size:,} bytes, {time.monotonic() - started:.1f} s)"
    )
    print("   " + render(inspect_payload(out)).replace("\n", "\n   "))

    trusted = TrustedKeys.from_files([keys / PUBLIC_KEY_NAME])
    target = work / "usr-b.img"
    target.unlink(missing_ok=True)
    kernel_out = work / "vmlinuz-b"
    result = apply_file_or_stream(out, None, target, kernel_out, trusted, progress=progress)
    same = usr.read_bytes() == target.read_bytes()
    print(
        f"4. applied            to {target}: signature v{result.signature.version} by "
        f"{result.signature.key_source}; image {'identical' if same else 'DIFFERENT'} to source"
    )
    print(
        f"   kernel             {kernel_out} ({result.kernel.size if result.kernel else 0:,} "
        "bytes, verified)"
    )
    if not same:
        raise SystemExit(1)
    serve(work, out, args.listen, serve_forever=not args.no_serve)


def serve(work: Path, payload: Path, listen: str, *, serve_forever: bool) -> None:
    """Step 5: host the payload on a Railcar update server and run it on loopback."""
    from click.testing import CliRunner

    from railcar.cli import cli

    data = work / "server"
    runner = CliRunner()
    token_file = data / "admin-token"
    if not token_file.exists():
        init = runner.invoke(cli, ["server", "init", "--data-dir", str(data), "--json"])
        if init.exit_code != 0:
            raise SystemExit(init.output)
        token_file.write_text(json.loads(init.output)["admin_token"] + "\n")
        token_file.chmod(0o600)
    listing = runner.invoke(
        cli,
        [
            "server",
            "publish",
            "--data-dir",
            str(data),
            "--file",
            str(payload),
            "--version",
            DEMO_VERSION,
            "--json",
        ],
    )
    if listing.exit_code != 0 and "exists" not in listing.output:
        raise SystemExit(listing.output)
    print(f"5. update server      data in {data}; payload {DEMO_VERSION} published on 'stable'")
    print(
        f"   admin token        {token_file} (use: RAILCAR_TOKEN=$(cat {token_file}) "
        f"railcar admin --server http://{listen} groups)"
    )
    print(
        f"   Omaha endpoint     http://{listen}/v1/update/   (update.conf: "
        f"SERVER=http://{listen}/v1/update/ GROUP=stable)"
    )
    print(f"   admin API          http://{listen}/api/  (OpenAPI at http://{listen}/docs)")
    print(f"   dashboard          http://{listen}/dashboard/  (log in with the admin token)")
    if not serve_forever:
        return
    print("   serving until interrupted (Ctrl-C)…", flush=True)
    result = runner.invoke(
        cli, ["server", "run", "--data-dir", str(data), "--listen", listen], catch_exceptions=False
    )
    raise SystemExit(result.exit_code)


if __name__ == "__main__":
    main()
