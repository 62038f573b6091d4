"""The server as an operator runs it: ``server init`` (admin token printed once), ``server
publish`` (a real payload hosted), ``server run`` on loopback, a node's Omaha check, the
``railcar admin`` client with --json, and ``server purge``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from railcar.omaha.model import FLATCAR_APP_ID
from tests.server.test_admin_api import omaha_body
from tests.servers import free_port, running


def railcar(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "railcar", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_operator_flow(tmp_path: Path) -> None:
    data = tmp_path / "data"
    init = railcar("server", "init", "--data-dir", str(data), "--json")
    assert init.returncode == 0, init.stderr
    token = json.loads(init.stdout)["admin_token"]
    payload = tmp_path / "railcar_production_update.gz"
    payload.write_bytes(b"CrAU" + os.urandom(5000))
    published = railcar(
        "server",
        "publish",
        "--data-dir",
        str(data),
        "--file",
        str(payload),
        "--version",
        "2.0.0",
        "--json",
    )
    assert published.returncode == 0, published.stderr
    group_id = json.loads(published.stdout)["group_id"]

    port = free_port()
    with running(
        [
            sys.executable,
            "-m",
            "railcar",
            "server",
            "run",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        port,
    ) as base:
        answer = httpx.post(f"{base}/v1/update/", content=omaha_body()).text
        assert 'status="ok"' in answer
        package_url = answer.split('codebase="')[1].split('"')[0] + payload.name
        assert httpx.get(package_url).content == payload.read_bytes()

        env = {"RAILCAR_SERVER": base, "RAILCAR_TOKEN": token}
        listed = railcar("admin", "instances", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["total"] == 1
        policy = railcar(
            "admin",
            "group-policy",
            group_id,
            "--max-per-period",
            "5",
            "--period",
            "3600",
            "--json",
            env=env,
        )
        assert policy.returncode == 0, policy.stderr
        assert json.loads(policy.stdout)["policy"]["max_updates_per_period"] == 5
        stats = json.loads(railcar("admin", "stats", group_id, "--json", env=env).stdout)
        assert stats["updates_in_progress"] == 1
        human = railcar("admin", "groups", env=env)
        assert "Stable" in human.stdout and human.returncode == 0
        refused = railcar("admin", "groups", env={**env, "RAILCAR_TOKEN": "wrong"})
        assert refused.returncode == 1
        assert refused.stderr.startswith("railcar: error: GET /api/apps/")
        assert "401 unknown bearer token" in refused.stderr
    purged = railcar("server", "purge", "--data-dir", str(data), "--days", "1", "--json")
    assert json.loads(purged.stdout) == {"instances": 0, "history": 0, "events": 0, "activity": 0}
    assert FLATCAR_APP_ID in answer


def test_an_unreachable_database_is_one_clear_error() -> None:
    port = free_port()  # nothing listens there
    for command in ("init", "run"):
        result = railcar(
            "server", command, "--db", f"postgresql://railcar:s3cret@127.0.0.1:{port}/x"
        )
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert lines[0].startswith(
            f"railcar: error: cannot connect to database 127.0.0.1:{port}/x: "
        )
        assert "Connection refused" in lines[0]
        assert lines[1].startswith("hint: is PostgreSQL running")
        assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def _initialized(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    init = railcar("server", "init", "--data-dir", str(data), "--json")
    assert init.returncode == 0, init.stderr
    return data


def test_serves_on_an_ipv6_address_written_in_brackets(tmp_path: Path) -> None:
    data = _initialized(tmp_path)
    port = free_port("::1")
    cmd = [sys.executable, "-m", "railcar", "server", "run", "--data-dir", str(data)]
    with running([*cmd, "--listen", f"[::1]:{port}"], port, host="::1") as base:
        assert base == f"http://[::1]:{port}"
        answer = httpx.post(f"{base}/v1/update/", content=omaha_body())
        assert answer.status_code == 200
        assert '<response protocol="3.0" server="railcar">' in answer.text
        # Bound to the IPv6 loopback only.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_a_bare_ipv6_listen_address_is_a_usage_error(tmp_path: Path) -> None:
    data = _initialized(tmp_path)
    refused = railcar("server", "run", "--data-dir", str(data), "--listen", "::1:8080")
    assert refused.returncode == 2
    assert "'::1:8080': write an IPv6 address in brackets, e.g. [::1]:8080" in refused.stderr


def test_a_port_in_use_is_one_clear_error_with_one_process(tmp_path: Path) -> None:
    data = _initialized(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        refused = railcar("server", "run", "--data-dir", str(data), "--listen", f"127.0.0.1:{port}")
    assert refused.returncode == 1
    assert f"railcar: error: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        refused.stderr
    )
    assert "railcar server on" not in refused.stderr  # never announced
    assert "Traceback" not in refused.stderr
