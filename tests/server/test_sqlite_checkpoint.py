"""SQLite's write-ahead log is checkpointed by a background thread, never inside a commit."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import text

from railcar.server.db import Checkpointer, open_database


def test_commits_leave_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    path = tmp_path / "railcar.db"
    db = open_database(f"sqlite:///{path}")
    assert db._checkpointer is not None
    db._checkpointer.stop()  # drive it by hand below
    with db.write() as s:
        s.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)"))
    for _ in range(30):
        with db.write() as s:
            s.execute(text("INSERT INTO filler (data) VALUES (randomblob(4000))"), [{}] * 100)
    wal = Path(f"{path}-wal")
    # 3,000 pages written: far past SQLite's automatic 1,000-page checkpoint, yet no commit
    # reset the log
    assert wal.stat().st_size > 3000 * 4096
    busy, frames, done = db._checkpointer.run_once()
    assert busy == 0 and frames > 3000 and done == frames
    db.dispose()


def test_the_background_thread_checkpoints_a_growing_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Checkpointer, "INTERVAL", 0.05)
    monkeypatch.setattr(Checkpointer, "THRESHOLD", 64 << 10)
    path = tmp_path / "railcar.db"
    db = open_database(f"sqlite:///{path}")
    assert db._checkpointer is not None
    with db.write() as s:
        s.execute(text("CREATE TABLE filler (id INTEGER PRIMARY KEY, data BLOB)"))
        s.execute(text("INSERT INTO filler (data) VALUES (randomblob(400000))"))
    deadline = time.monotonic() + 30
    while db._checkpointer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert db._checkpointer.checkpoints >= 1
    db.dispose()
