"""The served app leaves its startup heap out of full garbage collections (gc.freeze), so a full
collection no longer walks every ORM mapper, route and module: those walks were the fleet
benchmark's 57–85 ms p99 on SQLite (docs/PERFORMANCE.md). Run in a child process, so the test
process's own collector is left alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import gc, sys
from fastapi.testclient import TestClient
from railcar.server.api import create_app, freeze_startup_heap
from railcar.server.db import open_database

db = open_database("sqlite:///" + sys.argv[1])
db.create_schema()
app = create_app(db)
if sys.argv[2] == "freeze":
    freeze_startup_heap(app)
before = gc.get_freeze_count()
with TestClient(app) as client:  # runs the startup hooks
    assert client.get("/api/openapi.json").status_code in (200, 401, 404)
    print(before, gc.get_freeze_count())
"""


def _counts(tmp_path: Path, mode: str) -> tuple[int, int]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / f"{mode}.db"), mode],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = proc.stdout.split()
    return int(before), int(after)


@pytest.mark.parametrize("mode", ["freeze", "plain"])
def test_startup_freezes_the_heap_only_when_asked(tmp_path: Path, mode: str) -> None:
    before, after = _counts(tmp_path, mode)
    assert before == 0
    if mode == "freeze":
        assert after > 10_000  # the imported server: modules, mappers, routes, schemas
    else:
        assert after == 0
