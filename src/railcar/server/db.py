"""Database access: engines for SQLite (the embedded default) and PostgreSQL, sessions, schema.

Write transactions that decide grants must see a stable view of their group:

* SQLite: write sessions open with ``BEGIN IMMEDIATE``, which takes the database's single write
  lock at the start, so grant decisions are serialised (WAL keeps readers unblocked);
* PostgreSQL: the grant path locks the group row (``SELECT … FOR UPDATE``) before reading the
  group's stats, so concurrent requests — in one process or several — decide one at a time per
  group while other groups proceed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from railcar.errors import RailcarError
from railcar.server.models import Base

SQLITE_FILE = "railcar.db"
QUIET = "railcar.quiet"  # session.info key: this write changes nothing another request caches


class DatabaseError(RailcarError):
    """The database cannot be opened or is not a Railcar database."""


def database_url(data_dir: Path | None, url: str | None) -> str:
    if url:
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://") :]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://") :]
        return url
    if data_dir is None:
        raise DatabaseError("give --data-dir DIR (SQLite) or --db postgresql://…")
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / SQLITE_FILE}"


@dataclass
class Database:
    engine: Engine
    _writer: sessionmaker[Session]
    _reader: sessionmaker[Session]

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    _write_lock: threading.Lock | None = None
    # Moves after every committed write unless the session says it changed nothing that
    # others cache (session.info[QUIET]); readers of caches compare it (server.fastpath).
    generation: int = 0
    _generation_lock: threading.Lock = field(default_factory=threading.Lock)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that may write; committed on success, rolled back on error.

        On SQLite, threads of this process queue on a lock before ``BEGIN IMMEDIATE``: the
        database admits one writer anyway, and SQLite's own busy handler waits by sleeping,
        which under contention costs far more than the queue.
        """
        if self._write_lock is None:
            with self._writer() as session:
                with session.begin():
                    yield session
                self._committed(session)
            return
        with self._write_lock, self._writer() as session:
            with session.begin():
                yield session
            self._committed(session)

    def _committed(self, session: Session) -> None:
        if not session.info.get(QUIET):
            with self._generation_lock:
                self.generation += 1

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session, session.begin():
            yield session

    def create_schema(self) -> None:
        from railcar.server.migrations import upgrade

        upgrade(self.engine)

    def has_schema(self) -> bool:
        return inspect(self.engine).has_table("application")

    _checkpointer: Checkpointer | None = None

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()


def open_database(url: str, *, pool_size: int = 10) -> Database:
    if url.startswith("sqlite"):
        return _open_sqlite(url)
    try:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)
    except Exception as exc:
        raise DatabaseError(
            f"cannot open database {url.rsplit('@', maxsplit=1)[-1]}: {exc}"
        ) from exc
    try:
        # Connect now, so an unreachable server is one clear error here rather than a
        # traceback from whichever statement runs first (the pool keeps the connection).
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise DatabaseError(
            f"cannot connect to database {url.rsplit('@', maxsplit=1)[-1]}: {reason}",
            hint="is PostgreSQL running, and does the URL name its host, port, user and database?",
        ) from None
    maker = sessionmaker(engine, expire_on_commit=False)
    return Database(engine, maker, maker)


def _open_sqlite(url: str) -> Database:
    def engine(immediate: bool) -> Engine:
        eng = create_engine(url, connect_args={"isolation_level": None, "timeout": 30})

        @event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            # No checkpoint inside a commit (its fsync would stall that request and all queued
            # behind it): the Checkpointer thread does them in the background.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        @event.listens_for(eng, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return eng

    writer_engine = engine(immediate=True)
    reader_engine = engine(immediate=False)
    db = Database(
        writer_engine,
        sessionmaker(writer_engine, expire_on_commit=False),
        sessionmaker(reader_engine, expire_on_commit=False),
        threading.Lock(),
    )
    db._checkpointer = Checkpointer(reader_engine)
    db._checkpointer.start()
    return db


class Checkpointer:
    """Moves SQLite's write-ahead log into the database from a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses the threshold, and its
    fsync stalls that writer — with one writer, every request queued behind it. A PASSIVE
    checkpoint on another connection copies what no reader still needs without taking the
    write lock, so writers go on meanwhile. SQLite still checkpoints when the last connection
    closes.
    """

    INTERVAL = 1.0  # seconds between looks at the log
    THRESHOLD = 4 << 20  # bytes of log that make a checkpoint worth its fsync

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sqlite-checkpoint", daemon=True)
        database = engine.url.database
        self._wal = Path(f"{database}-wal") if database else None
        self.checkpoints = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def run_once(self) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, frames in the log, frames checkpointed)."""
        with self._engine.connect() as conn:
            row = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            conn.commit()
        self.checkpoints += 1
        return int(row[0]), int(row[1]), int(row[2])

    def _loop(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            try:
                if self._wal is not None and self._wal.stat().st_size >= self.THRESHOLD:
                    self.run_once()
            except (OSError, SQLAlchemyError):
                continue  # no log yet, or the database is busy: look again later


__all__ = ["Base", "Database", "DatabaseError", "database_url", "open_database"]
