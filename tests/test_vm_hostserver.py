"""The VM tests' host-side update server: a real server a node can update from."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from railcar.omaha.codec import parse_response
from railcar.vm.hostserver import HostServer, UnknownInstanceError
from tests.server.test_admin_api import omaha_body

MACHINE = "0123456789abcdef0123456789abcdef"


def test_publish_offer_and_inspect(tmp_path: Path) -> None:
    payload = tmp_path / "railcar_production_update.gz"
    payload.write_bytes(b"CrAU" + bytes(4000))
    with HostServer(tmp_path / "t") as server:
        with pytest.raises(UnknownInstanceError, match="no such instance yet"):
            server.events(MACHINE)  # not checked in yet: a distinct error the tests poll past
        assert server.guest_url == f"http://10.0.2.2:{server.port}/v1/update/"
        published = server.publish(payload, "2.0.0")
        group = server.set_policy(
            published["group_id"], max_updates_per_period=1, period_interval_s=3600
        )
        assert group["policy"]["max_updates_per_period"] == 1
        assert group["policy"]["period_interval_s"] == 3600
        assert group["policy"]["update_timeout_s"] == 3600  # unchanged default
        answer = httpx.post(f"{server.base}/v1/update/", content=omaha_body(MACHINE), timeout=30)
        check = parse_response(answer.content).apps[0].updatecheck
        assert check is not None and check.manifest is not None
        assert check.manifest.version == "2.0.0"
        # hosted files are offered at the address guests reach the host by
        assert check.urls[0].startswith(f"http://10.0.2.2:{server.port}/packages/")
        instance = server.instance(MACHINE)
        assert instance["status"] == 2  # Update granted (Nebraska's status codes)
        # the policy took effect: a second node in the same period is told noupdate
        other = "fedcba9876543210fedcba9876543210"
        answer = httpx.post(f"{server.base}/v1/update/", content=omaha_body(other), timeout=30)
        second = parse_response(answer.content).apps[0].updatecheck
        assert second is not None and second.manifest is None
        assert server.instance(other)["status"] == 8  # On hold
        assert server.update_checks() == 2
        assert server.events(MACHINE) == []
    assert (tmp_path / "t/server/railcar.db").exists()  # kept for the test's post-mortem
    try:
        httpx.get(f"{server.base}/health", timeout=2)
        stopped = False
    except httpx.TransportError:
        stopped = True
    assert stopped
