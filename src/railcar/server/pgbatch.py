"""PostgreSQL: the fast path for a batch of queued requests in two statements.

On PostgreSQL every statement is a round trip to another process. Answered one by one, an
up-to-date node cost five (BEGIN, the read, the instance upsert, the instance-application
write, COMMIT), each with SQLAlchemy's work around it, on one of forty threads contending for
the GIL (docs/PERFORMANCE.md has the profile). :class:`PgFastBatch` answers all fast-path
requests that queued on :class:`~railcar.server.batching.FastBatches`' writer thread with:

1. one SELECT of every request's group (channel, package, whether floors exist) and node row,
   from ``unnest`` arrays of the requests' group, machine and application ids;
2. :meth:`FastPath.decide <railcar.server.fastpath.FastPath.decide>` for each request, exactly
   as for a single request (the same code decides and builds the rows to write);
3. one statement writing every answer's rows (data-modifying CTEs over ``unnest`` arrays) on an
   autocommit connection: a statement is its own transaction, so no BEGIN and no COMMIT.

Read and write are two snapshots, so the write is guarded: an instance-application row is
updated only if it is still exactly as read, and inserted only if it is still absent. A request
whose guard fails, whose machine is already in the batch, or that the fast path hands off gets
``None``: the caller answers it with the ORM handler in a transaction of its own, after this
batch's write. A stale read can thus only cost a second look. Nothing here grants: a grant is
decided by the ORM path under the group's row lock, so the limits stay exact (ADR 0012, 0015).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Engine, String, Table, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from railcar.omaha.model import Request, Response
from railcar.server import fastpath
from railcar.server.fastpath import Candidate, FastPath, Handoff, Writes, group_and_node
from railcar.server.models import Group, Instance

_GROUP = cast(Table, Group.__table__)
_INSTANCE = cast(Table, Instance.__table__)
_WANTED = (
    func.unnest(
        bindparam("groups", type_=ARRAY(String)),
        bindparam("machines", type_=ARRAY(String)),
        bindparam("apps", type_=ARRAY(String)),
    )
    .table_valued("group_id", "machine", "app", with_ordinality="n")
    .render_derived(name="wanted")
)
_COLUMNS, _JOINS = group_and_node(
    _WANTED.c.machine, _WANTED.c.app, (_WANTED, _GROUP.c.id == _WANTED.c.group_id)
)
_ATTRS = ("ip", "alias", "oem", "oem_version", "aleph_version")
# Every request's group and node row, and its instance row's attributes (one record, NULL for
# none): an instance upsert that would change nothing is not sent (PostgreSQL locks the row of
# an ON CONFLICT DO UPDATE, and WAL-logs the lock, even when its WHERE is false). A correlated
# subquery, not a join: a prepared statement's generic plan hashed the whole instance table.
_STORED = (
    select(func.row(*(_INSTANCE.c[a] for a in _ATTRS)))
    .where(_INSTANCE.c.id == _WANTED.c.machine)
    .scalar_subquery()
)
READ = select(_WANTED.c.n.label("wanted_n"), *_COLUMNS, _STORED.label("instance")).select_from(
    _JOINS
)

_KEEP = ",\n        ".join(
    f"{a} = CASE WHEN excluded.{a} <> '' THEN excluded.{a} ELSE cur.{a} END" for a in _ATTRS
)
_CHANGED = " OR ".join(f"(excluded.{a} <> '' AND excluded.{a} <> cur.{a})" for a in _ATTRS)
_TEXT_ATTRS = ", ".join(f"{a} varchar" for a in _ATTRS)

# The same effects as fastpath.apply, for many nodes, from one JSON parameter (json.dumps is
# far cheaper than binding dozens of arrays): the instance upserts ("i"), instance-application
# inserts ("n") and guarded updates ("u"), and the history rows ("h") of the inserts and
# updates that happened. The instance upsert keeps stored attributes the node left empty and
# rewrites nothing unchanged. Rows are taken in machine order, so concurrent batches lock them
# in the same order. Returns the machines whose instance-application row was written.
WRITE = text(
    f"""
WITH batch AS (SELECT CAST(:batch AS jsonb) AS b), given AS (
    INSERT INTO instance AS cur (id, hidden, created_ts, {", ".join(_ATTRS)})
    SELECT v.id, false, v.created_ts, {", ".join(f"v.{a}" for a in _ATTRS)}
    FROM batch, jsonb_to_recordset(b -> 'i')
        AS v(id varchar, created_ts timestamptz, {_TEXT_ATTRS})
    ORDER BY v.id
    ON CONFLICT (id) DO UPDATE SET
        {_KEEP}
    WHERE {_CHANGED}
), added AS (
    INSERT INTO instance_application (instance_id, application_id, group_id, version,
        last_check_for_updates, update_in_progress, rolled_back_from, status)
    SELECT n.instance_id, n.application_id, n.group_id, n.version,
        n.last_check_for_updates, false, '', n.status
    FROM batch, jsonb_to_recordset(b -> 'n') AS n(instance_id varchar, application_id varchar,
        group_id varchar, version varchar, last_check_for_updates timestamptz, status integer)
    ORDER BY n.instance_id
    ON CONFLICT (instance_id, application_id) DO NOTHING
    RETURNING instance_id
), changed AS (
    UPDATE instance_application AS ia
    SET version = u.version, group_id = u."group", last_check_for_updates = u.last_check,
        status = u.status
    FROM batch, jsonb_to_recordset(b -> 'u') AS u(machine varchar, app varchar,
        "group" varchar, version varchar, last_check timestamptz, status integer,
        was_group varchar, was_version varchar, was_status integer, was_check timestamptz,
        was_rolled_back varchar, was_last_update varchar)
    WHERE ia.instance_id = u.machine AND ia.application_id = u.app
        AND NOT ia.update_in_progress
        AND ia.group_id IS NOT DISTINCT FROM u.was_group
        AND ia.version = u.was_version
        AND ia.status IS NOT DISTINCT FROM u.was_status
        AND ia.last_check_for_updates = u.was_check
        AND ia.rolled_back_from = u.was_rolled_back
        AND ia.last_update_version IS NOT DISTINCT FROM u.was_last_update
    RETURNING ia.instance_id
), written AS (
    SELECT instance_id FROM added UNION ALL SELECT instance_id FROM changed
), history AS (
    INSERT INTO instance_status_history (instance_id, application_id, group_id, status,
        version, created_ts)
    SELECT h.instance_id, h.application_id, h.group_id, h.status, h.version, h.created_ts
    FROM batch, jsonb_to_recordset(b -> 'h') AS h(instance_id varchar, application_id varchar,
        group_id varchar, status integer, version varchar, created_ts timestamptz)
    WHERE h.instance_id IN (SELECT instance_id FROM written)
)
SELECT instance_id FROM written
"""
)


def _json(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.isoformat()  # microseconds kept: the guard compares timestamps exactly
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def instance_unchanged(writes: Writes, row: Any) -> bool:
    """:func:`railcar.server.fastpath.instance_unchanged` for a :data:`READ` row."""
    return fastpath.instance_unchanged(writes, row.instance)


def write_params(
    batch: Sequence[Writes], unchanged: frozenset[str] = frozenset()
) -> dict[str, str]:
    """:data:`WRITE`'s parameter for ``batch`` (at most one entry per machine); the instance
    upserts of the machines in ``unchanged`` are left out."""
    doc: dict[str, list[dict[str, Any]]] = {"i": [], "n": [], "u": [], "h": []}
    for writes in batch:
        if writes.instance["id"] not in unchanged:
            doc["i"].append(writes.instance)
        if writes.new_node is not None:
            doc["n"].append(writes.new_node)
        if writes.node_update is not None:
            node = writes.node
            assert node is not None
            doc["u"].append(
                writes.node_update
                | {
                    "was_group": node.group_id,
                    "was_version": node.version,
                    "was_status": node.status,
                    "was_check": node.last_check,
                    "was_rolled_back": node.rolled_back_from,
                    "was_last_update": node.last_update_version,
                }
            )
        if writes.history is not None:
            doc["h"].append(writes.history)
    return {"batch": json.dumps(doc, default=_json)}


class PgFastBatch:
    """Answers a batch of requests with :class:`FastPath`'s decisions in two statements.

    The two statements run on a psycopg connection of the batch's own (taken from the
    engine's pool and detached from it, autocommit), with SQL compiled once: SQLAlchemy's
    per-execution work (result metadata, events, a pool checkout) cost more than the
    statements. What is rarely needed — group resolution, floors, the group's decision
    stats — goes through a session that connects only when used.
    """

    def __init__(
        self,
        engine: Engine,
        fast: FastPath,
        clock: Callable[[], datetime],
        app_ids: dict[str, str],
    ) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._fast = fast
        self._clock = clock
        self._app_ids = app_ids
        self._read_sql = str(READ.compile(dialect=engine.dialect))
        self._write_sql = str(WRITE.compile(dialect=engine.dialect))
        self._raw: psycopg.Connection[Any] | None = None  # from the pool, detached
        self._lock = threading.Lock()
        self.statements = 0  # reads and writes run, for tests
        self.trace: Callable[[str], None] | None = None  # sees each statement first (tests)

    def answer(self, items: Sequence[tuple[Request, str]]) -> list[Response | None]:
        """Per request its answer (written), or ``None``: the full path must answer it."""
        with self._lock, Session(bind=self._autocommit) as session:
            return self._answer(session, items)

    def close(self) -> None:
        with self._lock:
            if self._raw is not None:
                self._raw.close()
                self._raw = None

    def _answer(
        self, session: Session, items: Sequence[tuple[Request, str]]
    ) -> list[Response | None]:
        results: list[Response | None] = [None] * len(items)
        wanted: list[tuple[int, Candidate, str, datetime]] = []
        machines: set[str] = set()
        for i, (request, ip) in enumerate(items):
            candidate = self._candidate(session, request)
            if candidate is not None and candidate.machine not in machines:
                machines.add(candidate.machine)
                wanted.append((i, candidate, ip, self._clock()))
        if not wanted:
            return results
        rows = self._run(
            self._read_sql,
            {
                "groups": [c.group_id for _, c, _, _ in wanted],
                "machines": [c.machine for _, c, _, _ in wanted],
                "apps": [c.app_id for _, c, _, _ in wanted],
            },
        )
        by_n = {row.wanted_n: row for row in rows}
        planned: list[tuple[int, Any, Writes | None]] = []
        floors: dict[str, list[Any]] = {}
        unchanged: set[str] = set()
        for n, (i, candidate, ip, now) in enumerate(wanted, start=1):
            row = by_n.get(n)
            try:
                response, writes = self._fast.decide(session, candidate, row, ip, now, floors)
            except Handoff:
                continue
            planned.append((i, response, writes))
            if writes is not None and instance_unchanged(writes, row):
                unchanged.add(candidate.machine)
        writes_list = [w for _, _, w in planned if w is not None]
        written: set[str] = set()
        if writes_list:
            writes_list.sort(key=lambda w: str(w.instance["id"]))
            params = write_params(writes_list, frozenset(unchanged))
            written = {row[0] for row in self._run(self._write_sql, params)}
        for i, response, writes in planned:
            if (
                writes is None
                or (writes.new_node is None and writes.node_update is None)
                or writes.instance["id"] in written
            ):
                results[i] = Response((response,))
                self._fast.answered += 1
        return results

    def _run(self, sql: str, params: dict[str, Any]) -> list[Any]:
        """One statement on the batch connection (opened on first use, and again after it
        broke); its rows."""
        if self._raw is None:
            raw = self._engine.raw_connection()
            driver = raw.driver_connection
            raw.detach()  # ours for good: the pool neither resets nor reuses it
            try:
                assert isinstance(driver, psycopg.Connection)
                driver.rollback()
                driver.autocommit = True
                driver.row_factory = namedtuple_row
            except BaseException:
                raw.close()
                raise
            self._raw = driver
        driver = self._raw
        if self.trace is not None:
            self.trace(sql)
        try:
            rows = driver.execute(sql, params).fetchall()
        except BaseException:
            if driver.broken or driver.closed:
                self._raw.close()
                self._raw = None
            raise
        self.statements += 1
        return list(rows)

    def _candidate(self, session: Session, request: Request) -> Candidate | None:
        if len(request.apps) != 1:
            return None
        app = request.apps[0]
        app_id = self._app_ids.get(app.appid.strip())
        if app_id is None:
            return None
        try:
            return self._fast.candidate(session, request, app, app_id)
        except Handoff:
            return None
