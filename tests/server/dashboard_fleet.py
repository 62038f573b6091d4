"""A real update server process for the dashboard tests: ``railcar server init``, two
``publish``es (1.0.0 then 2.0.0 on stable), a read-only token, ``server run`` on loopback, and
a fleet of nodes that checked in over Omaha (some mid-update, one failed)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from railcar.omaha.codec import encode_request
from railcar.omaha.model import FLATCAR_APP_ID, AppRequest, Event, OsInfo, Request
from tests.server.test_server_cli import railcar
from tests.servers import free_port, running

APP = FLATCAR_APP_ID
NODES = 12  # web-00 … web-11


@dataclass
class LiveServer:
    base: str
    admin_token: str
    reader_token: str
    group_id: str
    channel_id: str

    def api(self, path: str, token: str | None = None) -> Any:
        answer = httpx.get(
            f"{self.base}/api{path}",
            headers={"Authorization": f"Bearer {token or self.admin_token}"},
        )
        answer.raise_for_status()
        return answer.json()


def machine(n: int) -> str:
    return f"{n:02d}" + "d4c7fa6b5e4d3c2b1a0905f3c2a1b9e"


def omaha(base: str, n: int, version: str, *events: Event, check: bool = True) -> str:
    """One node's request as update_engine sends it."""
    request = Request(
        apps=(
            AppRequest(
                appid="{" + APP + "}",
                version=version,
                track="stable",
                machineid=machine(n),
                machinealias=f"web-{n:02d}",
                board="amd64-usr",
                ping=check,
                updatecheck=check,
                events=events,
            ),
        ),
        version="update_engine-0.4.10",
        updaterversion="update_engine-0.4.10",
        os=OsInfo(sp=f"{version}_x86_64"),
    )
    answer = httpx.post(f"{base}/v1/update/", content=encode_request(request))
    answer.raise_for_status()
    return answer.text


def _ok(*args: str) -> dict[str, Any]:
    done = railcar(*args, "--json")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@contextmanager
def live_server(tmp: Path) -> Iterator[LiveServer]:
    data = tmp / "data"
    admin_token = _ok("server", "init", "--data-dir", str(data))["admin_token"]
    reader_token = _ok(
        "server", "token", "--data-dir", str(data), "--name", "viewer", "--role", "read-only"
    )["token"]
    published: dict[str, Any] = {}
    for version in ("1.0.0", "2.0.0"):
        payload = tmp / "railcar_production_update.gz"
        payload.write_bytes(b"CrAU" + os.urandom(3000))
        published = _ok(
            "server", "publish", "--data-dir", str(data), "--file", str(payload),
            "--version", version,
        )  # fmt: skip
    port = free_port()
    cmd = [sys.executable, "-m", "railcar", "server", "run", "--data-dir", str(data)]
    with running([*cmd, "--listen", f"127.0.0.1:{port}"], port) as base:
        live = LiveServer(
            base, admin_token, reader_token, published["group_id"], published["channel_id"]
        )
        _check_in_fleet(live)
        yield live


def _check_in_fleet(live: LiveServer) -> None:
    """Nodes on 1.0.0 ask for updates; the first few walk through the update steps."""
    for n in range(NODES):
        omaha(live.base, n, "1.0.0")
    omaha(live.base, 0, "1.0.0", Event(13, 1), check=False)  # download started
    omaha(live.base, 0, "1.0.0", Event(14, 1), check=False)  # download finished
    omaha(live.base, 0, "1.0.0", Event(3, 1), check=False)  # applied, reboot pending
    omaha(live.base, 0, "2.0.0", Event(3, 2, previous_version="1.0.0"))  # rebooted
    omaha(live.base, 1, "1.0.0", Event(13, 1), check=False)
    omaha(live.base, 2, "1.0.0", Event(3, 0, error_code=268435465), check=False)  # 9 | flag
