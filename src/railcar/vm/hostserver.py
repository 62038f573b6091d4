"""The update server on the host for VM tests: a real ``railcar server`` on 127.0.0.1 with
its SQLite database in the test's output directory, reached by guests through QEMU's
user-mode network at 10.0.2.2 (the only way a guest reaches the host here).

Errors::

    RailcarError
    └── HostServerError   the server did not start, or an admin call failed
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from railcar.endpoint import Endpoint
from railcar.errors import RailcarError
from railcar.omaha.model import FLATCAR_APP_ID
from railcar.server.db import SQLITE_FILE

# QEMU user networking (slirp): the guest sees the host's loopback as this gateway address.
GUEST_HOST_ADDRESS = "10.0.2.2"
RAILCAR = (sys.executable, "-m", "railcar")


class HostServerError(RailcarError):
    """The host-side update server did not start, or an admin call failed."""


class UnknownInstanceError(HostServerError):
    """The server has not heard from this machine yet (404 for its instance)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class HostServer:
    """``with HostServer(dir) as server:`` — init, run, publish, inspect; stopped by PID.

    With ``token_file`` the first admin token is kept there (mode 0600) and reused while the
    database exists, so the server can be started again on the same data (``scripts/demo``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        token_file: Path | None = None,
    ) -> None:
        self.directory = directory
        self.data = directory / "server"
        self.host = host
        self.port = port or free_port()
        self.endpoint = Endpoint(host, self.port)
        self.base = self.endpoint.url
        self.token_file = token_file
        self.token = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    # -- what guests and tests use ------------------------------------------------------------

    @property
    def guest_url(self) -> str:
        """update.conf's SERVER for a guest."""
        return f"http://{GUEST_HOST_ADDRESS}:{self.port}/v1/update/"

    def publish(self, payload: Path, version: str, *, track: str = "stable") -> dict[str, Any]:
        """Host ``payload`` as ``version`` on channel/group ``track`` (created if missing)."""
        done = self._railcar(
            "server", "publish", "--data-dir", str(self.data), "--file", str(payload),
            "--version", version, "--channel", track, "--json",
        )  # fmt: skip
        result: dict[str, Any] = json.loads(done)
        return result

    def packages(self) -> list[dict[str, Any]]:
        """Every package of the application, newest first."""
        found: list[dict[str, Any]] = self._api("GET", "/packages")
        return found

    def delete_package(self, package_id: str) -> None:
        """Forget a package and remove its hosted file."""
        self._api("DELETE", f"/packages/{package_id}")
        shutil.rmtree(self.data / "packages" / package_id, ignore_errors=True)

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")[-1500:]

    def set_policy(self, group_id: str, **policy: Any) -> dict[str, Any]:
        """Change some of the group's policy fields (the others keep their values)."""
        current = self._api("GET", f"/groups/{group_id}")["policy"]
        group: dict[str, Any] = self._api(
            "PUT", f"/groups/{group_id}", json={"policy": {**current, **policy}}
        )
        return group

    def update_checks(self) -> int:
        """Update checks answered so far, from ``/metrics`` (the instance's
        ``last_check_for_updates`` is refreshed only every few minutes, as in Nebraska)."""
        if self._client is None:
            raise HostServerError("the update server is not running")
        response = self._client.get("/metrics")
        if response.status_code != 200:
            raise HostServerError(f"GET /metrics: {response.status_code}")
        return int(sum(
            float(line.rsplit(" ", 1)[1])
            for line in response.text.splitlines()
            if line.startswith("railcar_omaha_update_checks_total{")
        ))  # fmt: skip

    def instance(self, machine_id: str) -> dict[str, Any]:
        """The instance as the admin API shows it (status, version, history)."""
        found: dict[str, Any] = self._api("GET", f"/instances/{machine_id}")
        return found

    def events(self, machine_id: str) -> list[dict[str, Any]]:
        """The events the node reported, oldest first."""
        found: list[dict[str, Any]] = self._api("GET", f"/instances/{machine_id}/events")
        return list(reversed(found))

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> HostServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.token = self._admin_token()
        log = (self.directory / "server.log").open("ab")
        self._proc = subprocess.Popen(
            [*RAILCAR, "server", "run", "--data-dir", str(self.data),
             "--listen", self.endpoint.authority,
             "--public-url", f"http://{GUEST_HOST_ADDRESS}:{self.port}"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self._client = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if self._client.get("/health").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise HostServerError(f"the update server did not start: {self.log_tail()}")
            time.sleep(0.1)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    # -- plumbing -----------------------------------------------------------------------------

    def _admin_token(self) -> str:
        """``server init`` shows a new admin token only once: keep it in ``token_file``."""
        stored = self.token_file
        if stored is not None and stored.is_file() and (self.data / SQLITE_FILE).is_file():
            return stored.read_text().strip()
        init = json.loads(self._railcar("server", "init", "--data-dir", str(self.data), "--json"))
        token: str = init["admin_token"]
        if stored is not None:
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.unlink(missing_ok=True)
            fd = os.open(stored, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token + "\n")
        return token

    def _railcar(self, *args: str) -> str:
        done = subprocess.run(
            [*RAILCAR, *args], capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            raise HostServerError(f"railcar {args[0]} {args[1]}: {done.stderr.strip()[-500:]}")
        return done.stdout

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        if self._client is None:
            raise HostServerError("the update server is not running")
        response = self._client.request(method, f"/api/apps/{FLATCAR_APP_ID}{path}", **kwargs)
        if response.status_code == 404 and path.startswith("/instances/"):
            raise UnknownInstanceError(f"{method} {path}: the server knows no such instance yet")
        if response.status_code >= 400:
            raise HostServerError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None
