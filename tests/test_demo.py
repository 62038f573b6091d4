"""The README's main job (``scripts/demo``) as a process: it serves the example image's signed
payload on ``stable`` and answers a node over real HTTP; SIGTERM and SIGINT stop it with exit 0,
and a second run reuses key, payload, token and package.

The image is the test suite's shared build of ``examples/railcar.toml`` (``--image-dir``); it has
no payload, so the demo signs one with its key, as it says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from railcar.cli import cli
from railcar.omaha.codec import encode_request, parse_response
from railcar.omaha.model import FLATCAR_APP_ID, AppRequest, OsInfo, Request
from tests.imagebuild import built_image
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
MACHINE = "5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed"


@contextmanager
def running_demo(work: Path, image_dir: Path, port: int, stop: int) -> Iterator[list[str]]:
    """The demo as ``scripts/demo`` runs it; yields its output up to the ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "railcar.demo", "--work", str(work), "--image-dir", str(image_dir),
         "--listen", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while not (lines and lines[-1].startswith("ready: ")):
            line = proc.stdout.readline()
            assert line, f"the demo ended before it was ready:\n{''.join(lines)}"
            lines.append(line)
        yield lines
        proc.send_signal(stop)
        rest = proc.stdout.read()
        assert proc.wait(timeout=60) == 0, rest
        assert rest.rstrip().endswith("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return base64.b64encode(h.digest()).decode()


def _update_check(base: str, version: str) -> httpx.Response:
    request = Request(
        apps=(
            AppRequest(appid=FLATCAR_APP_ID, version=version, track="stable", machineid=MACHINE,
                       board="amd64-usr", ping=True, updatecheck=True),
        ),
        version="update_engine-0.4.10", updaterversion="update_engine-0.4.10",
        os=OsInfo(sp=f"{version}_x86_64"),
    )  # fmt: skip
    return httpx.post(f"{base}/v1/update/", content=encode_request(request), timeout=30)


def test_demo_serves_the_signed_image_update_until_stopped(tmp_path: Path) -> None:
    image = built_image("1.0.0")
    work, port = tmp_path / "demo", free_port()
    base = f"http://127.0.0.1:{port}"
    payload = work / "payload" / "railcar_production_update.gz"
    with running_demo(work, Path(image.output), port, signal.SIGTERM) as output:
        text = "".join(output)
        disk = Path(image.output) / "railcar_production_image.bin"
        assert f".venv/bin/railcar vm boot {disk} --run-dir {work / 'vm'}" in text
        assert f"{base}/dashboard/" in text and f"{base}/v1/update/" in text
        token_file = work / "admin-token"
        assert str(token_file) in text
        assert token_file.stat().st_mode & 0o777 == 0o600

        page = httpx.get(f"{base}/dashboard/", timeout=30)
        assert page.status_code == 200 and "<title>Railcar updates</title>" in page.text

        # The payload the demo made is a valid CrAU payload of the image, signed by its key.
        verified = CliRunner().invoke(
            cli, ["payload", "verify", str(payload), "--key",
                  str(work / "keys" / "payload-key.pub.pem"), "--json"],
        )  # fmt: skip
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.output)["sha256_base64"] == _sha256_b64(payload)

        api = httpx.Client(
            base_url=f"{base}/api/apps/{FLATCAR_APP_ID}", timeout=30,
            headers={"Authorization": f"Bearer {token_file.read_text().strip()}"},
        )  # fmt: skip
        with api:
            (stable,) = [c for c in api.get("/channels").json() if c["name"] == "stable"]
            assert stable["package_version"] == image.version == "1.0.0"
            package = api.get(f"/packages/{stable['package_id']}").json()
            assert package["hosted"] is True
            assert package["size"] == payload.stat().st_size
            assert package["sha256"] == _sha256_b64(payload)
            groups = api.get("/groups").json()
            assert [g["track"] for g in groups if g["channel_id"] == stable["id"]] == ["stable"]

        # A node on an older version is offered the image's payload, at the address a VM
        # guest reaches the host by; the same path on loopback serves the file.
        answer = _update_check(base, "0.9.0")
        assert answer.status_code == 200
        check = parse_response(answer.content).apps[0].updatecheck
        assert check is not None and check.status == "ok" and check.manifest is not None
        assert check.manifest.version == "1.0.0"
        (offered,) = check.manifest.packages
        assert (offered.name, offered.size) == (payload.name, payload.stat().st_size)
        url = check.urls[0] + offered.name
        guest_base = f"http://10.0.2.2:{port}/"
        assert url.startswith(guest_base)
        head = httpx.head(base + "/" + url.removeprefix(guest_base), timeout=30)
        assert head.status_code == 200
        assert int(head.headers["content-length"]) == payload.stat().st_size
    with pytest.raises(httpx.TransportError):  # the server stopped with the demo
        httpx.get(f"{base}/health", timeout=2)

    # Again on the same work directory: nothing is made twice; the stored token still works.
    token = token_file.read_text()
    mtime = payload.stat().st_mtime_ns
    with running_demo(work, Path(image.output), port, signal.SIGINT) as output:
        text = "".join(output)
        assert "(reused)" in text and "1.0.0 already published" in text
        assert payload.stat().st_mtime_ns == mtime and token_file.read_text() == token
        headers = {"Authorization": f"Bearer {token.strip()}"}
        packages = httpx.get(
            f"{base}/api/apps/{FLATCAR_APP_ID}/packages", headers=headers, timeout=30
        ).json()
        assert [p["version"] for p in packages] == ["1.0.0"]


def test_demo_refuses_a_taken_address_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "railcar.demo", "--work", str(tmp_path), "--image-dir",
             str(tmp_path), "--listen", f"127.0.0.1:{port}"],
            cwd=ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == f"railcar: error: 127.0.0.1:{port} is in use"
